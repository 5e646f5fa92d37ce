//! Reading committed pages with their checks, read transactions, and the range
//! iterator shared by readers and the writer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::btree::freelist::FreeList;
use crate::btree::meta::{Meta, FIRST_DATA_PAGE};
use crate::btree::node::{Child, Node, Value};
use crate::btree::page::{check_page, parse_chain_page, Layout, NodePage, PageHeader, PageType, ValueRef};
use crate::btree::snapshot::SnapshotStream;
use crate::btree::{BTreeError, Result, Shared, TxnId};
use crate::io::{PageId, PageStore};

/// Deeper than any tree of 2^64 pages with two children per branch; a walk
/// that goes deeper is following a cycle.
pub(crate) const DEPTH_MAX: usize = 64;

/// Reads pages of one commit (`page_count` bounds the ids it may reference).
pub(crate) struct PageReader<'a, S> {
    pub(crate) store: &'a S,
    pub(crate) layout: Layout,
    pub(crate) page_count: u64,
}

impl<S> Clone for PageReader<'_, S> {
    fn clone(&self) -> Self {
        PageReader {
            store: self.store,
            layout: self.layout,
            page_count: self.page_count,
        }
    }
}

impl<'a, S: PageStore> PageReader<'a, S> {
    pub(crate) fn raw(&self, id: PageId) -> Result<(Bytes, PageHeader)> {
        if !(FIRST_DATA_PAGE..self.page_count).contains(&id.0) {
            return Err(BTreeError::corrupt(
                id,
                format!("referenced, but outside the data pages 2..{}", self.page_count),
            ));
        }
        let bytes = self
            .store
            .read_page(id)
            .map_err(|source| BTreeError::ReadFailed { page_id: id, source })?;
        let header = check_page(self.layout, id, &bytes)?;
        Ok((bytes, header))
    }

    /// A page that must be of one of `page_types` and written no later than
    /// `max_txn` (its parent's txn): a newer page was reused while reachable.
    pub(crate) fn typed(&self, id: PageId, page_types: &[PageType], max_txn: TxnId) -> Result<(Bytes, PageHeader)> {
        let (bytes, header) = self.raw(id)?;
        if !page_types.contains(&header.page_type) {
            return Err(BTreeError::corrupt(
                id,
                format!("expected a {page_types:?} page, found {:?}", header.page_type),
            ));
        }
        if header.txn > max_txn {
            return Err(BTreeError::corrupt(
                id,
                format!(
                    "written by txn {}, after txn {} that references it: reused while reachable",
                    header.txn.0, max_txn.0
                ),
            ));
        }
        Ok((bytes, header))
    }

    /// A leaf or branch page.
    pub(crate) fn node(&self, id: PageId, max_txn: TxnId) -> Result<NodePage> {
        let (bytes, header) = self.typed(id, &[PageType::Leaf, PageType::Branch], max_txn)?;
        NodePage::parse(id, bytes, header)
    }

    /// Walks a chain of at most `max_pages` pages, handing each page's data to `visit`.
    pub(crate) fn chain(
        &self,
        first: PageId,
        page_type: PageType,
        max_txn: TxnId,
        max_pages: u64,
        mut visit: impl FnMut(PageId, &[u8]),
    ) -> Result<u64> {
        let mut id = first;
        let mut pages = 0;
        loop {
            if pages == max_pages {
                return Err(BTreeError::corrupt(
                    first,
                    format!("{page_type:?} chain longer than {max_pages} pages"),
                ));
            }
            let (bytes, _) = self.typed(id, &[page_type], max_txn)?;
            let (next, data) = parse_chain_page(self.layout, id, &bytes)?;
            visit(id, data);
            pages += 1;
            if next == 0 {
                return Ok(pages);
            }
            id = PageId(next);
        }
    }

