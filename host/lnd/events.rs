//! The HTLC outcome subscription: a task that holds LND's
//! `routerrpc.Router/SubscribeHtlcEvents` stream open (offchain:read), turns every
//! forward event into an [`HtlcOutcome`] (`outcome.rs` has the mapping) and hands it
//! on, reconnecting with backoff whenever LND goes away.
//!
//! LND does not persist these events and does not replay the ones sent while no
//! one was subscribed: after a reconnect [`OutcomeEvent::Subscribed`] with
//! `resubscribed: true` tells the consumer that outcomes may have been missed.
//! Every forward event and every final event is delivered, whoever decided the
//! HTLC: the consumer keeps those whose key it decided (e.g. found in the journal,
//! so that HTLCs decided before a restart are matched too).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::lnd::connect::{Backoff, LndEndpoint};
use crate::lnd::feature::{classify_call, CallFailure, Feature, FeatureState, Features};
use crate::lnd::outcome::{map_event, HtlcOutcome, Mapped};
use crate::lnd::proto::routerrpc::SubscribeHtlcEventsRequest;
use crate::lnd::transport::{connect_transport, router};

/// How many outcomes may wait for the consumer before the task stops reading
/// LND's stream (LND queues further events for this subscriber).
pub const OUTCOME_QUEUE: usize = 4096;

/// A subscription that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);

/// The call, for logs and errors.
const CALL: &str = "routerrpc.Router/SubscribeHtlcEvents";

/// What the outcome task hands to its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeEvent {
    /// LND confirmed a (new) subscription; outcomes follow from this point.
    Subscribed {
        /// Not the first subscription: outcomes between the loss of the previous
        /// stream and now were not delivered (LND does not replay them).
        resubscribed: bool,
    },
    /// An outcome of a forwarded HTLC.
    Outcome(HtlcOutcome),
}

/// Starts the outcome task: it runs until `stop` turns true, the receiver is
/// dropped, or LND refuses the call (the macaroon lacks offchain:read: feature
/// [`Feature::HtlcOutcomes`] off, logged once). Its state is on `features`.
pub fn spawn_outcomes(
    endpoint: LndEndpoint,
    features: Features,
    stop: watch::Receiver<bool>,
) -> (mpsc::Receiver<OutcomeEvent>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
    features.starting(Feature::HtlcOutcomes);
    let task = tokio::spawn(run(endpoint, features, tx, stop));
    (rx, task)
}

/// How one subscription ended.
enum End {
    /// Stop requested or the consumer is gone: end the task.
    Done,
    /// The feature is off: end the task.
    Off,
    /// Reconnect after a backoff.
    Retry(String),
}

async fn run(
    endpoint: LndEndpoint,
    features: Features,
    tx: mpsc::Sender<OutcomeEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut subscriptions = 0u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let end = tokio::select! {
            end = subscribe_once(&endpoint, &features, &tx, &mut subscriptions) => end,
            _ = stop.changed() => End::Done,
        };
        let error = match end {
            End::Done | End::Off => return,
            End::Retry(error) => error,
        };
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            feature = Feature::HtlcOutcomes.name(),
            retry_in_ms = delay.as_millis() as u64,
            "{error}; resubscribing to HTLC events"
        );
        features.set(Feature::HtlcOutcomes, FeatureState::Retrying { error });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One subscription: connect, subscribe, forward outcomes until the stream ends.
async fn subscribe_once(
    endpoint: &LndEndpoint,
    features: &Features,
    tx: &mpsc::Sender<OutcomeEvent>,
    subscriptions: &mut u64,
) -> End {
    let transport = match connect_transport(endpoint).await {
        Ok(t) => t,
        Err(e) => return End::Retry(e.to_string()),
    };
    let mut client = router(transport);
    let failed =
        |status: tonic::Status| match classify_call(Feature::HtlcOutcomes, CALL, &status, endpoint)
        {
            CallFailure::Off(why) => {
                features.set(Feature::HtlcOutcomes, FeatureState::Off(why));
                End::Off
            }
            CallFailure::Retry(e) => End::Retry(e.to_string()),
        };
    let mut stream = match client
        .subscribe_htlc_events(SubscribeHtlcEventsRequest {})
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return failed(status),
    };
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return End::Retry(format!("LND at {} ended {CALL}", endpoint.rpcserver)),
            Err(status) => return failed(status),
        };
        let item = match map_event(&event) {
            Mapped::Subscribed => {
                *subscriptions += 1;
                features.set(Feature::HtlcOutcomes, FeatureState::On);
                tracing::info!(
                    addr = %endpoint.rpcserver,
                    subscription = *subscriptions,
                    "subscribed to LND's HTLC events"
                );
                OutcomeEvent::Subscribed {
                    resubscribed: *subscriptions > 1,
                }
            }
            Mapped::Outcome(outcome) => {
                tracing::debug!(
                    circuit = %outcome.key,
                    outcome = outcome.kind.name(),
                    "HTLC outcome"
                );
                OutcomeEvent::Outcome(outcome)
            }
            Mapped::Ignored(why) => {
                tracing::trace!(
                    chan = event.incoming_channel_id,
                    htlc = event.incoming_htlc_id,
                    why,
                    "HTLC event ignored"
                );
                continue;
            }
        };
        if tx.send(item).await.is_err() {
            tracing::debug!("HTLC outcome receiver dropped; unsubscribing");
            return End::Done;
        }
    }
}
