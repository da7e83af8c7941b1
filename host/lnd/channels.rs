//! The channel cache: every open channel of the node by short channel id (and by
//! alias), filled by `lnrpc.Lightning/ListChannels` and kept current by
//! `SubscribeChannelEvents` (both offchain:read), plus a periodic ListChannels as a
//! backstop. Reads take a read lock for one hash lookup and never wait on LND.
//!
//! Events applied (LND v0.21.2 `rpcserver.go` `SubscribeChannelEvents`):
//! - OPEN_CHANNEL (a full `Channel`): inserted.
//! - CHANNEL_UPDATE (a full `Channel`, sent after each commitment the peer signs):
//!   balances replaced; `active` is kept, as LND always reports true there.
//! - ACTIVE_CHANNEL / INACTIVE_CHANNEL (a `ChannelPoint`): `active` set.
//! - CLOSED_CHANNEL (a `ChannelCloseSummary`) and FULLY_RESOLVED_CHANNEL: removed.
//! - PENDING_OPEN_CHANNEL and CHANNEL_FUNDING_TIMEOUT: no short channel id yet, ignored.
//!
//! An event for a channel the cache does not know asks for an immediate refresh.
//!
//! LND's `SubscribeChannelEvents` sends its response headers only with the first
//! event (grpc-go), so on a quiet node the call does not complete: the task never
//! waits for it before listing the channels.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::circuit::Scid;
use crate::lnd::connect::{Backoff, LndEndpoint};
use crate::lnd::feature::{classify_call, CallFailure, Feature, FeatureState, Features};
use crate::lnd::proto::lnrpc::channel_event_update::Channel as Event;
use crate::lnd::proto::lnrpc::channel_point::FundingTxid;
use crate::lnd::proto::lnrpc::{
    Channel, ChannelEventSubscription, ChannelEventUpdate, ChannelPoint, ListChannelsRequest,
};
use crate::lnd::transport::{connect_transport, lightning};

/// A funding outpoint: the txid in Bitcoin's internal byte order and the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChanPoint {
    /// Funding transaction id, internal byte order (as LND's `funding_txid_bytes`).
    pub txid: [u8; 32],
    /// Output index of the funding output.
    pub output_index: u32,
}

impl ChanPoint {
    /// Parses LND's `txid:index` (txid in the usual reversed hex).
    pub fn parse(text: &str) -> Option<ChanPoint> {
        let (txid, index) = text.split_once(':')?;
        let mut bytes: [u8; 32] = hex::decode(txid).ok()?.try_into().ok()?;
        bytes.reverse();
        Some(ChanPoint {
            txid: bytes,
            output_index: index.parse().ok()?,
        })
    }

    /// From LND's `ChannelPoint` message (bytes or reversed-hex string).
    pub fn from_proto(point: &ChannelPoint) -> Option<ChanPoint> {
        let txid: [u8; 32] = match point.funding_txid.as_ref()? {
            FundingTxid::FundingTxidBytes(bytes) => bytes.as_slice().try_into().ok()?,
            FundingTxid::FundingTxidStr(text) => {
                let mut b: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
                b.reverse();
                b
            }
        };
        Some(ChanPoint {
            txid,
            output_index: point.output_index,
        })
    }
}

impl fmt::Display for ChanPoint {
    /// `txid:index` with the txid in reversed hex, as LND and explorers show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut txid = self.txid;
        txid.reverse();
        write!(f, "{}:{}", hex::encode(txid), self.output_index)
    }
}

/// What htlcgate knows about one open channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// LND's short channel id for the channel (`chan_id`: the confirmed one, or the
    /// first alias of an unconfirmed zero-conf channel).
    pub scid: Scid,
    /// Other short channel ids the channel is known by (aliases, the confirmed id of
    /// a zero-conf channel); the cache answers for each.
    pub aliases: Vec<Scid>,
    /// The peer's node public key (compressed, 33 bytes).
    pub peer: [u8; 33],
    /// Channel capacity, satoshis.
    pub capacity_sat: u64,
    /// Our balance, satoshis (LND's `local_balance`: the local commitment, without
    /// in-flight HTLCs).
    pub local_balance_sat: u64,
    /// The peer's balance, satoshis (LND's `remote_balance`).
    pub remote_balance_sat: u64,
    /// Sum of in-flight HTLCs, satoshis (LND's `unsettled_balance`).
    pub unsettled_balance_sat: u64,
    /// Whether the channel is active (peer online, link up).
    pub active: bool,
    /// Whether the channel is private (not announced).
    pub private: bool,
    /// Whether we opened the channel (LND's `initiator`); false: the peer opened it.
    pub initiator: bool,
    /// The funding outpoint.
    pub chan_point: ChanPoint,
}

