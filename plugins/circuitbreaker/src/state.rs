//! The plugin's state in the host's `kv` store, and its encodings.
//!
//! Nothing is cached between calls: every `decide` and `outcome` reads what it
//! needs from the store and writes back what it changed, so a restart, a reload
//! (old and new instance overlapping) or an instance replaced after a trap all
//! see the same state.
//!
//! Keys (a one-byte tag, then fixed-width binary; integers little-endian in
//! values, the channel id big-endian in keys), every value starting with a
//! format byte (1):
//!
//! | key                    | value                                                     | size        |
//! |------------------------|-----------------------------------------------------------|-------------|
//! | `b` + peer (33 B)      | token bucket: level (u64, 1 token = 3,600,000), last ms (u64) | 17 B    |
//! | `f` + peer (33 B)      | in flight: (chan u64, htlc u64, incoming expiry u32, admitted s u32) * n | 1 + 24 n B |
//! | `q` + peer (33 B)      | queue, oldest first: (chan u64, htlc u64, queued ms u64) * n | 1 + 24 n B |
//! | `c` + chan (8 B)       | the channel's peer (33 B) and initiator (u8)              | 35 B        |
//!
//! Lists hold at most [`MAX_ENTRIES`] (170) entries, which keeps every value
//! under the default `kv_max_value_bytes` (4096). A `c` key exists while an
//! entry of `f` or `q` names the channel: it lets `outcome` find the peer of a
//! channel that has closed since, and `decide` the peer while the host's
//! channel cache is not loaded. Keys: at most one `b` per rate-limited peer
//! seen, one `f` and `q` per peer with HTLCs in flight or queued, one `c` per
//! channel with such HTLCs.

use htlcgate_sdk::{kv, CircuitKey, NodeId, Scid};

/// Format byte of every value.
const FORMAT: u8 = 1;
/// Bytes of one list entry.
const ENTRY_BYTES: usize = 24;
/// Most entries in a list: what fits in 4096 bytes after the format byte.
pub const MAX_ENTRIES: usize = (4096 - 1) / ENTRY_BYTES;
/// Bucket units per token: a rate of r tokens per hour refills r units per ms.
pub const UNITS_PER_TOKEN: u64 = 3_600_000;

/// The store key `tag` + the peer's 33 bytes.
fn peer_key(tag: u8, peer: &NodeId) -> Vec<u8> {
    let mut key = Vec::with_capacity(34);
    key.push(tag);
    key.extend_from_slice(peer.as_bytes());
    key
}

/// The store key of a channel's peer.
fn chan_key(chan: Scid) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(b'c');
    key.extend_from_slice(&chan.0.to_be_bytes());
    key
}

/// Reads 8 little-endian bytes at `at`.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads 4 little-endian bytes at `at`.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// A value this version cannot read: logged, then treated as absent (state is
/// rebuilt from what comes next, which errs on letting HTLCs through).
fn unreadable(what: &str) {
    htlcgate_sdk::warn!("stored {what} unreadable (written by another version?); starting afresh");
}

/// A token bucket: `level` in units of 1/[`UNITS_PER_TOKEN`] token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens available, times [`UNITS_PER_TOKEN`].
    pub level: u64,
    /// When `level` was last brought up to date, ms since the epoch.
    pub last_ms: u64,
}

impl Bucket {
    /// A full bucket of `burst` tokens at `now_ms`.
    pub fn full(burst: u32, now_ms: u64) -> Bucket {
        Bucket {
            level: u64::from(burst) * UNITS_PER_TOKEN,
            last_ms: now_ms,
        }
    }

    /// Adds what `rate` (tokens per hour) refilled since `last_ms`, up to
    /// `burst` tokens. A clock that went back refills nothing and takes nothing:
    /// the bucket is re-anchored at `now_ms` (so after a jump forward and back
    /// the refill goes on from the corrected time, not from the future).
    pub fn refill(&mut self, now_ms: u64, rate: u64, burst: u32) {
        let cap = u64::from(burst) * UNITS_PER_TOKEN;
        if now_ms > self.last_ms {
            let added = u128::from(now_ms - self.last_ms) * u128::from(rate);
            let level = u128::from(self.level) + added;
            self.level = u64::try_from(level.min(u128::from(cap))).unwrap_or(cap);
        }
        self.last_ms = now_ms;
        self.level = self.level.min(cap);
    }

