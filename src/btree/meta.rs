//! The two meta pages (ids 0 and 1): the only pages ever overwritten, and so
//! the commit point. A durable commit writes the slot that does not hold the
//! previous durable commit; open takes the valid slot with the higher
//! transaction id, so a torn meta write falls back to the previous durable
//! commit, whose pages no later commit touched (see `mod.rs`).
//!
//! Layout after the common header (see `page.rs`); the snapshot header page
//! uses the same fields:
//!
//! ```text
//! 24..32  magic "braidbt1"
//! 32..36  format version
//! 36..40  page size
//! 40..48  root page id
//! 48..56  first free-list page id (0 = empty free list)
//! 56..64  page count: pages 0..count belong to the tree file
//! 64..72  number of key/value entries
//! ```

use bytes::Bytes;

use crate::btree::page::{check_page, new_page, read_u32, read_u64, seal_page, write_u32, write_u64, Layout, PageType};
use crate::btree::{BTreeError, TxnId};
use crate::io::PageId;

pub(crate) const MAGIC: &[u8; 8] = b"braidbt1";
pub(crate) const FORMAT_VERSION: u32 = 1;

const MAGIC_OFFSET: usize = 24;
const VERSION_OFFSET: usize = 32;
const PAGE_SIZE_OFFSET: usize = 36;
const ROOT_OFFSET: usize = 40;
const FREE_LIST_OFFSET: usize = 48;
const PAGE_COUNT_OFFSET: usize = 56;
const ENTRY_COUNT_OFFSET: usize = 64;

/// Pages 0 and 1 are the meta slots; tree pages start at 2.
pub(crate) const FIRST_DATA_PAGE: u64 = 2;

/// What one commit point says about the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) txn: TxnId,
    pub(crate) root: PageId,
    /// First page of the free-list chain; `PageId(0)` when the list is empty.
    pub(crate) free_list: PageId,
    /// Invariant: every page the tree or free list references is below this.
    pub(crate) page_count: u64,
    pub(crate) entry_count: u64,
}

impl Meta {
    /// The slot a fresh file's or a restored file's first meta goes to.
    pub(crate) fn slot(&self) -> PageId {
        PageId(self.txn.0 % 2)
    }

    pub(crate) fn encode(&self, layout: Layout, page_type: PageType, id: PageId) -> Bytes {
        let mut page = new_page(layout, page_type, id, self.txn);
        page[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(MAGIC);
        write_u32(&mut page, VERSION_OFFSET, FORMAT_VERSION);
        write_u32(&mut page, PAGE_SIZE_OFFSET, layout.page_size as u32);
        write_u64(&mut page, ROOT_OFFSET, self.root.0);
        write_u64(&mut page, FREE_LIST_OFFSET, self.free_list.0);
        write_u64(&mut page, PAGE_COUNT_OFFSET, self.page_count);
        write_u64(&mut page, ENTRY_COUNT_OFFSET, self.entry_count);
        seal_page(page)
    }

    /// Decodes a page that passed `check_page`; a valid checksum with foreign
    /// contents is an error, never a reason to fall back silently.
    pub(crate) fn decode(layout: Layout, id: PageId, page: &[u8], expected: PageType) -> Result<Meta, BTreeError> {
        let header = check_page(layout, id, page)?;
        if header.page_type != expected {
            return Err(BTreeError::corrupt(
                id,
                format!("expected a {expected:?} page, found {:?}", header.page_type),
            ));
        }
        if &page[MAGIC_OFFSET..MAGIC_OFFSET + 8] != MAGIC {
            return Err(BTreeError::corrupt(
                id,
                "bad magic: not a braid b+tree file".to_string(),
            ));
        }
        let version = read_u32(page, VERSION_OFFSET);
        if version != FORMAT_VERSION {
            return Err(BTreeError::corrupt(id, format!("unsupported format version {version}")));
        }
        let page_size = read_u32(page, PAGE_SIZE_OFFSET) as usize;
        if page_size != layout.page_size {
            return Err(BTreeError::PageSizeMismatch {
                expected: layout.page_size,
                found: page_size,
            });
        }
        let meta = Meta {
            txn: header.txn,
            root: PageId(read_u64(page, ROOT_OFFSET)),
            free_list: PageId(read_u64(page, FREE_LIST_OFFSET)),
            page_count: read_u64(page, PAGE_COUNT_OFFSET),
            entry_count: read_u64(page, ENTRY_COUNT_OFFSET),
        };
        let in_range = |page: PageId| (FIRST_DATA_PAGE..meta.page_count).contains(&page.0);
        if !in_range(meta.root) || (meta.free_list.0 != 0 && !in_range(meta.free_list)) {
            return Err(BTreeError::corrupt(
                id,
                format!(
                    "root {} or free list {} outside pages 2..{}",
                    meta.root.0, meta.free_list.0, meta.page_count
                ),
            ));
        }
        Ok(meta)
    }
}
