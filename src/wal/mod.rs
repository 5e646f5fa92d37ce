//! The write-ahead log: framing, segments, group commit, recovery.
//!
//! It knows bytes and `(index, term)`, not Raft rules (DESIGN.md invariant 5).
//!
//! # On disk
//!
//! A directory of segments named `<sequence>-<first index>.wal` (16 hex digits
//! each). Each segment starts with a header record (its sequence number and the
//! first index expected in it) followed by the hard state and snapshot marker
//! current when it was created, so the oldest segments can be removed without
//! losing either. Then records in write order: entries, hard states, snapshot
//! markers and truncations (`record` has the byte layout). Segments are
//! preallocated to `segment_size_bytes` (without changing their length) and a
//! new one starts when the next batch would not fit.
//!
//! # Write protocol
//!
//! * Appending checks the log's rules and queues the records in memory; `sync`
//!   frames everything queued, writes it with one device append, and fsyncs.
//!   Many tasks may append and sync concurrently: the first sync writes what
//!   all of them queued, and their fsyncs coalesce in the device (group
//!   commit). A node loop appends a whole batch and syncs once.
//! * Log semantics are append-only: an entry at an index at or below the last
//!   one overwrites the tail from there on; recovery keeps the last writer.
//!   `truncate_suffix` writes a record that says the same without new entries.
//! * Rotation cuts the old segment to its logical length (the production
//!   devices write zeros ahead of it, see `io::zero_ahead`) and syncs it in
//!   full, then creates the new one, syncs it and fsyncs the directory before
//!   anything is written to it. So every segment but the last is entirely
//!   durable and ends with its last record.
//! * A zero tail of the last segment (those zeros, or a size that reached the
//!   disk before its data) is cut at open without being reported as a repair:
//!   it holds nothing.
//! * Every record carries how much of its segment was durable when it was
//!   written; `recovery` uses that to tell a torn tail from damaged committed
//!   data (its module doc has the decision table).
//! * After an I/O error the WAL refuses every later call (`WalError::Failed`):
//!   the caller must stop and recover from disk (fail-stop).

mod open;
mod record;
mod recovery;
mod replay;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::io::{Dir, LogDevice};
use record::{encode, encoded_len, Header, RecordKind, FORMAT_VERSION, SEGMENT_MAGIC};
use replay::LogState;

pub use record::Damage;

/// Default size at which a segment is closed and the next one started.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 64 << 20;
/// Record offsets are stored as u32; one segment plus one batch must fit.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 1 << 30;
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 256;
/// The largest batch one append call may write.
pub const BATCH_BYTES_MAX: u64 = 1 << 30;
/// Appended records wait in memory for `sync` up to this many bytes; beyond it
/// an append writes them out (without syncing) to bound memory.
pub const PENDING_BYTES_MAX: u64 = 4 << 20;
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX + BATCH_BYTES_MAX <= u32::MAX as u64);

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub segment_size_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
        }
    }
}

/// Raft's persistent state, as opaque numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// Says a snapshot covers the log through `index`; entries up to it are not replayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMarker {
    pub index: u64,
    pub term: u64,
    /// Opaque to the WAL (Raft's configuration at `index`); carried into every
    /// new segment's header with the marker.
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
}

/// A torn tail that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    pub file: String,
    pub offset: u64,
    pub damage: Damage,
    pub dropped_bytes: u64,
    /// Valid-looking records after the damage that were dropped with it
    /// (never proven durable, so never acknowledged).
    pub dropped_records: usize,
}

/// What `Wal::open` found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: Option<HardState>,
    pub snapshot_marker: Option<SnapshotMarker>,
    /// Consecutive entries after the snapshot marker (all of them if there is none).
    pub entries: Vec<WalEntry>,
    /// Torn tails truncated during recovery; already logged to stderr.
    pub repairs: Vec<Repair>,
    /// Bytes of the last segment's zero tail that recovery cut without calling
    /// it damage (nothing was ever stored there).
    pub zero_tail_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Damaged or inconsistent data that recovery must not truncate.
    #[error("WAL file {file} is corrupt at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
    #[error("WAL I/O error during {operation}: {source}")]
    Io {
        operation: String,
        #[source]
        source: io::Error,
    },
    /// An earlier I/O error stopped the WAL; restart and recover.
    #[error("WAL stopped after an earlier I/O error: {0}")]
    Failed(String),
    #[error("a batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { bytes: u64, limit: u64 },
}

