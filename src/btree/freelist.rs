//! Pages no committed tree needs any more, keyed by the transaction that freed
//! them.
//!
//! A page freed by transaction `f` is still reachable from every snapshot older
//! than `f`, so it may be written again only when no live reader has a
//! snapshot older than `f`: reuse requires `f <= oldest live snapshot`. The
//! writer's base snapshot counts as live. The last durable commit `d` pins
//! pages like a reader (a crash reopens it), except pages written after it:
//! `d` never reaches a page written by a later txn, so those wait for readers
//! only (`recent`). Deferred commits between two durable ones thus rewrite the
//! same few pages instead of taking new ones for every apply.
//!
//! On disk the list is a chain of `FreeList` pages carrying little-endian u64
//! words: groups of `[freeing txn, n, page ids...]`. It is rewritten whole
//! when a commit is made durable (bbolt writes it at every commit; here
//! deferred commits, one per apply, would rewrite a list that grows until the
//! next durable commit and is never read); its old chain's pages are freed by
//! that commit.

use std::collections::BTreeMap;

use crate::btree::page::Layout;
use crate::btree::{BTreeError, TxnId};
use crate::io::PageId;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FreeList {
    /// Invariant: no page appears twice (in either map), and no page listed
    /// here is reachable from the newest committed tree.
    by_txn: BTreeMap<TxnId, Vec<PageId>>,
    /// Pages both written and freed since the last durable commit, by the
    /// freeing txn. That commit cannot reach them (it never reaches a page
    /// written after it), so only readers hold them back: one apply's path
    /// is rewritten in place by the next instead of in new pages until the
    /// next durable commit. `settle` moves them to `by_txn` once a newer
    /// commit is durable; the list on disk is always settled.
    recent: BTreeMap<TxnId, Vec<PageId>>,
    page_count: u64,
}

impl FreeList {
    pub(crate) fn len(&self) -> u64 {
        self.page_count
    }

    /// Frees `pages` at `txn`; the last durable commit may reach them.
    pub(crate) fn push(&mut self, txn: TxnId, pages: impl IntoIterator<Item = PageId>) {
        self.page_count += push_group(&mut self.by_txn, txn, pages);
    }

    /// Frees `pages` at `txn`, each with the txn that wrote it: those written
    /// after `durable` (the last durable commit) go to `recent`.
    pub(crate) fn free_written(
        &mut self,
        txn: TxnId,
        pages: impl IntoIterator<Item = (PageId, TxnId)>,
        durable: TxnId,
    ) {
        let (pinned, recent) = (self.by_txn.entry(txn).or_default(), self.recent.entry(txn).or_default());
        let before = pinned.len() + recent.len();
        for (page, written) in pages {
            if written > durable {
                recent.push(page);
            } else {
                pinned.push(page);
            }
        }
        self.page_count += (pinned.len() + recent.len() - before) as u64;
        for groups in [&mut self.by_txn, &mut self.recent] {
            if groups.get(&txn).is_some_and(Vec::is_empty) {
                groups.remove(&txn);
            }
        }
    }

    /// Takes a page no reader and no durable commit needs: one written and
    /// freed since the last durable commit and freed at or before `readers`
    /// (the oldest live snapshot), else one freed at or before both `readers`
    /// and `durable`; oldest first within each.
    pub(crate) fn pop_reusable(&mut self, readers: TxnId, durable: TxnId) -> Option<PageId> {
        let page = pop_group(&mut self.recent, readers).or_else(|| pop_group(&mut self.by_txn, readers.min(durable)));
        if page.is_some() {
            self.page_count -= 1;
        }
        page
    }

    /// A commit at least as new as every freeing txn here became durable: no
    /// page is newer than it any more.
    pub(crate) fn settle(&mut self) {
        for (txn, pages) in std::mem::take(&mut self.recent) {
            self.by_txn.entry(txn).or_default().extend(pages);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (TxnId, PageId)> + '_ {
        self.by_txn
            .iter()
            .chain(&self.recent)
            .flat_map(|(txn, pages)| pages.iter().map(move |page| (*txn, *page)))
    }

    /// Bytes `encode` writes; the list must be settled.
    pub(crate) fn encoded_bytes(&self) -> usize {
        assert!(self.recent.is_empty(), "only a settled free list is written");
        8 * (2 * self.by_txn.len() + self.page_count as usize)
    }

    /// Chain pages needed to store the list.
    pub(crate) fn pages_needed(&self, layout: Layout) -> usize {
        self.encoded_bytes().div_ceil(layout.chain_data_bytes())
    }

    /// The list in its on-disk form; it must be settled.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.encoded_bytes());
        for (txn, pages) in &self.by_txn {
            bytes.extend_from_slice(&txn.0.to_le_bytes());
            bytes.extend_from_slice(&(pages.len() as u64).to_le_bytes());
            for page in pages {
                bytes.extend_from_slice(&page.0.to_le_bytes());
            }
        }
        bytes
    }

    /// Decodes the concatenated chain data; `first_page` names the chain in errors.
    pub(crate) fn decode(first_page: PageId, bytes: &[u8], page_count: u64) -> Result<FreeList, BTreeError> {
        let corrupt = |reason: String| BTreeError::corrupt(first_page, format!("free list: {reason}"));
        if bytes.len() % 8 != 0 {
            return Err(corrupt(format!("{} bytes is not a whole number of words", bytes.len())));
        }
        let mut words = bytes.chunks_exact(8).map(|word| {
            let mut array = [0u8; 8];
            array.copy_from_slice(word);
            u64::from_le_bytes(array)
        });
        let mut list = FreeList::default();
        while let Some(txn) = words.next() {
            let count = words
                .next()
                .ok_or_else(|| corrupt("group without a count".to_string()))?;
            let mut pages = Vec::new();
            for _ in 0..count {
                let page = words
                    .next()
                    .ok_or_else(|| corrupt(format!("group of txn {txn} cut short")))?;
                if !(2..page_count).contains(&page) {
                    return Err(corrupt(format!("page {page} outside 2..{page_count}")));
                }
                pages.push(PageId(page));
            }
            if pages.is_empty() || list.by_txn.contains_key(&TxnId(txn)) {
                return Err(corrupt(format!("empty or repeated group for txn {txn}")));
            }
            list.push(TxnId(txn), pages);
        }
        Ok(list)
    }
}

/// Adds `pages` to `txn`'s group (created if new, removed if still empty); returns how many.
fn push_group(groups: &mut BTreeMap<TxnId, Vec<PageId>>, txn: TxnId, pages: impl IntoIterator<Item = PageId>) -> u64 {
    let group = groups.entry(txn).or_default();
    let before = group.len();
    group.extend(pages);
    let added = (group.len() - before) as u64;
    if group.is_empty() {
        groups.remove(&txn);
    }
    added
}

/// Takes a page from the oldest group if it was freed at or before `bound`.
fn pop_group(groups: &mut BTreeMap<TxnId, Vec<PageId>>, bound: TxnId) -> Option<PageId> {
    let mut entry = groups.first_entry()?;
    if *entry.key() > bound {
        return None;
    }
    let page = entry.get_mut().pop().expect("free-list groups are never empty");
    if entry.get().is_empty() {
        entry.remove();
    }
    Some(page)
}
