//! Whole-tree snapshots as a byte stream (for Raft snapshots and etcd's
//! Maintenance.Snapshot), and rebuilding a tree file from one.
//!
//! The stream is a sequence of pages of the tree's page size:
//!
//! 1. a header page (`SnapshotHeader`, laid out like a meta page: txn, root,
//!    page count, entry count, page size);
//! 2. every page reachable from the root (nodes and overflow pages) exactly as
//!    stored, depth first; each still carries its checksum and its own id, so
//!    the receiver writes it back at the same id;
//! 3. a trailer page (`SnapshotTrailer`): at 24 the number of pages in part 2,
//!    at 32 a crc32 of those pages' bytes in order.
//!
//! The free list is not sent: the receiver rebuilds it from the ids that did
//! not arrive. A truncated, reordered, duplicated or damaged stream is refused
//! before anything points at the pages it wrote.

use bytes::{Buf, Bytes, BytesMut};

use crate::btree::freelist::FreeList;
use crate::btree::meta::{Meta, FIRST_DATA_PAGE};
use crate::btree::page::{
    check_page, encode_chain, new_page, parse_chain_page, read_u32, read_u64, seal_page, write_u32, write_u64, Layout,
    PageType, PAGE_ID_OFFSET,
};
use crate::btree::read::{PageReader, ReadTxn, DEPTH_MAX};
use crate::btree::{BTree, BTreeError, BTreeOptions, Result, TxnId};
use crate::io::{PageId, PageStore};

const TRAILER_COUNT_OFFSET: usize = 24;
const TRAILER_DIGEST_OFFSET: usize = 32;
/// Pages written to the store per `write_pages` call while restoring.
const RESTORE_BATCH_PAGES: usize = 256;

enum Pending {
    Node {
        id: PageId,
        max_txn: TxnId,
    },
    Overflow {
        id: PageId,
        max_txn: TxnId,
        remaining_pages: u64,
    },
}

enum Stage {
    Header,
    Body,
    Trailer,
    Done,
}

/// The pages of one `ReadTxn`'s snapshot, one `Bytes` of `page_size` per item.
/// Holds its own reader registration, so the pages stay put while it streams.
pub struct SnapshotStream<S: PageStore> {
    txn: ReadTxn<S>,
    stage: Stage,
    pending: Vec<Pending>,
    pages_sent: u64,
    digest: crc32fast::Hasher,
}

impl<S: PageStore> SnapshotStream<S> {
    pub(crate) fn new(txn: ReadTxn<S>) -> SnapshotStream<S> {
        let root = Pending::Node {
            id: txn.meta().root,
            max_txn: txn.meta().txn,
        };
        SnapshotStream {
            txn,
            stage: Stage::Header,
            pending: vec![root],
            pages_sent: 0,
            digest: crc32fast::Hasher::new(),
        }
    }

    /// The commit being streamed.
    pub fn txn_id(&self) -> TxnId {
        self.txn.txn_id()
    }

    /// Bytes the whole stream yields (header, every reachable page, trailer),
    /// known before streaming so etcd's `remaining_bytes` can count down. By
    /// the file invariant (`mod.rs`), the pages reachable from the root are
    /// the data pages that are neither free nor holding the free list; their
    /// count was published with the commit (a deferred commit's free list is
    /// only in memory).
    pub fn total_bytes(&self) -> Result<u64> {
        let meta = self.txn.meta();
        let layout = self.txn.reader().layout;
        let not_reachable = self.txn.unreachable_pages();
        let reachable = (meta.page_count - FIRST_DATA_PAGE)
            .checked_sub(not_reachable)
            .ok_or_else(|| {
                BTreeError::corrupt(
                    meta.free_list,
                    format!(
                        "free list of {not_reachable} pages is larger than the file's {} data pages",
                        meta.page_count - FIRST_DATA_PAGE
                    ),
                )
            })?;
        Ok((reachable + 2) * layout.page_size as u64)
    }

    fn next_body_page(&mut self) -> Result<Option<Bytes>> {
        let Some(pending) = self.pending.pop() else {
            return Ok(None);
        };
        let reader = self.txn.reader();
        let page = match pending {
            Pending::Node { id, max_txn } => {
                let node = reader.node(id, max_txn)?;
                // Pushed in reverse so the stream goes left to right.
                for index in (0..node.len()).rev() {
                    if node.is_leaf {
                        if let crate::btree::page::ValueRef::Overflow { first, len } = node.value(index) {
                            let remaining_pages = reader.layout.overflow_pages(u64::from(len));
                            self.pending.push(Pending::Overflow {
                                id: first,
                                max_txn: node.txn,
                                remaining_pages,
                            });
                        }
                    } else {
                        self.pending.push(Pending::Node {
                            id: node.child(index),
                            max_txn: node.txn,
                        });
                    }
                }
                node.bytes
            }
            Pending::Overflow {
                id,
                max_txn,
                remaining_pages,
            } => {
                let (bytes, _) = reader.typed(id, &[PageType::Overflow], max_txn)?;
                let (next, _) = parse_chain_page(reader.layout, id, &bytes)?;
                match (next, remaining_pages) {
                    (0, 1) => {}
                    (next, remaining) if next != 0 && remaining > 1 => self.pending.push(Pending::Overflow {
                        id: PageId(next),
                        max_txn,
                        remaining_pages: remaining - 1,
                    }),
                    _ => {
                        return Err(BTreeError::corrupt(
                            id,
                            format!("overflow chain length disagrees with its leaf ({remaining_pages} pages left)"),
                        ))
                    }
                }
                bytes
            }
        };
        // A copy: the stream's consumer may keep it after the reader is gone.
        let page = Bytes::copy_from_slice(&page);
        self.digest.update(&page);
        self.pages_sent += 1;
        Ok(Some(page))
    }
}