/// An append-only log over the files of a `Dir`.
///
/// Lock order: `files` before `log` before `shared`; `log` and `shared` are
/// never held across an await.
pub struct Wal<D: Dir> {
    dir: D,
    options: WalOptions,
    /// The log's rules and the records appended but not yet handed to a file.
    log: Mutex<LogBuffer>,
    /// Serializes everything that touches files: flushes, rotation, compaction.
    files: tokio::sync::Mutex<Files>,
    /// The active segment and how much of it is written and durable; read by
    /// `sync` without waiting for a flush.
    shared: Mutex<Shared<D::Log>>,
}

struct LogBuffer {
    /// The log as appended so far (flushed or not).
    state: LogState,
    pending: Vec<PendingRecord>,
    pending_bytes: u64,
}

struct Files {
    // Invariant: non-empty after open, consecutive sequence numbers, the last is `Shared::active`.
    segments: Vec<SegmentInfo>,
    /// The log as written to files so far: what a new segment carries over.
    flushed_state: LogState,
    /// Reused between flushes.
    buffer: BytesMut,
}

#[derive(Clone, Debug)]
struct SegmentInfo {
    sequence: u64,
    name: String,
    /// Largest entry index written to this segment, if any.
    max_entry_index: Option<u64>,
    /// Bytes of the header and carried-over state at its start.
    opening_bytes: u64,
}

struct Shared<L> {
    active: Arc<L>,
    active_sequence: u64,
    /// Bytes of the active segment written by device appends that have returned.
    appended_bytes: u64,
    // Invariant: durable_bytes <= appended_bytes; both only grow within a segment.
    durable_bytes: u64,
    failure: Option<String>,
}

/// One record waiting to be framed and written.
#[derive(Clone, Debug)]
struct PendingRecord {
    kind: RecordKind,
    index: u64,
    term: u64,
    payload: Bytes,
}

pub(crate) fn segment_name(sequence: u64, first_index: u64) -> String {
    format!("{sequence:016x}-{first_index:016x}.wal")
}

/// `(sequence, first index)` of a segment file name; `None` for other files.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (sequence, first_index) = stem.split_once('-')?;
    if sequence.len() != 16 || first_index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(sequence, 16).ok()?,
        u64::from_str_radix(first_index, 16).ok()?,
    ))
}

impl<D: Dir> Wal<D> {
    /// Recovers the log in `dir` (creating it if empty) and opens it for appending.
    /// See `recovery` for what happens to damaged data.
    pub async fn open(dir: D, options: WalOptions) -> Result<(Wal<D>, Recovered), WalError> {
        assert!(
            (SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&options.segment_size_bytes),
            "segment size {} is outside {SEGMENT_SIZE_BYTES_MIN}..={SEGMENT_SIZE_BYTES_MAX}",
            options.segment_size_bytes
        );
        open::open(dir, options).await
    }

    /// Appends `entries` and then `hard_state`. Entries must have consecutive
    /// indexes, the first at most one past the last index and after the
    /// snapshot marker; breaking that is a caller bug and panics.
    ///
    /// Appending only queues the records (writing them out once more than
    /// `PENDING_BYTES_MAX` wait); `sync` writes everything queued in one device
    /// append and makes it durable. So concurrent appenders share both the
    /// write and the fsync.
    pub async fn append(&self, entries: &[WalEntry], hard_state: Option<HardState>) -> Result<(), WalError> {
        let mut records: Vec<PendingRecord> = entries
            .iter()
            .map(|entry| PendingRecord {
                kind: RecordKind::Entry,
                index: entry.index,
                term: entry.term,
                payload: entry.data.clone(),
            })
            .collect();
        if let Some(hard_state) = hard_state {
            records.push(PendingRecord {
                kind: RecordKind::HardState,
                index: hard_state.commit,
                term: hard_state.term,
                payload: Bytes::copy_from_slice(&hard_state.vote.to_le_bytes()),
            });
        }
        self.queue(records).await
    }

