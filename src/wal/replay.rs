//! The rules every record obeys, shared by the writer (which asserts them) and
//! recovery (which refuses a log that breaks them).

use bytes::Bytes;

use super::record::{Header, RecordKind};
use super::{HardState, SnapshotMarker, WalEntry};

/// What the log says so far, record by record.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogState {
    /// The index the next entry follows: the last entry's index, or the point
    /// a truncation or snapshot marker left the log at.
    pub last_index: u64,
    pub hard_state: Option<HardState>,
    pub snapshot_marker: Option<SnapshotMarker>,
}

impl LogState {
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_marker.as_ref().map_or(0, |marker| marker.index)
    }

    /// Why an entry at `index` may not be appended now, if it may not.
    /// An index at or below `last_index` overwrites the tail from there on.
    pub fn entry_problem(&self, index: u64) -> Option<String> {
        if index > self.last_index + 1 {
            Some(format!("entry {index} leaves a gap after {}", self.last_index))
        } else if index <= self.snapshot_index() {
            Some(format!(
                "entry {index} is not after the snapshot at {}",
                self.snapshot_index()
            ))
        } else {
            None
        }
    }

    pub fn truncate_problem(&self, from_index: u64) -> Option<String> {
        (from_index <= self.snapshot_index()).then(|| {
            format!(
                "truncation from {from_index} reaches into the snapshot at {}",
                self.snapshot_index()
            )
        })
    }

    pub fn marker_problem(&self, index: u64) -> Option<String> {
        (index < self.snapshot_index()).then(|| {
            format!(
                "snapshot marker {index} is older than the snapshot at {}",
                self.snapshot_index()
            )
        })
    }

    pub fn apply_entry(&mut self, index: u64) {
        self.last_index = index;
    }

    pub fn apply_truncate(&mut self, from_index: u64) {
        self.last_index = self.last_index.min(from_index - 1);
    }

    pub fn apply_marker(&mut self, marker: SnapshotMarker) {
        self.last_index = self.last_index.max(marker.index);
        self.snapshot_marker = Some(marker);
    }
}

/// Rebuilds the log from records in write order.
#[derive(Default)]
pub(crate) struct Replay {
    pub state: LogState,
    /// Entries after the snapshot marker.
    // Invariant: indexes are consecutive.
    pub entries: Vec<WalEntry>,
}

impl Replay {
    /// Applies one record (not a segment header); `Err` says which rule it breaks.
    pub fn apply(&mut self, header: &Header, payload: Bytes) -> Result<(), String> {
        match header.kind {
            RecordKind::SegmentHeader => return Err("segment header in the middle of a segment".to_string()),
            RecordKind::Entry => {
                if let Some(problem) = self.state.entry_problem(header.index) {
                    return Err(problem);
                }
                self.drop_from(header.index);
                self.entries.push(WalEntry {
                    index: header.index,
                    term: header.term,
                    data: payload,
                });
                self.state.apply_entry(header.index);
            }
            RecordKind::HardState => {
                let vote = <[u8; 8]>::try_from(&payload[..])
                    .map_err(|_| format!("hard state payload has {} bytes, not 8", payload.len()))?;
                let hard_state = HardState {
                    term: header.term,
                    vote: u64::from_le_bytes(vote),
                    commit: header.index,
                };
                self.state.hard_state = Some(hard_state);
            }
            RecordKind::SnapshotMarker => {
                let marker = SnapshotMarker {
                    index: header.index,
                    term: header.term,
                    payload,
                };
                if let Some(problem) = self.state.marker_problem(marker.index) {
                    return Err(problem);
                }
                let covered = self.entries.partition_point(|entry| entry.index <= marker.index);
                self.entries.drain(..covered);
                self.state.apply_marker(marker);
            }
            RecordKind::Truncate => {
                if let Some(problem) = self.state.truncate_problem(header.index) {
                    return Err(problem);
                }
                self.drop_from(header.index);
                self.state.apply_truncate(header.index);
            }
        }
        Ok(())
    }

    fn drop_from(&mut self, index: u64) {
        let keep = self.entries.partition_point(|entry| entry.index < index);
        self.entries.truncate(keep);
    }
}