    /// The pages of an overflow value, checked against its length.
    pub(crate) fn overflow_value(&self, first: PageId, len: u32, max_txn: TxnId) -> Result<(Bytes, Vec<PageId>)> {
        let expected_pages = self.layout.overflow_pages(u64::from(len));
        let mut value = BytesMut::with_capacity(len as usize);
        let mut ids = Vec::with_capacity(expected_pages as usize);
        let pages = self.chain(first, PageType::Overflow, max_txn, expected_pages, |id, data| {
            ids.push(id);
            value.extend_from_slice(data);
        })?;
        if pages != expected_pages || value.len() != len as usize {
            return Err(BTreeError::corrupt(
                first,
                format!(
                    "overflow chain holds {} bytes in {pages} pages, the leaf says {len} bytes in {expected_pages}",
                    value.len()
                ),
            ));
        }
        Ok((value.freeze(), ids))
    }

    /// The value of entry `index` of a leaf, copied out of the store.
    pub(crate) fn leaf_value(&self, page: &NodePage, index: usize) -> Result<Bytes> {
        match page.value(index) {
            ValueRef::Inline { start, end } => Ok(Bytes::copy_from_slice(&page.bytes[start..end])),
            ValueRef::Overflow { first, len } => Ok(self.overflow_value(first, len, page.txn)?.0),
        }
    }

    /// A value held by a node of the write transaction's arena.
    pub(crate) fn arena_value(&self, value: &Value, max_txn: TxnId) -> Result<Bytes> {
        match value {
            // May be a slice of a page the arena copied: copy it out.
            Value::Inline(bytes) => Ok(Bytes::copy_from_slice(bytes)),
            // The caller's own buffer.
            Value::Large(bytes) => Ok(bytes.clone()),
            Value::Overflow { first, len } => Ok(self.overflow_value(*first, *len, max_txn)?.0),
        }
    }

    /// Looks `key` up in the committed subtree under `root`.
    pub(crate) fn get(&self, root: PageId, max_txn: TxnId, key: &[u8]) -> Result<Option<Bytes>> {
        let mut page = self.node(root, max_txn)?;
        for _ in 0..DEPTH_MAX {
            if page.is_leaf {
                return match page.search(key) {
                    Ok(index) => Ok(Some(self.leaf_value(&page, index)?)),
                    Err(_) => Ok(None),
                };
            }
            let child = page.child(page.child_index(key));
            page = self.node(child, page.txn)?;
        }
        Err(BTreeError::corrupt(
            root,
            format!("tree deeper than {DEPTH_MAX} levels"),
        ))
    }

    /// Whether `key` is in the committed subtree under `root` (no value read).
    pub(crate) fn contains(&self, root: PageId, max_txn: TxnId, key: &[u8]) -> Result<bool> {
        let mut page = self.node(root, max_txn)?;
        for _ in 0..DEPTH_MAX {
            if page.is_leaf {
                return Ok(page.search(key).is_ok());
            }
            let child = page.child(page.child_index(key));
            page = self.node(child, page.txn)?;
        }
        Err(BTreeError::corrupt(
            root,
            format!("tree deeper than {DEPTH_MAX} levels"),
        ))
    }
}

/// Reads the free list a meta page names; returns it with its own pages.
pub(crate) fn read_free_list<S: PageStore>(store: &S, layout: Layout, meta: &Meta) -> Result<(FreeList, Vec<PageId>)> {
    if meta.free_list.0 == 0 {
        return Ok((FreeList::default(), Vec::new()));
    }
    let reader = PageReader {
        store,
        layout,
        page_count: meta.page_count,
    };
    let mut data = Vec::new();
    let mut pages = Vec::new();
    reader.chain(
        meta.free_list,
        PageType::FreeList,
        meta.txn,
        meta.page_count,
        |id, bytes| {
            pages.push(id);
            data.extend_from_slice(bytes);
        },
    )?;
    let list = FreeList::decode(meta.free_list, &data, meta.page_count)?;
    let mut all: Vec<PageId> = list.iter().map(|(_, page)| page).chain(pages.iter().copied()).collect();
    all.sort_unstable();
    if let Some(pair) = all.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(BTreeError::corrupt(
            meta.free_list,
            format!(
                "free list names page {} twice (or names one of its own pages)",
                pair[0].0
            ),
        ));
    }
    Ok((list, pages))
}

