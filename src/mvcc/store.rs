//! The store: shared state, opening (rebuilding the key index from the backend), reads,
//! hashes, lease attachments and physical compaction. The write path is in `apply.rs`, watches
//! in `watch.rs`.
//!
//! Concurrency (numbered so the comments elsewhere can point here):
//! 1. One writer at a time holds `writer` (an async mutex) for a whole batch, including the
//!    backend commit. It mutates the key index in place under the `state` write lock, one
//!    request at a time, and never holds that lock across an await.
//! 2. Readers hold the `state` read lock only to check revisions, walk the index and take a
//!    backend snapshot; values are fetched from the snapshot afterwards.
//! 3. The writer publishes (`state.revision`) only after its batch is committed, so every
//!    revision a reader can ask for is in the reader's snapshot. Index entries newer than the
//!    published revision are invisible to reads at or below it (it is a multi-version index).
//! 4. Index compaction happens at publish time, together with the new compact revision;
//!    physical deletion comes later and removes only what the index no longer references, so
//!    a snapshot taken under the read lock has everything a read that passed the compact
//!    check needs.
//! 5. Lock order: `writer` → `watches` → `state`; a watcher's own mutex is innermost.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::mvcc::backend::{Backend, BackendError, BackendRead, Bucket, WriteBatch};
use crate::mvcc::encoding::{
    decode_consistent_index, decode_entry, decode_entry_key, decode_i64, decode_revision_raw_key, encode_i64, meta_key,
    revision_raw_key, RevisionKey, StoredEntry, META_CONSISTENT_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT,
};
use crate::mvcc::error::StoreError;
use crate::mvcc::key_index::{owned_key, KeyIndex};
use crate::mvcc::read::{complete_range, plan_range, SnapshotValues};
use crate::mvcc::txn::{execute_txn, ReadContext};
use crate::mvcc::types::{
    ConsistentIndex, HashKvResult, HashResult, LeaseId, RangeRequest, RangeResult, Revision, TxnRequest, TxnResult,
};
use crate::mvcc::validate::{is_read_only, validate_range};
use crate::mvcc::watch::WatchRegistry;

/// Tunables; the defaults follow etcd where etcd has a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvccConfig {
    /// Events a synced watcher may have queued before it is moved to catch up from history.
    pub watcher_buffer_events_max: usize,
    /// Events one `Watcher::recv` returns at most (whole revisions; one revision may exceed it).
    pub watch_response_events_max: usize,
    /// History entries a catching-up watcher scans per step (whole revisions).
    pub watch_history_chunk_entries: usize,
    /// Entries one physical compaction step examines (etcd's `CompactionBatchLimit`, 1000).
    pub compaction_batch_entries: usize,
    /// A bug planted for the simulation to find: apply entries at or below the
    /// consistent index again instead of skipping them.
    #[cfg(feature = "sim-bugs")]
    pub planted_double_apply: bool,
}

impl Default for MvccConfig {
    fn default() -> Self {
        MvccConfig {
            watcher_buffer_events_max: 1024,
            watch_response_events_max: 1024,
            watch_history_chunk_entries: 1024,
            compaction_batch_entries: 1000,
            #[cfg(feature = "sim-bugs")]
            planted_double_apply: false,
        }
    }
}

/// etcd's MVCC key-value store over a `Backend`. Cheap to clone (all clones share one store).
pub struct MvccStore<B: Backend> {
    pub(crate) shared: Arc<Shared<B>>,
}

impl<B: Backend> Clone for MvccStore<B> {
    fn clone(&self) -> Self {
        MvccStore {
            shared: Arc::clone(&self.shared),
        }
    }
}

pub(crate) struct Shared<B: Backend> {
    pub(crate) backend: B,
    pub(crate) config: MvccConfig,
    pub(crate) state: RwLock<IndexState>,
    pub(crate) writer: tokio::sync::Mutex<WriterState>,
    pub(crate) watches: Mutex<WatchRegistry>,
    /// Set by the first failed (or abandoned) commit; every later write fails with it.
    failure: Mutex<Option<BackendError>>,
    /// The consistent index as of the last durable commit, for a backend that
    /// defers durability (otherwise every commit is durable).
    durable_index: Mutex<ConsistentIndex>,
}

