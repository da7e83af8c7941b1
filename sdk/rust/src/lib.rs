//! Write htlcgate policy plugins in Rust.
//!
//! htlcgate holds LND's HTLC interceptor stream and asks a chain of sandboxed
//! WebAssembly components what to do with each forwarded HTLC. A plugin is one
//! such component (world `decider` of `wit/plugin.wit`). This crate owns the
//! generated bindings; a plugin implements [`Plugin`] and names its type once
//! with [`export_plugin!`].
//!
//! ```
//! use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};
//!
//! /// Fails forwards that pay less than `min_fee_msat`.
//! struct MinFee {
//!     min_fee_msat: i128,
//! }
//!
//! impl Plugin for MinFee {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         config.deny_unknown(&["min_fee_msat"])?;
//!         Ok(MinFee { min_fee_msat: config.parse_or::<u64>("min_fee_msat", 0)?.into() })
//!     }
//!
//!     fn decide(&mut self, htlc: &Htlc) -> Verdict {
//!         if htlc.is_final_hop() || htlc.fee_msat() >= self.min_fee_msat {
//!             return Verdict::next(); // no opinion: later plugins decide
//!         }
//!         htlcgate_sdk::debug!("{}: fee {} msat too low", htlc.circuit_key(), htlc.fee_msat());
//!         Verdict::fail_temporary()
//!     }
//! }
//!
//! export_plugin!(MinFee);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2` (the repository's
//! `scripts/build-plugins` does this for every crate under `plugins/`); the
//! result is a component htlcgate loads.
//!
//! # How a plugin lives
//!
//! - `init` runs once per instance with the `config` table of the plugin's
//!   `[[plugin]]` entry. Return `Err` with a message naming the key to refuse the
//!   load; [`Config`]'s readers produce such messages.
//! - `decide` runs for each HTLC, one at a time, on the same instance, so the
//!   plugin may keep state in `self`. It is limited by fuel, wall-clock time and
//!   memory; a panic traps the instance and htlcgate replaces it (calling `init`
//!   again), so state is best-effort.
//! - [`Verdict::next`] means "no opinion": the following plugin decides.
//!   [`Verdict::hold_ms`] keeps the HTLC held at LND and asks this plugin again
//!   later ([`Htlc::attempt`] counts the asks), within the host's cap (60 s from
//!   arrival by default). Any other verdict ends the chain.
//! - [`Plugin::outcome`] (optional) hears what became of each HTLC the chain
//!   decided: forwarded, settled, failed, final ([`Outcome`]).
//! - State that must outlive the instance (a reload, a restart, a trap) goes in
//!   the host's key-value store, [`kv`] (grant `kv`).
//! - [`node`] tells about this node: its channels (grant `node`) and the block
//!   height.
//!
//! # Testing on the host
//!
//! Everything except the host imports is plain Rust that also compiles for the
//! build machine: build HTLCs with [`Htlc::builder`], configs with
//! [`Config::from_pairs`], call your `decide` and `outcome` and compare
//! [`Verdict`]s. The imports have per-thread stand-ins there: logging goes to
//! stderr, [`Htlc::onion_blob`] returns what the builder set, [`kv`] is an
//! in-memory map ([`kv::clear`]), [`node`] answers what the test set
//! ([`node::set_channel`], [`node::set_block_height`]) and the [`clock`] can be
//! frozen and moved ([`clock::set_unix_ms`], [`clock::advance_ms`]).

#![warn(missing_docs)]

pub mod clock;
mod config;
mod htlc;
mod imports;
pub mod kv;
pub mod log;
pub mod node;
mod outcome;
mod scid;
mod verdict;

pub use config::Config;
pub use htlc::{CircuitKey, CustomRecord, Htlc, HtlcBuilder};
pub use node::{ChannelInfo, NodeId, ParseNodeIdError};
pub use outcome::{HtlcAmounts, Outcome, OutcomeKind};
pub use scid::{ParseScidError, Scid};
pub use verdict::{FailureCode, Modification, Verdict};

/// The bindings `wit-bindgen` generates from `wit/plugin.wit`. Plugins should
/// not need them: use the typed API of this crate.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "decider",
        // `export_plugin!` (in the plugin crate) calls the generated export
        // macro, so it must be public, and it finds the types here.
        pub_export_macro: true,
        export_macro_name: "__export_decider",
        default_bindings_module: "htlcgate_sdk::bindings",
        // Lets `Verdict` (which holds generated records) derive `PartialEq`.
        additional_derives: [PartialEq, Eq],
    });
}