    pub async fn append_entries(&self, entries: &[WalEntry]) -> Result<(), WalError> {
        self.append(entries, None).await
    }

    pub async fn append_hard_state(&self, hard_state: HardState) -> Result<(), WalError> {
        self.append(&[], Some(hard_state)).await
    }

    /// Records a snapshot through `marker.index`: entries up to it are no longer
    /// replayed, and segments holding only such entries may be compacted.
    pub async fn append_snapshot_marker(&self, marker: SnapshotMarker) -> Result<(), WalError> {
        let record = PendingRecord {
            kind: RecordKind::SnapshotMarker,
            index: marker.index,
            term: marker.term,
            payload: marker.payload,
        };
        self.queue(vec![record]).await
    }

    /// Drops entries from `from_index` on (they stay on disk; recovery skips them).
    pub async fn truncate_suffix(&self, from_index: u64) -> Result<(), WalError> {
        let record = PendingRecord {
            kind: RecordKind::Truncate,
            index: from_index,
            term: 0,
            payload: Bytes::new(),
        };
        self.queue(vec![record]).await
    }

    /// Makes every append that returned before this call durable. Concurrent
    /// callers share the device write and the fsync.
    pub async fn sync(&self) -> Result<(), WalError> {
        self.flush().await?;
        let (device, sequence, target_bytes) = {
            let shared = self.lock_shared();
            shared.check()?;
            if shared.durable_bytes >= shared.appended_bytes {
                return Ok(());
            }
            (shared.active.clone(), shared.active_sequence, shared.appended_bytes)
        };
        device.sync().await.map_err(|error| self.fail("sync", error))?;
        let mut shared = self.lock_shared();
        if shared.active_sequence == sequence {
            shared.durable_bytes = shared.durable_bytes.max(target_bytes);
        }
        Ok(())
    }

    /// Removes the oldest segments whose entries all lie at or below
    /// `through_index`; never the active one. Returns how many were removed.
    /// Syncs first, so the snapshot marker covering them is durable before they
    /// go. `through_index` must not pass the snapshot marker (a caller bug
    /// panics), and the snapshot itself must already be durable.
    pub async fn compact(&self, through_index: u64) -> Result<usize, WalError> {
        let snapshot_index = self.lock_log().state.snapshot_index();
        assert!(
            through_index <= snapshot_index,
            "compaction through {through_index} passes the snapshot marker at {snapshot_index}"
        );
        // The marker that makes these entries unnecessary must be durable
        // before they are gone, or a crash could leave neither.
        self.sync().await?;
        let mut files = self.files.lock().await;
        let removable = files.segments[..files.segments.len() - 1]
            .iter()
            .take_while(|segment| segment.max_entry_index.is_none_or(|max| max <= through_index))
            .count();
        // Oldest first, so a crash part-way leaves a contiguous run of segments.
        for segment in &files.segments[..removable] {
            self.dir
                .remove(&segment.name)
                .await
                .map_err(|error| self.fail("remove segment", error))?;
        }
        if removable > 0 {
            self.dir
                .sync_dir()
                .await
                .map_err(|error| self.fail("directory fsync", error))?;
            files.segments.drain(..removable);
        }
        Ok(removable)
    }

    /// The index the next entry follows (last entry, or truncation/snapshot point).
    pub fn last_index(&self) -> u64 {
        self.lock_log().state.last_index
    }

    /// File names of the live segments, oldest first.
    pub async fn segment_names(&self) -> Vec<String> {
        self.files
            .lock()
            .await
            .segments
            .iter()
            .map(|segment| segment.name.clone())
            .collect()
    }

    pub fn dir(&self) -> &D {
        &self.dir
    }

