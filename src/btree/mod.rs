//! A copy-on-write B+tree in one page file (DESIGN.md invariant 3).
//!
//! The tree knows pages, not MVCC. It reads pages only through
//! [`PageStore::read_page`] (an mmap in production, memory in tests) and writes
//! them only through [`PageStore::write_pages`]; it never changes a page that a
//! committed meta page or a live reader can see.
//!
//! # File
//!
//! Pages of `page_size` bytes (4 KiB by default, a power of two from 512 to
//! 64 KiB). Pages 0 and 1 are the meta slots (`meta.rs`); every other page is a
//! leaf, a branch, an overflow page (values too large for a leaf, chained), or a
//! free-list page (`freelist.rs`). Every page carries a crc32 over itself, its
//! own id (catches misdirected writes), its type and the id of the transaction
//! that wrote it (`page.rs` has the byte layout).
//!
//! # Commit protocol
//!
//! 1. Every node the transaction changed was copied into memory; it gets a page
//!    freed by a transaction that no live snapshot predates and that the last
//!    durable commit does not reach (freed before it, or written after it:
//!    `freelist.rs`), or a new page at the end.
//! 2. `write_pages` (tree and overflow pages). The commit is now visible to
//!    readers. A *deferred* commit ([`WriteTxn::commit_deferred`]) stops here:
//!    the caller has the data elsewhere (braid's WAL) and makes the tree
//!    durable later with [`BTree::sync`]. Its free list stays in memory.
//! 3. `write_pages` of the free list as of this commit (a new chain; the
//!    previous chain's pages are freed by this commit), `sync`, then
//!    `write_pages` of the meta slot that does not hold the last durable
//!    commit, then `sync`.
//!
//! A crash before step 3 lands leaves the last durable meta in charge, and
//! nothing it reaches was touched, however many deferred commits followed it:
//! the last durable commit pins the pages it reaches exactly like a live
//! reader. A torn meta page fails its checksum and open falls back to the
//! other slot, the previous durable commit. A failed write or sync, or a
//! commit future dropped half-way, poisons the tree: every later call fails
//! until it is reopened from what is durable (fsyncgate: never retry a sync).
//!
//! # Invariants
//!
//! - A page reachable from the newest commit or from a live reader's snapshot is
//!   never written. A page freed by txn `f` is reused only when every live
//!   snapshot is at least `f` (`freelist.rs`).
//! - A child page's txn id is at most its parent's: a reused page showing up
//!   under an old parent is reported as corruption, never read as data.
//! - Pages `2..page_count` are each exactly one of: reachable from the root,
//!   in the free list, or a page of the free-list chain written for the last
//!   durable commit (`verify`). On disk the same holds for the durable commit
//!   and the list its meta names.
//! - Keys are at most [`BTree::key_bytes_max`] (half a page minus 64 bytes:
//!   1984 bytes with 4 KiB pages); larger keys get [`BTreeError::KeyTooLarge`].
//!   Values are below 4 GiB; values over a quarter page live in overflow chains.
//!
//! # Concurrency
//!
//! One writer at a time ([`BTree::write`] waits for the previous [`WriteTxn`]
//! to end), any number of readers ([`BTree::read`]); readers never wait for the
//! writer and see the commit that was newest when they started. Returned keys
//! and values are copies: they never alias page store memory.

mod commit;
mod error;
mod freelist;
mod meta;
mod node;
mod page;
mod read;
mod snapshot;
#[cfg(any(test, feature = "verify"))]
mod verify;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::io::{PageId, PageStore};

pub use error::{BTreeError, Result};
pub use read::{RangeIter, ReadTxn};
pub use snapshot::{SnapshotRestore, SnapshotStream};
#[cfg(any(test, feature = "verify"))]
pub use verify::VerifyReport;
pub use write::WriteTxn;

use freelist::FreeList;
use meta::{Meta, FIRST_DATA_PAGE};
use page::{Layout, PageType};

/// Identifies a commit. Commit `n + 1` follows commit `n`; a fresh file is at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BTreeOptions {
    /// Must equal the store's page size and, for an existing file, the size it
    /// was created with.
    pub page_size: usize,
}

impl Default for BTreeOptions {
    fn default() -> Self {
        BTreeOptions { page_size: 4096 }
    }
}

