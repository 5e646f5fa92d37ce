//! Raft snapshots in the node: compacting the log, streaming the state to a
//! follower behind the compacted log, and installing such a stream.
//!
//! **Compaction.** Every `snapshot_count` applied entries the node compacts
//! Raft's log and the WAL through `applied - snapshot_catchup_entries` (etcd's
//! `--snapshot-count` and `SnapshotCatchUpEntries`). The state file is the
//! snapshot: it holds everything applied, so compaction copies nothing.
//!
//! **Sending.** Raft is configured with `live_snapshots`: a snapshot message is
//! positioned at the leader's applied index, and the node streams its current
//! B+tree (a pinned read version, while writes go on) after applying the round
//! that produced the message, so the image is never behind the message. The
//! image may be ahead of it: the follower's mvcc skips entries it already holds.
//!
//! **Installing**, in an order that survives a crash at any point:
//! 1. the image is checked page by page while it is rebuilt in memory (before
//!    Raft sees the message, so a damaged image changes nothing);
//! 2. the image is written to `snapshot-<index>.incoming` and synced;
//! 3. the WAL drops its tail and records the snapshot (synced);
//! 4. the state file takes the image's contents in one commit, and the lessor,
//!    member table and alarms are reloaded from it;
//! 5. the incoming file is removed.
//!
//! A restart between 3 and 5 finds a WAL snapshot ahead of the state file and
//! finishes step 4 from the incoming file (`recover_incoming`).

use std::time::Duration;

use bytes::Bytes;

use super::{NodeError, NodeLoop};
use crate::btree::{BTree, BTreeOptions, SnapshotRestore};
use crate::io::{Clock, Dir, LogDevice, MemDir, MemPages};
use crate::mvcc::{BTreeBackend, MvccStore};
use crate::raft::{Index, Message, MessageKind, Snapshot};
use crate::server::alarms::AlarmSet;
use crate::server::membership::MemberTable;

/// Entries the leader keeps after compacting, so a follower that is only a
/// little behind catches up from the log (etcd's `SnapshotCatchUpEntries`).
pub const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: u64 = 5000;

const INCOMING_PREFIX: &str = "snapshot-";
const INCOMING_SUFFIX: &str = ".incoming";

fn incoming_name(index: u64) -> String {
    format!("{INCOMING_PREFIX}{index:016x}{INCOMING_SUFFIX}")
}

fn parse_incoming_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(INCOMING_PREFIX)?.strip_suffix(INCOMING_SUFFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

fn state_error<E: std::fmt::Display>(context: &str) -> impl Fn(E) -> NodeError + '_ {
    move |error| NodeError::State(format!("{context}: {error}"))
}

/// Rebuilds `image` in memory, checking every page, the trailer and the tree's shape.
async fn rebuild(image: &[u8], page_size: usize) -> Result<BTree<MemPages>, String> {
    let pages = MemDir::new()
        .open_pages("snapshot", page_size)
        .await
        .map_err(|error| error.to_string())?;
    let mut restore = SnapshotRestore::new(pages, BTreeOptions { page_size }).map_err(|error| error.to_string())?;
    restore.feed(image).await.map_err(|error| error.to_string())?;
    restore.finish().await.map_err(|error| error.to_string())
}

/// Finishes an install a crash interrupted: the WAL's snapshot at
/// `snapshot_index` is ahead of the state file, so the state file takes the
/// image kept in the data directory. Removes images no longer needed.
pub(super) async fn recover_incoming<D: Dir, B: crate::mvcc::Backend>(
    dir: &D,
    store: &MvccStore<B>,
    snapshot_index: u64,
    page_size: usize,
) -> Result<(), NodeError> {
    let applied = store.consistent_index().index;
    if snapshot_index > applied {
        let name = incoming_name(snapshot_index);
        let file = dir.open_log(&name).await.map_err(|error| {
            NodeError::State(format!(
                "the WAL starts after a snapshot at {snapshot_index} but the state file has applied only \
                 {applied} and {name} cannot be read: {error}"
            ))
        })?;
        let image = file
            .read_at(0, file.len() as usize)
            .await
            .map_err(|error| NodeError::State(format!("reading {name}: {error}")))?;
        let tree = rebuild(&image, page_size)
            .await
            .map_err(state_error("the kept snapshot image is damaged"))?;
        store
            .install_snapshot(&crate::mvcc::Backend::read(&BTreeBackend::new(tree)))
            .await
            .map_err(|error| NodeError::State(error.to_string()))?;
        eprintln!("braid: finished installing the snapshot at {snapshot_index} after a restart");
    }
    remove_incoming(dir).await
}

