//! Commit: give every dirty node and large value pages, rewrite the free list,
//! write them; then, for a durable commit, sync them and write and sync the
//! meta slot (see `mod.rs`).

use bytes::Bytes;

use crate::btree::freelist::FreeList;
use crate::btree::meta::Meta;
use crate::btree::node::{encode_branch, encode_leaf, Child, Node, Value};
use crate::btree::page::{encode_chain, Layout, PageType};
use crate::btree::{BTreeError, Result, Shared, TxnId, WriteTxn};
use crate::io::{PageId, PageStore};

/// Hands out pages: reusable free pages first, then new pages at the end.
struct Allocator {
    /// The oldest snapshot a reader (or the writer's base) holds.
    readers: TxnId,
    /// The last durable commit, which pins the pages it reaches like a reader.
    durable: TxnId,
    next_page: u64,
}

impl Allocator {
    fn new<S: PageStore>(shared: &Shared<S>, writer: &crate::btree::WriterState, next_page: u64) -> Allocator {
        Allocator {
            readers: shared.reusable_bound(),
            durable: writer.durable.txn,
            next_page,
        }
    }

    fn allocate(&mut self, free: &mut FreeList) -> PageId {
        free.pop_reusable(self.readers, self.durable).unwrap_or_else(|| {
            self.next_page += 1;
            PageId(self.next_page - 1)
        })
    }
}

/// Poisons the tree if a commit stops between changing the writer's
/// in-memory free list and making the meta page durable (an error, or the
/// future being dropped): that state no longer matches any commit.
struct PoisonUnlessDone<'a, S: PageStore> {
    shared: &'a Shared<S>,
    txn: TxnId,
    done: bool,
}

impl<S: PageStore> Drop for PoisonUnlessDone<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .poison(format!("commit of txn {} did not finish", self.txn.0));
        }
    }
}

struct Spill<'a> {
    layout: Layout,
    txn: TxnId,
    allocator: &'a mut Allocator,
    free: &'a mut FreeList,
    pages: &'a mut Vec<(PageId, Bytes)>,
}

impl Spill<'_> {
    /// Writes arena node `node` and its dirty descendants; returns its page.
    fn node(&mut self, arena: &mut [Node], node: usize) -> PageId {
        match std::mem::replace(&mut arena[node], Node::Leaf(Vec::new())) {
            Node::Leaf(mut entries) => {
                for entry in &mut entries {
                    if let Value::Large(bytes) = &entry.value {
                        let len = u32::try_from(bytes.len()).expect("put() bounds values below 4 GiB");
                        let count = self.layout.overflow_pages(u64::from(len));
                        let ids: Vec<PageId> = (0..count).map(|_| self.allocator.allocate(self.free)).collect();
                        self.pages
                            .extend(encode_chain(self.layout, PageType::Overflow, self.txn, &ids, bytes));
                        entry.value = Value::Overflow { first: ids[0], len };
                    }
                }
                let id = self.allocator.allocate(self.free);
                self.pages.push((id, encode_leaf(self.layout, id, self.txn, &entries)));
                id
            }
            Node::Branch(entries) => {
                let children: Vec<(Bytes, PageId)> = entries
                    .into_iter()
                    .map(|entry| match entry.child {
                        Child::Page(id) => (entry.key, id),
                        Child::Dirty(child) => (entry.key, self.node(arena, child)),
                    })
                    .collect();
                let id = self.allocator.allocate(self.free);
                self.pages
                    .push((id, encode_branch(self.layout, id, self.txn, &children)));
                id
            }
        }
    }
}

impl<S: PageStore> WriteTxn<S> {
    /// Makes the transaction durable and visible; returns its txn id (the
    /// base's when nothing changed, in which case nothing is written, but
    /// deferred commits before it become durable). On a write or sync error,
    /// or if this future is dropped before it finishes, the tree is poisoned:
    /// reopen it.
    pub async fn commit(self) -> Result<TxnId> {
        self.finish(true).await
    }

    /// Makes the transaction visible to readers without making it durable: a
    /// crash goes back to the last durable commit (see `mod.rs`). A later
    /// durable commit or [`BTree::sync`] makes it durable. Errors as `commit`.
    pub async fn commit_deferred(self) -> Result<TxnId> {
        self.finish(false).await
    }

