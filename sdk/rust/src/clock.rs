//! Wall-clock time from the host, with a settable stand-in for tests.
//!
//! In WebAssembly [`now_unix_ms`] calls the host's `now-unix-ms` import. Outside
//! it (unit tests) it reads the system clock, unless the test set a time for its
//! thread with [`set_unix_ms`]: then time stands still until the test moves it
//! with [`set_unix_ms`] or [`advance_ms`], so time-based policies (token
//! buckets, expiries) are tested without sleeping.
//!
//! ```
//! use htlcgate_sdk::clock;
//! clock::set_unix_ms(1_700_000_000_000);
//! assert_eq!(htlcgate_sdk::now_unix_ms(), 1_700_000_000_000);
//! clock::advance_ms(1_500);
//! assert_eq!(clock::now_unix_ms(), 1_700_000_001_500);
//! clock::use_system();
//! ```

/// Wall-clock time: milliseconds since the Unix epoch (the host's clock; in
/// unit tests the stand-in's).
pub fn now_unix_ms() -> u64 {
    imp::now_unix_ms()
}

/// Freezes this thread's clock at `ms` milliseconds since the Unix epoch (host
/// builds only: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_unix_ms(ms: u64) {
    imp::FROZEN.with(|f| f.set(Some(ms)));
}

/// Moves this thread's clock forward by `ms` milliseconds, freezing it first at
/// the current system time if it was not frozen (host builds only: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn advance_ms(ms: u64) {
    let now = now_unix_ms();
    set_unix_ms(now.saturating_add(ms));
}

/// Makes this thread's clock the system clock again (host builds only: unit
/// tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn use_system() {
    imp::FROZEN.with(|f| f.set(None));
}

#[cfg(target_arch = "wasm32")]
mod imp {
    pub(super) fn now_unix_ms() -> u64 {
        crate::bindings::now_unix_ms()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use core::cell::Cell;

    thread_local! {
        /// The time a test set, if any.
        pub(super) static FROZEN: Cell<Option<u64>> = const { Cell::new(None) };
    }

    pub(super) fn now_unix_ms() -> u64 {
        FROZEN.with(Cell::get).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_stands_still_until_moved() {
        set_unix_ms(5_000);
        assert_eq!(now_unix_ms(), 5_000);
        assert_eq!(now_unix_ms(), 5_000);
        advance_ms(250);
        assert_eq!(now_unix_ms(), 5_250);
        set_unix_ms(1_000);
        assert_eq!(now_unix_ms(), 1_000);
        use_system();
        // The system clock is long past 1970 + 5 s.
        assert!(now_unix_ms() > 1_600_000_000_000);
    }
}
