//! Byte layout of every page kind, and the checks a page must pass before
//! anything trusts its contents.
//!
//! Common header (all integers little-endian), inside the checksum:
//!
//! ```text
//! 0..4    crc32 (crc32fast) of bytes 4..page_size
//! 4       page type (see `PageType`)
//! 5..8    zero
//! 8..16   the page's own id: a write that lands on the wrong page is caught
//! 16..24  id of the transaction that wrote the page
//! 24..    type-specific
//! ```
//!
//! Node pages (leaf, branch): `24..26` entry count, `26..32` zero, then one u16
//! slot per entry (offset of the entry from the page start), then the entries.
//! Leaf entry: key_len u16, kind u8 (0 inline, 1 overflow), value_len u32, then
//! for inline the key and the value, for overflow the first overflow page id
//! (u64) and the key. Branch entry: key_len u16, child page id u64, key. A
//! branch's first key is always empty: it stands for "everything below the
//! second key".
//!
//! Chain pages (overflow values, the free list): `24..32` next page id (0 ends
//! the chain), `32..36` bytes of data in this page, `36..40` zero, data at 40.
//!
//! Meta pages live at ids 0 and 1 and are described in `meta.rs`.

use bytes::{Bytes, BytesMut};

use crate::btree::{BTreeError, TxnId};
use crate::io::PageId;

pub(crate) const CHECKSUM_OFFSET: usize = 0;
pub(crate) const TYPE_OFFSET: usize = 4;
pub(crate) const PAGE_ID_OFFSET: usize = 8;
pub(crate) const TXN_ID_OFFSET: usize = 16;

const NODE_COUNT_OFFSET: usize = 24;
/// Where a node page's slot array starts.
pub(crate) const NODE_HEADER_BYTES: usize = 32;
const SLOT_BYTES: usize = 2;

const CHAIN_NEXT_OFFSET: usize = 24;
const CHAIN_LEN_OFFSET: usize = 32;
pub(crate) const CHAIN_HEADER_BYTES: usize = 40;

/// Bytes a leaf entry with an inline value takes: slot, key_len, kind,
/// value_len, then key and value.
pub(crate) const LEAF_INLINE_OVERHEAD: usize = SLOT_BYTES + 2 + 1 + 4;
/// Bytes a leaf entry whose value lives in overflow pages takes, plus the key.
pub(crate) const LEAF_OVERFLOW_OVERHEAD: usize = SLOT_BYTES + 2 + 1 + 4 + 8;
/// Bytes a branch entry takes, plus the key.
pub(crate) const BRANCH_OVERHEAD: usize = SLOT_BYTES + 2 + 8;

const VALUE_KIND_INLINE: u8 = 0;
const VALUE_KIND_OVERFLOW: u8 = 1;

pub(crate) const PAGE_SIZE_MIN: usize = 512;
pub(crate) const PAGE_SIZE_MAX: usize = 65536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageType {
    Meta = 1,
    Leaf = 2,
    Branch = 3,
    Overflow = 4,
    FreeList = 5,
    SnapshotHeader = 6,
    SnapshotTrailer = 7,
}

impl PageType {
    pub(crate) fn from_byte(byte: u8) -> Option<PageType> {
        Some(match byte {
            1 => PageType::Meta,
            2 => PageType::Leaf,
            3 => PageType::Branch,
            4 => PageType::Overflow,
            5 => PageType::FreeList,
            6 => PageType::SnapshotHeader,
            7 => PageType::SnapshotTrailer,
            _ => return None,
        })
    }
}

/// Sizes derived from the page size; every limit of the format comes from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) page_size: usize,
}

impl Layout {
    pub(crate) fn new(page_size: usize) -> Result<Layout, BTreeError> {
        if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
            return Err(BTreeError::InvalidPageSize { page_size });
        }
        Ok(Layout { page_size })
    }

    /// Bytes of entries (slots included) a node page can hold.
    pub(crate) fn node_capacity(&self) -> usize {
        self.page_size - NODE_HEADER_BYTES
    }

    /// A node smaller than this after a change is merged with a sibling.
    pub(crate) fn node_underflow_bytes(&self) -> usize {
        self.node_capacity() / 4
    }

    /// The largest key: half a page minus 64 bytes (1984 bytes with 4 KiB pages).
    /// Invariant: any single entry takes at most half a node, so splitting an
    /// overfull node in two always yields two nodes that fit.
    pub(crate) fn key_bytes_max(&self) -> usize {
        self.page_size / 2 - 64
    }

    /// Whether a value is stored inside the leaf rather than in overflow pages.
    pub(crate) fn value_is_inline(&self, key_len: usize, value_len: usize) -> bool {
        value_len <= self.node_capacity() / 4 && LEAF_INLINE_OVERHEAD + key_len + value_len <= self.node_capacity() / 2
    }

    pub(crate) fn chain_data_bytes(&self) -> usize {
        self.page_size - CHAIN_HEADER_BYTES
    }

    /// Pages an overflow value of `len` bytes occupies (at least one).
    pub(crate) fn overflow_pages(&self, len: u64) -> u64 {
        len.div_ceil(self.chain_data_bytes() as u64).max(1)
    }
}

