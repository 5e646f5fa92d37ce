//! The production backend: mvcc's atomic batches become B+tree commits, so the
//! data and the applied Raft index it carries reach the disk in one meta-page
//! flip (DESIGN.md invariant 6), and readers get the tree's copy-on-write
//! snapshots. A member's backend defers durability: its commits become durable
//! together every `--backend-batch-interval`, as etcd's bbolt batches do,
//! and the WAL replays what a crash lost (`server/node.rs`).

use bytes::Bytes;

use super::backend::{Backend, BackendError, BackendImage, BackendRead, BatchOp, ScanVisitor, WriteBatch};
use crate::btree::{BTree, BTreeError, ReadTxn};
use crate::io::PageStore;

fn backend_error(context: &str, error: BTreeError) -> BackendError {
    BackendError::new(format!("{context}: {error}"))
}

/// A B+tree used as mvcc's backend. Clones share the tree.
#[derive(Clone, Debug)]
pub struct BTreeBackend<S: PageStore> {
    tree: BTree<S>,
    /// Commits are deferred (`BTree::commit_deferred`) until `sync`.
    deferred: bool,
}

impl<S: PageStore> BTreeBackend<S> {
    /// Every batch is a durable commit.
    pub fn new(tree: BTree<S>) -> Self {
        BTreeBackend { tree, deferred: false }
    }

    /// Batches are deferred commits, made durable by `sync`: for a member
    /// whose WAL can replay everything after the last durable one.
    pub fn with_deferred_durability(tree: BTree<S>) -> Self {
        BTreeBackend { tree, deferred: true }
    }

    pub fn tree(&self) -> &BTree<S> {
        &self.tree
    }
}

/// A consistent snapshot of the tree, or the error that made the tree refuse one
/// (after a failed commit the tree is poisoned; every read reports it).
pub enum BTreeRead<S: PageStore> {
    Snapshot(ReadTxn<S>),
    Failed(String),
}

impl<S: PageStore> BackendRead for BTreeRead<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, BackendError> {
        match self {
            BTreeRead::Snapshot(read) => read.get(key).map_err(|error| backend_error("B+tree read", error)),
            BTreeRead::Failed(cause) => Err(BackendError::new(cause.clone())),
        }
    }

    fn scan(&self, start: &[u8], end: &[u8], visit: &mut ScanVisitor<'_>) -> Result<(), BackendError> {
        let read = match self {
            BTreeRead::Snapshot(read) => read,
            BTreeRead::Failed(cause) => return Err(BackendError::new(cause.clone())),
        };
        for item in read.range_iter(start, Some(end)) {
            let (key, value) = item.map_err(|error| backend_error("B+tree scan", error))?;
            if visit(&key, &value).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl<S: PageStore> Backend for BTreeBackend<S> {
    type Read = BTreeRead<S>;

    fn read(&self) -> BTreeRead<S> {
        match self.tree.read() {
            Ok(read) => BTreeRead::Snapshot(read),
            Err(error) => BTreeRead::Failed(format!("B+tree read: {error}")),
        }
    }

    fn apply(&self, batch: WriteBatch) -> impl std::future::Future<Output = Result<(), BackendError>> + Send {
        let tree = self.tree.clone();
        let deferred = self.deferred;
        async move {
            let mut txn = tree
                .write()
                .await
                .map_err(|error| backend_error("B+tree write", error))?;
            for op in batch.ops {
                match op {
                    BatchOp::Put { key, value } => txn.put(&key, value),
                    BatchOp::Delete { key } => txn.delete(&key).map(|_| ()),
                }
                .map_err(|error| backend_error("B+tree write", error))?;
            }
            let committed = if deferred {
                txn.commit_deferred().await
            } else {
                txn.commit().await
            };
            committed.map_err(|error| backend_error("B+tree commit", error))?;
            Ok(())
        }
    }

    fn defers_durability(&self) -> bool {
        self.deferred
    }

    fn sync(&self) -> impl std::future::Future<Output = Result<(), BackendError>> + Send {
        let tree = self.tree.clone();
        async move {
            tree.sync()
                .await
                .map(|_| ())
                .map_err(|error| backend_error("B+tree sync", error))
        }
    }

    fn flush(&self) -> impl std::future::Future<Output = Result<(), BackendError>> + Send {
        let tree = self.tree.clone();
        async move {
            tree.flush_pages()
                .await
                .map_err(|error| backend_error("B+tree flush", error))
        }
    }

    /// The tree's snapshot stream of the newest commit (`btree/snapshot.rs`): the stream pins
    /// that commit's pages, so writers go on committing into other pages meanwhile.
    fn image(&self) -> Result<BackendImage, BackendError> {
        let read = self.tree.read().map_err(|error| backend_error("B+tree read", error))?;
        let stream = read.snapshot();
        let total_bytes = stream
            .total_bytes()
            .map_err(|error| backend_error("B+tree snapshot", error))?;
        let chunks = stream.map(|page| page.map_err(|error| backend_error("B+tree snapshot", error)));
        Ok(BackendImage {
            total_bytes,
            chunks: Box::new(chunks),
        })
    }

    fn size_bytes(&self) -> (u64, u64) {
        let stats = self.tree.stats();
        (stats.file_bytes, stats.in_use_bytes)
    }
}
