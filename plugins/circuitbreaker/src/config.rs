//! The plugin's settings: default limits, per-peer overrides and the queue and
//! expiry knobs, read from the `[plugin.config]` strings.

use std::collections::BTreeMap;

use htlcgate_sdk::{Config, NodeId};

use crate::state::MAX_ENTRIES;

/// What to do with an HTLC beyond a peer's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fail it with TEMPORARY_CHANNEL_FAILURE.
    Fail,
    /// Hold it in the peer's queue until a slot and a token free up.
    Queue,
    /// Queue it when the peer opened the incoming channel, else fail it.
    QueuePeerInitiated,
    /// Fail every HTLC from the peer, within the limits or not.
    Block,
}

impl Mode {
    /// The config spellings, in the order error messages list them.
    const NAMES: [(&'static str, Mode); 4] = [
        ("fail", Mode::Fail),
        ("queue", Mode::Queue),
        ("queue-peer-initiated", Mode::QueuePeerInitiated),
        ("block", Mode::Block),
    ];

    /// Reads `value` for config key `key`.
    fn parse(key: &str, value: &str) -> Result<Mode, String> {
        let wanted = value.trim();
        Mode::NAMES
            .iter()
            .find(|(name, _)| *name == wanted || name.replace('-', "_") == wanted)
            .map(|&(_, mode)| mode)
            .ok_or_else(|| {
                format!(
                    "config key `{key}`: expected one of fail, queue, queue-peer-initiated, block; got `{value}`"
                )
            })
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        Mode::NAMES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("?", |(name, _)| name)
    }

    /// True when an HTLC over the limits on a channel opened by the peer
    /// (`peer_initiated`) waits in the queue rather than failing.
    pub fn queues(self, peer_initiated: bool) -> bool {
        match self {
            Mode::Queue => true,
            Mode::QueuePeerInitiated => peer_initiated,
            Mode::Fail | Mode::Block => false,
        }
    }
}

/// One peer's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// What happens beyond the limits.
    pub mode: Mode,
    /// Most HTLCs from the peer in flight at once; 0: no limit.
    pub max_pending: u32,
    /// Token bucket refill, HTLCs per hour; 0: no rate limit.
    pub max_hourly_rate: u64,
    /// Token bucket size: HTLCs that may pass at once after a quiet time.
    pub burst: u32,
}

/// Everything the config sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Limits for peers without an override.
    pub defaults: Limits,
    /// Limits of peers with at least one `peer.<pubkey>.*` key, the rest of
    /// their fields taken from `defaults`.
    pub peers: BTreeMap<NodeId, Limits>,
    /// How long a queued HTLC is held before it is asked about again, ms.
    pub queue_retry_ms: u32,
    /// How long an HTLC may wait in a queue, ms; then it is decided as in
    /// mode `fail`.
    pub queue_max_ms: u64,
    /// Most HTLCs waiting in one peer's queue; more are failed.
    pub queue_max_len: u32,
    /// An in-flight HTLC not heard of for this long is no longer counted, s.
    pub max_inflight_age_s: u64,
}

impl Settings {
    /// The limits that apply to `peer`.
    pub fn limits(&self, peer: &NodeId) -> Limits {
        self.peers.get(peer).copied().unwrap_or(self.defaults)
    }

    /// How long a queue entry whose HTLC is not asked about again is kept, ms:
    /// 2 × (`queue_max_ms` + `queue_retry_ms`). A queued HTLC is asked again
    /// every `queue_retry_ms` (plus the host's delay) until it has waited
    /// `queue_max_ms`, so its last ask comes within `queue_max_ms` +
    /// `queue_retry_ms` (+ delay) of queueing; kept twice that, its entry is
    /// still there to tell that it waited too long (decided as in mode `fail`)
    /// and keep its place, whatever `queue_retry_ms` is. (Twice `queue_max_ms`
    /// alone forgot entries before their next ask when `queue_retry_ms` was
    /// the longer, and the HTLC then joined the back of the queue afresh, every
    /// time.)
    pub fn queue_forget_ms(&self) -> u64 {
        self.queue_max_ms
            .saturating_add(u64::from(self.queue_retry_ms))
            .saturating_mul(2)
    }
}