async fn remove_incoming<D: Dir>(dir: &D) -> Result<(), NodeError> {
    let names = dir.list().map_err(|error| NodeError::State(error.to_string()))?;
    let mut removed = false;
    for name in names.iter().filter(|name| parse_incoming_name(name).is_some()) {
        dir.remove(name)
            .await
            .map_err(|error| NodeError::State(format!("removing {name}: {error}")))?;
        removed = true;
    }
    if removed {
        dir.sync_dir()
            .await
            .map_err(|error| NodeError::State(error.to_string()))?;
    }
    Ok(())
}

/// A received snapshot whose image passed its checks, waiting for Raft to accept it.
pub(super) struct IncomingImage {
    index: Index,
    image: Bytes,
    tree: BTree<MemPages>,
}

impl<D: Dir, C: Clock> NodeLoop<D, C> {
    /// Checks a received snapshot's image; returns the message (without the
    /// image, which waits in `incoming`) for Raft, or `None` if it is damaged.
    pub(super) async fn receive_snapshot(&mut self, mut message: Message) -> Option<Message> {
        let snapshot = message.snapshot.as_mut()?;
        let image = std::mem::take(&mut snapshot.data);
        match rebuild(&image, self.options.page_size).await {
            Ok(tree) => {
                self.incoming = Some(IncomingImage {
                    index: snapshot.meta.index,
                    image,
                    tree,
                });
                Some(message)
            }
            Err(error) => {
                eprintln!(
                    "braid: refused a snapshot at {} from {:x}: {error}",
                    snapshot.meta.index.0, message.from.0
                );
                None
            }
        }
    }

