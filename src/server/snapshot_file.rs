//! Snapshot files as `etcdctl snapshot save` writes them from braid's Maintenance.Snapshot
//! stream (the B+tree's snapshot stream, then its SHA-256), and what `braid snapshot restore`
//! and `braid snapshot status` do with them.
//!
//! Restoring writes a fresh member's state file: the snapshot's pages, rebuilt and checked by
//! `btree::SnapshotRestore`, with the consistent index reset to 0. The restored member then
//! starts like any new member: its empty WAL makes Raft bootstrap the membership given on
//! its command line (one committed entry per member at term 1), and applying those entries
//! from index 1 changes no key. Every member restored from the same file therefore starts
//! from identical state at index 0, which is all a new cluster needs; etcd instead writes a
//! WAL whose snapshot index equals the member count, which braid's Raft would have to be
//! taught to load. The revision, keys, leases and alarms carry over; the member table does not
//! (the new cluster's bootstrap entries fill it).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::btree::{BTree, BTreeOptions, SnapshotRestore};
use crate::io::{Dir, MemDir, PageStore};
use crate::mvcc::{BTreeBackend, Backend, MvccConfig, MvccStore};
use crate::server::membership::MemberTable;
use crate::server::node::STATE_FILE;

/// The SHA-256 etcd's snapshot stream ends with.
const DIGEST_BYTES: usize = 32;
/// etcd's tools insist that a file with a digest is `n * 512 + 32` bytes long.
const ALIGNMENT_BYTES: usize = 512;

/// What a snapshot holds, for `braid snapshot status` (etcdctl's columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// crc32 of every backend entry (Maintenance.Hash of the snapshot's state).
    pub hash: u32,
    pub revision: i64,
    /// Entries in the state file (every revision of every key, plus metadata), like
    /// etcdctl's count of bbolt keys.
    pub total_keys: u64,
    /// Bytes of the payload (without the digest).
    pub total_bytes: u64,
}

/// Checks a saved snapshot file and returns its payload. With `skip_hash_check` the file
/// may also be a bare payload (no digest), as etcd allows for a copied state file.
pub fn verify_snapshot_file(file: &[u8], skip_hash_check: bool) -> Result<&[u8], String> {
    let has_digest = file.len() % ALIGNMENT_BYTES == DIGEST_BYTES;
    if !has_digest {
        if skip_hash_check {
            return Ok(file);
        }
        return Err(format!(
            "snapshot file of {} bytes has no SHA-256 digest (its size is not 512 × n + 32); \
             use --skip-hash-check to restore it anyway",
            file.len()
        ));
    }
    let (payload, digest) = file.split_at(file.len() - DIGEST_BYTES);
    if !skip_hash_check && Sha256::digest(payload).as_slice() != digest {
        return Err("snapshot file's SHA-256 does not match its content: the file is damaged".to_string());
    }
    Ok(payload)
}

/// Rebuilds the tree in `store` (which must be empty) from `payload`.
async fn rebuild<S: PageStore>(store: S, payload: &[u8], page_size: usize) -> Result<BTree<S>, String> {
    let mut restore = SnapshotRestore::new(store, BTreeOptions { page_size }).map_err(|error| error.to_string())?;
    restore
        .feed(payload)
        .await
        .map_err(|error| format!("not a braid snapshot: {error}"))?;
    restore
        .finish()
        .await
        .map_err(|error| format!("not a braid snapshot: {error}"))
}

async fn summarize<S: PageStore>(tree: BTree<S>, total_bytes: u64) -> Result<SnapshotSummary, String> {
    let total_keys = tree.stats().entry_count;
    let store = MvccStore::open(BTreeBackend::new(tree), MvccConfig::default())
        .await
        .map_err(|error| error.to_string())?;
    let hash = store.hash().map_err(|error| error.to_string())?;
    Ok(SnapshotSummary {
        hash: hash.hash,
        revision: store.current_revision().0,
        total_keys,
        total_bytes,
    })
}

/// Writes the state file of a member restored from `payload` into `dir` (a new member's
/// storage directory) and describes what it holds.
pub async fn restore_state_file<D: Dir>(dir: &D, payload: &[u8], page_size: usize) -> Result<SnapshotSummary, String> {
    if dir
        .list()
        .map_err(|error| error.to_string())?
        .iter()
        .any(|name| name == STATE_FILE)
    {
        return Err(format!(
            "{STATE_FILE} already exists: restore into a new data directory"
        ));
    }
    let pages = dir
        .open_pages(STATE_FILE, page_size)
        .await
        .map_err(|error| error.to_string())?;
    dir.sync_dir().await.map_err(|error| error.to_string())?;
    let tree = rebuild(pages, payload, page_size).await?;
    // Described before the reset, so it matches `describe_snapshot` of the same file.
    let summary = summarize(tree.clone(), payload.len() as u64).await?;
    let backend = BTreeBackend::new(tree);
    MvccStore::reset_consistent_index(&backend)
        .await
        .map_err(|error| error.to_string())?;
    // The old cluster's members are not the new cluster's: its bootstrap entries refill the table.
    let old_members = MemberTable::load(&backend.read()).map_err(|error| error.to_string())?;
    backend
        .apply(old_members.forget_all())
        .await
        .map_err(|error| error.to_string())?;
    Ok(summary)
}