    fn lock_log(&self) -> MutexGuard<'_, LogBuffer> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_shared(&self) -> MutexGuard<'_, Shared<D::Log>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the first I/O error; every later call fails with `Failed`.
    fn fail(&self, operation: &str, source: io::Error) -> WalError {
        let mut shared = self.lock_shared();
        shared.failure.get_or_insert_with(|| format!("{operation}: {source}"));
        WalError::Io {
            operation: operation.to_string(),
            source,
        }
    }

    /// Checks `records` against the log's rules and queues them.
    async fn queue(&self, records: Vec<PendingRecord>) -> Result<(), WalError> {
        let batch_bytes: u64 = records
            .iter()
            .map(|record| encoded_len(record.payload.len()) as u64)
            .sum();
        if batch_bytes > BATCH_BYTES_MAX {
            return Err(WalError::BatchTooLarge {
                bytes: batch_bytes,
                limit: BATCH_BYTES_MAX,
            });
        }
        let flush_now = {
            let mut log = self.lock_log();
            self.lock_shared().check()?;
            let mut state = log.state.clone();
            for record in &records {
                if let Some(problem) = rule_problem(&state, record) {
                    panic!("WAL append breaks the log's rules: {problem}");
                }
                apply_to_state(&mut state, record);
            }
            log.state = state;
            log.pending.extend(records);
            log.pending_bytes += batch_bytes;
            log.pending_bytes > PENDING_BYTES_MAX
        };
        if flush_now {
            self.flush().await?;
        }
        Ok(())
    }

    /// Frames every queued record and writes it to the active segment (one
    /// device append per segment), rotating when a segment fills up, without
    /// waiting for durability. `sync` does this first; calling it earlier lets
    /// the write overlap other work.
    pub async fn flush(&self) -> Result<(), WalError> {
        let mut files = self.files.lock().await;
        let records = {
            let mut log = self.lock_log();
            log.pending_bytes = 0;
            std::mem::take(&mut log.pending)
        };
        self.lock_shared().check()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut files.buffer);
        for record in &records {
            let size = encoded_len(record.payload.len()) as u64;
            let appended = self.lock_shared().appended_bytes;
            let opening = files
                .segments
                .last()
                .expect("a WAL always has an active segment")
                .opening_bytes;
            let end = appended + buffer.len() as u64;
            if end + size > self.options.segment_size_bytes && end > opening {
                self.write_out(&mut buffer).await?;
                self.rotate(&mut files).await?;
            }
            let (sequence, base, durable) = {
                let shared = self.lock_shared();
                (shared.active_sequence, shared.appended_bytes, shared.durable_bytes)
            };
            frame(&mut buffer, sequence, base, durable, record);
            apply_to_state(&mut files.flushed_state, record);
            if record.kind == RecordKind::Entry {
                let segment = files.segments.last_mut().expect("a WAL always has an active segment");
                segment.max_entry_index = Some(
                    segment
                        .max_entry_index
                        .map_or(record.index, |max| max.max(record.index)),
                );
            }
        }
        self.write_out(&mut buffer).await?;
        files.buffer = buffer;
        Ok(())
    }

    /// Appends the framed bytes in `buffer` to the active segment.
    async fn write_out(&self, buffer: &mut BytesMut) -> Result<(), WalError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let bytes = buffer.split().freeze();
        let (device, base) = {
            let shared = self.lock_shared();
            (shared.active.clone(), shared.appended_bytes)
        };
        let length = bytes.len() as u64;
        let offset = device.append(bytes).await.map_err(|error| self.fail("append", error))?;
        assert_eq!(offset, base, "the device appended at {offset}, the WAL expected {base}");
        self.lock_shared().appended_bytes = base + length;
        Ok(())
    }

    /// Seals the active segment (cuts the device's zeros past its logical end
    /// and syncs it in full) and starts the next one.
    async fn rotate(&self, files: &mut Files) -> Result<(), WalError> {
        let old = self.lock_shared().active.clone();
        old.truncate(old.len())
            .await
            .map_err(|error| self.fail("cut before rotation", error))?;
        old.sync()
            .await
            .map_err(|error| self.fail("sync before rotation", error))?;
        let sequence = files
            .segments
            .last()
            .expect("a WAL always has an active segment")
            .sequence
            + 1;
        let first_index = files.flushed_state.last_index + 1;
        let (device, info) = open::create_segment(
            &self.dir,
            self.options.segment_size_bytes,
            &files.flushed_state,
            sequence,
            first_index,
        )
        .await
        .map_err(|(operation, error)| self.fail(operation, error))?;
        let opening_bytes = info.opening_bytes;
        files.segments.push(info);
        let mut shared = self.lock_shared();
        shared.active = Arc::new(device);
        shared.active_sequence = sequence;
        shared.appended_bytes = opening_bytes;
        shared.durable_bytes = opening_bytes;
        Ok(())
    }
}

