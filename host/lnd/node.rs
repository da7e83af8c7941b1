//! The node context: what plugins may ask about the node without ever waiting on
//! LND. Which peer is behind a channel, its capacity and balances, whether it is
//! active, private, who opened it (`channels.rs`), and the block height
//! (`height.rs`). Background tasks keep it current; every read is a lookup in
//! memory. See docs/NODE-CONTEXT.md.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::circuit::Scid;
use crate::lnd::channels::{self, ChannelCache, ChannelInfo};
use crate::lnd::connect::LndEndpoint;
use crate::lnd::feature::{FeatureStates, Features};
use crate::lnd::height::{self, Height};

/// How the node context keeps itself current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// Full ListChannels this often, on top of the channel events (balances change
    /// with every payment; LND reports them only after commitments the peer signs).
    pub channel_refresh: Duration,
    /// Use block notifications (onchain:read) when LND allows them.
    pub block_notifications: bool,
    /// Poll GetInfo this often when block notifications are off.
    pub height_poll: Duration,
}

impl Default for NodeOptions {
    /// Refresh channels every 60 s, block notifications on, poll GetInfo every 5 s
    /// without them.
    fn default() -> Self {
        NodeOptions {
            channel_refresh: Duration::from_secs(60),
            block_notifications: true,
            height_poll: Duration::from_secs(5),
        }
    }
}

/// Shared state behind [`NodeContext`].
#[derive(Debug)]
struct Inner {
    /// The channel cache.
    channels: Arc<ChannelCache>,
    /// The block height.
    height: Arc<Height>,
    /// Feature states.
    features: Features,
    /// The background tasks, taken by [`NodeContext::join`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle on the node context; cheap to clone, safe to use from any thread
/// (plugin threads included): no method waits on LND.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The shared state.
    inner: Arc<Inner>,
}

impl NodeContext {
    /// Starts the tasks that fill and keep current the channel cache and the block
    /// height, reporting on `features`; they run until `stop` turns true. Each
    /// reconnects by itself after LND restarts; a permission LND refuses turns only
    /// its feature off (logged once). Must be called inside a tokio runtime.
    pub fn spawn(
        endpoint: LndEndpoint,
        options: NodeOptions,
        features: Features,
        stop: watch::Receiver<bool>,
    ) -> NodeContext {
        let channels = Arc::new(ChannelCache::default());
        let height = Arc::new(Height::default());
        let tasks = vec![
            tokio::spawn(channels::sync(
                endpoint.clone(),
                channels.clone(),
                options.channel_refresh,
                features.clone(),
                stop.clone(),
            )),
            tokio::spawn(height::track(
                endpoint,
                height.clone(),
                options.block_notifications,
                options.height_poll,
                features.clone(),
                stop,
            )),
        ];
        NodeContext {
            inner: Arc::new(Inner {
                channels,
                height,
                features,
                tasks: Mutex::new(tasks),
            }),
        }
    }

    /// The channel known by `scid` (its short channel id or one of its aliases),
    /// `None` if the node has no such open channel (or the cache is off or not
    /// filled yet: see [`NodeContext::features`]).
    pub fn channel(&self, scid: Scid) -> Option<Arc<ChannelInfo>> {
        self.inner.channels.get(scid)
    }

    /// Every open channel, by short channel id.
    pub fn channels(&self) -> Vec<Arc<ChannelInfo>> {
        self.inner.channels.channels()
    }

    /// The node's block height, `None` until known (or if the feature is off).
    pub fn height(&self) -> Option<u32> {
        self.inner.height.get()
    }

    /// How long ago the channel cache was last refreshed in full, `None` if never.
    pub fn channels_refreshed_ago(&self) -> Option<Duration> {
        self.inner.channels.refreshed_ago()
    }

    /// Which features are on, retrying or off, and why.
    pub fn features(&self) -> FeatureStates {
        self.inner.features.snapshot()
    }

    /// The feature board this context reports on.
    pub fn feature_board(&self) -> &Features {
        &self.inner.features
    }

    /// Waits until the background tasks have ended (after `stop` turned true, or
    /// all features off). A second call returns at once.
    pub async fn join(&self) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}
