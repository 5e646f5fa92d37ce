//! Whole-structure checks of the newest commit (tests, simulation and the
//! `verify` feature): key order and separator bounds, equal leaf depth, page
//! types and txn order, overflow chain lengths, and that pages `2..count` are
//! each exactly one of reachable, free, or free-list storage.

use crate::btree::meta::{Meta, FIRST_DATA_PAGE};
use crate::btree::page::ValueRef;
use crate::btree::read::{read_free_list, PageReader, DEPTH_MAX};
use crate::btree::{BTree, BTreeError, Result, TxnId};
use crate::io::{PageId, PageStore};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub txn_id: TxnId,
    /// Levels from the root to the leaves (1 for a lone root leaf).
    pub depth: usize,
    pub node_pages: u64,
    pub overflow_pages: u64,
    pub free_pages: u64,
    pub free_list_pages: u64,
    pub entry_count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Node,
    Overflow,
    Free,
    FreeListPage,
}

struct Walk<'a, S> {
    reader: PageReader<'a, S>,
    owners: Vec<Option<Owner>>,
    leaf_depth: Option<usize>,
    report: VerifyReport,
}

impl<S: PageStore> Walk<'_, S> {
    fn claim(&mut self, id: PageId, owner: Owner) -> Result<()> {
        let slot = self.owners.get_mut(id.0 as usize).ok_or_else(|| {
            BTreeError::corrupt(
                id,
                format!("{owner:?} page beyond the page count {}", self.reader.page_count),
            )
        })?;
        if let Some(previous) = slot {
            return Err(BTreeError::corrupt(
                id,
                format!("page is both {previous:?} and {owner:?}"),
            ));
        }
        *slot = Some(owner);
        Ok(())
    }

    /// Checks the subtree at `id`, whose keys must lie in `[lower, upper)`.
    fn node(
        &mut self,
        id: PageId,
        max_txn: TxnId,
        lower: Option<&[u8]>,
        upper: Option<&[u8]>,
        depth: usize,
    ) -> Result<()> {
        if depth > DEPTH_MAX {
            return Err(BTreeError::corrupt(id, format!("deeper than {DEPTH_MAX} levels")));
        }
        let node = self.reader.node(id, max_txn)?;
        self.claim(id, Owner::Node)?;
        self.report.node_pages += 1;
        let corrupt = |reason: String| Err(BTreeError::corrupt(id, reason));
        let first_key = usize::from(!node.is_leaf);
        for index in first_key..node.len() {
            let key = node.key(index);
            if index > first_key && node.key(index - 1) >= key {
                return corrupt(format!("keys {} and {index} out of order", index - 1));
            }
            if lower.is_some_and(|lower| key < lower) || upper.is_some_and(|upper| key >= upper) {
                return corrupt(format!("key {index} outside the bounds its parent gives"));
            }
            if key.len() > self.reader.layout.key_bytes_max() {
                return corrupt(format!("key {index} is {} bytes", key.len()));
            }
        }
        if node.is_leaf {
            if *self.leaf_depth.get_or_insert(depth) != depth {
                return corrupt(format!("leaf at depth {depth}, others at {:?}", self.leaf_depth));
            }
            for index in 0..node.len() {
                self.report.entry_count += 1;
                let (inline, value_len) = match node.value(index) {
                    ValueRef::Inline { start, end } => (true, end - start),
                    ValueRef::Overflow { first, len } => {
                        let (_, pages) = self.reader.overflow_value(first, len, node.txn)?;
                        for page in pages {
                            self.claim(page, Owner::Overflow)?;
                            self.report.overflow_pages += 1;
                        }
                        (false, len as usize)
                    }
                };
                if inline != self.reader.layout.value_is_inline(node.key(index).len(), value_len) {
                    return corrupt(format!("value {index} of {value_len} bytes stored inline={inline}"));
                }
            }
            return Ok(());
        }
        if node.len() < 2 && depth == 1 {
            return corrupt(format!("root branch with {} children", node.len()));
        }
        if !node.key(0).is_empty() {
            return corrupt("first branch key is not empty".to_string());
        }
        for index in 0..node.len() {
            let child_lower = if index == 0 { lower } else { Some(node.key(index)) };
            let child_upper = if index + 1 < node.len() {
                Some(node.key(index + 1))
            } else {
                upper
            };
            self.node(node.child(index), node.txn, child_lower, child_upper, depth + 1)?;
        }
        Ok(())
    }
}

impl<S: PageStore> BTree<S> {
    /// Checks the newest commit end to end (reads every page); waits for and
    /// holds the writer lock, so never call it while holding a `WriteTxn` in
    /// the same task. Errors name the first bad page found.
    pub async fn verify(&self) -> Result<VerifyReport> {
        self.shared.check_poison()?;
        let writer = self.shared.writer.lock().await;
        let meta: Meta = self.shared.lock_readers().newest;
        let layout = self.shared.layout;
        let reader = PageReader {
            store: &self.shared.store,
            layout,
            page_count: meta.page_count,
        };
        let mut walk = Walk {
            reader,
            owners: vec![None; meta.page_count as usize],
            leaf_depth: None,
            report: VerifyReport {
                txn_id: meta.txn,
                depth: 0,
                node_pages: 0,
                overflow_pages: 0,
                free_pages: 0,
                free_list_pages: 0,
                entry_count: 0,
            },
        };
        walk.node(meta.root, meta.txn, None, None, 1)?;
        walk.report.depth = walk.leaf_depth.unwrap_or(0);

        // The list on disk is the one written when the last commit was made
        // durable; after deferred commits only the writer's copy is current.
        if writer.durable == meta {
            let (free, list_pages) = read_free_list(&self.shared.store, layout, &meta)?;
            if free != writer.free || list_pages != writer.free_list_pages {
                return Err(BTreeError::corrupt(
                    meta.free_list,
                    "free list on disk differs from the writer's copy".to_string(),
                ));
            }
        }
        for (_, page) in writer.free.iter() {
            walk.claim(page, Owner::Free)?;
            walk.report.free_pages += 1;
        }
        for &page in &writer.free_list_pages {
            walk.claim(page, Owner::FreeListPage)?;
            walk.report.free_list_pages += 1;
        }
        for page in FIRST_DATA_PAGE..meta.page_count {
            if walk.owners[page as usize].is_none() {
                return Err(BTreeError::corrupt(
                    PageId(page),
                    "leaked: neither reachable nor free".to_string(),
                ));
            }
        }
        if walk.report.entry_count != meta.entry_count {
            return Err(BTreeError::corrupt(
                meta.root,
                format!(
                    "tree holds {} entries, meta says {}",
                    walk.report.entry_count, meta.entry_count
                ),
            ));
        }
        Ok(walk.report)
    }
}
