//! Raft's durable log on the WAL: what `Ready` says to persist goes here, and a
//! restarting node gets its `Persisted` state back from here.
//!
//! The WAL knows bytes, not Raft: an entry's kind travels as the first byte of
//! its WAL payload.

use bytes::{BufMut, BytesMut};

use crate::io::Dir;
use crate::raft::{Entry, EntryKind, HardState, Index, NodeId, Persisted, Ready, Term};
use crate::wal::{self, Recovered, Wal, WalEntry, WalError, WalOptions};

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
    wal: Wal<D>,
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
        } = recovered;
        if snapshot_marker.is_some() {
            // Log compaction arrives with snapshots; until then no marker is ever written.
            return Err(WalError::Failed(
                "this WAL holds a snapshot marker, which this braid version cannot restore".to_string(),
            ));
        }
        let entries = entries.into_iter().map(from_wal).collect::<Result<Vec<_>, _>>()?;
        let hard_state = hard_state.map_or(HardState::default(), |state| HardState {
            term: Term(state.term),
            vote: NodeId(state.vote),
            commit: Index(state.commit),
        });
        let persisted = Persisted {
            hard_state,
            entries,
            ..Persisted::default()
        };
        Ok((LogStore { wal }, persisted))
    }

    /// Makes `ready`'s entries and hard state durable (one append, one sync).
    pub async fn persist(&self, ready: &Ready) -> Result<(), WalError> {
        if self.append_without_sync(ready).await? {
            self.wal.sync().await?;
        }
        Ok(())
    }

    /// Queues `ready`'s records without making them durable. Only a planted
    /// simulation bug calls this directly; returns whether anything was queued.
    pub async fn append_without_sync(&self, ready: &Ready) -> Result<bool, WalError> {
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
        self.wal.flush().await?;
        Ok(true)
    }
}