impl ChannelInfo {
    /// Whether the peer opened the channel (circuitbreaker's "peer initiated").
    pub fn peer_initiated(&self) -> bool {
        !self.initiator
    }

    /// From LND's `Channel`; `None` (with the reason) for one htlcgate cannot use.
    pub fn from_proto(ch: &Channel) -> Result<ChannelInfo, String> {
        let peer: [u8; 33] = hex::decode(&ch.remote_pubkey)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "remote_pubkey `{}` is not 33 bytes of hex",
                    ch.remote_pubkey
                )
            })?;
        let chan_point = ChanPoint::parse(&ch.channel_point)
            .ok_or_else(|| format!("channel_point `{}` is not txid:index", ch.channel_point))?;
        if ch.chan_id == 0 {
            return Err("chan_id is 0".to_owned());
        }
        let mut aliases: Vec<Scid> = ch
            .alias_scids
            .iter()
            .copied()
            .chain((ch.zero_conf_confirmed_scid != 0).then_some(ch.zero_conf_confirmed_scid))
            .filter(|&s| s != 0 && s != ch.chan_id)
            .map(Scid)
            .collect();
        aliases.sort_unstable();
        aliases.dedup();
        let sat = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(ChannelInfo {
            scid: Scid(ch.chan_id),
            aliases,
            peer,
            capacity_sat: sat(ch.capacity),
            local_balance_sat: sat(ch.local_balance),
            remote_balance_sat: sat(ch.remote_balance),
            unsettled_balance_sat: sat(ch.unsettled_balance),
            active: ch.active,
            private: ch.private,
            initiator: ch.initiator,
            chan_point,
        })
    }
}

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The cache changed.
    Changed,
    /// The event was about a channel the cache does not know: refresh.
    Unknown,
    /// Nothing to do for this event.
    Ignored,
}

/// The channels, indexed by every short channel id and by funding outpoint.
#[derive(Debug, Default)]
pub struct ChannelMap {
    /// Every scid and alias -> the channel.
    by_scid: HashMap<u64, Arc<ChannelInfo>>,
    /// Funding outpoint -> the channel's main scid.
    by_point: HashMap<ChanPoint, u64>,
}

impl ChannelMap {
    /// A map holding `channels` (unusable ones are skipped with a warning).
    pub fn from_channels(channels: &[Channel]) -> ChannelMap {
        let mut map = ChannelMap::default();
        for ch in channels {
            map.insert_proto(ch, None);
        }
        map
    }

    /// The channel known by `scid` (main id or alias).
    pub fn get(&self, scid: u64) -> Option<Arc<ChannelInfo>> {
        self.by_scid.get(&scid).cloned()
    }

    /// How many channels.
    pub fn len(&self) -> usize {
        self.by_point.len()
    }

    /// Whether there is no channel.
    pub fn is_empty(&self) -> bool {
        self.by_point.is_empty()
    }

    /// Every channel, once each, by main scid.
    pub fn channels(&self) -> Vec<Arc<ChannelInfo>> {
        let mut out: Vec<_> = self
            .by_point
            .values()
            .filter_map(|s| self.by_scid.get(s).cloned())
            .collect();
        out.sort_by_key(|c| c.scid);
        out
    }

    fn insert_proto(&mut self, ch: &Channel, keep_active: Option<bool>) -> Applied {
        match ChannelInfo::from_proto(ch) {
            Ok(mut info) => {
                if let Some(active) = keep_active {
                    info.active = active;
                }
                self.insert(info);
                Applied::Changed
            }
            Err(why) => {
                tracing::warn!(
                    scid = %Scid(ch.chan_id),
                    "LND reported a channel htlcgate cannot use ({why}); it is left out of the channel cache"
                );
                Applied::Ignored
            }
        }
    }

    fn insert(&mut self, info: ChannelInfo) {
        self.remove_point(&info.chan_point);
        let info = Arc::new(info);
        self.by_point.insert(info.chan_point, info.scid.0);
        for scid in std::iter::once(info.scid).chain(info.aliases.iter().copied()) {
            self.by_scid.insert(scid.0, info.clone());
        }
    }

    fn remove_point(&mut self, point: &ChanPoint) -> bool {
        let Some(scid) = self.by_point.remove(point) else {
            return false;
        };
        if let Some(info) = self.by_scid.remove(&scid) {
            for alias in &info.aliases {
                self.by_scid.remove(&alias.0);
            }
        }
        true
    }