    /// True when a whole token is there.
    pub fn has_token(&self) -> bool {
        self.level >= UNITS_PER_TOKEN
    }

    /// Takes a token (call only after [`has_token`](Self::has_token)).
    pub fn take(&mut self) {
        self.level = self.level.saturating_sub(UNITS_PER_TOKEN);
    }

    /// Bytes for the store.
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(17);
        b.push(FORMAT);
        b.extend_from_slice(&self.level.to_le_bytes());
        b.extend_from_slice(&self.last_ms.to_le_bytes());
        b
    }

    /// The bucket from the store; `None` for bytes this version cannot read.
    fn decode(bytes: &[u8]) -> Option<Bucket> {
        (bytes.len() == 17 && bytes[0] == FORMAT).then(|| Bucket {
            level: u64_at(bytes, 1),
            last_ms: u64_at(bytes, 9),
        })
    }

    /// `peer`'s bucket, brought up to `now_ms` (absent: full), and whether it
    /// must be stored even if no token is taken: true when it was re-anchored
    /// because the clock went back (the stored time is in the future).
    pub fn load(
        peer: &NodeId,
        now_ms: u64,
        rate: u64,
        burst: u32,
    ) -> Result<(Bucket, bool), kv::KvError> {
        let mut bucket = match kv::get(&peer_key(b'b', peer))? {
            Some(bytes) => Bucket::decode(&bytes).unwrap_or_else(|| {
                unreadable("token bucket");
                Bucket::full(burst, now_ms)
            }),
            None => Bucket::full(burst, now_ms),
        };
        let went_back = bucket.last_ms > now_ms;
        bucket.refill(now_ms, rate, burst);
        Ok((bucket, went_back))
    }

    /// Writes `peer`'s bucket.
    pub fn store(&self, peer: &NodeId) -> Result<(), kv::KvError> {
        kv::set(&peer_key(b'b', peer), &self.encode())
    }
}

/// An HTLC let through and not yet resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its key.
    pub key: CircuitKey,
    /// Its incoming expiry (block height): past it, it cannot be in flight.
    pub expiry: u32,
    /// When it was let through, seconds since the epoch.
    pub admitted_s: u32,
}

/// An HTLC waiting in a peer's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its key.
    pub key: CircuitKey,
    /// When it joined the queue, ms since the epoch.
    pub since_ms: u64,
}

/// One list entry's encoding.
trait Entry: Sized {
    /// The 24 bytes.
    fn write(&self, out: &mut Vec<u8>);
    /// From 24 bytes.
    fn read(bytes: &[u8]) -> Self;
}

impl Entry for InFlight {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.chan_id.to_le_bytes());
        out.extend_from_slice(&self.key.htlc_id.to_le_bytes());
        out.extend_from_slice(&self.expiry.to_le_bytes());
        out.extend_from_slice(&self.admitted_s.to_le_bytes());
    }

    fn read(bytes: &[u8]) -> InFlight {
        InFlight {
            key: CircuitKey {
                chan_id: u64_at(bytes, 0),
                htlc_id: u64_at(bytes, 8),
            },
            expiry: u32_at(bytes, 16),
            admitted_s: u32_at(bytes, 20),
        }
    }
}

impl Entry for Queued {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.chan_id.to_le_bytes());
        out.extend_from_slice(&self.key.htlc_id.to_le_bytes());
        out.extend_from_slice(&self.since_ms.to_le_bytes());
    }

    fn read(bytes: &[u8]) -> Queued {
        Queued {
            key: CircuitKey {
                chan_id: u64_at(bytes, 0),
                htlc_id: u64_at(bytes, 8),
            },
            since_ms: u64_at(bytes, 16),
        }
    }
}

/// Encodes a list (at most [`MAX_ENTRIES`] entries).
fn encode_list<E: Entry>(entries: &[E]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + ENTRY_BYTES * entries.len());
    b.push(FORMAT);
    for e in entries {
        e.write(&mut b);
    }
    b
}

/// Decodes a list; `None` for bytes this version cannot read.
fn decode_list<E: Entry>(bytes: &[u8]) -> Option<Vec<E>> {
    let body = bytes.strip_prefix(&[FORMAT])?;
    if !body.len().is_multiple_of(ENTRY_BYTES) {
        return None;
    }
    Some(body.chunks_exact(ENTRY_BYTES).map(E::read).collect())
}