/// A consistent snapshot of one commit. Its pages are not reused while it (or
/// a clone) lives; dropping it lets the writer reuse them.
pub struct ReadTxn<S: PageStore> {
    shared: Arc<Shared<S>>,
    meta: Meta,
    /// Data pages of this commit that its tree does not reach (free, or
    /// holding the free list), as published with it.
    unreachable_pages: u64,
}

impl<S: PageStore> ReadTxn<S> {
    /// `meta` must already be registered with `shared`.
    pub(crate) fn new(shared: Arc<Shared<S>>, meta: Meta, unreachable_pages: u64) -> ReadTxn<S> {
        ReadTxn {
            shared,
            meta,
            unreachable_pages,
        }
    }

    pub(crate) fn reader(&self) -> PageReader<'_, S> {
        PageReader {
            store: &self.shared.store,
            layout: self.shared.layout,
            page_count: self.meta.page_count,
        }
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Data pages (`2..page_count`) that this commit's tree does not reach.
    pub(crate) fn unreachable_pages(&self) -> u64 {
        self.unreachable_pages
    }

    /// The commit this snapshot shows.
    pub fn txn_id(&self) -> TxnId {
        self.meta.txn
    }

    pub fn entry_count(&self) -> u64 {
        self.meta.entry_count
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.reader().get(self.meta.root, self.meta.txn, key)
    }

    /// Entries with `start <= key < end` (no upper bound when `end` is `None`), in key order.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>> {
        self.range_iter(start, end).collect()
    }

    /// Like `range`, one entry at a time.
    pub fn range_iter(&self, start: &[u8], end: Option<&[u8]>) -> RangeIter<'_, S> {
        RangeIter::new(
            self.reader(),
            &[],
            Child::Page(self.meta.root),
            self.meta.txn,
            start,
            end,
        )
    }

    /// Every page of this snapshot as a self-checking byte stream (see `snapshot.rs`).
    pub fn snapshot(&self) -> SnapshotStream<S> {
        SnapshotStream::new(self.clone())
    }
}

impl<S: PageStore> std::fmt::Debug for ReadTxn<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReadTxn")
            .field("txn_id", &self.meta.txn)
            .finish()
    }
}

impl<S: PageStore> Clone for ReadTxn<S> {
    fn clone(&self) -> Self {
        self.shared.register(self.meta.txn);
        ReadTxn {
            shared: Arc::clone(&self.shared),
            meta: self.meta,
            unreachable_pages: self.unreachable_pages,
        }
    }
}

impl<S: PageStore> Drop for ReadTxn<S> {
    fn drop(&mut self) {
        self.shared.deregister(self.meta.txn);
    }
}

enum Frame {
    Page { page: NodePage, next: usize },
    Dirty { node: usize, next: usize },
}

/// Walks entries in key order over committed pages and, for a write
/// transaction, its in-memory nodes. Yields copies.
pub struct RangeIter<'a, S: PageStore> {
    reader: PageReader<'a, S>,
    arena: &'a [Node],
    root: Child,
    /// Upper bound on the txn of pages reached from the arena or the root.
    snapshot_txn: TxnId,
    start: Option<Bytes>,
    end: Option<Bytes>,
    stack: Vec<Frame>,
    done: bool,
}

impl<'a, S: PageStore> RangeIter<'a, S> {
    pub(crate) fn new(
        reader: PageReader<'a, S>,
        arena: &'a [Node],
        root: Child,
        snapshot_txn: TxnId,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> RangeIter<'a, S> {
        let empty = end.is_some_and(|end| end <= start);
        RangeIter {
            reader,
            arena,
            root,
            snapshot_txn,
            start: Some(Bytes::copy_from_slice(start)),
            end: end.map(Bytes::copy_from_slice),
            stack: Vec::new(),
            done: empty,
        }
    }