    async fn finish(mut self, durable: bool) -> Result<TxnId> {
        self.check_usable()?;
        if !self.changed {
            if durable {
                sync_newest(&self.shared, &mut self.writer).await?;
            }
            return Ok(self.base.txn);
        }
        let shared = std::sync::Arc::clone(&self.shared);
        let layout = shared.layout;
        let txn = TxnId(self.base.txn.0 + 1);
        let mut guard = PoisonUnlessDone {
            shared: &shared,
            txn,
            done: false,
        };
        let writer = &mut *self.writer;
        let mut allocator = Allocator::new(&shared, writer, self.base.page_count);
        let mut pages = Vec::new();

        let root = match self.root {
            Child::Page(id) => id,
            Child::Dirty(node) => {
                let mut spill = Spill {
                    layout,
                    txn,
                    allocator: &mut allocator,
                    free: &mut writer.free,
                    pages: &mut pages,
                };
                spill.node(&mut self.arena, node)
            }
        };

        // This commit frees what it replaced. Pages written since the last
        // durable commit are out of its reach and can be rewritten once no
        // reader needs them; the rest wait for a newer durable commit. The free
        // list on disk is rewritten only when a commit is made durable
        // (`make_durable`): a deferred commit's list would never be read.
        let durable_txn = writer.durable.txn;
        writer.free.free_written(txn, self.freed.drain(..), durable_txn);
        let meta = Meta {
            txn,
            root,
            free_list: writer.free_list_pages.first().copied().unwrap_or(PageId(0)),
            page_count: allocator.next_page,
            entry_count: self.entry_count,
        };
        if let Err(error) = shared.store.write_pages(pages).await {
            shared.poison(format!("commit of txn {} failed: {error}", txn.0));
            return Err(BTreeError::Io(error));
        }
        let meta = if durable {
            make_durable(&shared, writer, meta).await?
        } else {
            meta
        };
        shared.publish(meta, writer);
        guard.done = true;
        Ok(txn)
    }
}

/// Makes the newest commit durable (a no-op if it is) and publishes it again
/// with the free list `make_durable` wrote for it; returns its txn.
pub(crate) async fn sync_newest<S: PageStore>(
    shared: &Shared<S>,
    writer: &mut crate::btree::WriterState,
) -> Result<TxnId> {
    let newest = shared.newest();
    let durable = make_durable(shared, writer, newest).await?;
    if durable != newest {
        shared.republish(durable, writer);
    }
    Ok(newest.txn)
}

/// Makes `meta` (the newest commit, its pages written) the durable one: write
/// the free list as of now into a chain stamped with its txn, sync the pages,
/// then write and sync its meta into the slot that does not hold the last
/// durable commit. Returns `meta` as written, naming that chain (which may
/// have taken new pages at the end of the file). Poisons the tree on failure.
pub(crate) async fn make_durable<S: PageStore>(
    shared: &Shared<S>,
    writer: &mut crate::btree::WriterState,
    meta: Meta,
) -> Result<Meta> {
    if meta.txn == writer.durable.txn {
        return Ok(writer.durable);
    }
    assert!(
        meta.txn > writer.durable.txn,
        "txn {} made durable after txn {}",
        meta.txn.0,
        writer.durable.txn.0
    );
    let (meta, list) = free_list_chain(shared, writer, meta);
    let slot = PageId(1 - writer.durable_slot.0);
    let meta_page = meta.encode(shared.layout, PageType::Meta, slot);
    let store = &shared.store;
    let written = async {
        store.write_pages(list).await?;
        store.sync().await?;
        store.write_pages(vec![(slot, meta_page)]).await?;
        store.sync().await
    }
    .await;
    if let Err(error) = written {
        shared.poison(format!("making txn {} durable failed: {error}", meta.txn.0));
        return Err(BTreeError::Io(error));
    }
    writer.durable = meta;
    writer.durable_slot = slot;
    Ok(meta)
}

/// The free list as of `meta` (the newest commit) in a chain of pages stamped
/// with its txn, and `meta` naming it. The previous chain's pages are freed by
/// this commit: the last durable commit still names them, so they wait for a
/// newer durable commit like every other page this commit freed.
fn free_list_chain<S: PageStore>(
    shared: &Shared<S>,
    writer: &mut crate::btree::WriterState,
    meta: Meta,
) -> (Meta, Vec<(PageId, Bytes)>) {
    let layout = shared.layout;
    let mut allocator = Allocator::new(shared, writer, meta.page_count);
    // `meta` is the newest commit: every page in the list was freed at or
    // before it, so once it is durable none is newer than the durable commit.
    writer.free.settle();
    let old_list_pages = std::mem::take(&mut writer.free_list_pages);
    writer.free.push(meta.txn, old_list_pages);
    // Taking pages for the list only shrinks it, so this loop ends; pages
    // beyond what the final list needs stay in the chain, empty.
    let mut list_pages = Vec::new();
    while list_pages.len() < writer.free.pages_needed(layout) {
        list_pages.push(allocator.allocate(&mut writer.free));
    }
    let chain = encode_chain(layout, PageType::FreeList, meta.txn, &list_pages, &writer.free.encode());
    let meta = Meta {
        free_list: list_pages.first().copied().unwrap_or(PageId(0)),
        page_count: allocator.next_page,
        ..meta
    };
    writer.free_list_pages = list_pages;
    (meta, chain)
}
