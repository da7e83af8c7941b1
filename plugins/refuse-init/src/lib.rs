//! Fault fixture `refuse-init`: `init` always fails.
//!
//! Tests load it to prove that a refused load is reported to the operator with
//! the plugin's message and keeps the plugin out of the chain. Not a policy: do
//! not put it in a real chain.
//!
//! Config: anything (ignored).

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// Never loads.
pub struct RefuseInit;

impl Plugin for RefuseInit {
    fn init(_config: &Config) -> Result<Self, String> {
        Err("refusing: the refuse-init fixture never loads (it tests how the host reports a refused init)".into())
    }

    fn decide(&mut self, _htlc: &Htlc) -> Verdict {
        // Unreachable in practice: the SDK answers `next` itself until an
        // `init` succeeds.
        Verdict::next()
    }
}

export_plugin!(RefuseInit);