impl<L> Shared<L> {
    fn check(&self) -> Result<(), WalError> {
        match &self.failure {
            Some(failure) => Err(WalError::Failed(failure.clone())),
            None => Ok(()),
        }
    }
}

/// Why `record` may not follow `state`, if it may not.
fn rule_problem(state: &LogState, record: &PendingRecord) -> Option<String> {
    match record.kind {
        RecordKind::Entry => state.entry_problem(record.index),
        RecordKind::Truncate => state.truncate_problem(record.index),
        RecordKind::SnapshotMarker => state.marker_problem(record.index),
        RecordKind::HardState | RecordKind::SegmentHeader => None,
    }
}

fn apply_to_state(state: &mut LogState, record: &PendingRecord) {
    match record.kind {
        RecordKind::Entry => state.apply_entry(record.index),
        RecordKind::Truncate => state.apply_truncate(record.index),
        RecordKind::SnapshotMarker => state.apply_marker(SnapshotMarker {
            index: record.index,
            term: record.term,
            payload: record.payload.clone(),
        }),
        RecordKind::HardState => {
            let vote = u64::from_le_bytes(record.payload[..].try_into().expect("a hard state payload is its vote"));
            state.hard_state = Some(HardState {
                term: record.term,
                vote,
                commit: record.index,
            });
        }
        RecordKind::SegmentHeader => {}
    }
}

/// Frames `record` at the end of `buffer`, which will land at `base` in the segment.
fn frame(buffer: &mut BytesMut, segment: u64, base: u64, durable: u64, record: &PendingRecord) {
    let header = Header {
        kind: record.kind,
        payload_len: record.payload.len() as u32,
        segment,
        index: record.index,
        term: record.term,
        offset: u32::try_from(base + buffer.len() as u64)
            .expect("segment offsets fit u32 (see SEGMENT_SIZE_BYTES_MAX)"),
        durable_offset: durable as u32,
    };
    encode(buffer, &header, &record.payload);
}

/// The segment header, then the hard state and snapshot marker carried over.
fn opening_records(sequence: u64, first_index: u64, state: &LogState) -> Bytes {
    let mut magic = Vec::with_capacity(12);
    magic.extend_from_slice(SEGMENT_MAGIC);
    magic.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut records = vec![PendingRecord {
        kind: RecordKind::SegmentHeader,
        index: first_index,
        term: 0,
        payload: Bytes::from(magic),
    }];
    if let Some(hard_state) = state.hard_state {
        records.push(PendingRecord {
            kind: RecordKind::HardState,
            index: hard_state.commit,
            term: hard_state.term,
            payload: Bytes::copy_from_slice(&hard_state.vote.to_le_bytes()),
        });
    }
    if let Some(marker) = &state.snapshot_marker {
        records.push(PendingRecord {
            kind: RecordKind::SnapshotMarker,
            index: marker.index,
            term: marker.term,
            payload: marker.payload.clone(),
        });
    }
    let mut buffer = BytesMut::new();
    for record in &records {
        frame(&mut buffer, sequence, 0, 0, record);
    }
    buffer.freeze()
}

#[cfg(test)]
mod tests;
