//! Plugin state: a key-value namespace per plugin name, so that a rate limiter's
//! counters survive a hot swap (old and new versions share the namespace) and a
//! restart (it lives in the journal's redb file, table `plugin_kv`).
//!
//! Reads and writes never wait on the disk: each namespace keeps every key it has
//! read or written in memory (bounded by the plugin's `kv_max_keys` and value size),
//! and writes only mark keys dirty. The journal's writer thread flushes every dirty
//! key into the same transaction as the verdicts it commits (durably, fsync), so a
//! write is on disk before any verdict decided after it is sent: the verdict of the
//! HTLC that caused the write waits for exactly that commit. Writes made outside a
//! decision (in `init`, or by a decision that ran past the chain budget) are flushed
//! within a second.
//!
//! Consistency without locks across the disk: a key is in memory from its first
//! read or write on; positive entries are never evicted and a deletion's tombstone
//! is dropped only after it is committed, so a key that is not in memory has its
//! current value on disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

use crate::config::KvLimits;
use crate::pace::Pacer;

/// (plugin name, key) -> value.
const KV: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("plugin_kv");

/// Why a key-value operation was refused. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key is longer than `kv_max_key_bytes`.
    #[error("key of {len} bytes is longer than kv_max_key_bytes = {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The value is longer than `kv_max_value_bytes`.
    #[error("value of {len} bytes is longer than kv_max_value_bytes = {max}")]
    ValueTooLong {
        /// The value's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The namespace already holds `kv_max_keys` keys.
    #[error(
        "the namespace already holds kv_max_keys = {max} keys; delete some or raise the limit"
    )]
    TooManyKeys {
        /// The limit.
        max: u32,
    },
    /// `kv_max_keys` deletions wait for a commit (the journal cannot write: a
    /// full disk): until one succeeds, no new key is taken, so that memory stays
    /// bounded (each waiting deletion keeps its key in memory).
    #[error(
        "kv_max_keys = {max} deletions are not on disk yet (the journal cannot commit; \
         see the daemon's log): no new key until they are"
    )]
    DeletionsPending {
        /// The limit (`kv_max_keys`).
        max: u32,
    },
    /// The database failed.
    #[error("plugin state store: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

/// Every plugin's namespace, over the journal's database (or memory only). Cheap
/// to clone.
#[derive(Clone)]
pub struct KvStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    /// The database; `None` keeps state in memory only (tests, `check`, `replay`).
    db: Option<Arc<Database>>,
    /// Namespaces by plugin name, created on first use.
    spaces: Mutex<HashMap<Arc<str>, Arc<Namespace>>>,
    /// Set when any namespace has a dirty key.
    dirty: Arc<AtomicBool>,
}

/// One plugin's keys. Shared by every loaded version of the plugin.
pub struct Namespace {
    /// The plugin name.
    name: Arc<str>,
    /// The database to read misses from.
    db: Option<Arc<Database>>,
    /// The store's dirty flag.
    store_dirty: Arc<AtomicBool>,
    state: Mutex<NsState>,
}

#[derive(Default)]
struct NsState {
    /// Keys read or written: `Some` is the value, `None` a deletion not yet
    /// committed.
    cache: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys changed since the last flush.
    dirty: HashSet<Vec<u8>>,
    /// Keys present (in memory or on disk).
    count: u64,
    /// Deletions in `cache` (`None`) not yet committed: at most `kv_max_keys`
    /// before a new key is refused, so the cache holds at most twice that.
    tombstones: u64,
}

/// One key's new state, on its way to the database file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// The plugin's namespace.
    pub ns: Arc<str>,
    /// The key.
    pub key: Vec<u8>,
    /// The value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// Writes `ops` (in order) into `txn`.
pub fn apply_ops(txn: &WriteTransaction, ops: &[KvOp], pace: &mut Pacer) -> Result<(), KvError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(KV).map_err(storage)?;
    for op in ops {
        pace.step();
        let k = (&*op.ns, op.key.as_slice());
        match &op.value {
            Some(v) => table.insert(k, v.as_slice()).map(drop),
            None => table.remove(k).map(drop),
        }
        .map_err(storage)?;
    }
    Ok(())
}