    /// Makes Raft's restored snapshot the member's state (see the module docs).
    pub(super) async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), NodeError> {
        let index = snapshot.meta.index;
        let incoming = self.incoming.take().filter(|incoming| incoming.index == index);
        let Some(incoming) = incoming else {
            panic!("Raft restored a snapshot at {} that the node did not receive", index.0);
        };
        let name = incoming_name(index.0);
        let file = self
            .dir
            .open_log(&name)
            .await
            .map_err(state_error("creating the snapshot image"))?;
        file.truncate(0)
            .await
            .map_err(state_error("writing the snapshot image"))?;
        file.append(incoming.image)
            .await
            .map_err(state_error("writing the snapshot image"))?;
        file.sync().await.map_err(state_error("syncing the snapshot image"))?;
        self.dir
            .sync_dir()
            .await
            .map_err(state_error("syncing the data directory"))?;
        self.log.install_snapshot(&snapshot.meta).await?;
        let source = BTreeBackend::new(incoming.tree);
        self.store
            .install_snapshot(&crate::mvcc::Backend::read(&source))
            .await
            .map_err(|error| NodeError::State(error.to_string()))?;
        self.reload_after_snapshot()?;
        remove_incoming(&self.dir).await?;
        eprintln!(
            "braid: member {:x} installed a snapshot at index {} (revision {})",
            self.options.id.0,
            index.0,
            self.store.current_revision().0
        );
        if let Some(observer) = &self.observer {
            observer.installed_snapshot(self.options.id, self.store.consistent_index().index);
        }
        Ok(())
    }

    /// The lessor, member table and alarms live in the state file: read them again.
    fn reload_after_snapshot(&mut self) -> Result<(), NodeError> {
        let read = crate::mvcc::Backend::read(self.store.backend());
        self.leases.reload(&self.options, &self.store)?;
        self.members.table = MemberTable::load(&read).map_err(|error| NodeError::State(error.to_string()))?;
        self.sync_members();
        self.alarms = AlarmSet::load(&read).map_err(|error| NodeError::State(error.to_string()))?;
        self.handle.publish_alarms(self.alarms.clone());
        Ok(())
    }

    /// Streams the state to followers that Raft decided need a snapshot. Called
    /// after the round's entries are applied, so the image covers each message.
    pub(super) fn send_snapshots(&mut self, messages: Vec<Message>) {
        for mut message in messages {
            debug_assert_eq!(message.kind, MessageKind::Snapshot);
            // Raft positioned the message at its applied index when it decided;
            // the image is the state as of now, maybe a few entries later.
            // Position the message exactly at the image, so the follower's
            // state file and WAL agree after installing it.
            let applied = Index(self.store.consistent_index().index);
            let Some(meta) = self.raft.snapshot_meta_at(applied) else {
                // Just after a restart Raft may hand out again entries the
                // state file already holds (its commit index was not synced:
                // `LogStore::write`); until it has, the image is ahead of
                // every position Raft can name. Raft retries the snapshot.
                self.raft.report_snapshot(message.to, false);
                continue;
            };
            let position = meta.index.0;
            if let Some(snapshot) = message.snapshot.as_mut() {
                assert!(
                    snapshot.meta.index <= applied,
                    "a snapshot at {} would be sent with a state applied only to {}",
                    snapshot.meta.index.0,
                    applied.0
                );
                snapshot.meta = meta;
            }
            match self.store.backend().tree().read() {
                Ok(read) => {
                    let image = read.snapshot().map(|page| page.map_err(|error| error.to_string()));
                    eprintln!("braid: sending a snapshot at {position} to member {:x}", message.to.0);
                    self.transport.send_snapshot(message, image);
                }
                Err(error) => {
                    eprintln!("braid: cannot read the state to send a snapshot: {error}");
                    self.raft.report_snapshot(message.to, false);
                }
            }
        }
    }

    /// Compacts Raft's log and the WAL once `snapshot_count` entries were
    /// applied since the last time, keeping `snapshot_catchup_entries`.
    pub(super) async fn maybe_compact_log(&mut self) -> Result<(), NodeError> {
        let snapshot_index = self.raft.snapshot().meta.index.0;
        let count = self.options.snapshot_count.max(1);
        if self.durable_applied_index() < snapshot_index.saturating_add(count) {
            return Ok(());
        }
        // Raft can only compact what it handed out; after a restart that may
        // trail the state file for a moment (see `send_snapshots`).
        let applied = self.durable_applied_index().min(self.raft.status().applied_out.0);
        if applied < snapshot_index.saturating_add(count) {
            return Ok(());
        }
        let through = applied.saturating_sub(self.options.snapshot_catchup_entries);
        if through <= snapshot_index {
            return Ok(());
        }
        if let Err(error) = self.raft.compact(Index(through), Bytes::new()) {
            panic!("compacting through {through} (applied {applied}, snapshot {snapshot_index}) failed: {error:?}");
        }
        let started = self.clock.monotonic_ns();
        let removed = self.log.compact(&self.raft.snapshot().meta).await?;
        let took = Duration::from_nanos(self.clock.monotonic_ns().saturating_sub(started));
        eprintln!(
            "braid: member {:x} compacted its log through {through} (applied {applied}); removed {removed} WAL \
             segments in {took:?}",
            self.options.id.0
        );
        Ok(())
    }

    /// The applied index the state file holds durably: the WAL may be
    /// compacted through it.
    pub(super) fn durable_applied_index(&self) -> u64 {
        self.store.durable_consistent_index().index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_names_round_trip() {
        assert_eq!(parse_incoming_name(&incoming_name(0x1234)), Some(0x1234));
        assert_eq!(parse_incoming_name("snapshot-zz.incoming"), None);
        assert_eq!(parse_incoming_name("state.db"), None);
    }
}