/// Reads the list under `key`; absent or unreadable: empty.
fn load_list<E: Entry>(key: &[u8], what: &str) -> Result<Vec<E>, kv::KvError> {
    Ok(match kv::get(key)? {
        Some(bytes) => decode_list(&bytes).unwrap_or_else(|| {
            unreadable(what);
            Vec::new()
        }),
        None => Vec::new(),
    })
}

/// Writes the list under `key`, deleting the key when it is empty.
fn store_list<E: Entry>(key: &[u8], entries: &[E]) -> Result<(), kv::KvError> {
    if entries.is_empty() {
        kv::delete(key)?;
        Ok(())
    } else {
        kv::set(key, &encode_list(entries))
    }
}

/// A peer's in-flight HTLCs and queue, as read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLists {
    /// HTLCs let through and not yet resolved, in admission order.
    pub inflight: Vec<InFlight>,
    /// HTLCs waiting, oldest first.
    pub queue: Vec<Queued>,
    /// `inflight` differs from the store.
    inflight_dirty: bool,
    /// `queue` differs from the store.
    queue_dirty: bool,
    /// Channels whose entries were removed: their `c` key may have to go.
    dropped_chans: Vec<u64>,
}

impl PeerLists {
    /// `peer`'s lists from the store.
    pub fn load(peer: &NodeId) -> Result<PeerLists, kv::KvError> {
        Ok(PeerLists {
            inflight: load_list(&peer_key(b'f', peer), "in-flight list")?,
            queue: load_list(&peer_key(b'q', peer), "queue")?,
            inflight_dirty: false,
            queue_dirty: false,
            dropped_chans: Vec::new(),
        })
    }

    /// Notes that the entry for `key` left a list.
    fn dropped(&mut self, key: CircuitKey) {
        if !self.dropped_chans.contains(&key.chan_id) {
            self.dropped_chans.push(key.chan_id);
        }
    }

    /// Re-stamps entries stamped after now (the clock went back since) as
    /// stamped now, so they age from the corrected time: a queue entry stops
    /// blocking `queue_max_ms` after that and an in-flight entry expires by age
    /// `max_inflight_age_s` after it, not only once the clock has caught up.
    /// How many changed.
    pub fn restamp_future(&mut self, now_ms: u64, now_s: u32) -> usize {
        let mut n = 0;
        for e in &mut self.queue {
            if e.since_ms > now_ms {
                e.since_ms = now_ms;
                self.queue_dirty = true;
                n += 1;
            }
        }
        for e in &mut self.inflight {
            if e.admitted_s > now_s {
                e.admitted_s = now_s;
                self.inflight_dirty = true;
                n += 1;
            }
        }
        n
    }

    /// Drops in-flight entries whose incoming expiry `height` has reached or
    /// that are older than `max_age_s`; how many.
    pub fn expire_inflight(&mut self, height: Option<u32>, now_s: u32, max_age_s: u64) -> usize {
        let before = self.inflight.len();
        let mut gone = Vec::new();
        self.inflight.retain(|e| {
            let expired = height.is_some_and(|h| h >= e.expiry)
                || u64::from(now_s.saturating_sub(e.admitted_s)) > max_age_s;
            if expired {
                gone.push(e.key);
            }
            !expired
        });
        for key in gone {
            self.dropped(key);
        }
        let n = before - self.inflight.len();
        self.inflight_dirty |= n > 0;
        n
    }

    /// Drops queue entries that waited longer than `forget_ms` (their HTLC
    /// has not been asked about since: it is gone); how many.
    pub fn forget_queued(&mut self, now_ms: u64, forget_ms: u64) -> usize {
        let before = self.queue.len();
        let mut gone = Vec::new();
        self.queue.retain(|e| {
            let old = now_ms.saturating_sub(e.since_ms) > forget_ms;
            if old {
                gone.push(e.key);
            }
            !old
        });
        for key in gone {
            self.dropped(key);
        }
        let n = before - self.queue.len();
        self.queue_dirty |= n > 0;
        n
    }

    /// True when `key` is counted in flight.
    pub fn is_inflight(&self, key: CircuitKey) -> bool {
        self.inflight.iter().any(|e| e.key == key)
    }

