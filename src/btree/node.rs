//! Nodes a write transaction has copied into memory (copy-on-write), and how
//! they are sized, split and encoded back into pages.

use bytes::Bytes;

use crate::btree::page::{
    Layout, NodePage, NodeWriter, ValueRef, BRANCH_OVERHEAD, LEAF_INLINE_OVERHEAD, LEAF_OVERFLOW_OVERHEAD,
};
use crate::btree::TxnId;
use crate::io::PageId;

/// A pointer to a child: either a committed page nobody may change, or a node
/// this transaction copied into its arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Child {
    Page(PageId),
    Dirty(usize),
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Stored inside the leaf.
    Inline(Bytes),
    /// An overflow chain written by an earlier commit.
    Overflow { first: PageId, len: u32 },
    /// Too large for the leaf; goes to fresh overflow pages at commit.
    Large(Bytes),
}

#[derive(Clone, Debug)]
pub(crate) struct LeafEntry {
    pub(crate) key: Bytes,
    pub(crate) value: Value,
}

#[derive(Clone, Debug)]
pub(crate) struct BranchEntry {
    /// Invariant: empty for the first entry of a branch (minus infinity).
    pub(crate) key: Bytes,
    pub(crate) child: Child,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// Invariant: keys strictly increasing.
    Leaf(Vec<LeafEntry>),
    /// Invariant: at least one entry; keys after the first strictly increasing.
    Branch(Vec<BranchEntry>),
}

pub(crate) fn leaf_entry_bytes(entry: &LeafEntry) -> usize {
    match &entry.value {
        Value::Inline(value) => LEAF_INLINE_OVERHEAD + entry.key.len() + value.len(),
        Value::Overflow { .. } | Value::Large(_) => LEAF_OVERFLOW_OVERHEAD + entry.key.len(),
    }
}

pub(crate) fn branch_entry_bytes(entry: &BranchEntry) -> usize {
    BRANCH_OVERHEAD + entry.key.len()
}

impl Node {
    /// Copies a committed page into memory; keys and inline values stay
    /// slices of the page buffer, which nobody rewrites while this
    /// transaction lives (the page is only freed by its commit).
    pub(crate) fn from_page(page: &NodePage) -> Node {
        if page.is_leaf {
            let entries = (0..page.len())
                .map(|index| {
                    let value = match page.value(index) {
                        ValueRef::Inline { start, end } => Value::Inline(page.bytes.slice(start..end)),
                        ValueRef::Overflow { first, len } => Value::Overflow { first, len },
                    };
                    LeafEntry {
                        key: page.key_bytes(index),
                        value,
                    }
                })
                .collect();
            Node::Leaf(entries)
        } else {
            let entries = (0..page.len())
                .map(|index| BranchEntry {
                    key: if index == 0 {
                        Bytes::new()
                    } else {
                        page.key_bytes(index)
                    },
                    child: Child::Page(page.child(index)),
                })
                .collect();
            Node::Branch(entries)
        }
    }

    /// Bytes of entries and slots; fits a page iff `<= layout.node_capacity()`.
    pub(crate) fn size_bytes(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.iter().map(leaf_entry_bytes).sum(),
            Node::Branch(entries) => entries.iter().map(branch_entry_bytes).sum(),
        }
    }

    fn entry_sizes(&self) -> Vec<usize> {
        match self {
            Node::Leaf(entries) => entries.iter().map(leaf_entry_bytes).collect(),
            Node::Branch(entries) => entries.iter().map(branch_entry_bytes).collect(),
        }
    }

    /// Moves the upper part of an oversized node into a new node and returns
    /// it with the separator key (the new node's smallest key). The split point
    /// minimises the larger half, so with entries of at most half a page both
    /// halves fit.
    pub(crate) fn split(&mut self) -> (Bytes, Node) {
        let sizes = self.entry_sizes();
        assert!(sizes.len() >= 2, "cannot split a node of {} entries", sizes.len());
        let total: usize = sizes.iter().sum();
        let mut best = (usize::MAX, 1);
        let mut left = 0;
        for (index, size) in sizes.iter().enumerate().take(sizes.len() - 1) {
            left += size;
            let larger = left.max(total - left);
            if larger < best.0 {
                best = (larger, index + 1);
            }
        }
        let at = best.1;
        match self {
            Node::Leaf(entries) => {
                let right = entries.split_off(at);
                (right[0].key.clone(), Node::Leaf(right))
            }
            Node::Branch(entries) => {
                let mut right = entries.split_off(at);
                let separator = std::mem::take(&mut right[0].key);
                (separator, Node::Branch(right))
            }
        }
    }

    /// Appends `right` (the next sibling); `separator` is the parent's key for it.
    pub(crate) fn absorb(&mut self, separator: Bytes, right: Node) {
        match (self, right) {
            (Node::Leaf(entries), Node::Leaf(right_entries)) => entries.extend(right_entries),
            (Node::Branch(entries), Node::Branch(mut right_entries)) => {
                right_entries[0].key = separator;
                entries.extend(right_entries);
            }
            (left, right) => panic!(
                "siblings of different kinds: left leaf={} right leaf={}",
                matches!(left, Node::Leaf(_)),
                matches!(right, Node::Leaf(_))
            ),
        }
    }
}

/// Encodes a node whose children and values already have page ids.
pub(crate) fn encode_leaf(layout: Layout, id: PageId, txn: TxnId, entries: &[LeafEntry]) -> Bytes {
    let mut writer = NodeWriter::new(layout, true, id, txn, entries.len());
    for entry in entries {
        match &entry.value {
            Value::Inline(value) => writer.push_inline(&entry.key, value),
            Value::Overflow { first, len } => writer.push_overflow(&entry.key, *first, *len),
            Value::Large(_) => panic!(
                "large value of key {:?} reached encode without overflow pages",
                entry.key
            ),
        }
    }
    writer.finish()
}

pub(crate) fn encode_branch(layout: Layout, id: PageId, txn: TxnId, entries: &[(Bytes, PageId)]) -> Bytes {
    let mut writer = NodeWriter::new(layout, false, id, txn, entries.len());
    for (index, (key, child)) in entries.iter().enumerate() {
        assert!(
            index > 0 || key.is_empty(),
            "first branch key must be empty, page {id:?}"
        );
        writer.push_branch(key, *child);
    }
    writer.finish()
}