/// Sizes of the newest commit (etcd's dbSize is `file_bytes`, dbSizeInUse is `in_use_bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub txn_id: TxnId,
    pub page_size: usize,
    /// Pages in the file, meta pages included.
    pub page_count: u64,
    /// Pages in the free list, reusable now or once older readers finish.
    pub free_page_count: u64,
    pub entry_count: u64,
    pub file_bytes: u64,
    pub in_use_bytes: u64,
    pub live_readers: usize,
    pub oldest_reader_txn: Option<TxnId>,
}

/// The tree: a cheap handle, clone it to share between tasks.
pub struct BTree<S: PageStore> {
    shared: Arc<Shared<S>>,
}

impl<S: PageStore> std::fmt::Debug for BTree<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("BTree").field("stats", &self.stats()).finish()
    }
}

impl<S: PageStore> Clone for BTree<S> {
    fn clone(&self) -> Self {
        BTree {
            shared: Arc::clone(&self.shared),
        }
    }
}

pub(crate) struct Shared<S> {
    pub(crate) store: S,
    pub(crate) layout: Layout,
    readers: Mutex<Readers>,
    writer: Arc<tokio::sync::Mutex<WriterState>>,
    /// Set once by the first failed write, sync or cancelled commit.
    poison: OnceLock<String>,
}

/// The newest commit and the snapshots still being read, under one lock so a
/// reader's snapshot and its registration cannot be split by a commit.
struct Readers {
    newest: Meta,
    free_page_count: u64,
    /// Pages of `newest` that no reader reaches: the free list and the pages
    /// of the chain last written for it (`ReadTxn::unreachable_pages`).
    unreachable_pages: u64,
    /// Snapshot txn -> number of live `ReadTxn`s holding it.
    live: BTreeMap<TxnId, usize>,
}

/// What only the writer touches.
pub(crate) struct WriterState {
    pub(crate) free: FreeList,
    /// Pages of the free-list chain written for the last durable commit
    /// (`commit::make_durable`); freed when the next one is written.
    pub(crate) free_list_pages: Vec<PageId>,
    /// The last durable commit and the meta slot holding it. Invariant: no
    /// page it reaches is written until a newer commit is durable.
    pub(crate) durable: Meta,
    pub(crate) durable_slot: PageId,
}