    fn set_active(&mut self, point: &ChanPoint, active: bool) -> Applied {
        let Some(scid) = self.by_point.get(point).copied() else {
            return Applied::Unknown;
        };
        let Some(info) = self.by_scid.get(&scid) else {
            return Applied::Unknown;
        };
        if info.active == active {
            return Applied::Ignored;
        }
        let mut info = (**info).clone();
        info.active = active;
        self.insert(info);
        Applied::Changed
    }

    /// Applies one `SubscribeChannelEvents` update (see the module doc).
    pub fn apply(&mut self, update: &ChannelEventUpdate) -> Applied {
        let Some(event) = &update.channel else {
            return Applied::Ignored;
        };
        match event {
            Event::OpenChannel(ch) => self.insert_proto(ch, None),
            Event::UpdatedChannel(commit) => {
                let Some(ch) = &commit.channel else {
                    return Applied::Ignored;
                };
                let known = ChanPoint::parse(&ch.channel_point)
                    .and_then(|p| self.by_point.get(&p).copied())
                    .and_then(|s| self.by_scid.get(&s).map(|i| i.active));
                match known {
                    Some(active) => self.insert_proto(ch, Some(active)),
                    None => {
                        self.insert_proto(ch, None);
                        Applied::Unknown
                    }
                }
            }
            Event::ActiveChannel(p) | Event::InactiveChannel(p) => {
                let active = matches!(event, Event::ActiveChannel(_));
                match ChanPoint::from_proto(p) {
                    Some(point) => self.set_active(&point, active),
                    None => Applied::Ignored,
                }
            }
            Event::ClosedChannel(summary) => {
                let point = ChanPoint::parse(&summary.channel_point)
                    .or_else(|| self.by_scid.get(&summary.chan_id).map(|i| i.chan_point));
                match point {
                    Some(p) if self.remove_point(&p) => Applied::Changed,
                    _ => Applied::Ignored,
                }
            }
            Event::FullyResolvedChannel(p) => match ChanPoint::from_proto(p) {
                Some(point) if self.remove_point(&point) => Applied::Changed,
                _ => Applied::Ignored,
            },
            Event::PendingOpenChannel(_) | Event::ChannelFundingTimeout(_) => Applied::Ignored,
        }
    }
}

/// The shared channel cache: a read lock around the map, held only for a lookup
/// (reads) or one O(1) update or swap (the sync task).
#[derive(Debug, Default)]
pub struct ChannelCache {
    /// The map.
    map: RwLock<ChannelMap>,
    /// When the last full ListChannels was applied.
    refreshed: RwLock<Option<Instant>>,
}

impl ChannelCache {
    /// The channel known by `scid` (main id or alias), or `None`.
    pub fn get(&self, scid: Scid) -> Option<Arc<ChannelInfo>> {
        self.read().get(scid.0)
    }

    /// Every channel, once each, by scid.
    pub fn channels(&self) -> Vec<Arc<ChannelInfo>> {
        self.read().channels()
    }

