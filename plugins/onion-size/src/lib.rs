//! `onion-size`: fails HTLCs whose onion blob is not the standard 1366 bytes.
//!
//! A small example of a plugin that reads the onion through the `onion-blob`
//! import, so it must be granted: `grants = ["onion-blob"]` in its `[[plugin]]`
//! entry, or htlcgate refuses to load it. Other HTLCs get `next`.
//!
//! ```toml
//! [[plugin]]
//! name = "onion-size"
//! path = "target/wasm-plugins/onion-size.wasm"
//! grants = ["onion-blob"]
//! ```

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// The size of a BOLT 4 onion packet.
pub const ONION_SIZE: usize = 1366;

/// No state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnionSize;

impl Plugin for OnionSize {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(OnionSize)
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        if htlc.onion_blob().len() == ONION_SIZE {
            Verdict::next()
        } else {
            Verdict::fail_temporary()
        }
    }
}

export_plugin!(OnionSize);
