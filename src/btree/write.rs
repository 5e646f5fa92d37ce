//! The write transaction: copy-on-write edits in an in-memory arena.
//!
//! Changing a node copies every node on its root path into the arena (the
//! committed pages are only remembered as freed). Nodes are kept within a page
//! after every operation: an overfull child is split by its parent, an
//! underfull one (below a quarter page) is merged with a sibling and split
//! again if the merge overflows, and the root grows or shrinks by one level.
//! Nothing reaches the store until `commit` (`commit.rs`).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::OwnedMutexGuard;

use crate::btree::meta::Meta;
use crate::btree::node::{BranchEntry, Child, LeafEntry, Node, Value};
use crate::btree::read::{branch_child_index, PageReader, RangeIter, DEPTH_MAX};
use crate::btree::{BTreeError, Result, Shared, TxnId, WriterState};
use crate::io::{PageId, PageStore};

/// The only write transaction (see `BTree::write`). Dropping it without
/// `commit` aborts it; nothing it did is visible to anyone else until commit.
pub struct WriteTxn<S: PageStore> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) writer: OwnedMutexGuard<WriterState>,
    /// The commit this transaction started from.
    pub(crate) base: Meta,
    /// Invariant: a dirty node's parent is dirty (copy-on-write copies whole paths).
    pub(crate) root: Child,
    pub(crate) arena: Vec<Node>,
    /// Pages of the base tree this transaction no longer references, with
    /// the txn that wrote each (`TxnId(0)` where not known: overflow pages).
    pub(crate) freed: Vec<(PageId, TxnId)>,
    pub(crate) entry_count: u64,
    pub(crate) changed: bool,
    /// Set when an operation failed half-way; the arena may then be inconsistent.
    pub(crate) failed: Option<String>,
}

impl<S: PageStore> std::fmt::Debug for WriteTxn<S> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WriteTxn")
            .field("base_txn_id", &self.base.txn)
            .field("dirty_nodes", &self.arena.len())
            .field("failed", &self.failed)
            .finish()
    }
}

enum Step {
    Leaf,
    Descend(usize, Child),
}

