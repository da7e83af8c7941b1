//! The host imports, with stand-ins outside WebAssembly.
//!
//! The generated import stubs are `unreachable!()` on other targets, so unit
//! tests on the host would panic at the first log line. The SDK calls the host
//! through here instead: the real import in WebAssembly, a harmless stand-in
//! elsewhere. (The clock, `kv` and `node` imports have settable stand-ins in
//! their own modules.)

use crate::bindings::LogLevel;

/// Writes a log line through the host.
#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: LogLevel, message: &str) {
    crate::bindings::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
std::thread_local! {
    /// This thread's log lines go to stderr (host builds; see
    /// [`crate::log::set_stderr`]).
    static STDERR: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Writes a log line to stderr unless this thread turned that off (host builds:
/// unit tests, benchmarks).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn log(level: LogLevel, message: &str) {
    if STDERR.with(std::cell::Cell::get) {
        eprintln!("[plugin {level:?}] {message}");
    }
}

/// Whether this thread's log lines go to stderr (host builds).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn set_stderr(on: bool) {
    STDERR.with(|c| c.set(on));
}

/// The onion blob of the HTLC being decided, copied from the host.
#[cfg(target_arch = "wasm32")]
pub(crate) fn onion_blob() -> Vec<u8> {
    crate::bindings::onion_blob()
}

/// No host to ask (host builds: unit tests set the blob with `HtlcBuilder`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn onion_blob() -> Vec<u8> {
    Vec::new()
}

/// Tells the host this plugin does nothing with `outcome` (the default
/// [`Plugin::outcome`](crate::Plugin::outcome) calls it): it is not called again.
#[cfg(target_arch = "wasm32")]
pub(crate) fn ignore_outcomes() {
    crate::bindings::ignore_outcomes();
}

/// No host to tell (host builds: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn ignore_outcomes() {}