impl<S: PageStore> Iterator for SnapshotStream<S> {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        let layout = self.txn.reader().layout;
        match self.stage {
            Stage::Header => {
                self.stage = Stage::Body;
                let meta = Meta {
                    free_list: PageId(0),
                    ..*self.txn.meta()
                };
                Some(Ok(meta.encode(layout, PageType::SnapshotHeader, PageId(0))))
            }
            Stage::Body => match self.next_body_page() {
                Ok(Some(page)) => Some(Ok(page)),
                Ok(None) => {
                    self.stage = Stage::Trailer;
                    self.next()
                }
                Err(error) => {
                    self.stage = Stage::Done;
                    Some(Err(error))
                }
            },
            Stage::Trailer => {
                self.stage = Stage::Done;
                let mut page = new_page(layout, PageType::SnapshotTrailer, PageId(0), self.txn.txn_id());
                write_u64(&mut page, TRAILER_COUNT_OFFSET, self.pages_sent);
                write_u32(&mut page, TRAILER_DIGEST_OFFSET, self.digest.clone().finalize());
                Some(Ok(seal_page(page)))
            }
            Stage::Done => None,
        }
    }
}

/// Rebuilds a tree file from a snapshot stream, into an empty store.
/// Feed the bytes in chunks of any size, then `finish`. After any error the
/// restore is over: discard the store.
pub struct SnapshotRestore<S: PageStore> {
    store: S,
    options: BTreeOptions,
    layout: Layout,
    buffer: BytesMut,
    header: Option<Meta>,
    /// Bit per page id: arrived in the stream.
    received: Vec<u64>,
    pages_received: u64,
    digest: crc32fast::Hasher,
    batch: Vec<(PageId, Bytes)>,
    trailer_seen: bool,
    failed: bool,
}

fn invalid(reason: String) -> BTreeError {
    BTreeError::InvalidSnapshot { reason }
}

fn bit(bits: &[u64], id: u64) -> bool {
    bits[(id / 64) as usize] & (1 << (id % 64)) != 0
}

fn set_bit(bits: &mut [u64], id: u64) {
    bits[(id / 64) as usize] |= 1 << (id % 64);
}

impl<S: PageStore> SnapshotRestore<S> {
    pub fn new(store: S, options: BTreeOptions) -> Result<SnapshotRestore<S>> {
        let layout = Layout::new(options.page_size)?;
        if store.page_size() != layout.page_size {
            return Err(BTreeError::PageSizeMismatch {
                expected: layout.page_size,
                found: store.page_size(),
            });
        }
        if store.page_count() != 0 {
            return Err(invalid(format!(
                "target store is not empty ({} pages)",
                store.page_count()
            )));
        }
        Ok(SnapshotRestore {
            store,
            options,
            layout,
            buffer: BytesMut::new(),
            header: None,
            received: Vec::new(),
            pages_received: 0,
            digest: crc32fast::Hasher::new(),
            batch: Vec::new(),
            trailer_seen: false,
            failed: false,
        })
    }

