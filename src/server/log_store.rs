//! Raft's durable log on the WAL: what `Ready` says to persist goes here, and a
//! restarting node gets its `Persisted` state back from here.
//!
//! The WAL knows bytes, not Raft: an entry's kind travels as the first byte of
//! its WAL payload.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::io::Dir;
use crate::raft::{
    ConfState, Entry, EntryKind, HardState, Index, NodeId, Persisted, Ready, Snapshot, SnapshotMeta, Term,
};
use crate::wal::{self, Recovered, SnapshotMarker, Wal, WalEntry, WalError, WalOptions};

const KIND_NORMAL: u8 = 0;
const KIND_CONF_CHANGE: u8 = 1;

fn to_wal(entry: &Entry) -> WalEntry {
    let mut data = BytesMut::with_capacity(entry.data.len() + 1);
    data.put_u8(match entry.kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::ConfChange => KIND_CONF_CHANGE,
    });
    data.put_slice(&entry.data);
    WalEntry {
        index: entry.index.0,
        term: entry.term.0,
        data: data.freeze(),
    }
}

fn from_wal(entry: WalEntry) -> Result<Entry, WalError> {
    let corrupt = |reason: &str| WalError::Failed(format!("WAL entry {} {reason}", entry.index));
    let kind = match entry.data.first() {
        Some(&KIND_NORMAL) => EntryKind::Normal,
        Some(&KIND_CONF_CHANGE) => EntryKind::ConfChange,
        Some(_) => return Err(corrupt("has an unknown kind")),
        None => return Err(corrupt("is empty")),
    };
    Ok(Entry {
        index: Index(entry.index),
        term: Term(entry.term),
        kind,
        data: entry.data.slice(1..),
    })
}

pub struct LogStore<D: Dir> {
    /// Shared with the `PendingSync`s handed out by `write`.
    wal: Arc<Wal<D>>,
    /// (term, vote) of the last hard state written: a round that changes
    /// neither and appends no entry needs no fsync (see `write`).
    written_term_vote: (u64, u64),
}

impl<D: Dir> LogStore<D> {
    /// Opens the WAL and returns what Raft needs to restart (with `applied`
    /// still to be filled in from the state machine).
    pub async fn open(dir: D, options: WalOptions) -> Result<(LogStore<D>, Persisted), WalError> {
        let (wal, recovered) = Wal::open(dir, options).await?;
        let Recovered {
            hard_state,
            snapshot_marker,
            entries,
            repairs: _,
            zero_tail_bytes: _,
        } = recovered;
        let snapshot = match snapshot_marker {
            None => Snapshot::default(),
            Some(marker) => Snapshot {
                meta: SnapshotMeta {
                    index: Index(marker.index),
                    term: Term(marker.term),
                    conf_state: decode_conf_state(marker.payload).ok_or_else(|| {
                        WalError::Failed(format!(
                            "the snapshot marker at {} holds no readable configuration",
                            marker.index
                        ))
                    })?,
                },
                data: Bytes::new(),
            },
        };
        let entries = entries.into_iter().map(from_wal).collect::<Result<Vec<_>, _>>()?;
        let hard_state = hard_state.map_or(HardState::default(), |state| HardState {
            term: Term(state.term),
            vote: NodeId(state.vote),
            commit: Index(state.commit),
        });
        let written_term_vote = (hard_state.term.0, hard_state.vote.0);
        let persisted = Persisted {
            hard_state,
            snapshot,
            entries,
            ..Persisted::default()
        };
        Ok((
            LogStore {
                wal: Arc::new(wal),
                written_term_vote,
            },
            persisted,
        ))
    }

    /// Writes `ready`'s entries and hard state to the WAL (one device append)
    /// and returns the sync that makes them durable, which the caller awaits
    /// while it applies committed entries (`raft/mod.rs` allows both at once).
    ///
    /// Returns `None` when nothing must be synced: a hard state that only
    /// moves the commit index is written and becomes durable with the next
    /// sync, as etcd's `MustSync` decides. Nothing promised depends on it: a
    /// restart with an older commit index learns it again from the leader, and
    /// Raft clamps the applied index to it, so mvcc's exactly-once guard skips
    /// the entries handed out again. This saves the leader an fsync per write
    /// between the quorum's acknowledgement and the apply.
    pub async fn write(&mut self, ready: &Ready) -> Result<Option<PendingSync<D>>, WalError> {
        let term_vote = ready.hard_state.map(|state| (state.term.0, state.vote.0));
        let must_sync =
            !ready.entries.is_empty() || term_vote.is_some_and(|term_vote| term_vote != self.written_term_vote);
        let written = self.append_without_sync(ready).await?;
        Ok((written && must_sync).then(|| PendingSync {
            wal: Arc::clone(&self.wal),
        }))
    }