    /// Pushes the path from `child` down to a leaf: leftmost, or towards `start`.
    fn descend(&mut self, mut child: Child, mut max_txn: TxnId, start: Option<&[u8]>) -> Result<()> {
        loop {
            if self.stack.len() > DEPTH_MAX {
                return Err(BTreeError::corrupt(
                    PageId(0),
                    format!("tree deeper than {DEPTH_MAX} levels"),
                ));
            }
            match child {
                Child::Page(id) => {
                    let page = self.reader.node(id, max_txn)?;
                    if page.is_leaf {
                        let next = start.map_or(0, |start| page.search(start).unwrap_or_else(|index| index));
                        self.stack.push(Frame::Page { page, next });
                        return Ok(());
                    }
                    let index = start.map_or(0, |start| page.child_index(start));
                    child = Child::Page(page.child(index));
                    max_txn = page.txn;
                    self.stack.push(Frame::Page { page, next: index + 1 });
                }
                Child::Dirty(node) => match &self.arena[node] {
                    Node::Leaf(entries) => {
                        let next = start.map_or(0, |start| entries.partition_point(|entry| entry.key.as_ref() < start));
                        self.stack.push(Frame::Dirty { node, next });
                        return Ok(());
                    }
                    Node::Branch(entries) => {
                        let index = start.map_or(0, |start| branch_child_index(entries, start));
                        child = entries[index].child;
                        max_txn = self.snapshot_txn;
                        self.stack.push(Frame::Dirty { node, next: index + 1 });
                    }
                },
            }
        }
    }

    fn step(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if let Some(start) = self.start.take() {
            self.descend(self.root, self.snapshot_txn, Some(&start))?;
        }
        let arena = self.arena;
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (child, max_txn) = match frame {
                Frame::Page { page, next } if page.is_leaf => {
                    if *next == page.len() {
                        self.stack.pop();
                        continue;
                    }
                    let index = *next;
                    *next += 1;
                    if self.end.as_ref().is_some_and(|end| page.key(index) >= end.as_ref()) {
                        return Ok(None);
                    }
                    let key = Bytes::copy_from_slice(page.key(index));
                    return Ok(Some((key, self.reader.leaf_value(page, index)?)));
                }
                Frame::Page { page, next } => {
                    if *next == page.len() {
                        self.stack.pop();
                        continue;
                    }
                    *next += 1;
                    (Child::Page(page.child(*next - 1)), page.txn)
                }
                Frame::Dirty { node, next } => match &arena[*node] {
                    Node::Leaf(entries) => {
                        let Some(entry) = entries.get(*next) else {
                            self.stack.pop();
                            continue;
                        };
                        *next += 1;
                        if self.end.as_ref().is_some_and(|end| entry.key.as_ref() >= end.as_ref()) {
                            return Ok(None);
                        }
                        let value = self.reader.arena_value(&entry.value, self.snapshot_txn)?;
                        return Ok(Some((Bytes::copy_from_slice(&entry.key), value)));
                    }
                    Node::Branch(entries) => {
                        let Some(entry) = entries.get(*next) else {
                            self.stack.pop();
                            continue;
                        };
                        *next += 1;
                        (entry.child, self.snapshot_txn)
                    }
                },
            };
            self.descend(child, max_txn, None)?;
        }
    }
}

impl<S: PageStore> Iterator for RangeIter<'_, S> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Index of the child of an in-memory branch whose range holds `key`.
pub(crate) fn branch_child_index(entries: &[crate::btree::node::BranchEntry], key: &[u8]) -> usize {
    entries[1..].partition_point(|entry| entry.key.as_ref() <= key)
}