// Any key the layout accepts fits twice in the smallest page, as the split
// argument above needs.
const _: () = assert!(LEAF_OVERFLOW_OVERHEAD + (PAGE_SIZE_MIN / 2 - 64) <= (PAGE_SIZE_MIN - NODE_HEADER_BYTES) / 2);
const _: () = assert!(BRANCH_OVERHEAD <= LEAF_OVERFLOW_OVERHEAD);

pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn write_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// A zeroed page with the common header filled in except the checksum.
pub(crate) fn new_page(layout: Layout, page_type: PageType, id: PageId, txn: TxnId) -> BytesMut {
    let mut page = BytesMut::zeroed(layout.page_size);
    page[TYPE_OFFSET] = page_type as u8;
    write_u64(&mut page, PAGE_ID_OFFSET, id.0);
    write_u64(&mut page, TXN_ID_OFFSET, txn.0);
    page
}

pub(crate) fn page_checksum(page: &[u8]) -> u32 {
    crc32fast::hash(&page[CHECKSUM_OFFSET + 4..])
}

/// Whether a page is whole and undamaged (says nothing about what it holds).
pub(crate) fn checksum_ok(layout: Layout, page: &[u8]) -> bool {
    page.len() == layout.page_size && read_u32(page, CHECKSUM_OFFSET) == page_checksum(page)
}

/// Stamps the checksum; the last step before a page leaves for the store.
pub(crate) fn seal_page(mut page: BytesMut) -> Bytes {
    let checksum = page_checksum(&page);
    write_u32(&mut page, CHECKSUM_OFFSET, checksum);
    page.freeze()
}

/// The checked header of a page read back from the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageHeader {
    pub(crate) page_type: PageType,
    pub(crate) txn: TxnId,
}

/// Checks length, checksum, type byte and self-identification of a page that
/// should be page `id`; says what is wrong in the error.
pub(crate) fn check_page(layout: Layout, id: PageId, page: &[u8]) -> Result<PageHeader, BTreeError> {
    if page.len() != layout.page_size {
        return Err(BTreeError::corrupt(
            id,
            format!("page is {} bytes, expected {}", page.len(), layout.page_size),
        ));
    }
    let stored = read_u32(page, CHECKSUM_OFFSET);
    let computed = page_checksum(page);
    if stored != computed {
        return Err(BTreeError::corrupt(
            id,
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or damaged page"),
        ));
    }
    let self_id = read_u64(page, PAGE_ID_OFFSET);
    if self_id != id.0 {
        return Err(BTreeError::corrupt(
            id,
            format!("page says it is page {self_id}: misdirected write or read"),
        ));
    }
    let type_byte = page[TYPE_OFFSET];
    let page_type = PageType::from_byte(type_byte)
        .ok_or_else(|| BTreeError::corrupt(id, format!("unknown page type {type_byte}")))?;
    Ok(PageHeader {
        page_type,
        txn: TxnId(read_u64(page, TXN_ID_OFFSET)),
    })
}

/// Where a leaf entry's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueRef {
    /// Byte range inside the leaf page.
    Inline { start: usize, end: usize },
    /// A chain of overflow pages holding `len` bytes.
    Overflow { first: PageId, len: u32 },
}

/// A leaf or branch page whose slots and entries were bounds-checked on load,
/// so the accessors below cannot index out of the page.
#[derive(Clone, Debug)]
pub(crate) struct NodePage {
    pub(crate) id: PageId,
    pub(crate) bytes: Bytes,
    pub(crate) is_leaf: bool,
    pub(crate) txn: TxnId,
    count: usize,
}