/// Wall-clock time from the host: milliseconds since the Unix epoch.
///
/// Outside WebAssembly (unit tests) it reads the system clock, or the time a
/// test set with [`clock::set_unix_ms`].
pub fn now_unix_ms() -> u64 {
    clock::now_unix_ms()
}

/// A policy plugin: built once from its config, then asked about each HTLC.
///
/// Name the implementing type with [`export_plugin!`] to make the crate a
/// plugin.
pub trait Plugin {
    /// Builds the plugin from the `config` table of its `[[plugin]]` entry.
    ///
    /// An `Err` refuses the load; its message is shown to the operator, so
    /// name the key and what is wrong (the [`Config`] readers do).
    fn init(config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Decides one HTLC. [`Verdict::next`] passes it to the next plugin;
    /// [`Verdict::hold_ms`] asks this plugin again later (the HTLC stays held
    /// at LND); any other verdict ends the chain and goes to LND once the host
    /// has checked it.
    fn decide(&mut self, htlc: &Htlc) -> Verdict;

    /// Hears one event about an HTLC the chain decided (or that this plugin
    /// held): see [`Outcome`]. Called on the same instance as `decide`, in
    /// turn with it, under the same limits; what it does never changes a
    /// verdict already given. LND does not replay events missed while
    /// htlcgate was down, so state built from outcomes must also expire.
    ///
    /// The default does nothing, and tells the host so at the first call
    /// (the WIT import `ignore-outcomes`): a plugin that does not override
    /// this method is not called for outcomes again, so the three events LND
    /// sends per forward cost it nothing.
    fn outcome(&mut self, outcome: &Outcome) {
        let _ = outcome;
        crate::imports::ignore_outcomes();
    }
}

/// Makes this crate a plugin whose behaviour is the [`Plugin`] type `$plugin`.
///
/// Use it once, at the crate root of a `cdylib` crate: it keeps the instance
/// built by `init` in a static and exports the WIT functions `init`, `decide`
/// and `outcome` (which calls [`Plugin::outcome`]). A `decide` arriving before
/// a successful `init` answers [`Verdict::next`] and logs an error rather than
/// trapping; an `outcome` then is ignored.
///
/// On targets other than WebAssembly it only checks that `$plugin` implements
/// [`Plugin`], so the crate still builds for host unit tests.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: fn() = || $crate::__private::assert_plugin::<$plugin>();

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static __HTLCGATE_PLUGIN: $crate::__private::Slot<$plugin> =
                    const { $crate::__private::Slot::new() };
            }

            struct __HtlcgateExports;

            impl $crate::bindings::Guest for __HtlcgateExports {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init(&__HTLCGATE_PLUGIN, config)
                }

                fn decide(htlc: $crate::bindings::Htlc) -> $crate::bindings::Resolution {
                    $crate::__private::decide(&__HTLCGATE_PLUGIN, htlc)
                }

                fn outcome(outcome: $crate::bindings::HtlcOutcome) {
                    $crate::__private::outcome(&__HTLCGATE_PLUGIN, outcome)
                }
            }

    $crate::bindings::__export_decider!(__HtlcgateExports with_types_in $crate::bindings);
        };
    };
}