    /// How long ago the last full ListChannels was applied (`None`: never).
    pub fn refreshed_ago(&self) -> Option<Duration> {
        self.refreshed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Replaces everything with a ListChannels answer.
    pub fn replace(&self, channels: &[Channel]) {
        let map = ChannelMap::from_channels(channels);
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = map;
        *self.refreshed.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Applies one event.
    pub fn apply(&self, update: &ChannelEventUpdate) -> Applied {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(update)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ChannelMap> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long after starting the SubscribeChannelEvents call the first ListChannels
/// is sent, so that LND has registered the subscription (events between the two
/// would otherwise be missed until the next refresh).
const SUBSCRIBE_GRACE: Duration = Duration::from_millis(200);

/// A sync that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);

/// How one connection ended.
enum End {
    /// Stop requested: end the task.
    Done,
    /// The feature is off.
    Off,
    /// Reconnect after a backoff, for this reason.
    Retry(String),
}

/// Keeps `cache` current until `stop` turns true or the feature is turned off.
pub async fn sync(
    endpoint: LndEndpoint,
    cache: Arc<ChannelCache>,
    refresh: Duration,
    features: Features,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    features.starting(Feature::ChannelCache);
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let end = tokio::select! {
            end = sync_once(&endpoint, &cache, refresh, &features) => end,
            _ = stop.changed() => End::Done,
        };
        let error = match end {
            End::Done | End::Off => return,
            End::Retry(e) => e,
        };
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            feature = Feature::ChannelCache.name(),
            retry_in_ms = delay.as_millis() as u64,
            channels = cache.channels().len(),
            "{error}; the channel cache keeps its last state and reconnects"
        );
        features.set(Feature::ChannelCache, FeatureState::Retrying { error });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn sync_once(
    endpoint: &LndEndpoint,
    cache: &ChannelCache,
    refresh: Duration,
    features: &Features,
) -> End {
    let transport = match connect_transport(endpoint).await {
        Ok(t) => t,
        Err(e) => return End::Retry(e.to_string()),
    };
    let mut events_client = lightning(transport.clone());
    let mut list_client = lightning(transport);
    let failed = |call: &'static str, status: tonic::Status| match classify_call(
        Feature::ChannelCache,
        call,
        &status,
        endpoint,
    ) {
        CallFailure::Off(why) => {
            features.set(Feature::ChannelCache, FeatureState::Off(why));
            End::Off
        }
        CallFailure::Retry(e) => End::Retry(e.to_string()),
    };

    let call = events_client.subscribe_channel_events(ChannelEventSubscription {});
    tokio::pin!(call);
    let mut events = None;
    let mut next_refresh = tokio::time::Instant::now() + SUBSCRIBE_GRACE;
    loop {
        let refresh_at = tokio::time::sleep_until(next_refresh);
        tokio::select! {
            r = &mut call, if events.is_none() => match r {
                Ok(response) => events = Some(response.into_inner()),
                Err(status) => return failed("lnrpc.Lightning/SubscribeChannelEvents", status),
            },
            msg = next_message(&mut events), if events.is_some() => match msg {
                Ok(Some(update)) => {
                    let applied = cache.apply(&update);
                    tracing::debug!(event = ?update.r#type(), ?applied, "channel event");
                    if applied == Applied::Unknown {
                        next_refresh = tokio::time::Instant::now();
                    }
                }
                Ok(None) => {
                    return End::Retry(format!(
                        "LND at {} ended lnrpc.Lightning/SubscribeChannelEvents",
                        endpoint.rpcserver
                    ))
                }
                Err(status) => return failed("lnrpc.Lightning/SubscribeChannelEvents", status),
            },
            _ = refresh_at => {
                match list_client.list_channels(ListChannelsRequest::default()).await {
                    Ok(response) => {
                        let channels = response.into_inner().channels;
                        cache.replace(&channels);
                        tracing::debug!(channels = channels.len(), "channel cache refreshed");
                        features.set(Feature::ChannelCache, FeatureState::On);
                    }
                    Err(status) => return failed("lnrpc.Lightning/ListChannels", status),
                }
                next_refresh = tokio::time::Instant::now() + refresh;
            }
        }
    }
}

/// The next message of an open stream (only polled when there is one).
async fn next_message(
    events: &mut Option<tonic::Streaming<ChannelEventUpdate>>,
) -> Result<Option<ChannelEventUpdate>, tonic::Status> {
    match events {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lnd::proto::lnrpc::channel_event_update::UpdateType;
    use crate::lnd::proto::lnrpc::{ChannelCloseSummary, ChannelCommitUpdate};

    const TXID_HEX: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

    fn channel(scid: u64, point: &str) -> Channel {
        Channel {
            active: true,
            remote_pubkey: format!("02{}", "ab".repeat(32)),
            channel_point: point.to_owned(),
            chan_id: scid,
            capacity: 1_000_000,
            local_balance: 600_000,
            remote_balance: 390_000,
            initiator: false,
            ..Default::default()
        }
    }

    fn point_bytes(point: &str) -> ChannelPoint {
        let p = ChanPoint::parse(point).unwrap();
        ChannelPoint {
            funding_txid: Some(FundingTxid::FundingTxidBytes(p.txid.to_vec())),
            output_index: p.output_index,
        }
    }

    fn update(event: Event, kind: UpdateType) -> ChannelEventUpdate {
        ChannelEventUpdate {
            channel: Some(event),
            r#type: kind as i32,
        }
    }

    #[test]
    fn chan_points_round_trip_in_lnd_s_reversed_hex() {
        let text = format!("{TXID_HEX}:1");
        let p = ChanPoint::parse(&text).unwrap();
        assert_eq!(p.txid[0], 0xff, "internal byte order is reversed");
        assert_eq!(p.to_string(), text);
        let from_str = ChanPoint::from_proto(&ChannelPoint {
            funding_txid: Some(FundingTxid::FundingTxidStr(TXID_HEX.to_owned())),
            output_index: 1,
        });
        assert_eq!(from_str, Some(p));
        assert_eq!(ChanPoint::from_proto(&point_bytes(&text)), Some(p));
        assert!(ChanPoint::parse("zz:1").is_none());
        assert!(ChanPoint::parse(TXID_HEX).is_none());
    }

    #[test]
    fn a_channel_is_found_by_scid_and_alias_with_its_fields() {
        let mut ch = channel(800_000 << 40, &format!("{TXID_HEX}:0"));
        ch.alias_scids = vec![16_000_000 << 40];
        ch.private = true;
        let map = ChannelMap::from_channels(&[ch]);
        let info = map.get(800_000 << 40).unwrap();
        assert_eq!(info.scid.to_string(), "800000x0x0");
        assert_eq!(info.peer[0], 0x02);
        assert_eq!(info.capacity_sat, 1_000_000);
        assert_eq!(info.local_balance_sat, 600_000);
        assert_eq!(info.remote_balance_sat, 390_000);
        assert!(info.private && info.active && info.peer_initiated());
        assert_eq!(map.get(16_000_000 << 40).unwrap().scid, info.scid);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn an_unusable_channel_is_left_out() {
        let mut ch = channel(1, "nonsense");
        assert!(ChannelMap::from_channels(std::slice::from_ref(&ch)).is_empty());
        ch.channel_point = format!("{TXID_HEX}:0");
        ch.remote_pubkey = "02".to_owned();
        assert!(ChannelMap::from_channels(&[ch]).is_empty());
    }

    #[test]
    fn events_open_update_deactivate_and_close_channels() {
        let a = format!("{TXID_HEX}:0");
        let mut map = ChannelMap::default();
        let opened = update(Event::OpenChannel(channel(5, &a)), UpdateType::OpenChannel);
        assert_eq!(map.apply(&opened), Applied::Changed);
        assert!(map.get(5).unwrap().active);

        let inactive = update(
            Event::InactiveChannel(point_bytes(&a)),
            UpdateType::InactiveChannel,
        );
        assert_eq!(map.apply(&inactive), Applied::Changed);
        assert!(!map.get(5).unwrap().active);
        assert_eq!(map.apply(&inactive), Applied::Ignored);

        // A commitment update carries new balances; LND says active=true there,
        // which must not override the last active/inactive event.
        let mut ch = channel(5, &a);
        ch.local_balance = 1;
        let commit = update(
            Event::UpdatedChannel(ChannelCommitUpdate { channel: Some(ch) }),
            UpdateType::ChannelUpdate,
        );
        assert_eq!(map.apply(&commit), Applied::Changed);
        let info = map.get(5).unwrap();
        assert_eq!(info.local_balance_sat, 1);
        assert!(!info.active);

        let active = update(
            Event::ActiveChannel(point_bytes(&a)),
            UpdateType::ActiveChannel,
        );
        assert_eq!(map.apply(&active), Applied::Changed);
        assert!(map.get(5).unwrap().active);

        let closed = update(
            Event::ClosedChannel(ChannelCloseSummary {
                channel_point: a.clone(),
                chan_id: 5,
                ..Default::default()
            }),
            UpdateType::ClosedChannel,
        );
        assert_eq!(map.apply(&closed), Applied::Changed);
        assert!(map.get(5).is_none());
        assert_eq!(map.apply(&closed), Applied::Ignored);
    }

    #[test]
    fn an_event_for_an_unknown_channel_asks_for_a_refresh() {
        let mut map = ChannelMap::default();
        let p = format!("{TXID_HEX}:3");
        let active = update(
            Event::ActiveChannel(point_bytes(&p)),
            UpdateType::ActiveChannel,
        );
        assert_eq!(map.apply(&active), Applied::Unknown);
        let commit = update(
            Event::UpdatedChannel(ChannelCommitUpdate {
                channel: Some(channel(9, &p)),
            }),
            UpdateType::ChannelUpdate,
        );
        assert_eq!(map.apply(&commit), Applied::Unknown);
        assert!(map.get(9).is_some(), "the channel is still taken");
    }

    #[test]
    fn a_fully_resolved_channel_is_removed_and_aliases_go_with_it() {
        let p = format!("{TXID_HEX}:0");
        let mut ch = channel(5, &p);
        ch.alias_scids = vec![77];
        let mut map = ChannelMap::from_channels(&[ch]);
        let resolved = update(
            Event::FullyResolvedChannel(point_bytes(&p)),
            UpdateType::FullyResolvedChannel,
        );
        assert_eq!(map.apply(&resolved), Applied::Changed);
        assert!(map.get(5).is_none() && map.get(77).is_none());
    }
}
