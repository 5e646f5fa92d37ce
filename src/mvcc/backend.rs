//! The seam between mvcc and the persistent store (the copy-on-write B+tree in production,
//! `MemBackend` in tests): a flat, ordered byte-key space with consistent read snapshots and
//! atomic write batches. Buckets are a one-byte key prefix.
//!
//! Adapting the B+tree: `read()` = `btree.read()` (a `ReadTxn`: `get`, `range(start, end)`);
//! `apply(batch)` = `let mut txn = btree.write(); for op in batch { txn.put/delete }; txn.commit().await`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

/// A failed backend read or commit. Fatal: the store refuses every later write, and the
/// server is expected to stop (recovery starts from what is on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    pub message: String,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "backend: {}", self.message)
    }
}

impl std::error::Error for BackendError {}

/// Key-space prefixes. `Key` and `Meta` belong to mvcc; the others are reserved for the
/// modules that persist through the same atomic batches (lessor, auth, membership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Revision → encoded key-value (see `encoding.rs`).
    Key,
    /// consistent index, scheduled/finished compaction.
    Meta,
    Lease,
    Auth,
    Membership,
    /// Active alarms (member id, alarm type): `server::alarms`.
    Alarm,
}

impl Bucket {
    pub fn tag(self) -> u8 {
        match self {
            Bucket::Key => b'k',
            Bucket::Meta => b'm',
            Bucket::Lease => b'l',
            Bucket::Auth => b'a',
            Bucket::Membership => b'c',
            Bucket::Alarm => b'w',
        }
    }

    /// The raw backend key for `key` in this bucket.
    pub fn raw_key(self, key: &[u8]) -> Bytes {
        let mut raw = BytesMut::with_capacity(1 + key.len());
        raw.put_u8(self.tag());
        raw.put_slice(key);
        raw.freeze()
    }

    /// `[start, end)` covering the whole bucket.
    pub fn bounds(self) -> ([u8; 1], [u8; 1]) {
        ([self.tag()], [self.tag() + 1])
    }

    /// Whether mvcc owns this raw key (others may not write it through `ApplyEntry::extra`).
    pub fn is_mvcc_owned(raw_key: &[u8]) -> bool {
        matches!(raw_key.first(), Some(&tag) if tag == Bucket::Key.tag() || tag == Bucket::Meta.tag())
    }
}

/// One write in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put { key: Bytes, value: Bytes },
    Delete { key: Bytes },
}

/// Ordered puts/deletes committed atomically: after a crash either all or none are visible.
/// Later ops on the same key win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch::default()
    }

    pub fn put(&mut self, key: Bytes, value: Bytes) {
        self.ops.push(BatchOp::Put { key, value });
    }

    pub fn delete(&mut self, key: Bytes) {
        self.ops.push(BatchOp::Delete { key });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
}

/// Called for each scanned entry (key, value); `Break` stops the scan.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// A consistent, immutable snapshot of the backend.
pub trait BackendRead: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, BackendError>;

    /// Visits the entries with `start <= key < end` in ascending key order until `visit`
    /// breaks.
    fn scan(&self, start: &[u8], end: &[u8], visit: &mut ScanVisitor<'_>) -> Result<(), BackendError>;
}

/// A point-in-time image of the whole backend as bytes (etcd's Maintenance.Snapshot
/// payload): `total_bytes` is known before the first chunk, and the chunks add up to it.
pub struct BackendImage {
    pub total_bytes: u64,
    pub chunks: Box<dyn Iterator<Item = Result<Bytes, BackendError>> + Send>,
}

/// The persistent store mvcc writes through. The store calls `apply` from one task at a time
/// (it serialises its writers), while `read` may be called concurrently from any thread.
pub trait Backend: Send + Sync + 'static {
    type Read: BackendRead;

    /// A snapshot containing every batch whose `apply` has completed.
    fn read(&self) -> Self::Read;

    /// Commits `batch` atomically; durably unless `defers_durability`.
    fn apply(&self, batch: WriteBatch) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Whether `apply` leaves batches to be made durable by `sync` (a crash
    /// before it goes back to the last durable batch, all of whose
    /// predecessors it keeps).
    fn defers_durability(&self) -> bool {
        false
    }

    /// Makes every applied batch durable.
    fn sync(&self) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }

    /// Makes what `apply` wrote so far reach the disk without making it the
    /// durable state (for the B+tree: an fsync of the page file, no meta
    /// flip), so a `sync` right after has little left to write. Safe to run
    /// while batches are applied; the store calls it without its writer lock.
    fn flush(&self) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }

    /// A consistent image of everything committed so far, streamed without blocking writers.
    /// Only a persistent backend has a file to image; the default says so.
    fn image(&self) -> Result<BackendImage, BackendError> {
        Err(BackendError::new(
            "this backend has no file to take a snapshot image of",
        ))
    }

    /// (file bytes, bytes in use): etcd's `dbSize` and `dbSizeInUse`. A memory backend has no
    /// file; it reports zero.
    fn size_bytes(&self) -> (u64, u64) {
        (0, 0)
    }
}

type MemMap = BTreeMap<Bytes, Bytes>;

/// In-memory backend for tests and benchmarks. Clones share the same data, so a test can drop
/// a store and reopen it on a clone ("restart"); each `apply` is atomic, which is exactly what
/// a crash between batches leaves behind.
#[derive(Clone, Default)]
pub struct MemBackend {
    data: Arc<Mutex<Arc<MemMap>>>,
}

impl MemBackend {
    pub fn new() -> Self {
        MemBackend::default()
    }

    /// Every entry, in key order (for tests).
    pub fn entries(&self) -> Vec<(Bytes, Bytes)> {
        let snapshot = self.read();
        snapshot
            .map
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Snapshots currently alive (for tests: a writer must not hold one while committing, or
    /// every commit copies the whole map).
    pub fn open_snapshots(&self) -> usize {
        let data = self.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::strong_count(&data) - 1
    }

    /// The number of entries in `bucket` (for tests).
    pub fn bucket_len(&self, bucket: Bucket) -> usize {
        let snapshot = self.read();
        let (start, end) = bucket.bounds();
        snapshot
            .map
            .range::<[u8], _>((Bound::Included(&start[..]), Bound::Excluded(&end[..])))
            .count()
    }
}

/// A snapshot of a `MemBackend`: a shared pointer to an immutable map (writers copy on write).
#[derive(Clone)]
pub struct MemSnapshot {
    map: Arc<MemMap>,
}

impl BackendRead for MemSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, BackendError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], visit: &mut ScanVisitor<'_>) -> Result<(), BackendError> {
        if start >= end {
            return Ok(());
        }
        for (key, value) in self
            .map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
        {
            if visit(key, value).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Backend for MemBackend {
    type Read = MemSnapshot;

    fn read(&self) -> MemSnapshot {
        let data = self.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        MemSnapshot { map: Arc::clone(&data) }
    }

    fn apply(&self, batch: WriteBatch) -> impl Future<Output = Result<(), BackendError>> + Send {
        let mut data = self.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Copy-on-write: readers holding a snapshot keep the old map.
        let map = Arc::make_mut(&mut data);
        for op in batch.ops {
            match op {
                BatchOp::Put { key, value } => {
                    map.insert(key, value);
                }
                BatchOp::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        std::future::ready(Ok(()))
    }
}