    /// Position of `key` in the queue.
    pub fn queue_position(&self, key: CircuitKey) -> Option<usize> {
        self.queue.iter().position(|e| e.key == key)
    }

    /// Counts `key` in flight.
    pub fn add_inflight(&mut self, entry: InFlight) {
        self.inflight.push(entry);
        self.inflight_dirty = true;
    }

    /// Appends `entry` to the queue.
    pub fn enqueue(&mut self, entry: Queued) {
        self.queue.push(entry);
        self.queue_dirty = true;
    }

    /// Removes `key` from the in-flight list; whether it was there.
    pub fn remove_inflight(&mut self, key: CircuitKey) -> bool {
        let Some(i) = self.inflight.iter().position(|e| e.key == key) else {
            return false;
        };
        self.inflight.remove(i);
        self.inflight_dirty = true;
        self.dropped(key);
        true
    }

    /// Removes `key` from the queue; whether it was there.
    pub fn remove_queued(&mut self, key: CircuitKey) -> bool {
        let Some(i) = self.queue_position(key) else {
            return false;
        };
        self.queue.remove(i);
        self.queue_dirty = true;
        self.dropped(key);
        true
    }

    /// True when an entry of either list is on channel `chan`.
    fn names_chan(&self, chan: u64) -> bool {
        self.inflight.iter().any(|e| e.key.chan_id == chan)
            || self.queue.iter().any(|e| e.key.chan_id == chan)
    }

    /// Writes what changed, and deletes the `c` keys of channels no entry
    /// names any more.
    pub fn store(&mut self, peer: &NodeId) -> Result<(), kv::KvError> {
        if self.inflight_dirty {
            store_list(&peer_key(b'f', peer), &self.inflight)?;
            self.inflight_dirty = false;
        }
        if self.queue_dirty {
            store_list(&peer_key(b'q', peer), &self.queue)?;
            self.queue_dirty = false;
        }
        for chan in core::mem::take(&mut self.dropped_chans) {
            if !self.names_chan(chan) {
                kv::delete(&chan_key(Scid(chan)))?;
            }
        }
        Ok(())
    }
}

/// Who is at the other end of a channel, as stored under its `c` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChanPeer {
    /// The peer.
    pub peer: NodeId,
    /// This node opened the channel.
    pub initiator: bool,
}

impl ChanPeer {
    /// The stored peer of `chan`, if an entry names the channel.
    pub fn load(chan: Scid) -> Result<Option<ChanPeer>, kv::KvError> {
        let Some(bytes) = kv::get(&chan_key(chan))? else {
            return Ok(None);
        };
        if bytes.len() != 35 || bytes[0] != FORMAT {
            unreadable("channel peer");
            return Ok(None);
        }
        Ok(NodeId::from_slice(&bytes[1..34]).map(|peer| ChanPeer {
            peer,
            initiator: bytes[34] != 0,
        }))
    }

