//! Log lines into htlcgate's log, tagged with the plugin's name by the host.
//!
//! The host rate-limits each plugin: lines beyond its limit are counted, not
//! written, so logging every HTLC cannot flood the operator's log (it still costs
//! fuel: each line is a host call and usually a formatted string). The macros
//! [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) format like `format!` and skip the allocation when
//! the message is a plain literal.
//!
//! Outside WebAssembly (unit tests on the host) lines go to stderr, unless the
//! thread turned that off with [`set_stderr`].

use std::fmt;

/// Severity of a log line.
pub use crate::bindings::LogLevel as Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    crate::imports::log(level, message);
}

/// Writes a fine-grained detail line.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes a normal-operation line.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes a line about something unexpected the operator may want to see.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes a line about something that failed.
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Outside WebAssembly only: whether this thread's log lines go to stderr (on
/// by default). A benchmark of a plugin's code compiled natively turns it off,
/// as a daemon's level filter would, so that a debug line per call does not
/// time a write to the terminal.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_stderr(on: bool) {
    crate::imports::set_stderr(on);
}

/// Writes formatted arguments, without allocating when they are a bare literal.
/// Used by the logging macros.
#[doc(hidden)]
pub fn log_args(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(literal) => log(level, literal),
        None => log(level, &fmt::format(args)),
    }
}

/// Logs at debug level, formatting like `format!`: `debug!("fee {fee} msat")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::log::Level::Debug, ::core::format_args!($($arg)+))
    };
}

/// Logs at info level, formatting like `format!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::log::Level::Info, ::core::format_args!($($arg)+))
    };
}

/// Logs at warn level, formatting like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::log::Level::Warn, ::core::format_args!($($arg)+))
    };
}

/// Logs at error level, formatting like `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::log_args($crate::log::Level::Error, ::core::format_args!($($arg)+))
    };
}
