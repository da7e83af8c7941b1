//! The optional LND features of htlcgate (HTLC outcomes, the channel cache, the block
//! height, block notifications), whether each is on, and why one is off.
//!
//! Each feature needs its own macaroon permission. LND answers a call the macaroon
//! does not allow with the plain error `permission denied` (gRPC status Unknown, from
//! macaroon-bakery's checker): such an answer turns only that feature off, with one
//! log line that names the feature and the permission, and htlcgate goes on. A call
//! LND does not serve at all (`Unimplemented`, e.g. an lnd built without the
//! `chainrpc` sub-server) turns the feature off the same way. Any other failure
//! (LND unreachable or restarting) is retried with backoff and never turns a
//! feature off.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::lnd::connect::{classify_status, ConnectError, LndEndpoint};

/// A part of htlcgate that needs more from LND than the interceptor stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// Outcomes of forwarded HTLCs: `routerrpc.Router/SubscribeHtlcEvents`.
    HtlcOutcomes,
    /// The channel cache: `lnrpc.Lightning/ListChannels` and `SubscribeChannelEvents`.
    ChannelCache,
    /// The block height: `lnrpc.Lightning/GetInfo` polled (or block notifications).
    BlockHeight,
    /// New blocks at once: `chainrpc.ChainNotifier/RegisterBlockEpochNtfn`; without
    /// it the height is polled from GetInfo.
    BlockNotifications,
}

impl Feature {
    /// Every feature, in display order.
    pub const ALL: [Feature; 4] = [
        Feature::HtlcOutcomes,
        Feature::ChannelCache,
        Feature::BlockHeight,
        Feature::BlockNotifications,
    ];

    /// The feature's name in logs and status output.
    pub fn name(self) -> &'static str {
        match self {
            Feature::HtlcOutcomes => "htlc outcomes",
            Feature::ChannelCache => "channel cache",
            Feature::BlockHeight => "block height",
            Feature::BlockNotifications => "block notifications",
        }
    }

    /// The macaroon permission LND requires for the feature's calls.
    pub fn permission(self) -> &'static str {
        match self {
            Feature::HtlcOutcomes | Feature::ChannelCache => "offchain:read",
            Feature::BlockHeight => "info:read",
            Feature::BlockNotifications => "onchain:read",
        }
    }

    /// The gRPC calls the feature makes.
    pub fn calls(self) -> &'static str {
        match self {
            Feature::HtlcOutcomes => "routerrpc.Router/SubscribeHtlcEvents",
            Feature::ChannelCache => {
                "lnrpc.Lightning/ListChannels, lnrpc.Lightning/SubscribeChannelEvents"
            }
            Feature::BlockHeight => "lnrpc.Lightning/GetInfo",
            Feature::BlockNotifications => "chainrpc.ChainNotifier/RegisterBlockEpochNtfn",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a feature is off (for the rest of this run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeatureOff {
    /// LND refused the call: the macaroon lacks the permission.
    #[error(
        "LND refused {call} ({message}): the macaroon lacks {permission}; bake one with it \
         (e.g. `lncli bakemacaroon offchain:read offchain:write info:read onchain:read`, see \
         README) and restart htlcgate"
    )]
    PermissionDenied {
        /// The call LND refused.
        call: &'static str,
        /// The permission it needs.
        permission: &'static str,
        /// LND's message.
        message: String,
    },
    /// LND does not serve the call (gRPC `Unimplemented`).
    #[error(
        "LND does not serve {call} ({message}); an lnd built without the sub-server (for \
         chainrpc: the `chainrpc` build tag) cannot, a release lnd can"
    )]
    Unsupported {
        /// The call.
        call: &'static str,
        /// LND's message.
        message: String,
    },
}

/// What a feature is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeatureState {
    /// Connecting for the first time.
    Starting,
    /// Working: data is current.
    On,
    /// Lost LND (restart, network): reconnecting with backoff; data is kept but may
    /// be stale.
    Retrying {
        /// The last failure, in plain words.
        error: String,
    },
    /// Off for the rest of this run.
    Off(FeatureOff),
}

impl FeatureState {
    /// Whether the feature works right now.
    pub fn is_on(&self) -> bool {
        matches!(self, FeatureState::On)
    }

    /// Whether the feature is off for good.
    pub fn is_off(&self) -> bool {
        matches!(self, FeatureState::Off(_))
    }
}

impl fmt::Display for FeatureState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureState::Starting => f.write_str("starting"),
            FeatureState::On => f.write_str("on"),
            FeatureState::Retrying { error } => write!(f, "retrying ({error})"),
            FeatureState::Off(why) => write!(f, "off: {why}"),
        }
    }
}

/// The state of every feature that was started, by feature.
pub type FeatureStates = BTreeMap<Feature, FeatureState>;

/// The shared board of feature states: written by the LND tasks, read by anyone
/// (cheap clone; a `watch` underneath, so changes can be awaited).
#[derive(Clone, Debug)]
pub struct Features {
    /// The states; a feature not started is absent.
    tx: Arc<watch::Sender<FeatureStates>>,
}

impl Default for Features {
    fn default() -> Self {
        Features::new()
    }
}

impl Features {
    /// An empty board (no feature started).
    pub fn new() -> Self {
        Features {
            tx: Arc::new(watch::channel(FeatureStates::new()).0),
        }
    }

    /// Every started feature's state.
    pub fn snapshot(&self) -> FeatureStates {
        self.tx.borrow().clone()
    }

