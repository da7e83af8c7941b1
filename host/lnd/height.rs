//! The node's block height, kept current without ever making a reader wait.
//!
//! Preferred source: `chainrpc.ChainNotifier/RegisterBlockEpochNtfn` (onchain:read),
//! which sends the current tip at once and then every new block. The ChainNotifier
//! is a sub-server: LND serves it only when built with the `chainrpc` tag (release
//! builds and tests/regtest/build-lnd are). If LND refuses it (no onchain:read) or
//! does not serve it (`Unimplemented`), [`Feature::BlockNotifications`] is off and
//! the height is polled from `lnrpc.Lightning/GetInfo` (info:read) every
//! [`crate::lnd::node::NodeOptions::height_poll`]. If GetInfo is refused too,
//! [`Feature::BlockHeight`] is off and the height stays unknown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::lnd::connect::{Backoff, LndEndpoint};
use crate::lnd::feature::{classify_call, CallFailure, Feature, FeatureState, Features};
use crate::lnd::proto::chainrpc::BlockEpoch;
use crate::lnd::proto::lnrpc::lightning_client::LightningClient;
use crate::lnd::proto::lnrpc::GetInfoRequest;
use crate::lnd::transport::{chain_notifier, connect_transport, lightning, Transport};

/// The last known block height; 0 means unknown. Lock-free.
#[derive(Debug, Default)]
pub struct Height(
    /// The height; 0 is unknown.
    AtomicU32,
);

impl Height {
    /// The height, if known.
    pub fn get(&self) -> Option<u32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            h => Some(h),
        }
    }

    /// Records the tip LND reported; logs a change.
    pub fn set(&self, height: u32) {
        let old = self.0.swap(height, Ordering::Relaxed);
        if old != height {
            tracing::debug!(height, previous = old, "block height");
        }
    }
}

/// A stream that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);

/// The block notification call, for logs and errors.
const EPOCH_CALL: &str = "chainrpc.ChainNotifier/RegisterBlockEpochNtfn";
/// The GetInfo call, for logs and errors.
const GETINFO_CALL: &str = "lnrpc.Lightning/GetInfo";

/// How a block notification stream ended.
enum End {
    /// Stop requested: end the task.
    Done,
    /// The feature is off.
    Off,
    /// Reconnect after a backoff, for this reason.
    Retry(String),
}

/// Keeps `height` current until `stop` turns true: block notifications if
/// `notifications` and LND allows them, GetInfo polled every `poll` otherwise.
pub async fn track(
    endpoint: LndEndpoint,
    height: std::sync::Arc<Height>,
    notifications: bool,
    poll: Duration,
    features: Features,
    mut stop: watch::Receiver<bool>,
) {
    features.starting(Feature::BlockHeight);
    if notifications {
        features.starting(Feature::BlockNotifications);
        let mut backoff = Backoff::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let started = Instant::now();
            let end = tokio::select! {
                end = epochs_once(&endpoint, &height, &features) => end,
                _ = stop.changed() => End::Done,
            };
            let error = match end {
                End::Done => return,
                End::Off => break,
                End::Retry(e) => e,
            };
            if started.elapsed() >= HEALTHY {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                feature = Feature::BlockNotifications.name(),
                retry_in_ms = delay.as_millis() as u64,
                "{error}; the block height keeps its last value and reconnects"
            );
            features.set(
                Feature::BlockNotifications,
                FeatureState::Retrying {
                    error: error.clone(),
                },
            );
            features.set(Feature::BlockHeight, FeatureState::Retrying { error });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!(
            poll_ms = poll.as_millis() as u64,
            "block height: polling {GETINFO_CALL} instead of block notifications"
        );
    }
    poll_getinfo(&endpoint, &height, poll, &features, &mut stop).await;
}

/// One block notification stream: the tip at once, then each new block.
async fn epochs_once(endpoint: &LndEndpoint, height: &Height, features: &Features) -> End {
    let transport = match connect_transport(endpoint).await {
        Ok(t) => t,
        Err(e) => return End::Retry(e.to_string()),
    };
    let mut client = chain_notifier(transport);
    let failed = |status: tonic::Status| match classify_call(
        Feature::BlockNotifications,
        EPOCH_CALL,
        &status,
        endpoint,
    ) {
        CallFailure::Off(why) => {
            features.set(Feature::BlockNotifications, FeatureState::Off(why));
            End::Off
        }
        CallFailure::Retry(e) => End::Retry(e.to_string()),
    };
    // An empty request (zero hash, height 0): no backlog, the current tip first.
    let mut stream = match client
        .register_block_epoch_ntfn(BlockEpoch {
            hash: Vec::new(),
            height: 0,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return failed(status),
    };
    loop {
        match stream.message().await {
            Ok(Some(epoch)) => {
                if epoch.height == 0 {
                    continue;
                }
                height.set(epoch.height);
                features.set(Feature::BlockNotifications, FeatureState::On);
                features.set(Feature::BlockHeight, FeatureState::On);
            }
            Ok(None) => {
                return End::Retry(format!("LND at {} ended {EPOCH_CALL}", endpoint.rpcserver))
            }
            Err(status) => return failed(status),
        }
    }
}

/// Polls GetInfo every `poll` until stopped or refused.
async fn poll_getinfo(
    endpoint: &LndEndpoint,
    height: &Height,
    poll: Duration,
    features: &Features,
    stop: &mut watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client = None;
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        // Raced against `stop`: a GetInfo LND never answers must not hold up
        // shutdown until the connection's keepalive gives up.
        let result = tokio::select! {
            r = get_height(endpoint, &mut client) => r,
            _ = stop.changed() => return,
        };
        let error = match result {
            Ok(h) => {
                if h != 0 {
                    height.set(h);
                }
                last_error = None;
                features.set(Feature::BlockHeight, FeatureState::On);
                continue;
            }
            Err(CallFailure::Off(why)) => {
                features.set(Feature::BlockHeight, FeatureState::Off(why));
                return;
            }
            Err(CallFailure::Retry(e)) => {
                client = None;
                e.to_string()
            }
        };
        if last_error.as_ref() != Some(&error) {
            tracing::warn!(
                feature = Feature::BlockHeight.name(),
                "{error}; polling {GETINFO_CALL} again every {poll:?}"
            );
        }
        last_error = Some(error.clone());
        features.set(Feature::BlockHeight, FeatureState::Retrying { error });
    }
}

/// One GetInfo, connecting first if there is no client.
async fn get_height(
    endpoint: &LndEndpoint,
    client: &mut Option<LightningClient<Transport>>,
) -> Result<u32, CallFailure> {
    let c = match client {
        Some(c) => c,
        None => client.insert(lightning(
            connect_transport(endpoint)
                .await
                .map_err(CallFailure::Retry)?,
        )),
    };
    match c.get_info(GetInfoRequest {}).await {
        Ok(info) => Ok(info.into_inner().block_height),
        Err(status) => Err(classify_call(
            Feature::BlockHeight,
            GETINFO_CALL,
            &status,
            endpoint,
        )),
    }
}