/// The default of `max_pending`.
pub const DEFAULT_MAX_PENDING: u32 = 10;
/// The default of `max_hourly_rate`.
pub const DEFAULT_MAX_HOURLY_RATE: u64 = 3600;
/// The default of `burst`.
pub const DEFAULT_BURST: u32 = 10;
/// The default of `queue_retry_ms`.
pub const DEFAULT_QUEUE_RETRY_MS: u32 = 100;
/// The default of `queue_max_ms` (the host's default `max_hold_ms`).
pub const DEFAULT_QUEUE_MAX_MS: u64 = 60_000;
/// The default of `queue_max_len`.
pub const DEFAULT_QUEUE_MAX_LEN: u32 = 100;
/// The default of `max_inflight_age_s`: one day.
pub const DEFAULT_MAX_INFLIGHT_AGE_S: u64 = 86_400;
/// Largest `max_hourly_rate`: a million HTLCs per second.
const MAX_HOURLY_RATE: u64 = 3_600_000_000;

/// The global keys.
const KNOWN: [&str; 9] = [
    "mode",
    "max_pending",
    "max_hourly_rate",
    "burst",
    "queue_retry_ms",
    "queue_max_ms",
    "queue_max_len",
    "max_inflight_age_s",
    "peer.<pubkey>.{mode,max_pending,max_hourly_rate,burst}",
];

/// A peer's override as written: each field optional.
#[derive(Default)]
struct Override {
    /// `peer.<pubkey>.mode`.
    mode: Option<Mode>,
    /// `peer.<pubkey>.max_pending`.
    max_pending: Option<u32>,
    /// `peer.<pubkey>.max_hourly_rate`.
    max_hourly_rate: Option<u64>,
    /// `peer.<pubkey>.burst`.
    burst: Option<u32>,
    /// The pubkey as written, for error messages.
    written: String,
}

/// Parses one value of `key` with the SDK's error message.
fn value<T>(key: &str, raw: &str) -> Result<T, String>
where
    T: core::str::FromStr,
    T::Err: core::fmt::Display,
{
    let one = Config::from_pairs([(key, raw)]);
    one.require(key)
}

/// Checks `max_pending` (`key` names it in messages).
fn check_max_pending(key: &str, n: u32) -> Result<u32, String> {
    if n as usize > MAX_ENTRIES {
        return Err(format!(
            "config key `{key}`: {n} is more than {MAX_ENTRIES}, the most in-flight HTLCs this plugin can track per peer; use 1..={MAX_ENTRIES}, or 0 for no limit"
        ));
    }
    Ok(n)
}

/// Checks `max_hourly_rate`.
fn check_rate(key: &str, n: u64) -> Result<u64, String> {
    if n > MAX_HOURLY_RATE {
        return Err(format!(
            "config key `{key}`: {n} is more than {MAX_HOURLY_RATE} (a million per second); use a smaller rate, or 0 for no rate limit"
        ));
    }
    Ok(n)
}

/// Checks that a rate limit comes with a bucket of at least one token.
fn check_burst(key: &str, limits: &Limits) -> Result<(), String> {
    if limits.max_hourly_rate > 0 && limits.burst == 0 {
        return Err(format!(
            "config key `{key}` must be at least 1 when a `max_hourly_rate` applies (a bucket of 0 tokens lets nothing through; to refuse a peer's HTLCs use mode = \"block\")"
        ));
    }
    Ok(())
}