impl<S: PageStore> Shared<S> {
    fn lock_readers(&self) -> std::sync::MutexGuard<'_, Readers> {
        self.readers.lock().expect("reader registry lock poisoned by a panic")
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(cause) => Err(BTreeError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    pub(crate) fn poison(&self, cause: String) {
        // The first cause wins; later ones are consequences.
        let _ = self.poison.set(cause);
    }

    /// Registers a reader of the newest commit and returns that commit with
    /// the number of its pages no reader reaches.
    pub(crate) fn register_newest(&self) -> (Meta, u64) {
        let mut readers = self.lock_readers();
        let newest = readers.newest;
        *readers.live.entry(newest.txn).or_insert(0) += 1;
        (newest, readers.unreachable_pages)
    }

    /// The newest commit.
    pub(crate) fn newest(&self) -> Meta {
        self.lock_readers().newest
    }

    pub(crate) fn register(&self, txn: TxnId) {
        let mut readers = self.lock_readers();
        let count = readers.live.get_mut(&txn);
        let count = count.unwrap_or_else(|| panic!("cloning a reader of txn {} that is not registered", txn.0));
        *count += 1;
    }

    pub(crate) fn deregister(&self, txn: TxnId) {
        let mut readers = self.lock_readers();
        let count = readers.live.get_mut(&txn);
        let count = count.unwrap_or_else(|| panic!("dropping a reader of txn {} that is not registered", txn.0));
        *count -= 1;
        if *count == 0 {
            readers.live.remove(&txn);
        }
    }

    /// Pages freed at or before this txn may be written by the next commit.
    /// A reader registering after this call gets the newest commit, which
    /// reaches no page in the free list, so it needs no protection.
    pub(crate) fn reusable_bound(&self) -> TxnId {
        let readers = self.lock_readers();
        let oldest = readers.live.keys().next().copied();
        oldest.map_or(readers.newest.txn, |oldest| oldest.min(readers.newest.txn))
    }

    /// Makes `newest` the commit new readers and the next writer start from;
    /// `writer` holds its free list.
    pub(crate) fn publish(&self, newest: Meta, writer: &WriterState) {
        let mut readers = self.lock_readers();
        assert!(
            newest.txn > readers.newest.txn,
            "commit {} published after {}",
            newest.txn.0,
            readers.newest.txn.0
        );
        readers.set_newest(newest, writer);
    }

    /// Publishes the newest commit again once `commit::make_durable` wrote
    /// its free list (which names a new chain and may have grown the file).
    /// Readers already holding it keep the copy they have: the tree is the same.
    pub(crate) fn republish(&self, newest: Meta, writer: &WriterState) {
        let mut readers = self.lock_readers();
        assert!(
            newest.txn == readers.newest.txn && newest.root == readers.newest.root,
            "commit {} republished as newest, but {} is",
            newest.txn.0,
            readers.newest.txn.0
        );
        readers.set_newest(newest, writer);
    }
}

impl Readers {
    fn set_newest(&mut self, newest: Meta, writer: &WriterState) {
        self.newest = newest;
        self.free_page_count = writer.free.len();
        self.unreachable_pages = writer.free.len() + writer.free_list_pages.len() as u64;
    }
}

impl<S: PageStore> BTree<S> {
    /// Opens the tree in `store`, creating an empty one if the store holds no
    /// commit yet (an empty store, or a crash during creation).
    pub async fn open(store: S, options: BTreeOptions) -> Result<BTree<S>> {
        let layout = Layout::new(options.page_size)?;
        if store.page_size() != layout.page_size {
            return Err(BTreeError::PageSizeMismatch {
                expected: layout.page_size,
                found: store.page_size(),
            });
        }
        let (meta, slot) = match newest_meta(&store, layout)? {
            Some(found) => found,
            None => create(&store, layout).await?,
        };
        let (free, free_list_pages) = read::read_free_list(&store, layout, &meta)?;
        let writer = WriterState {
            free,
            free_list_pages,
            durable: meta,
            durable_slot: slot,
        };
        let mut readers = Readers {
            newest: meta,
            free_page_count: 0,
            unreachable_pages: 0,
            live: BTreeMap::new(),
        };
        readers.set_newest(meta, &writer);
        let shared = Shared {
            store,
            layout,
            readers: Mutex::new(readers),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            poison: OnceLock::new(),
        };
        Ok(BTree {
            shared: Arc::new(shared),
        })
    }

    /// A consistent snapshot of the newest commit. Cheap; never waits for the writer.
    pub fn read(&self) -> Result<ReadTxn<S>> {
        self.shared.check_poison()?;
        let (meta, unreachable_pages) = self.shared.register_newest();
        Ok(ReadTxn::new(Arc::clone(&self.shared), meta, unreachable_pages))
    }

    /// Starts the write transaction, waiting for the previous one to end.
    pub async fn write(&self) -> Result<WriteTxn<S>> {
        self.shared.check_poison()?;
        let writer = Arc::clone(&self.shared.writer).lock_owned().await;
        self.shared.check_poison()?;
        let base = self.shared.lock_readers().newest;
        Ok(WriteTxn::new(Arc::clone(&self.shared), writer, base))
    }

    /// Makes every commit so far durable (a no-op when the newest already is);
    /// returns the txn now durable. Waits for the writer. Errors poison the
    /// tree, as in `commit`.
    pub async fn sync(&self) -> Result<TxnId> {
        self.shared.check_poison()?;
        let mut writer = self.shared.writer.lock().await;
        self.shared.check_poison()?;
        commit::sync_newest(&self.shared, &mut writer).await
    }

    /// Makes every page written so far reach the disk, without the writer
    /// lock and without making any commit durable: commits go on meanwhile,
    /// and a `sync` right after has only their pages left to flush. (A page
    /// file fsync covers whatever was written before it; the meta flip in
    /// `sync` is what makes a commit durable.) Poisons the tree on failure.
    pub async fn flush_pages(&self) -> Result<()> {
        self.shared.check_poison()?;
        if let Err(error) = self.shared.store.sync().await {
            self.shared.poison(format!("flushing pages failed: {error}"));
            return Err(BTreeError::Io(error));
        }
        Ok(())
    }