    /// Stores `self` as `chan`'s peer unless it is there already.
    pub fn store(&self, chan: Scid) -> Result<(), kv::KvError> {
        if ChanPeer::load(chan)? == Some(*self) {
            return Ok(());
        }
        let mut b = Vec::with_capacity(35);
        b.push(FORMAT);
        b.extend_from_slice(self.peer.as_bytes());
        b.push(u8::from(self.initiator));
        kv::set(&chan_key(chan), &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> NodeId {
        NodeId([2; 33])
    }

    #[test]
    fn lists_round_trip_and_fit_in_a_value() {
        let inflight: Vec<InFlight> = (0..MAX_ENTRIES as u64)
            .map(|i| InFlight {
                key: CircuitKey::new(Scid(u64::MAX - i), i),
                expiry: u32::MAX - i as u32,
                admitted_s: i as u32,
            })
            .collect();
        let bytes = encode_list(&inflight);
        assert!(bytes.len() <= 4096, "{}", bytes.len());
        assert_eq!(decode_list::<InFlight>(&bytes), Some(inflight));
        let queue = vec![Queued {
            key: CircuitKey::new(Scid(1), 2),
            since_ms: u64::MAX,
        }];
        assert_eq!(decode_list::<Queued>(&encode_list(&queue)), Some(queue));
        assert_eq!(decode_list::<Queued>(&[FORMAT, 1, 2]), None);
        assert_eq!(decode_list::<Queued>(&[9]), None);
        assert_eq!(decode_list::<Queued>(&[FORMAT]), Some(vec![]));
    }

    #[test]
    fn bucket_refills_at_the_rate_up_to_burst() {
        // 3600 per hour: one token per second.
        let mut b = Bucket::full(2, 1_000_000);
        b.take();
        b.take();
        assert!(!b.has_token());
        b.refill(1_000_999, 3600, 2);
        assert!(!b.has_token());
        b.refill(1_001_000, 3600, 2);
        assert!(b.has_token());
        b.refill(1_100_000, 3600, 2);
        assert_eq!(b.level, 2 * UNITS_PER_TOKEN);
        // A clock going back refills nothing and forgets nothing, and the
        // refill goes on from the new time.
        b.take();
        b.refill(900_000, 3600, 2);
        assert_eq!(b.level, UNITS_PER_TOKEN);
        assert_eq!(b.last_ms, 900_000);
        b.refill(900_500, 3600, 2);
        assert_eq!(b.level, UNITS_PER_TOKEN + UNITS_PER_TOKEN / 2);
        // A smaller burst caps what is there.
        b.refill(1_200_000, 3600, 1);
        assert_eq!(b.level, UNITS_PER_TOKEN);
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(Bucket::decode(&b.encode()[1..]), None);
    }

    #[test]
    fn the_largest_rate_and_burst_do_not_overflow() {
        let mut b = Bucket::full(u32::MAX, 0);
        b.refill(u64::MAX, u64::MAX, u32::MAX);
        assert_eq!(b.level, u64::from(u32::MAX) * UNITS_PER_TOKEN);
    }

    #[test]
    fn chan_keys_go_when_no_entry_names_the_channel() {
        kv::clear();
        let cp = ChanPeer {
            peer: peer(),
            initiator: false,
        };
        cp.store(Scid(7)).unwrap();
        assert_eq!(ChanPeer::load(Scid(7)), Ok(Some(cp)));
        let mut lists = PeerLists::load(&peer()).unwrap();
        let a = CircuitKey::new(Scid(7), 1);
        let b = CircuitKey::new(Scid(7), 2);
        lists.add_inflight(InFlight {
            key: a,
            expiry: 100,
            admitted_s: 1,
        });
        lists.enqueue(Queued {
            key: b,
            since_ms: 5,
        });
        lists.store(&peer()).unwrap();
        let mut lists = PeerLists::load(&peer()).unwrap();
        assert!(lists.is_inflight(a));
        assert_eq!(lists.queue_position(b), Some(0));
        assert!(lists.remove_inflight(a));
        assert!(!lists.remove_inflight(a));
        lists.store(&peer()).unwrap();
        // `b` still names channel 7.
        assert_eq!(ChanPeer::load(Scid(7)), Ok(Some(cp)));
        assert!(lists.remove_queued(b));
        lists.store(&peer()).unwrap();
        assert_eq!(ChanPeer::load(Scid(7)), Ok(None));
        // Empty lists leave no key behind.
        assert_eq!(kv::get(&peer_key(b'f', &peer())), Ok(None));
        assert_eq!(kv::get(&peer_key(b'q', &peer())), Ok(None));
    }

    #[test]
    fn expiry_by_height_and_by_age() {
        let mut lists = PeerLists {
            inflight: vec![
                InFlight {
                    key: CircuitKey::new(Scid(1), 1),
                    expiry: 100,
                    admitted_s: 1_000,
                },
                InFlight {
                    key: CircuitKey::new(Scid(1), 2),
                    expiry: 200,
                    admitted_s: 1_000,
                },
                InFlight {
                    key: CircuitKey::new(Scid(1), 3),
                    expiry: 200,
                    admitted_s: 500,
                },
            ],
            queue: Vec::new(),
            inflight_dirty: false,
            queue_dirty: false,
            dropped_chans: Vec::new(),
        };
        // Unknown height, no entry older than 600 s: nothing goes.
        assert_eq!(lists.expire_inflight(None, 1_100, 600), 0);
        assert!(!lists.inflight_dirty);
        // Height 100 reaches the first one's expiry; the third is 900 s old.
        assert_eq!(lists.expire_inflight(Some(100), 1_400, 600), 2);
        assert_eq!(lists.inflight.len(), 1);
        assert_eq!(lists.inflight[0].key, CircuitKey::new(Scid(1), 2));
    }
}