impl NodePage {
    /// Parses a page that already passed `check_page` as a leaf or branch.
    pub(crate) fn parse(id: PageId, bytes: Bytes, header: PageHeader) -> Result<NodePage, BTreeError> {
        let is_leaf = match header.page_type {
            PageType::Leaf => true,
            PageType::Branch => false,
            other => {
                return Err(BTreeError::corrupt(
                    id,
                    format!("expected a leaf or branch page, found {other:?}"),
                ))
            }
        };
        let count = usize::from(read_u16(&bytes, NODE_COUNT_OFFSET));
        let entries_start = NODE_HEADER_BYTES + count * SLOT_BYTES;
        if entries_start > bytes.len() {
            return Err(BTreeError::corrupt(id, format!("{count} slots do not fit the page")));
        }
        if !is_leaf && count == 0 {
            return Err(BTreeError::corrupt(id, "branch page with no children".to_string()));
        }
        for index in 0..count {
            let offset = usize::from(read_u16(&bytes, NODE_HEADER_BYTES + index * SLOT_BYTES));
            let end = if is_leaf {
                if offset < entries_start || offset + 7 > bytes.len() {
                    return Err(BTreeError::corrupt(
                        id,
                        format!("entry {index} offset {offset} out of range"),
                    ));
                }
                let key_len = usize::from(read_u16(&bytes, offset));
                let kind = bytes[offset + 2];
                let value_len = read_u32(&bytes, offset + 3) as usize;
                match kind {
                    VALUE_KIND_INLINE => offset + 7 + key_len + value_len,
                    VALUE_KIND_OVERFLOW => offset + 15 + key_len,
                    _ => return Err(BTreeError::corrupt(id, format!("entry {index} has value kind {kind}"))),
                }
            } else {
                if offset < entries_start || offset + 10 > bytes.len() {
                    return Err(BTreeError::corrupt(
                        id,
                        format!("entry {index} offset {offset} out of range"),
                    ));
                }
                offset + 10 + usize::from(read_u16(&bytes, offset))
            };
            if end > bytes.len() {
                return Err(BTreeError::corrupt(id, format!("entry {index} runs past the page end")));
            }
        }
        Ok(NodePage {
            id,
            bytes,
            is_leaf,
            txn: header.txn,
            count,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn entry_offset(&self, index: usize) -> usize {
        assert!(
            index < self.count,
            "entry {index} of {} in page {:?}",
            self.count,
            self.id
        );
        usize::from(read_u16(&self.bytes, NODE_HEADER_BYTES + index * SLOT_BYTES))
    }

    pub(crate) fn key(&self, index: usize) -> &[u8] {
        let offset = self.entry_offset(index);
        let key_len = usize::from(read_u16(&self.bytes, offset));
        let key_start = if self.is_leaf {
            match self.bytes[offset + 2] {
                VALUE_KIND_INLINE => offset + 7,
                _ => offset + 15,
            }
        } else {
            offset + 10
        };
        &self.bytes[key_start..key_start + key_len]
    }

    /// The key as a slice of the page buffer (no copy).
    pub(crate) fn key_bytes(&self, index: usize) -> Bytes {
        self.bytes.slice_ref(self.key(index))
    }

    pub(crate) fn value(&self, index: usize) -> ValueRef {
        assert!(self.is_leaf, "value() on branch page {:?}", self.id);
        let offset = self.entry_offset(index);
        let key_len = usize::from(read_u16(&self.bytes, offset));
        let value_len = read_u32(&self.bytes, offset + 3);
        if self.bytes[offset + 2] == VALUE_KIND_INLINE {
            let start = offset + 7 + key_len;
            ValueRef::Inline {
                start,
                end: start + value_len as usize,
            }
        } else {
            ValueRef::Overflow {
                first: PageId(read_u64(&self.bytes, offset + 7)),
                len: value_len,
            }
        }
    }

    pub(crate) fn child(&self, index: usize) -> PageId {
        assert!(!self.is_leaf, "child() on leaf page {:?}", self.id);
        PageId(read_u64(&self.bytes, self.entry_offset(index) + 2))
    }

    /// Leaf: position of `key`, or where it would go.
    pub(crate) fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = (low + high) / 2;
            match self.key(middle).cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    /// Branch: index of the child whose key range holds `key` (the first key
    /// counts as minus infinity).
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (1, self.count);
        while low < high {
            let middle = (low + high) / 2;
            if self.key(middle) <= key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low - 1
    }
}

/// Fills a node page: the caller hands entries already in key order.
pub(crate) struct NodeWriter {
    page: BytesMut,
    count: usize,
    capacity_entries: usize,
    next_entry: usize,
}

impl NodeWriter {
    pub(crate) fn new(layout: Layout, is_leaf: bool, id: PageId, txn: TxnId, count: usize) -> NodeWriter {
        let page_type = if is_leaf { PageType::Leaf } else { PageType::Branch };
        let mut page = new_page(layout, page_type, id, txn);
        let count_u16 = u16::try_from(count).unwrap_or_else(|_| panic!("{count} entries in one page"));
        write_u16(&mut page, NODE_COUNT_OFFSET, count_u16);
        NodeWriter {
            page,
            count: 0,
            capacity_entries: count,
            next_entry: NODE_HEADER_BYTES + count * SLOT_BYTES,
        }
    }

    fn reserve(&mut self, bytes: usize) -> usize {
        let offset = self.next_entry;
        assert!(
            self.count < self.capacity_entries && offset + bytes <= self.page.len(),
            "node overflows its page: entry {} of {}, offset {offset} + {bytes} > {}",
            self.count,
            self.capacity_entries,
            self.page.len()
        );
        let slot = NODE_HEADER_BYTES + self.count * SLOT_BYTES;
        write_u16(&mut self.page, slot, offset as u16);
        self.count += 1;
        self.next_entry += bytes;
        offset
    }

    pub(crate) fn push_inline(&mut self, key: &[u8], value: &[u8]) {
        let offset = self.reserve(7 + key.len() + value.len());
        let page = &mut self.page;
        write_u16(page, offset, key.len() as u16);
        page[offset + 2] = VALUE_KIND_INLINE;
        write_u32(page, offset + 3, value.len() as u32);
        page[offset + 7..offset + 7 + key.len()].copy_from_slice(key);
        page[offset + 7 + key.len()..offset + 7 + key.len() + value.len()].copy_from_slice(value);
    }

    pub(crate) fn push_overflow(&mut self, key: &[u8], first: PageId, len: u32) {
        let offset = self.reserve(15 + key.len());
        let page = &mut self.page;
        write_u16(page, offset, key.len() as u16);
        page[offset + 2] = VALUE_KIND_OVERFLOW;
        write_u32(page, offset + 3, len);
        write_u64(page, offset + 7, first.0);
        page[offset + 15..offset + 15 + key.len()].copy_from_slice(key);
    }

    pub(crate) fn push_branch(&mut self, key: &[u8], child: PageId) {
        let offset = self.reserve(10 + key.len());
        let page = &mut self.page;
        write_u16(page, offset, key.len() as u16);
        write_u64(page, offset + 2, child.0);
        page[offset + 10..offset + 10 + key.len()].copy_from_slice(key);
    }

    pub(crate) fn finish(self) -> Bytes {
        assert_eq!(
            self.count, self.capacity_entries,
            "node page written with missing entries"
        );
        seal_page(self.page)
    }
}

/// Splits `data` over the chain pages `ids` (in order); pages past the data
/// carry zero bytes, which lets the free list keep pages it no longer needs.
pub(crate) fn encode_chain(
    layout: Layout,
    page_type: PageType,
    txn: TxnId,
    ids: &[PageId],
    data: &[u8],
) -> Vec<(PageId, Bytes)> {
    let per_page = layout.chain_data_bytes();
    assert!(
        data.len() <= ids.len() * per_page,
        "{} bytes do not fit {} chain pages",
        data.len(),
        ids.len()
    );
    let mut pages = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let mut page = new_page(layout, page_type, *id, txn);
        let next = ids.get(index + 1).map_or(0, |next| next.0);
        write_u64(&mut page, CHAIN_NEXT_OFFSET, next);
        let start = (index * per_page).min(data.len());
        let end = ((index + 1) * per_page).min(data.len());
        write_u32(&mut page, CHAIN_LEN_OFFSET, (end - start) as u32);
        page[CHAIN_HEADER_BYTES..CHAIN_HEADER_BYTES + end - start].copy_from_slice(&data[start..end]);
        pages.push((*id, seal_page(page)));
    }
    pages
}

/// Next page id and data of a checked chain page.
pub(crate) fn parse_chain_page(layout: Layout, id: PageId, page: &[u8]) -> Result<(u64, &[u8]), BTreeError> {
    let len = read_u32(page, CHAIN_LEN_OFFSET) as usize;
    if len > layout.chain_data_bytes() {
        return Err(BTreeError::corrupt(id, format!("chain page claims {len} data bytes")));
    }
    Ok((
        read_u64(page, CHAIN_NEXT_OFFSET),
        &page[CHAIN_HEADER_BYTES..CHAIN_HEADER_BYTES + len],
    ))
}