    /// Takes the next bytes of the stream.
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        if self.failed {
            return Err(invalid("an earlier error ended this restore".to_string()));
        }
        self.buffer.extend_from_slice(chunk);
        let result = self.take_pages().await;
        self.failed = result.is_err();
        result
    }

    async fn take_pages(&mut self) -> Result<()> {
        while self.buffer.len() >= self.layout.page_size {
            let page = self.buffer.split_to(self.layout.page_size).freeze();
            self.take_page(page)?;
            if self.batch.len() >= RESTORE_BATCH_PAGES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.store.write_pages(batch).await.map_err(BTreeError::Io)
    }

    fn take_page(&mut self, page: Bytes) -> Result<()> {
        let Some(header) = self.header else {
            let meta = Meta::decode(self.layout, PageId(0), &page, PageType::SnapshotHeader)
                .map_err(|error| invalid(format!("bad header page: {error}")))?;
            self.received = vec![0; meta.page_count.div_ceil(64) as usize];
            self.header = Some(meta);
            return Ok(());
        };
        if self.trailer_seen {
            return Err(invalid("data after the trailer".to_string()));
        }
        let id = PageId(read_u64(&page, PAGE_ID_OFFSET));
        let checked = check_page(self.layout, id, &page)
            .map_err(|error| invalid(format!("page {} of the stream: {error}", self.pages_received + 1)))?;
        if checked.page_type == PageType::SnapshotTrailer {
            let count = read_u64(&page, TRAILER_COUNT_OFFSET);
            let digest = read_u32(&page, TRAILER_DIGEST_OFFSET);
            if count != self.pages_received || digest != self.digest.clone().finalize() || checked.txn != header.txn {
                return Err(invalid(format!(
                    "trailer says {count} pages, {} arrived, or their digest or txn differs",
                    self.pages_received
                )));
            }
            self.trailer_seen = true;
            return Ok(());
        }
        if !matches!(
            checked.page_type,
            PageType::Leaf | PageType::Branch | PageType::Overflow
        ) {
            return Err(invalid(format!("page {} is a {:?} page", id.0, checked.page_type)));
        }
        if !(FIRST_DATA_PAGE..header.page_count).contains(&id.0) || bit(&self.received, id.0) {
            return Err(invalid(format!("page {} out of range or sent twice", id.0)));
        }
        if checked.txn > header.txn {
            return Err(invalid(format!(
                "page {} from txn {}, after the snapshot",
                id.0, checked.txn.0
            )));
        }
        set_bit(&mut self.received, id.0);
        self.pages_received += 1;
        self.digest.update(&page);
        self.batch.push((id, page));
        Ok(())
    }

    /// Checks the whole tree arrived, writes the free list and the meta page,
    /// and opens the result.
    pub async fn finish(mut self) -> Result<BTree<S>> {
        if self.failed {
            return Err(invalid("an earlier error ended this restore".to_string()));
        }
        let Some(header) = self
            .header
            .filter(|_| self.trailer_seen && !self.buffer.has_remaining())
        else {
            return Err(invalid(format!(
                "stream ended early (header: {}, trailer: {}, {} stray bytes)",
                self.header.is_some(),
                self.trailer_seen,
                self.buffer.len()
            )));
        };
        self.flush().await?;
        let reachable = self.reachable(&header)?;
        if reachable != self.received {
            return Err(invalid("pages arrived that the tree does not reach".to_string()));
        }
        let mut free = FreeList::default();
        let missing = (FIRST_DATA_PAGE..header.page_count).filter(|id| !bit(&self.received, *id));
        free.push(TxnId(0), missing.map(PageId));
        let mut list_pages = Vec::new();
        while list_pages.len() < free.pages_needed(self.layout) {
            let page = free
                .pop_reusable(header.txn, header.txn)
                .expect("the free list holds the pages it needs");
            list_pages.push(page);
        }
        let list = encode_chain(self.layout, PageType::FreeList, header.txn, &list_pages, &free.encode());
        let meta = Meta {
            free_list: list_pages.first().copied().unwrap_or(PageId(0)),
            ..header
        };
        let meta_page = meta.encode(self.layout, PageType::Meta, meta.slot());
        let store = &self.store;
        async {
            store.write_pages(list).await?;
            store.sync().await?;
            store.write_pages(vec![(meta.slot(), meta_page)]).await?;
            store.sync().await
        }
        .await
        .map_err(BTreeError::Io)?;
        BTree::open(self.store, self.options).await
    }

    /// Walks the restored tree through the store: every page it reaches must
    /// have arrived intact, and the entry count must match the header.
    fn reachable(&self, header: &Meta) -> Result<Vec<u64>> {
        let reader = PageReader {
            store: &self.store,
            layout: self.layout,
            page_count: header.page_count,
        };
        let mut reached = vec![0u64; self.received.len()];
        let mut entries = 0u64;
        let mut stack = vec![(header.root, header.txn, 0usize)];
        while let Some((id, max_txn, depth)) = stack.pop() {
            if depth > DEPTH_MAX || !bit(&self.received, id.0) || bit(&reached, id.0) {
                return Err(invalid(format!("page {} missing, reached twice or too deep", id.0)));
            }
            set_bit(&mut reached, id.0);
            let node = reader.node(id, max_txn).map_err(|error| invalid(error.to_string()))?;
            for index in 0..node.len() {
                if !node.is_leaf {
                    stack.push((node.child(index), node.txn, depth + 1));
                    continue;
                }
                entries += 1;
                if let crate::btree::page::ValueRef::Overflow { first, len } = node.value(index) {
                    let (_, pages) = reader
                        .overflow_value(first, len, node.txn)
                        .map_err(|e| invalid(e.to_string()))?;
                    for page in pages {
                        if !bit(&self.received, page.0) || bit(&reached, page.0) {
                            return Err(invalid(format!("overflow page {} missing or shared", page.0)));
                        }
                        set_bit(&mut reached, page.0);
                    }
                }
            }
        }
        if entries != header.entry_count {
            return Err(invalid(format!(
                "{entries} entries arrived, the header says {}",
                header.entry_count
            )));
        }
        Ok(reached)
    }
}