/// Support for [`export_plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use core::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{bindings, Config, Htlc, Outcome, Plugin, Verdict};

    /// Where the plugin instance built by `init` lives (WebAssembly is
    /// single-threaded, so a thread-local is a plain static there).
    pub struct Slot<T>(RefCell<Option<T>>);

    impl<T> Slot<T> {
        /// An empty slot: `init` has not succeeded yet.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Slot<T> {
            Slot(RefCell::new(None))
        }
    }

    /// Fails to compile unless `T` is a [`Plugin`].
    pub fn assert_plugin<T: Plugin>() {}

    /// The exported `init`: builds the plugin and stores it, or refuses.
    pub fn init<T: Plugin + 'static>(
        slot: &'static LocalKey<Slot<T>>,
        config: Vec<(String, String)>,
    ) -> Result<(), String> {
        let config = Config::from_pairs(config);
        let built = T::init(&config);
        slot.with(|slot| match built {
            Ok(plugin) => {
                *slot.0.borrow_mut() = Some(plugin);
                Ok(())
            }
            Err(message) => {
                // A refused re-init must not leave the old instance answering.
                *slot.0.borrow_mut() = None;
                Err(message)
            }
        })
    }

    /// The exported `decide`: asks the stored plugin, or answers `next`.
    pub fn decide<T: Plugin + 'static>(
        slot: &'static LocalKey<Slot<T>>,
        raw: bindings::Htlc,
    ) -> bindings::Resolution {
        let htlc = Htlc::from_raw(raw);
        let verdict = slot.with(|slot| match slot.0.borrow_mut().as_mut() {
            Some(plugin) => plugin.decide(&htlc),
            None => {
                // `next` has no effect of its own: the chain goes on exactly as
                // if this plugin were absent, which cannot lose an HTLC.
                crate::log::error("decide called before a successful init; answering `next`");
                Verdict::next()
            }
        });
        verdict.into_resolution()
    }

    /// The exported `outcome`: tells the stored plugin, if there is one.
    pub fn outcome<T: Plugin + 'static>(
        slot: &'static LocalKey<Slot<T>>,
        raw: bindings::HtlcOutcome,
    ) {
        let outcome = Outcome::from_raw(raw);
        slot.with(|slot| {
            if let Some(plugin) = slot.0.borrow_mut().as_mut() {
                plugin.outcome(&outcome);
            }
        });
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::Scid;

        /// Counts calls and resolutions; refuses init when `refuse` is set.
        struct Counter {
            calls: u64,
            resolved: u64,
        }

        impl Plugin for Counter {
            fn init(config: &Config) -> Result<Self, String> {
                if config.contains("refuse") {
                    return Err("refusing: asked to".into());
                }
                Ok(Counter {
                    calls: 0,
                    resolved: 0,
                })
            }

            fn decide(&mut self, htlc: &Htlc) -> Verdict {
                self.calls += 1;
                if self.resolved > 0 {
                    Verdict::hold_ms(u32::try_from(self.resolved).unwrap_or(u32::MAX))
                } else if self.calls == 2 && htlc.incoming_chan() == Scid(1) {
                    Verdict::fail_temporary()
                } else {
                    Verdict::resume()
                }
            }

            fn outcome(&mut self, outcome: &Outcome) {
                if outcome.is_resolution() {
                    self.resolved += 1;
                }
            }
        }

        fn raw_outcome(kind: bindings::OutcomeKind) -> bindings::HtlcOutcome {
            bindings::HtlcOutcome {
                incoming_circuit_key: crate::CircuitKey::new(Scid(1), 0),
                outgoing_circuit_key: None,
                kind,
                at_unix_ms: 0,
            }
        }

        thread_local! {
            static SLOT: Slot<Counter> = const { Slot::new() };
        }

        fn raw_htlc() -> bindings::Htlc {
            let mut raw = Htlc::builder().build().raw_for_tests();
            raw.incoming_circuit_key.chan_id = 1;
            raw
        }

        #[test]
        fn decide_before_init_answers_next() {
            thread_local! {
                static EMPTY: Slot<Counter> = const { Slot::new() };
            }
            assert!(matches!(
                decide(&EMPTY, raw_htlc()),
                bindings::Resolution::Next
            ));
        }

        #[test]
        fn init_stores_the_instance_and_decide_keeps_its_state() {
            assert_eq!(init(&SLOT, vec![]), Ok(()));
            assert!(matches!(
                decide(&SLOT, raw_htlc()),
                bindings::Resolution::Resume
            ));
            assert!(matches!(
                decide(&SLOT, raw_htlc()),
                bindings::Resolution::Fail(crate::FailureCode::TemporaryChannelFailure)
            ));
            // Outcomes reach the instance: a resolution counts, a forward does
            // not.
            outcome(
                &SLOT,
                raw_outcome(bindings::OutcomeKind::Forwarded(bindings::HtlcAmounts {
                    incoming_amount_msat: 2,
                    outgoing_amount_msat: 1,
                    incoming_expiry: 10,
                    outgoing_expiry: 5,
                })),
            );
            outcome(&SLOT, raw_outcome(bindings::OutcomeKind::ForwardFailed));
            assert!(matches!(
                decide(&SLOT, raw_htlc()),
                bindings::Resolution::Hold(1)
            ));
            // A refused re-init empties the slot.
            assert_eq!(
                init(&SLOT, vec![("refuse".into(), String::new())]),
                Err("refusing: asked to".into())
            );
            assert!(matches!(
                decide(&SLOT, raw_htlc()),
                bindings::Resolution::Next
            ));
            // An outcome without an instance is ignored.
            outcome(&SLOT, raw_outcome(bindings::OutcomeKind::ForwardFailed));
        }
    }
}