    /// The last durable commit: a crash now reopens the tree there.
    pub async fn durable_txn(&self) -> TxnId {
        self.shared.writer.lock().await.durable.txn
    }

    pub fn stats(&self) -> Stats {
        let readers = self.shared.lock_readers();
        let page_size = self.shared.layout.page_size as u64;
        Stats {
            txn_id: readers.newest.txn,
            page_size: self.shared.layout.page_size,
            page_count: readers.newest.page_count,
            free_page_count: readers.free_page_count,
            entry_count: readers.newest.entry_count,
            file_bytes: readers.newest.page_count * page_size,
            in_use_bytes: (readers.newest.page_count - readers.free_page_count) * page_size,
            live_readers: readers.live.values().sum(),
            oldest_reader_txn: readers.live.keys().next().copied(),
        }
    }

    pub fn page_size(&self) -> usize {
        self.shared.layout.page_size
    }

    /// The largest key `put` accepts: half a page minus 64 bytes.
    pub fn key_bytes_max(&self) -> usize {
        self.shared.layout.key_bytes_max()
    }

    /// The store underneath (for its owner's fault injection and stats).
    pub fn store(&self) -> &S {
        &self.shared.store
    }
}

/// The valid meta slot with the higher txn id, and that slot; `None` if the
/// store never finished creating a tree. A slot that fails its checksum is
/// skipped (torn write); a slot with a valid checksum but foreign contents is
/// an error.
fn newest_meta<S: PageStore>(store: &S, layout: Layout) -> Result<Option<(Meta, PageId)>> {
    let mut newest: Option<(Meta, PageId)> = None;
    let mut first_error = None;
    for slot in [PageId(0), PageId(1)] {
        let page = match store.read_page(slot) {
            Ok(page) => page,
            Err(source) => {
                first_error.get_or_insert(BTreeError::ReadFailed { page_id: slot, source });
                continue;
            }
        };
        if !page::checksum_ok(layout, &page) {
            // Torn or never written: the other slot holds the newest durable commit.
            first_error.get_or_insert(BTreeError::corrupt(slot, "meta page fails its checksum".to_string()));
            continue;
        }
        // A meta page names its own slot in its header (checked by decode),
        // so a misdirected meta write shows up there.
        let meta = Meta::decode(layout, slot, &page, PageType::Meta)?;
        match newest {
            Some((other, _)) if other.txn == meta.txn => {
                return Err(BTreeError::corrupt(
                    slot,
                    format!("both meta slots hold txn {}", meta.txn.0),
                ));
            }
            Some((other, _)) if other.txn > meta.txn => {}
            _ => newest = Some((meta, slot)),
        }
    }
    if newest.is_some() {
        return Ok(newest);
    }
    // The first commit needs at least pages 0..=3 (its root lands on page 3 or
    // later), so a file of three pages or fewer with no valid meta never
    // committed anything: creation was cut short.
    if store.page_count() <= FIRST_DATA_PAGE + 1 {
        return Ok(None);
    }
    Err(first_error.unwrap_or_else(|| BTreeError::corrupt(PageId(0), "no valid meta page".to_string())))
}

/// Writes an empty tree: an empty root leaf at page 2, synced before the meta
/// of txn 0 in slot 0.
async fn create<S: PageStore>(store: &S, layout: Layout) -> Result<(Meta, PageId)> {
    let meta = Meta {
        txn: TxnId(0),
        root: PageId(FIRST_DATA_PAGE),
        free_list: PageId(0),
        page_count: 3,
        entry_count: 0,
    };
    let root = node::encode_leaf(layout, meta.root, meta.txn, &[]);
    store
        .write_pages(vec![(meta.root, root)])
        .await
        .map_err(BTreeError::Io)?;
    store.sync().await.map_err(BTreeError::Io)?;
    let meta_page = meta.encode(layout, PageType::Meta, meta.slot());
    store
        .write_pages(vec![(meta.slot(), meta_page)])
        .await
        .map_err(BTreeError::Io)?;
    store.sync().await.map_err(BTreeError::Io)?;
    Ok((meta, meta.slot()))
}