/// Reads a snapshot's payload without writing anything to disk.
pub async fn describe_snapshot(payload: &[u8], page_size: usize) -> Result<SnapshotSummary, String> {
    let dir = MemDir::new();
    let pages = dir
        .open_pages(STATE_FILE, page_size)
        .await
        .map_err(|error| error.to_string())?;
    let tree = rebuild(pages, payload, page_size).await?;
    summarize(tree, payload.len() as u64).await
}

/// A payload plus its digest: the bytes `etcdctl snapshot save` writes (for tests).
pub fn snapshot_file_bytes(payload: &[u8]) -> Bytes {
    let mut file = payload.to_vec();
    file.extend_from_slice(&Sha256::digest(payload));
    Bytes::from(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{ConsistentIndex, PutRequest, WriteBatch};
    use crate::raft::{ConfChange, ConfChangeKind, NodeId};

    async fn payload_of_store(keys: usize) -> (Vec<u8>, i64) {
        let dir = MemDir::new();
        let pages = dir.open_pages(STATE_FILE, 4096).await.unwrap();
        let tree = BTree::open(pages, BTreeOptions { page_size: 4096 }).await.unwrap();
        let store = MvccStore::open(BTreeBackend::new(tree), MvccConfig::default())
            .await
            .unwrap();
        for index in 0..keys {
            let put = PutRequest::new(
                Bytes::from(format!("key-{index}")),
                Bytes::from(format!("value-{index}")),
            );
            let position = ConsistentIndex {
                index: index as u64 + 10,
                term: 2,
            };
            store
                .apply_put(position, put, &|_| true)
                .await
                .unwrap()
                .expect_applied()
                .unwrap();
        }
        // The old cluster's member table, which a restore must drop: one member, one removed.
        let mut table = MemberTable::default();
        let mut members = WriteBatch::new();
        for (kind, node) in [
            (ConfChangeKind::AddVoter, 7),
            (ConfChangeKind::AddVoter, 8),
            (ConfChangeKind::RemoveVoter, 8),
        ] {
            let change = ConfChange {
                kind,
                node: NodeId(node),
                context: Bytes::new(),
            };
            members.extend(table.apply_conf_change(&change, None));
        }
        store.backend().apply(members).await.unwrap();
        assert_eq!(MemberTable::load(&store.backend().read()).unwrap(), table);
        let image = store.backend().image().unwrap();
        let payload: Vec<u8> = image.chunks.flat_map(|chunk| chunk.unwrap().to_vec()).collect();
        assert_eq!(payload.len() as u64, image.total_bytes);
        (payload, store.current_revision().0)
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn restore_keeps_the_keys_and_resets_the_raft_position() {
        run(async {
            let (payload, revision) = payload_of_store(300).await;
            let file = snapshot_file_bytes(&payload);
            assert_eq!(file.len() % 512, 32);
            let checked = verify_snapshot_file(&file, false).unwrap();
            let dir = MemDir::new();
            let summary = restore_state_file(&dir, checked, 4096).await.unwrap();
            assert_eq!(summary.revision, revision);
            assert_eq!(summary, describe_snapshot(checked, 4096).await.unwrap());
            // What the server will find when it opens the state file.
            let pages = dir.open_pages(STATE_FILE, 4096).await.unwrap();
            let tree = BTree::open(pages, BTreeOptions { page_size: 4096 }).await.unwrap();
            let store = MvccStore::open(BTreeBackend::new(tree), MvccConfig::default())
                .await
                .unwrap();
            assert_eq!(store.consistent_index(), ConsistentIndex::default());
            assert_eq!(store.current_revision().0, revision);
            assert_eq!(
                MemberTable::load(&store.backend().read()).unwrap(),
                MemberTable::default(),
                "the old cluster's member table survived the restore"
            );
            let range = crate::mvcc::RangeRequest::new(Bytes::from_static(b"key-299"), Bytes::new());
            assert_eq!(
                store.range(&range).unwrap().kvs[0].value,
                Bytes::from_static(b"value-299")
            );
            assert!(restore_state_file(&dir, checked, 4096).await.is_err(), "restores twice");
        });
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        run(async {
            let (payload, _) = payload_of_store(5).await;
            let mut file = snapshot_file_bytes(&payload).to_vec();
            file[100] ^= 1;
            assert!(verify_snapshot_file(&file, false).unwrap_err().contains("SHA-256"));
            // Skipping the check lets the damage through to the page checksums.
            let damaged = verify_snapshot_file(&file, true).unwrap();
            assert!(describe_snapshot(damaged, 4096).await.is_err());
            assert!(verify_snapshot_file(&payload[..1000], false).is_err(), "no digest");
            let foreign = snapshot_file_bytes(&vec![7u8; 8192]);
            let foreign = verify_snapshot_file(&foreign, false).unwrap();
            assert!(describe_snapshot(foreign, 4096)
                .await
                .unwrap_err()
                .contains("not a braid snapshot"));
        });
    }
}