    /// Makes the log start after `meta` (a snapshot received from the leader
    /// and already durable in the data directory): everything after it goes
    /// (it may disagree with the leader), everything up to it is covered.
    pub async fn install_snapshot(&self, meta: &SnapshotMeta) -> Result<(), WalError> {
        self.wal.truncate_suffix(meta.index.0 + 1).await?;
        self.wal.append_snapshot_marker(marker(meta)).await?;
        self.wal.sync().await
    }

    /// Records that the state machine covers the log through `meta` (durably:
    /// the caller made sure) and removes the segments it makes unnecessary.
    /// Returns how many segments were removed.
    pub async fn compact(&self, meta: &SnapshotMeta) -> Result<usize, WalError> {
        self.wal.append_snapshot_marker(marker(meta)).await?;
        self.wal.compact(meta.index.0).await
    }

    /// Queues `ready`'s records without making them durable. Only a planted
    /// simulation bug calls this directly; returns whether anything was queued.
    pub async fn append_without_sync(&mut self, ready: &Ready) -> Result<bool, WalError> {
        if ready.entries.is_empty() && ready.hard_state.is_none() {
            return Ok(false);
        }
        let entries: Vec<WalEntry> = ready.entries.iter().map(to_wal).collect();
        let hard_state = ready.hard_state.map(|state| wal::HardState {
            term: state.term.0,
            vote: state.vote.0,
            commit: state.commit.0,
        });
        self.wal.append(&entries, hard_state).await?;
        if let Some(state) = hard_state {
            self.written_term_vote = (state.term, state.vote);
        }
        self.wal.flush().await?;
        Ok(true)
    }
}

/// A WAL sync that `LogStore::write` owes its caller; owns what it needs, so
/// it can run alongside work that borrows the node.
#[must_use = "the records are not durable until the sync is awaited"]
pub struct PendingSync<D: Dir> {
    wal: Arc<Wal<D>>,
}

impl<D: Dir> PendingSync<D> {
    pub async fn wait(self) -> Result<(), WalError> {
        self.wal.sync().await
    }
}

fn marker(meta: &SnapshotMeta) -> SnapshotMarker {
    SnapshotMarker {
        index: meta.index.0,
        term: meta.term.0,
        payload: encode_conf_state(&meta.conf_state),
    }
}

/// Voters then learners, each a little-endian u32 count and u64 member IDs.
fn encode_conf_state(conf: &ConfState) -> Bytes {
    let mut bytes = BytesMut::with_capacity(8 + 8 * (conf.voters.len() + conf.learners.len()));
    for group in [&conf.voters, &conf.learners] {
        bytes.put_u32_le(group.len() as u32);
        for member in group {
            bytes.put_u64_le(member.0);
        }
    }
    bytes.freeze()
}

fn decode_conf_state(mut bytes: Bytes) -> Option<ConfState> {
    let mut groups = [Vec::new(), Vec::new()];
    for group in &mut groups {
        if bytes.remaining() < 4 {
            return None;
        }
        let count = bytes.get_u32_le() as usize;
        if bytes.remaining() < count.checked_mul(8)? {
            return None;
        }
        group.extend((0..count).map(|_| NodeId(bytes.get_u64_le())));
    }
    let [voters, learners] = groups;
    (!bytes.has_remaining()).then(|| ConfState::new(voters, learners))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_survive_the_marker_payload() {
        let conf = ConfState::new([NodeId(3), NodeId(1)], [NodeId(9)]);
        assert_eq!(decode_conf_state(encode_conf_state(&conf)), Some(conf));
        assert_eq!(
            decode_conf_state(encode_conf_state(&ConfState::default())),
            Some(ConfState::default())
        );
        let encoded = encode_conf_state(&ConfState::new([NodeId(1)], []));
        assert_eq!(decode_conf_state(encoded.slice(..encoded.len() - 1)), None);
        let mut longer = encoded.to_vec();
        longer.push(0);
        assert_eq!(decode_conf_state(Bytes::from(longer)), None);
        assert_eq!(decode_conf_state(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])), None);
    }
}
