//! Whether htlcgate is doing its job right now, for `/healthz`: healthy only while
//! the chain is loaded AND LND's interceptor stream is up.
//!
//! Plain atomics, set by the daemon (chain loaded), the gate (stream accepted or
//! closed) and the stream loop (why the last connection failed); read by the HTTP
//! listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// htlcgate's health.
#[derive(Debug, Default)]
pub struct Health {
    chain_loaded: AtomicBool,
    stream_up: AtomicBool,
    /// Why the last connection attempt or stream failed, in plain words.
    last_error: Mutex<Option<String>>,
}

impl Health {
    /// Nothing loaded, no stream.
    pub fn new() -> Health {
        Health::default()
    }

    /// The chain is loaded (set once the gate exists; a refused reload keeps the
    /// running chain, so it stays loaded).
    pub fn set_chain_loaded(&self, loaded: bool) {
        self.chain_loaded.store(loaded, Ordering::Relaxed);
    }

    /// LND accepted the interceptor stream (`true`) or it ended (`false`).
    pub fn set_stream_up(&self, up: bool) {
        self.stream_up.store(up, Ordering::Relaxed);
        if up {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Why the last connection failed (shown by `/healthz` while the stream is down).
    pub fn set_stream_error(&self, reason: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Whether the stream is up.
    pub fn stream_up(&self) -> bool {
        self.stream_up.load(Ordering::Relaxed)
    }

    /// `Ok(())` when healthy, else the reason in a short line.
    pub fn check(&self) -> Result<(), String> {
        if !self.chain_loaded.load(Ordering::Relaxed) {
            return Err("chain not loaded yet (plugins are being compiled and initialised)".into());
        }
        if !self.stream_up() {
            let last = self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(match last {
                Some(e) => format!("LND interceptor stream down: {e}"),
                None => "LND interceptor stream down: not connected yet".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_with_the_chain_loaded_and_the_stream_up() {
        let h = Health::new();
        assert!(h.check().unwrap_err().contains("chain not loaded"));
        h.set_stream_up(true);
        assert!(h.check().unwrap_err().contains("chain not loaded"));
        h.set_chain_loaded(true);
        assert_eq!(h.check(), Ok(()));
        h.set_stream_up(false);
        h.set_stream_error("cannot reach LND at 127.0.0.1:10009".into());
        let why = h.check().unwrap_err();
        assert!(
            why.contains("stream down") && why.contains("cannot reach"),
            "{why}"
        );
        h.set_stream_up(true);
        assert_eq!(h.check(), Ok(()));
        h.set_stream_up(false);
        assert!(h.check().unwrap_err().contains("not connected yet"));
    }
}