/// Keys taken by one flush, to confirm or restore after the commit.
pub struct Flushed {
    taken: Vec<(Arc<Namespace>, Vec<Vec<u8>>)>,
}

impl Flushed {
    /// Number of keys written or deleted.
    pub fn len(&self) -> usize {
        self.taken.iter().map(|(_, k)| k.len()).sum()
    }

    /// Whether nothing was flushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KvStore {
    /// A store that keeps state in memory only.
    pub fn memory() -> KvStore {
        KvStore::with_db(None)
    }

    /// A store in `db` (the journal's database); creates its table.
    pub fn on(db: Arc<Database>) -> Result<KvStore, KvError> {
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(KV).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(KvStore::with_db(Some(db)))
    }

    fn with_db(db: Option<Arc<Database>>) -> KvStore {
        KvStore {
            inner: Arc::new(StoreInner {
                db,
                spaces: Mutex::new(HashMap::new()),
                dirty: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Whether state survives a restart.
    pub fn is_persistent(&self) -> bool {
        self.inner.db.is_some()
    }

    /// The namespace of plugin `name` (counts its keys on disk the first time).
    pub fn namespace(&self, name: &str) -> Result<Arc<Namespace>, KvError> {
        let mut spaces = lock(&self.inner.spaces);
        if let Some(ns) = spaces.get(name) {
            return Ok(ns.clone());
        }
        let count = match &self.inner.db {
            None => 0,
            Some(db) => {
                let txn = db.begin_read().map_err(storage)?;
                let table = txn.open_table(KV).map_err(storage)?;
                let mut n = 0u64;
                for item in table.range((name, &[][..])..).map_err(storage)? {
                    let (k, _) = item.map_err(storage)?;
                    if k.value().0 != name {
                        break;
                    }
                    n += 1;
                }
                n
            }
        };
        let name: Arc<str> = Arc::from(name);
        let ns = Arc::new(Namespace {
            name: name.clone(),
            db: self.inner.db.clone(),
            store_dirty: self.inner.dirty.clone(),
            state: Mutex::new(NsState {
                count,
                ..NsState::default()
            }),
        });
        spaces.insert(name, ns.clone());
        Ok(ns)
    }

    /// Whether a write awaits a flush.
    pub fn has_dirty(&self) -> bool {
        self.inner.db.is_some() && self.inner.dirty.load(Ordering::Acquire)
    }

    /// Writes every dirty key into `txn` (committed durably by the caller), then
    /// [`KvStore::committed`] or [`KvStore::failed`] with the result.
    pub fn flush_into(&self, txn: &WriteTransaction) -> Result<Flushed, KvError> {
        let (ops, flushed) = self.take_dirty();
        if let Err(e) = apply_ops(txn, &ops, &mut Pacer::unpaced()) {
            self.failed(flushed);
            return Err(e);
        }
        Ok(flushed)
    }

    /// Takes every dirty key's current value (`None`: deleted) as operations to
    /// make durable. Then [`KvStore::failed`] if that fails; once the operations are
    /// in the database file, [`KvStore::committed`] (not before: a deletion's
    /// tombstone must stay in memory while the file still has the old value).
    pub fn take_dirty(&self) -> (Vec<KvOp>, Flushed) {
        let mut flushed = Flushed { taken: Vec::new() };
        let mut ops = Vec::new();
        if !self.has_dirty() {
            return (ops, flushed);
        }
        self.inner.dirty.store(false, Ordering::Release);
        let spaces: Vec<Arc<Namespace>> = lock(&self.inner.spaces).values().cloned().collect();
        for ns in spaces {
            let mut st = lock(&ns.state);
            if st.dirty.is_empty() {
                continue;
            }
            let keys: Vec<Vec<u8>> = st.dirty.drain().collect();
            for k in &keys {
                ops.push(KvOp {
                    ns: ns.name.clone(),
                    key: k.clone(),
                    value: st.cache.get(k).cloned().flatten(),
                });
            }
            flushed.taken.push((ns.clone(), keys));
        }
        (ops, flushed)
    }

    /// After the flush's transaction committed: deletions are on disk, their
    /// tombstones can go.
    pub fn committed(&self, flushed: Flushed) {
        self.committed_unless_in(flushed, &[]);
    }

    /// Like [`KvStore::committed`], for a flush whose operations reached the database
    /// file while later flushes (`later`, durable elsewhere but not in the file yet)
    /// may have changed the same keys: those keys keep their tombstones, since the
    /// file does not have their newest state.
    pub fn committed_unless_in(&self, flushed: Flushed, later: &[&Flushed]) {
        let newer: HashSet<(&str, &[u8])> = later
            .iter()
            .flat_map(|f| f.taken.iter())
            .flat_map(|(ns, keys)| keys.iter().map(move |k| (&*ns.name, k.as_slice())))
            .collect();
        for (ns, keys) in flushed.taken {
            let mut st = lock(&ns.state);
            for k in keys {
                if newer.contains(&(&*ns.name, k.as_slice())) {
                    continue;
                }
                if !st.dirty.contains(&k) && matches!(st.cache.get(&k), Some(None)) {
                    st.cache.remove(&k);
                    st.tombstones -= 1;
                }
            }
        }
    }

    /// After the flush's transaction failed: the keys are dirty again and go with
    /// the next commit.
    pub fn failed(&self, flushed: Flushed) {
        for (ns, keys) in flushed.taken {
            let mut st = lock(&ns.state);
            st.dirty.extend(keys);
        }
        self.inner.dirty.store(true, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-updated in a way
    // that matters more than losing the plugin's state: keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Namespace {
    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of keys present.
    pub fn len(&self) -> u64 {
        lock(&self.state).count
    }

    /// Whether the namespace holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key` (from memory, else from disk).
    pub fn get(&self, key: &[u8], limits: &KvLimits) -> Result<Option<Vec<u8>>, KvError> {
        if key.len() > limits.max_key_bytes as usize {
            return Err(KvError::KeyTooLong {
                len: key.len(),
                max: limits.max_key_bytes,
            });
        }
        let mut st = lock(&self.state);
        self.load(&mut st, key)
    }

    /// Loads `key` into memory if it is on disk; its value.
    fn load(&self, st: &mut NsState, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(v) = st.cache.get(key) {
            return Ok(v.clone());
        }
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let txn = db.begin_read().map_err(storage)?;
        let table = txn.open_table(KV).map_err(storage)?;
        let value = table
            .get((&*self.name, key))
            .map_err(storage)?
            .map(|v| v.value().to_vec());
        if let Some(v) = &value {
            // Absent keys are not cached: a plugin probing many keys must not
            // grow memory beyond what it stores.
            st.cache.insert(key.to_vec(), Some(v.clone()));
        }
        Ok(value)
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &[u8], value: &[u8], limits: &KvLimits) -> Result<(), KvError> {
        if key.len() > limits.max_key_bytes as usize {
            return Err(KvError::KeyTooLong {
                len: key.len(),
                max: limits.max_key_bytes,
            });
        }
        if value.len() > limits.max_value_bytes as usize {
            return Err(KvError::ValueTooLong {
                len: value.len(),
                max: limits.max_value_bytes,
            });
        }
        let mut st = lock(&self.state);
        let tombstone = matches!(st.cache.get(key), Some(None));
        let present = self.load(&mut st, key)?.is_some();
        if !present {
            if st.count >= u64::from(limits.max_keys) {
                return Err(KvError::TooManyKeys {
                    max: limits.max_keys,
                });
            }
            // A tombstone's key coming back does not grow the cache.
            if !tombstone && st.tombstones >= u64::from(limits.max_keys) {
                return Err(KvError::DeletionsPending {
                    max: limits.max_keys,
                });
            }
            st.count += 1;
        }
        if tombstone {
            st.tombstones -= 1;
        }
        st.cache.insert(key.to_vec(), Some(value.to_vec()));
        self.mark(&mut st, key);
        Ok(())
    }

    /// Deletes `key`; whether it was present.
    pub fn delete(&self, key: &[u8], limits: &KvLimits) -> Result<bool, KvError> {
        if key.len() > limits.max_key_bytes as usize {
            return Err(KvError::KeyTooLong {
                len: key.len(),
                max: limits.max_key_bytes,
            });
        }
        let mut st = lock(&self.state);
        if self.load(&mut st, key)?.is_none() {
            return Ok(false);
        }
        st.count -= 1;
        if self.db.is_some() {
            st.cache.insert(key.to_vec(), None);
            st.tombstones += 1;
            self.mark(&mut st, key);
        } else {
            st.cache.remove(key);
        }
        Ok(true)
    }

    fn mark(&self, st: &mut NsState, key: &[u8]) {
        if self.db.is_some() {
            st.dirty.insert(key.to_vec());
            self.store_dirty.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("kv.redb")).unwrap());
        (dir, db)
    }

    fn flush(store: &KvStore, db: &Database) {
        let txn = db.begin_write().unwrap();
        let f = store.flush_into(&txn).unwrap();
        txn.commit().unwrap();
        store.committed(f);
    }

    #[test]
    fn values_survive_a_new_store_on_the_same_file_only_after_a_flush() {
        let (_dir, db) = disk();
        let l = KvLimits::default();
        let a = KvStore::on(db.clone()).unwrap();
        let ns = a.namespace("rate-limit").unwrap();
        ns.set(b"k1", b"v1", &l).unwrap();
        ns.set(b"k2", b"v2", &l).unwrap();
        assert!(a.has_dirty());
        // Not flushed: a second store over the file does not see it.
        let b = KvStore::on(db.clone()).unwrap();
        assert_eq!(b.namespace("rate-limit").unwrap().get(b"k1", &l), Ok(None));
        flush(&a, &db);
        assert!(!a.has_dirty());
        let c = KvStore::on(db.clone()).unwrap();
        let ns_c = c.namespace("rate-limit").unwrap();
        assert_eq!(ns_c.len(), 2);
        assert_eq!(ns_c.get(b"k1", &l), Ok(Some(b"v1".to_vec())));
        // Another plugin's namespace is separate.
        assert_eq!(c.namespace("other").unwrap().get(b"k1", &l), Ok(None));
        assert_eq!(c.namespace("other").unwrap().len(), 0);
        // A deletion reaches the disk too, and its tombstone goes.
        ns.delete(b"k1", &l).unwrap();
        flush(&a, &db);
        assert!(!lock(&ns.state).cache.contains_key(b"k1".as_slice()));
        assert_eq!(ns.get(b"k1", &l), Ok(None));
        let d = KvStore::on(db).unwrap();
        assert_eq!(d.namespace("rate-limit").unwrap().len(), 1);
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let s = KvStore::memory();
        let ns = s.namespace("p").unwrap();
        let l = KvLimits {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_keys: 2,
        };
        assert_eq!(
            ns.set(b"12345", b"", &l),
            Err(KvError::KeyTooLong { len: 5, max: 4 })
        );
        assert_eq!(
            ns.set(b"k", &[0; 9], &l),
            Err(KvError::ValueTooLong { len: 9, max: 8 })
        );
        ns.set(b"a", b"1", &l).unwrap();
        ns.set(b"b", b"1", &l).unwrap();
        // Overwriting an existing key is not a new key.
        ns.set(b"b", b"2", &l).unwrap();
        assert_eq!(ns.set(b"c", b"1", &l), Err(KvError::TooManyKeys { max: 2 }));
        assert_eq!(ns.delete(b"a", &l), Ok(true));
        assert_eq!(ns.delete(b"a", &l), Ok(false));
        ns.set(b"c", b"1", &l).unwrap();
        assert_eq!(ns.len(), 2);
        assert!(KvError::TooManyKeys { max: 2 }
            .to_string()
            .contains("kv_max_keys = 2"));
    }

    #[test]
    fn a_failed_flush_keeps_the_keys_dirty() {
        let (_dir, db) = disk();
        let l = KvLimits::default();
        let s = KvStore::on(db.clone()).unwrap();
        let ns = s.namespace("p").unwrap();
        ns.set(b"k", b"v", &l).unwrap();
        let txn = db.begin_write().unwrap();
        let f = s.flush_into(&txn).unwrap();
        assert_eq!(f.len(), 1);
        txn.abort().unwrap();
        s.failed(f);
        assert!(s.has_dirty());
        flush(&s, &db);
        let again = KvStore::on(db).unwrap();
        assert_eq!(
            again.namespace("p").unwrap().get(b"k", &l),
            Ok(Some(b"v".to_vec()))
        );
    }

    #[test]
    fn a_deletion_newer_than_the_checkpoint_keeps_its_tombstone() {
        let (_dir, db) = disk();
        let l = KvLimits::default();
        let s = KvStore::on(db.clone()).unwrap();
        let ns = s.namespace("p").unwrap();
        ns.set(b"k", b"v", &l).unwrap();
        let (first, f1) = s.take_dirty();
        ns.delete(b"k", &l).unwrap();
        // Durable in the journal's log only; the checkpoint of the first flush
        // finishes meanwhile: the file now has k = v.
        let (second, f2) = s.take_dirty();
        let txn = db.begin_write().unwrap();
        apply_ops(&txn, &first, &mut Pacer::unpaced()).unwrap();
        txn.commit().unwrap();
        s.committed_unless_in(f1, &[&f2]);
        assert_eq!(ns.get(b"k", &l), Ok(None), "the old value came back");
        let txn = db.begin_write().unwrap();
        apply_ops(&txn, &second, &mut Pacer::unpaced()).unwrap();
        txn.commit().unwrap();
        s.committed_unless_in(f2, &[]);
        assert_eq!(ns.get(b"k", &l), Ok(None));
        assert_eq!(
            KvStore::on(db)
                .unwrap()
                .namespace("p")
                .unwrap()
                .get(b"k", &l),
            Ok(None)
        );
    }

    #[test]
    fn deletions_that_cannot_reach_the_disk_do_not_grow_memory_without_bound() {
        // A plugin that sets and deletes fresh keys while every commit fails (a
        // full disk) kept one tombstone per deleted key in memory, unbounded.
        let (_dir, db) = disk();
        let l = KvLimits {
            max_keys: 4,
            ..KvLimits::default()
        };
        let s = KvStore::on(db.clone()).unwrap();
        let ns = s.namespace("p").unwrap();
        let mut refused = None;
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            if let Err(e) = ns.set(&key, b"v", &l) {
                refused = Some((i, e));
                break;
            }
            ns.delete(&key, &l).unwrap();
            let txn = db.begin_write().unwrap();
            let f = s.flush_into(&txn).unwrap();
            txn.abort().unwrap();
            s.failed(f);
        }
        let (i, e) = refused.expect("a new key was refused once deletions piled up");
        assert_eq!(i, 4, "refused after kv_max_keys pending deletions");
        assert!(matches!(e, KvError::DeletionsPending { max: 4 }), "{e:?}");
        assert!(e.to_string().contains("not on disk yet"), "{e}");
        assert!(lock(&ns.state).cache.len() <= 8);
        // A tombstone's own key can come back: that does not grow memory.
        ns.set(&0u32.to_be_bytes(), b"again", &l).unwrap();
        // Once a commit succeeds, the tombstones go and new keys are taken again.
        flush(&s, &db);
        ns.set(b"new", b"v", &l).unwrap();
        assert_eq!(ns.len(), 2);
        let again = KvStore::on(db).unwrap();
        let ns2 = again.namespace("p").unwrap();
        assert_eq!(
            ns2.get(&0u32.to_be_bytes(), &l),
            Ok(Some(b"again".to_vec()))
        );
        assert_eq!(ns2.get(&1u32.to_be_bytes(), &l), Ok(None));
    }

    #[test]
    fn a_write_during_a_flush_stays_dirty() {
        let (_dir, db) = disk();
        let l = KvLimits::default();
        let s = KvStore::on(db.clone()).unwrap();
        let ns = s.namespace("p").unwrap();
        ns.set(b"k", b"1", &l).unwrap();
        let txn = db.begin_write().unwrap();
        let f = s.flush_into(&txn).unwrap();
        ns.set(b"k", b"2", &l).unwrap();
        txn.commit().unwrap();
        s.committed(f);
        assert!(s.has_dirty());
        flush(&s, &db);
        let again = KvStore::on(db).unwrap();
        assert_eq!(
            again.namespace("p").unwrap().get(b"k", &l),
            Ok(Some(b"2".to_vec()))
        );
    }
}
