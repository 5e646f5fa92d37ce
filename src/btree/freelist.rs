//! Pages no committed tree needs any more, keyed by the transaction that freed
//! them.
//!
//! A page freed by transaction `f` is still reachable from every snapshot older
//! than `f`, so it may be written again only when no live reader has a
//! snapshot older than `f`: reuse requires `f <= oldest live snapshot`. The
//! writer's base snapshot counts as live, which keeps the previous commit
//! intact until the next one is durable.
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
    /// Invariant: no page appears twice, and no page listed here is reachable
    /// from the newest committed tree.
    by_txn: BTreeMap<TxnId, Vec<PageId>>,
    page_count: u64,
}

impl FreeList {
    pub(crate) fn len(&self) -> u64 {
        self.page_count
    }

    pub(crate) fn push(&mut self, txn: TxnId, pages: impl IntoIterator<Item = PageId>) {
        let group = self.by_txn.entry(txn).or_default();
        let before = group.len();
        group.extend(pages);
        self.page_count += (group.len() - before) as u64;
        if group.is_empty() {
            self.by_txn.remove(&txn);
        }
    }

    /// Takes a page freed by a transaction at or before `bound`, oldest first.
    pub(crate) fn pop_reusable(&mut self, bound: TxnId) -> Option<PageId> {
        let mut entry = self.by_txn.first_entry()?;
        if *entry.key() > bound {
            return None;
        }
        let page = entry.get_mut().pop().expect("free-list groups are never empty");
        if entry.get().is_empty() {
            entry.remove();
        }
        self.page_count -= 1;
        Some(page)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (TxnId, PageId)> + '_ {
        self.by_txn
            .iter()
            .flat_map(|(txn, pages)| pages.iter().map(move |page| (*txn, *page)))
    }

    pub(crate) fn encoded_bytes(&self) -> usize {
        8 * (2 * self.by_txn.len() + self.page_count as usize)
    }

    /// Chain pages needed to store the list.
    pub(crate) fn pages_needed(&self, layout: Layout) -> usize {
        self.encoded_bytes().div_ceil(layout.chain_data_bytes())
    }

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