    /// One feature's state, `None` if it was not started.
    pub fn state(&self, feature: Feature) -> Option<FeatureState> {
        self.tx.borrow().get(&feature).cloned()
    }

    /// A receiver that sees every change (for health output and tests).
    pub fn watch(&self) -> watch::Receiver<FeatureStates> {
        self.tx.subscribe()
    }

    /// Sets a feature's state. A feature that is off stays off. The transition to
    /// off is logged once, as a warning naming the feature and the permission; the
    /// first transition to on is logged at info.
    pub fn set(&self, feature: Feature, state: FeatureState) {
        let mut log_off = None;
        let mut log_on = false;
        self.tx.send_if_modified(|states| {
            let old = states.get(&feature);
            if old.is_some_and(FeatureState::is_off) || old == Some(&state) {
                return false;
            }
            match &state {
                FeatureState::Off(why) => log_off = Some(why.clone()),
                FeatureState::On => log_on = true,
                _ => {}
            }
            states.insert(feature, state);
            true
        });
        if let Some(why) = log_off {
            tracing::warn!(
                feature = feature.name(),
                permission = feature.permission(),
                "feature `{feature}` is off: {why} (everything else goes on)"
            );
        } else if log_on {
            tracing::info!(feature = feature.name(), "feature `{feature}` is on");
        }
    }

    /// Marks a feature as starting unless it already has a state.
    pub fn starting(&self, feature: Feature) {
        self.tx.send_if_modified(|states| {
            if states.contains_key(&feature) {
                return false;
            }
            states.insert(feature, FeatureState::Starting);
            true
        });
    }

    /// Waits until `done` holds for the states (or the board is dropped).
    pub async fn wait_for(&self, mut done: impl FnMut(&FeatureStates) -> bool) {
        let mut rx = self.watch();
        let _ = rx.wait_for(|s| done(s)).await;
    }
}

/// What to do after a failed call.
#[derive(Debug)]
pub enum CallFailure {
    /// Turn the feature off: the macaroon lacks the permission or LND lacks the call.
    Off(FeatureOff),
    /// Retry later with backoff (LND unreachable, restarting, ended the stream...).
    Retry(ConnectError),
}

/// Classifies a failed call `call` of `feature`: `permission denied` and
/// `Unimplemented` turn the feature off, everything else is retried (using
/// [`classify_status`] for the words).
pub fn classify_call(
    feature: Feature,
    call: &'static str,
    status: &tonic::Status,
    ep: &LndEndpoint,
) -> CallFailure {
    let message = status.message();
    if message.to_ascii_lowercase().contains("permission denied") {
        return CallFailure::Off(FeatureOff::PermissionDenied {
            call,
            permission: feature.permission(),
            message: message.to_owned(),
        });
    }
    // grpc-go answers a service LND did not register with Unimplemented; LND's
    // permission interceptor answers a method it has no permissions for with
    // "<method>: unknown permissions required for method".
    if status.code() == tonic::Code::Unimplemented
        || message.contains("unknown permissions required for method")
    {
        return CallFailure::Off(FeatureOff::Unsupported {
            call,
            message: message.to_owned(),
        });
    }
    CallFailure::Retry(classify_status(status, ep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ep() -> LndEndpoint {
        LndEndpoint {
            rpcserver: "127.0.0.1:10009".to_owned(),
            tls_cert_path: PathBuf::from("/lnd/tls.cert"),
            macaroon_path: PathBuf::from("/lnd/htlcgate.macaroon"),
        }
    }

    #[test]
    fn permission_denied_turns_the_feature_off_naming_the_permission() {
        let status = tonic::Status::unknown("permission denied");
        match classify_call(Feature::BlockHeight, "GetInfo", &status, &ep()) {
            CallFailure::Off(off) => {
                let text = off.to_string();
                assert!(text.contains("info:read"), "{text}");
                assert!(text.contains("GetInfo"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unimplemented_turns_the_feature_off() {
        for status in [
            tonic::Status::unimplemented("unknown service chainrpc.ChainNotifier"),
            tonic::Status::unknown(
                "/chainrpc.ChainNotifier/RegisterBlockEpochNtfn: unknown permissions required \
                 for method",
            ),
        ] {
            assert!(
                matches!(
                    classify_call(
                        Feature::BlockNotifications,
                        "RegisterBlockEpochNtfn",
                        &status,
                        &ep()
                    ),
                    CallFailure::Off(FeatureOff::Unsupported { .. })
                ),
                "{status:?}"
            );
        }
    }

    #[test]
    fn other_failures_are_retried() {
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::unknown("htlc event subscription terminated"),
            tonic::Status::unknown(
                "verification failed: signature mismatch after caveat verification",
            ),
        ] {
            assert!(
                matches!(
                    classify_call(Feature::HtlcOutcomes, "SubscribeHtlcEvents", &status, &ep()),
                    CallFailure::Retry(_)
                ),
                "{status:?}"
            );
        }
    }

    #[test]
    fn an_off_feature_stays_off() {
        let features = Features::new();
        features.starting(Feature::ChannelCache);
        assert_eq!(
            features.state(Feature::ChannelCache),
            Some(FeatureState::Starting)
        );
        features.set(
            Feature::ChannelCache,
            FeatureState::Off(FeatureOff::Unsupported {
                call: "ListChannels",
                message: "x".to_owned(),
            }),
        );
        features.set(Feature::ChannelCache, FeatureState::On);
        assert!(features.state(Feature::ChannelCache).unwrap().is_off());
        assert_eq!(features.state(Feature::HtlcOutcomes), None);
    }
}
