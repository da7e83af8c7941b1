//! Key-value state kept by the host: survives hot swaps and restarts.
//!
//! Each plugin has its own namespace (by plugin name): a new version of the plugin
//! sees what the old one wrote. The host makes a write durable before it sends any
//! verdict decided after the write, so a counter never runs behind the verdicts
//! LND acted on. The plugin's `[[plugin]]` entry must grant it:
//!
//! ```toml
//! [[plugin]]
//! name = "rate-limit"
//! path = "target/wasm-plugins/rate-limit.wasm"
//! grants = ["kv"]
//! ```
//!
//! Sizes are bounded by the entry's `kv_max_key_bytes` (default 256),
//! `kv_max_value_bytes` (default 4096) and `kv_max_keys` (default 10,000); a write
//! beyond them returns an error and changes nothing.
//!
//! Outside WebAssembly (unit tests) the store is an in-memory map per thread with
//! the default limits; [`clear`] empties it and [`keys`] lists it. A test can
//! stand for a restart by building a new plugin instance over the same store.

use core::fmt;

/// Why the store refused an operation. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The key is longer than `kv_max_key_bytes` (the limit).
    KeyTooLong(u32),
    /// The value is longer than `kv_max_value_bytes` (the limit).
    ValueTooLong(u32),
    /// The namespace holds `kv_max_keys` keys (the limit) already.
    TooManyKeys(u32),
    /// The host's database failed.
    Storage(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::KeyTooLong(max) => write!(f, "key longer than kv_max_key_bytes = {max}"),
            KvError::ValueTooLong(max) => {
                write!(f, "value longer than kv_max_value_bytes = {max}")
            }
            KvError::TooManyKeys(max) => write!(
                f,
                "namespace full (kv_max_keys = {max}); delete keys or raise the limit"
            ),
            KvError::Storage(m) => write!(f, "host state store failed: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

/// The value stored under `key`, if any.
pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
    imp::get(key)
}

/// Stores `value` under `key`.
pub fn set(key: &[u8], value: &[u8]) -> Result<(), KvError> {
    imp::set(key, value)
}

/// Removes `key`; whether it was there.
pub fn delete(key: &[u8]) -> Result<bool, KvError> {
    imp::delete(key)
}

/// Empties the stand-in store of this thread (host builds only: unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn clear() {
    imp::STORE.with(|s| s.borrow_mut().clear());
}

/// Every key in the stand-in store of this thread, sorted (host builds only:
/// unit tests that check what a plugin leaves behind). The host has no such
/// call: a plugin must know its keys.
#[cfg(not(target_arch = "wasm32"))]
pub fn keys() -> Vec<Vec<u8>> {
    imp::STORE.with(|s| s.borrow().keys().cloned().collect())
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::KvError;
    use crate::bindings;

    fn convert(e: bindings::KvError) -> KvError {
        match e {
            bindings::KvError::KeyTooLong(m) => KvError::KeyTooLong(m),
            bindings::KvError::ValueTooLong(m) => KvError::ValueTooLong(m),
            bindings::KvError::TooManyKeys(m) => KvError::TooManyKeys(m),
            bindings::KvError::Storage(s) => KvError::Storage(s),
        }
    }

    pub(super) fn get(key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        bindings::kv_get(key).map_err(convert)
    }

    pub(super) fn set(key: &[u8], value: &[u8]) -> Result<(), KvError> {
        bindings::kv_set(key, value).map_err(convert)
    }

    pub(super) fn delete(key: &[u8]) -> Result<bool, KvError> {
        bindings::kv_delete(key).map_err(convert)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::KvError;
    use core::cell::RefCell;
    use std::collections::BTreeMap;

    const MAX_KEY: u32 = 256;
    const MAX_VALUE: u32 = 4096;
    const MAX_KEYS: u32 = 10_000;

    thread_local! {
        pub(super) static STORE: RefCell<BTreeMap<Vec<u8>, Vec<u8>>> =
            const { RefCell::new(BTreeMap::new()) };
    }

    fn check_key(key: &[u8]) -> Result<(), KvError> {
        if key.len() > MAX_KEY as usize {
            return Err(KvError::KeyTooLong(MAX_KEY));
        }
        Ok(())
    }

    pub(super) fn get(key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(STORE.with(|s| s.borrow().get(key).cloned()))
    }

    pub(super) fn set(key: &[u8], value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        if value.len() > MAX_VALUE as usize {
            return Err(KvError::ValueTooLong(MAX_VALUE));
        }
        STORE.with(|s| {
            let mut s = s.borrow_mut();
            if !s.contains_key(key) && s.len() >= MAX_KEYS as usize {
                return Err(KvError::TooManyKeys(MAX_KEYS));
            }
            s.insert(key.to_vec(), value.to_vec());
            Ok(())
        })
    }

    pub(super) fn delete(key: &[u8]) -> Result<bool, KvError> {
        check_key(key)?;
        Ok(STORE.with(|s| s.borrow_mut().remove(key).is_some()))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_behaves_like_the_host() {
        clear();
        assert_eq!(get(b"a"), Ok(None));
        set(b"a", b"1").unwrap();
        assert_eq!(get(b"a"), Ok(Some(b"1".to_vec())));
        set(b"0", b"").unwrap();
        assert_eq!(keys(), vec![b"0".to_vec(), b"a".to_vec()]);
        assert_eq!(delete(b"0"), Ok(true));
        assert_eq!(delete(b"a"), Ok(true));
        assert_eq!(delete(b"a"), Ok(false));
        assert_eq!(set(&[0; 257], b""), Err(KvError::KeyTooLong(256)));
        assert_eq!(set(b"k", &[0; 4097]), Err(KvError::ValueTooLong(4096)));
        assert!(KvError::TooManyKeys(3)
            .to_string()
            .contains("kv_max_keys = 3"));
    }
}