pub(crate) struct IndexState {
    pub(crate) index: KeyIndex,
    /// The published revision: everything at or below it is committed.
    pub(crate) revision: i64,
    /// -1 until the first compaction (etcd's initial `compactMainRev`).
    pub(crate) compact_revision: i64,
    pub(crate) consistent_index: ConsistentIndex,
    /// lease → attached keys. Invariant: equals the leases of the newest revision of every live
    /// key in `index` (so it may run ahead of `revision` while the writer applies a batch).
    pub(crate) leases: BTreeMap<LeaseId, BTreeSet<Bytes>>,
}

fn attach(leases: &mut BTreeMap<LeaseId, BTreeSet<Bytes>>, lease: LeaseId, key: &[u8]) {
    if !lease.is_none() {
        let keys = leases.entry(lease).or_default();
        if !keys.contains(key) {
            keys.insert(owned_key(key));
        }
    }
}

impl IndexState {
    pub(crate) fn attach(&mut self, lease: LeaseId, key: &[u8]) {
        attach(&mut self.leases, lease, key);
    }

    pub(crate) fn detach(&mut self, lease: LeaseId, key: &[u8]) {
        if lease.is_none() {
            return;
        }
        if let Some(keys) = self.leases.get_mut(&lease) {
            keys.remove(key);
            if keys.is_empty() {
                self.leases.remove(&lease);
            }
        }
    }
}

pub(crate) struct WriterState {
    /// A durable compaction whose dead revisions are still in the backend.
    pub(crate) physical: Option<PhysicalCompaction>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct PhysicalCompaction {
    pub(crate) revision: i64,
    /// Where the next step resumes scanning.
    pub(crate) cursor: RevisionKey,
}

/// Marks the store failed if a commit's future is dropped before it finished: the in-memory
/// state may then be ahead of the backend.
pub(crate) struct CommitGuard<'a, B: Backend> {
    shared: &'a Shared<B>,
    armed: bool,
}

impl<'a, B: Backend> CommitGuard<'a, B> {
    pub(crate) fn new(shared: &'a Shared<B>) -> Self {
        CommitGuard { shared, armed: true }
    }

    pub(crate) async fn commit(mut self, batch: WriteBatch) -> Result<(), BackendError> {
        let result = self.shared.backend.apply(batch).await;
        self.armed = false;
        if let Err(error) = &result {
            self.shared.fail(error.clone());
        }
        result
    }
}

impl<B: Backend> Drop for CommitGuard<'_, B> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .fail(BackendError::new("a commit was abandoned before it completed"));
        }
    }
}

impl<B: Backend> Shared<B> {
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, IndexState> {
        self.state.read().expect("mvcc state lock poisoned")
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, IndexState> {
        self.state.write().expect("mvcc state lock poisoned")
    }

    pub(crate) fn watches(&self) -> MutexGuard<'_, WatchRegistry> {
        self.watches.lock().expect("mvcc watch lock poisoned")
    }