impl<S: PageStore> WriteTxn<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>, writer: OwnedMutexGuard<WriterState>, base: Meta) -> WriteTxn<S> {
        WriteTxn {
            shared,
            writer,
            base,
            root: Child::Page(base.root),
            arena: Vec::new(),
            freed: Vec::new(),
            entry_count: base.entry_count,
            changed: false,
            failed: None,
        }
    }

    /// The commit this transaction builds on; `commit` returns the next one.
    pub fn base_txn_id(&self) -> TxnId {
        self.base.txn
    }

    /// Entries including this transaction's changes.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    pub(crate) fn reader(&self) -> PageReader<'_, S> {
        PageReader {
            store: &self.shared.store,
            layout: self.shared.layout,
            page_count: self.base.page_count,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        self.shared.check_poison()?;
        match &self.failed {
            Some(cause) => Err(BTreeError::TxnFailed { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Sees this transaction's own writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_usable()?;
        let mut child = self.root;
        for _ in 0..DEPTH_MAX {
            match child {
                Child::Page(id) => return self.reader().get(id, self.base.txn, key),
                Child::Dirty(node) => match &self.arena[node] {
                    Node::Leaf(entries) => {
                        return match entries.binary_search_by(|entry| entry.key.as_ref().cmp(key)) {
                            Ok(index) => Ok(Some(self.reader().arena_value(&entries[index].value, self.base.txn)?)),
                            Err(_) => Ok(None),
                        }
                    }
                    Node::Branch(entries) => child = entries[branch_child_index(entries, key)].child,
                },
            }
        }
        panic!("write transaction arena deeper than {DEPTH_MAX} levels");
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        let mut child = self.root;
        for _ in 0..DEPTH_MAX {
            match child {
                Child::Page(id) => return self.reader().contains(id, self.base.txn, key),
                Child::Dirty(node) => match &self.arena[node] {
                    Node::Leaf(entries) => {
                        return Ok(entries.binary_search_by(|entry| entry.key.as_ref().cmp(key)).is_ok())
                    }
                    Node::Branch(entries) => child = entries[branch_child_index(entries, key)].child,
                },
            }
        }
        panic!("write transaction arena deeper than {DEPTH_MAX} levels");
    }

    /// Entries with `start <= key < end`, this transaction's writes included.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>> {
        self.check_usable()?;
        self.range_iter(start, end).collect()
    }

    /// Like `range`, one entry at a time. Does not check for poison; `range` does.
    pub fn range_iter(&self, start: &[u8], end: Option<&[u8]>) -> RangeIter<'_, S> {
        RangeIter::new(self.reader(), &self.arena, self.root, self.base.txn, start, end)
    }

    /// Inserts or replaces. Keys longer than `BTree::key_bytes_max` and values
    /// of 4 GiB or more are refused without harming the transaction.
    pub fn put(&mut self, key: &[u8], value: Bytes) -> Result<()> {
        self.check_usable()?;
        let layout = self.shared.layout;
        if key.len() > layout.key_bytes_max() {
            return Err(BTreeError::KeyTooLarge {
                len: key.len(),
                max: layout.key_bytes_max(),
            });
        }
        if u32::try_from(value.len()).is_err() {
            return Err(BTreeError::ValueTooLarge {
                len: value.len(),
                max: u32::MAX as usize,
            });
        }
        let value = if layout.value_is_inline(key.len(), value.len()) {
            Value::Inline(value)
        } else {
            Value::Large(value)
        };
        self.changed = true;
        let result = self.put_in_tree(key, value);
        self.note_failure(result)
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        self.check_usable()?;
        if key.len() > self.shared.layout.key_bytes_max() {
            return Ok(false);
        }
        let result = self.delete_in_tree(key);
        self.note_failure(result)
    }

    /// Ends the transaction without a trace (dropping it does the same).
    pub fn abort(self) {}

    fn note_failure<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            self.failed = Some(error.to_string());
        }
        result
    }

    fn put_in_tree(&mut self, key: &[u8], value: Value) -> Result<()> {
        let root = self.make_dirty(self.root)?;
        self.root = Child::Dirty(root);
        if self.insert_at(root, key, value)? {
            self.entry_count += 1;
        }
        self.fix_root()
    }

    fn delete_in_tree(&mut self, key: &[u8]) -> Result<bool> {
        // Copying the path for a key that is not there would rewrite pages for nothing.
        if !self.contains(key)? {
            return Ok(false);
        }
        self.changed = true;
        let root = self.make_dirty(self.root)?;
        self.root = Child::Dirty(root);
        let removed = self.remove_at(root, key)?;
        assert!(removed, "key {key:?} found by contains() but not by remove");
        self.entry_count -= 1;
        self.fix_root()?;
        Ok(true)
    }

    /// The arena index of `child`, copying its page into the arena first if needed.
    fn make_dirty(&mut self, child: Child) -> Result<usize> {
        match child {
            Child::Dirty(node) => Ok(node),
            Child::Page(id) => {
                let page = self.reader().node(id, self.base.txn)?;
                self.arena.push(Node::from_page(&page));
                self.freed.push((id, page.txn));
                Ok(self.arena.len() - 1)
            }
        }
    }

    fn branch_entries(&mut self, node: usize) -> &mut Vec<BranchEntry> {
        match &mut self.arena[node] {
            Node::Branch(entries) => entries,
            Node::Leaf(_) => panic!("arena node {node} is a leaf, expected a branch"),
        }
    }

    fn leaf_entries(&mut self, node: usize) -> &mut Vec<LeafEntry> {
        match &mut self.arena[node] {
            Node::Leaf(entries) => entries,
            Node::Branch(_) => panic!("arena node {node} is a branch, expected a leaf"),
        }
    }

    fn step_towards(&self, node: usize, key: &[u8]) -> Step {
        match &self.arena[node] {
            Node::Leaf(_) => Step::Leaf,
            Node::Branch(entries) => {
                let index = branch_child_index(entries, key);
                Step::Descend(index, entries[index].child)
            }
        }
    }

    /// Pages an overwritten or deleted value occupied, now freed.
    fn release(&mut self, value: &Value) -> Result<()> {
        if let Value::Overflow { first, len } = value {
            let (_, pages) = self.reader().overflow_value(*first, *len, self.base.txn)?;
            self.freed.extend(pages.into_iter().map(|page| (page, TxnId(0))));
        }
        Ok(())
    }

    /// Returns whether the key is new.
    fn insert_at(&mut self, node: usize, key: &[u8], value: Value) -> Result<bool> {
        match self.step_towards(node, key) {
            Step::Leaf => {
                let position = self
                    .leaf_entries(node)
                    .binary_search_by(|entry| entry.key.as_ref().cmp(key));
                match position {
                    Ok(index) => {
                        let old = self.leaf_entries(node)[index].value.clone();
                        self.release(&old)?;
                        self.leaf_entries(node)[index].value = value;
                        Ok(false)
                    }
                    Err(index) => {
                        let entry = LeafEntry {
                            key: Bytes::copy_from_slice(key),
                            value,
                        };
                        self.leaf_entries(node).insert(index, entry);
                        Ok(true)
                    }
                }
            }
            Step::Descend(index, child) => {
                let child = self.make_dirty(child)?;
                self.branch_entries(node)[index].child = Child::Dirty(child);
                let inserted = self.insert_at(child, key, value)?;
                self.fix_child(node, index)?;
                Ok(inserted)
            }
        }
    }

    /// Returns whether the key was found.
    fn remove_at(&mut self, node: usize, key: &[u8]) -> Result<bool> {
        match self.step_towards(node, key) {
            Step::Leaf => {
                let position = self
                    .leaf_entries(node)
                    .binary_search_by(|entry| entry.key.as_ref().cmp(key));
                let Ok(index) = position else {
                    return Ok(false);
                };
                let old = self.leaf_entries(node)[index].value.clone();
                self.release(&old)?;
                self.leaf_entries(node).remove(index);
                Ok(true)
            }
            Step::Descend(index, child) => {
                let child = self.make_dirty(child)?;
                self.branch_entries(node)[index].child = Child::Dirty(child);
                let removed = self.remove_at(child, key)?;
                self.fix_child(node, index)?;
                Ok(removed)
            }
        }
    }

    /// Brings child `index` of `parent` back within a page: splits it while
    /// overfull, merges it with a sibling when underfull.
    fn fix_child(&mut self, parent: usize, index: usize) -> Result<()> {
        let Child::Dirty(child) = self.branch_entries(parent)[index].child else {
            return Ok(());
        };
        let capacity = self.shared.layout.node_capacity();
        let size = self.arena[child].size_bytes();
        if size > capacity {
            self.split_children(parent, index, index);
        } else if size < self.shared.layout.node_underflow_bytes() && self.branch_entries(parent).len() > 1 {
            let left_index = if index + 1 < self.branch_entries(parent).len() {
                index
            } else {
                index - 1
            };
            self.merge_children(parent, left_index)?;
        }
        Ok(())
    }

    /// Splits children `first..=last` of `parent` until each fits a page.
    fn split_children(&mut self, parent: usize, first: usize, mut last: usize) {
        let capacity = self.shared.layout.node_capacity();
        let mut index = first;
        while index <= last {
            let Child::Dirty(child) = self.branch_entries(parent)[index].child else {
                panic!("child {index} of arena node {parent} to split is not dirty");
            };
            if self.arena[child].size_bytes() <= capacity {
                index += 1;
                continue;
            }
            let (separator, right) = self.arena[child].split();
            self.arena.push(right);
            let right = Child::Dirty(self.arena.len() - 1);
            self.branch_entries(parent).insert(
                index + 1,
                BranchEntry {
                    key: separator,
                    child: right,
                },
            );
            last += 1;
        }
    }

    /// Merges children `left` and `left + 1` of `parent`, splitting the result
    /// again if it does not fit (which leaves both halves above a quarter page).
    fn merge_children(&mut self, parent: usize, left: usize) -> Result<()> {
        let left_child = self.branch_entries(parent)[left].child;
        let left_node = self.make_dirty(left_child)?;
        self.branch_entries(parent)[left].child = Child::Dirty(left_node);
        let right_child = self.branch_entries(parent)[left + 1].child;
        let right_node = self.make_dirty(right_child)?;
        let removed = self.branch_entries(parent).remove(left + 1);
        // The right node's slot stays in the arena, empty and unreachable.
        let right = std::mem::replace(&mut self.arena[right_node], Node::Leaf(Vec::new()));
        self.arena[left_node].absorb(removed.key, right);
        self.split_children(parent, left, left);
        Ok(())
    }

    /// Grows the tree by a level while the root is overfull; drops a level
    /// while the root is a branch with one child.
    fn fix_root(&mut self) -> Result<()> {
        loop {
            let Child::Dirty(root) = self.root else {
                return Ok(());
            };
            if self.arena[root].size_bytes() > self.shared.layout.node_capacity() {
                self.arena.push(Node::Branch(vec![BranchEntry {
                    key: Bytes::new(),
                    child: self.root,
                }]));
                let new_root = self.arena.len() - 1;
                self.root = Child::Dirty(new_root);
                self.split_children(new_root, 0, 0);
                continue;
            }
            match &self.arena[root] {
                Node::Branch(entries) if entries.len() == 1 => self.root = entries[0].child,
                _ => return Ok(()),
            }
        }
    }
}