/// Reads an optional global number in `range`, with `default`.
fn ranged<T>(
    config: &Config,
    key: &str,
    default: T,
    range: core::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, String>
where
    T: core::str::FromStr + PartialOrd + Copy + core::fmt::Display,
    T::Err: core::fmt::Display,
{
    let n = config.parse_or(key, default)?;
    if !range.contains(&n) {
        return Err(format!(
            "config key `{key}`: {n} is out of range; use {}..={} ({unit})",
            range.start(),
            range.end()
        ));
    }
    Ok(n)
}

impl Settings {
    /// Reads the config; an error names the key and the fix.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let mut overrides: BTreeMap<NodeId, Override> = BTreeMap::new();
        for (key, raw) in config.iter() {
            if let Some(rest) = key.strip_prefix("peer.") {
                read_override(&mut overrides, key, rest, raw)?;
            } else if !KNOWN.contains(&key) {
                return Err(format!(
                    "config key `{key}` is not known; known keys: {}",
                    KNOWN.join(", ")
                ));
            }
        }
        let defaults = Limits {
            mode: match config.get("mode") {
                Some(raw) => Mode::parse("mode", raw)?,
                None => Mode::Fail,
            },
            max_pending: check_max_pending(
                "max_pending",
                config.parse_or("max_pending", DEFAULT_MAX_PENDING)?,
            )?,
            max_hourly_rate: check_rate(
                "max_hourly_rate",
                config.parse_or("max_hourly_rate", DEFAULT_MAX_HOURLY_RATE)?,
            )?,
            burst: config.parse_or("burst", DEFAULT_BURST)?,
        };
        check_burst("burst", &defaults)?;
        let mut peers = BTreeMap::new();
        for (peer, o) in overrides {
            let limits = Limits {
                mode: o.mode.unwrap_or(defaults.mode),
                max_pending: o.max_pending.unwrap_or(defaults.max_pending),
                max_hourly_rate: o.max_hourly_rate.unwrap_or(defaults.max_hourly_rate),
                burst: o.burst.unwrap_or(defaults.burst),
            };
            check_burst(&format!("peer.{}.burst", o.written), &limits)?;
            peers.insert(peer, limits);
        }
        Ok(Settings {
            defaults,
            peers,
            queue_retry_ms: ranged(
                config,
                "queue_retry_ms",
                DEFAULT_QUEUE_RETRY_MS,
                1..=60_000,
                "milliseconds",
            )?,
            queue_max_ms: ranged(
                config,
                "queue_max_ms",
                DEFAULT_QUEUE_MAX_MS,
                1..=86_400_000,
                "milliseconds",
            )?,
            queue_max_len: ranged(
                config,
                "queue_max_len",
                DEFAULT_QUEUE_MAX_LEN,
                1..=MAX_ENTRIES as u32,
                "HTLCs per peer",
            )?,
            max_inflight_age_s: ranged(
                config,
                "max_inflight_age_s",
                DEFAULT_MAX_INFLIGHT_AGE_S,
                60..=2_592_000,
                "seconds, at most 30 days",
            )?,
        })
    }
}

/// Reads one `peer.<pubkey>.<field>` key (`rest` is what follows `peer.`).
fn read_override(
    overrides: &mut BTreeMap<NodeId, Override>,
    key: &str,
    rest: &str,
    raw: &str,
) -> Result<(), String> {
    let Some((written, field)) = rest.rsplit_once('.') else {
        return Err(format!(
            "config key `{key}`: write a peer's limit as `peer.<pubkey>.<field>` with field mode, max_pending, max_hourly_rate or burst"
        ));
    };
    let peer: NodeId = written.parse().map_err(|e| {
        format!(
            "config key `{key}`: `{written}` is not a node public key ({e}); write the peer's pubkey as `lncli listpeers` shows it"
        )
    })?;
    let o = overrides.entry(peer).or_default();
    if o.written.is_empty() {
        o.written = written.to_string();
    }
    let duplicate = match field {
        "mode" => o.mode.replace(Mode::parse(key, raw)?).is_some(),
        "max_pending" => o
            .max_pending
            .replace(check_max_pending(key, value(key, raw)?)?)
            .is_some(),
        "max_hourly_rate" => o
            .max_hourly_rate
            .replace(check_rate(key, value(key, raw)?)?)
            .is_some(),
        "burst" => o.burst.replace(value(key, raw)?).is_some(),
        _ => {
            return Err(format!(
                "config key `{key}`: `{field}` is not a per-peer setting; use mode, max_pending, max_hourly_rate or burst"
            ))
        }
    };
    if duplicate {
        return Err(format!(
            "config key `{key}`: `{field}` is set twice for peer {peer} (the pubkey written in two cases?); keep one"
        ));
    }
    Ok(())
}