    pub(crate) fn check_healthy(&self) -> Result<(), BackendError> {
        match &*self.failure.lock().expect("mvcc failure lock poisoned") {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    pub(crate) fn fail(&self, error: BackendError) {
        self.failure
            .lock()
            .expect("mvcc failure lock poisoned")
            .get_or_insert(error);
    }
}

impl<B: Backend> MvccStore<B> {
    /// Opens the store on `backend`, rebuilding the key index and lease attachments from the
    /// key bucket (etcd's `restore`). A compaction that was scheduled but not physically
    /// finished is resumed by `compaction_step`/`finish_compaction`.
    pub async fn open(backend: B, config: MvccConfig) -> Result<Self, BackendError> {
        let (state, physical) = load_state(&backend.read())?;
        let revision = state.revision;
        let durable_index = Mutex::new(state.consistent_index);
        Ok(MvccStore {
            shared: Arc::new(Shared {
                backend,
                watches: Mutex::new(WatchRegistry::new(revision)),
                config,
                state: RwLock::new(state),
                writer: tokio::sync::Mutex::new(WriterState { physical }),
                failure: Mutex::new(None),
                durable_index,
            }),
        })
    }

    /// Makes every applied batch durable (a no-op for a backend that does not
    /// defer durability); returns the consistent index now durable. The bulk of
    /// the data is flushed (`Backend::flush`) before the writer lock is taken,
    /// so applies wait only for the short last step (a small fsync, the meta
    /// flip and its fsync).
    pub async fn sync(&self) -> Result<ConsistentIndex, BackendError> {
        self.shared.check_healthy()?;
        if let Err(error) = self.shared.backend.flush().await {
            self.shared.fail(error.clone());
            return Err(error);
        }
        let _writer = self.shared.writer.lock().await;
        self.sync_locked().await
    }

    async fn sync_locked(&self) -> Result<ConsistentIndex, BackendError> {
        self.shared.check_healthy()?;
        let index = self.shared.read_state().consistent_index;
        if let Err(error) = self.shared.backend.sync().await {
            self.shared.fail(error.clone());
            return Err(error);
        }
        *self
            .shared
            .durable_index
            .lock()
            .expect("mvcc durable index lock poisoned") = index;
        Ok(index)
    }

    /// The consistent index a crash now would come back to.
    pub fn durable_consistent_index(&self) -> ConsistentIndex {
        if self.shared.backend.defers_durability() {
            *self
                .shared
                .durable_index
                .lock()
                .expect("mvcc durable index lock poisoned")
        } else {
            self.consistent_index()
        }
    }

    /// Replaces the whole state with `source`'s (a snapshot from the Raft leader, which is
    /// ahead of this store), in one backend commit: only entries that differ are written.
    /// Watchers then catch up from history, as etcd moves them to its unsynced group on
    /// restore; one whose next revision was compacted away in `source` is canceled.
    pub async fn install_snapshot(&self, source: &impl BackendRead) -> Result<(), BackendError> {
        let mut writer = self.shared.writer.lock().await;
        self.shared.check_healthy()?;
        let batch = difference(&self.shared.backend.read(), source)?;
        CommitGuard::new(&self.shared).commit(batch).await?;
        let (state, physical) = load_state(&self.shared.backend.read())?;
        writer.physical = physical;
        {
            let mut watches = self.shared.watches();
            let revision = state.revision;
            *self.shared.write_state() = state;
            watches.restored(revision);
        }
        // The caller drops the image once this returns: it must be durable.
        self.sync_locked().await?;
        drop(writer);
        Ok(())
    }

    /// Prepares a backend restored from a snapshot to start a new cluster: its consistent
    /// index belonged to the old cluster's Raft log, so it goes back to 0 and the new log's
    /// bootstrap entries apply from index 1 (they carry no mvcc change). Keys, revisions,
    /// compaction and the other modules' buckets stay as the snapshot had them.
    pub async fn reset_consistent_index(backend: &B) -> Result<(), BackendError> {
        let mut batch = WriteBatch::new();
        batch.put(
            meta_key(META_CONSISTENT_INDEX),
            crate::mvcc::encoding::encode_consistent_index(ConsistentIndex::default()),
        );
        backend.apply(batch).await
    }

    pub fn config(&self) -> &MvccConfig {
        &self.shared.config
    }

    /// The backend, for modules that keep their own buckets in it.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// The current (published) revision: 1 for an empty store.
    pub fn current_revision(&self) -> Revision {
        Revision(self.shared.read_state().revision)
    }

    /// The compact revision, -1 if the store was never compacted (as etcd reports it).
    pub fn compact_revision(&self) -> Revision {
        Revision(self.shared.read_state().compact_revision)
    }

    /// The last applied Raft position, as persisted with the state it produced.
    pub fn consistent_index(&self) -> ConsistentIndex {
        self.shared.read_state().consistent_index
    }

    /// etcd's Range at the current published state; callable concurrently with writes.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResult, StoreError> {
        validate_range(request)?;
        let (plan, snapshot) = {
            let state = self.shared.read_state();
            let plan = plan_range(&state.index, request, state.revision, state.compact_revision)?;
            (plan, self.shared.backend.read())
        };
        Ok(complete_range(plan, request, &SnapshotValues(&snapshot))?)
    }

    /// A txn without puts or deletes (see `validate::is_read_only`), served like a read: no
    /// Raft entry, no new revision. Panics if given a txn that can write.
    pub fn read_txn(&self, request: &TxnRequest) -> Result<TxnResult, StoreError> {
        assert!(is_read_only(request), "read_txn given a txn with writes");
        let state = self.shared.read_state();
        let snapshot = self.shared.backend.read();
        let values = SnapshotValues(&snapshot);
        let mut context = ReadContext {
            index: &state.index,
            values: &values,
            current: state.revision,
            compact: state.compact_revision,
        };
        execute_txn(&mut context, request, &|_| true)
    }

    /// The keys attached to `lease`, in key order.
    pub fn keys_for_lease(&self, lease: LeaseId) -> Vec<Bytes> {
        let state = self.shared.read_state();
        state
            .leases
            .get(&lease)
            .map_or_else(Vec::new, |keys| keys.iter().cloned().collect())
    }

    /// etcd's Maintenance.Hash: a crc32 of every backend entry (test-only in etcd).
    pub fn hash(&self) -> Result<HashResult, BackendError> {
        let (snapshot, revision) = {
            let state = self.shared.read_state();
            (self.shared.backend.read(), state.revision)
        };
        let mut hasher = crc32fast::Hasher::new();
        snapshot.scan(&[], &[u8::MAX], &mut |key, value| {
            hasher.update(key);
            hasher.update(value);
            ControlFlow::Continue(())
        })?;
        Ok(HashResult {
            hash: hasher.finalize(),
            revision: Revision(revision),
        })
    }

    /// etcd's HashKV: a crc32 of the history up to `revision` (0 = current) as it stands after
    /// compaction — revisions at or below the compact revision count only if compaction keeps
    /// them, so members agree whether or not their physical compaction has finished.
    pub fn hash_kv(&self, revision: Revision) -> Result<HashKvResult, StoreError> {
        let (snapshot, current, compact, kept) = {
            let state = self.shared.read_state();
            if revision.0 > 0 && revision.0 < state.compact_revision {
                return Err(crate::mvcc::error::MvccError::Compacted.into());
            }
            if revision.0 > state.revision {
                return Err(crate::mvcc::error::MvccError::FutureRevision.into());
            }
            let kept = revisions_at_or_below(&state.index, state.compact_revision);
            (self.shared.backend.read(), state.revision, state.compact_revision, kept)
        };
        let hash_revision = if revision.0 == 0 { current } else { revision.0 };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(b"key");
        let start = revision_raw_key(RevisionKey::new(0, 0));
        let end = revision_raw_key(RevisionKey::new(hash_revision.saturating_add(1).max(0), 0));
        let mut failure = None;
        snapshot.scan(
            &start,
            &end,
            &mut |raw_key, value| match decode_revision_raw_key(raw_key) {
                Ok(entry_revision) => {
                    if entry_revision.main > compact || kept.contains(&entry_revision) {
                        hasher.update(raw_key);
                        hasher.update(value);
                    }
                    ControlFlow::Continue(())
                }
                Err(error) => {
                    failure = Some(error);
                    ControlFlow::Break(())
                }
            },
        )?;
        if let Some(error) = failure {
            return Err(error.into());
        }
        Ok(HashKvResult {
            hash: hasher.finalize(),
            compact_revision: Revision(compact),
            hash_revision: Revision(hash_revision),
            revision: Revision(current),
        })
    }

    /// One bounded step of physical compaction: deletes up to `compaction_batch_entries`
    /// examined entries that the key index no longer references, in one backend batch, and
    /// records the compaction as finished when the scan is done. Returns whether no physical
    /// compaction work remains. The caller (server) decides when to run it; `Compact` with
    /// `physical = true` answers after `finish_compaction`.
    pub async fn compaction_step(&self) -> Result<bool, BackendError> {
        let shared = &*self.shared;
        let mut writer = shared.writer.lock().await;
        shared.check_healthy()?;
        let Some(physical) = writer.physical else {
            return Ok(true);
        };
        let limit = shared.config.compaction_batch_entries.max(1);
        let mut batch = WriteBatch::new();
        let mut next_cursor = None;
        let mut failure = None;
        {
            let snapshot = shared.backend.read();
            let state = shared.read_state();
            let mut examined = 0;
            let end = revision_raw_key(RevisionKey::new(physical.revision + 1, 0));
            snapshot.scan(&revision_raw_key(physical.cursor), &end, &mut |raw_key, value| {
                let checked = decode_revision_raw_key(raw_key).and_then(|revision| {
                    let key = decode_entry_key(revision, value)?;
                    Ok((revision, state.index.contains(key, revision)))
                });
                match checked {
                    Ok((revision, _)) if examined == limit => {
                        next_cursor = Some(revision);
                        ControlFlow::Break(())
                    }
                    Ok((_, referenced)) => {
                        if !referenced {
                            batch.delete(Bytes::copy_from_slice(raw_key));
                        }
                        examined += 1;
                        ControlFlow::Continue(())
                    }
                    Err(error) => {
                        failure = Some(error);
                        ControlFlow::Break(())
                    }
                }
            })?;
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let done = next_cursor.is_none();
        if done {
            batch.put(meta_key(META_FINISHED_COMPACT), encode_i64(physical.revision));
        }
        CommitGuard::new(shared).commit(batch).await?;
        writer.physical = next_cursor.map(|cursor| PhysicalCompaction {
            revision: physical.revision,
            cursor,
        });
        Ok(done)
    }

    /// Runs `compaction_step` until no physical compaction work remains.
    pub async fn finish_compaction(&self) -> Result<(), BackendError> {
        while !self.compaction_step().await? {}
        Ok(())
    }
}

/// Every revision at or below `at` that the index still references.
fn revisions_at_or_below(index: &KeyIndex, at: i64) -> BTreeSet<RevisionKey> {
    let mut kept = BTreeSet::new();
    if at > 0 {
        index.visit_revisions_at_or_below(at, |revision| {
            kept.insert(revision);
        });
    }
    kept
}

/// Rebuilds the in-memory state from a backend snapshot (etcd's `restore`): the key index and
/// lease attachments from the key bucket, the compaction still to finish physically.
fn load_state(snapshot: &impl BackendRead) -> Result<(IndexState, Option<PhysicalCompaction>), BackendError> {
    let consistent_index = match snapshot.get(&meta_key(META_CONSISTENT_INDEX))? {
        Some(value) => decode_consistent_index(&value)?,
        None => ConsistentIndex::default(),
    };
    let read_meta_i64 = |name: &[u8]| -> Result<i64, BackendError> {
        snapshot
            .get(&meta_key(name))?
            .map_or(Ok(-1), |value| decode_i64(&value))
    };
    let scheduled = read_meta_i64(META_SCHEDULED_COMPACT)?;
    let finished = read_meta_i64(META_FINISHED_COMPACT)?;

    let mut index = KeyIndex::new();
    let mut last_revision = 1;
    let mut failure = None;
    let (start, end) = Bucket::Key.bounds();
    snapshot.scan(&start, &end, &mut |raw_key, value| {
        let restored = decode_revision_raw_key(raw_key).and_then(|revision| {
            let entry = decode_entry(revision, &Bytes::copy_from_slice(value))?;
            Ok((revision, entry))
        });
        match restored {
            Ok((revision, StoredEntry::Put(kv))) => {
                index.restore_put(&kv.key, kv.create_revision.0, revision, kv.version, kv.lease);
                last_revision = revision.main;
                ControlFlow::Continue(())
            }
            Ok((revision, StoredEntry::Tombstone(key))) => {
                index.restore_tombstone(&key, revision);
                last_revision = revision.main;
                ControlFlow::Continue(())
            }
            Err(error) => {
                failure = Some(error);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }

    let compact_revision = scheduled.max(finished);
    if compact_revision > 0 {
        index.compact(compact_revision);
    }
    // A compaction may have removed every entry of the newest revisions (etcd #17780).
    let revision = last_revision.max(compact_revision).max(1);
    let mut state = IndexState {
        index,
        revision,
        compact_revision,
        consistent_index,
        leases: BTreeMap::new(),
    };
    let IndexState { index, leases, .. } = &mut state;
    index.visit_leased(|key, lease| attach(leases, lease, key));
    let physical = (scheduled > finished).then_some(PhysicalCompaction {
        revision: scheduled,
        cursor: RevisionKey::default(),
    });
    Ok((state, physical))
}

/// The batch that turns `current`'s entries into `source`'s.
fn difference(current: &impl BackendRead, source: &impl BackendRead) -> Result<WriteBatch, BackendError> {
    let mut batch = WriteBatch::new();
    scan_all(source, &mut |key, value| {
        if current.get(key)?.as_deref() != Some(value) {
            batch.put(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        }
        Ok(())
    })?;
    scan_all(current, &mut |key, _| {
        if source.get(key)?.is_none() {
            batch.delete(Bytes::copy_from_slice(key));
        }
        Ok(())
    })?;
    Ok(batch)
}

/// Visits every entry of `read`, stopping at the first error `visit` returns.
fn scan_all<F>(read: &impl BackendRead, visit: &mut F) -> Result<(), BackendError>
where
    F: FnMut(&[u8], &[u8]) -> Result<(), BackendError>,
{
    let mut failure = None;
    read.scan(&[0u8], &[0xffu8; 2], &mut |key, value| match visit(key, value) {
        Ok(()) => ControlFlow::Continue(()),
        Err(error) => {
            failure = Some(error);
            ControlFlow::Break(())
        }
    })?;
    failure.map_or(Ok(()), Err)
}
