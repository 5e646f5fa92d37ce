//! Errors of the B+tree, split by who can act on them: damaged storage
//! (`Corrupt`, `ReadFailed`), a failed write or sync (`Io`, then `Poisoned`
//! for every later call), and requests the tree refuses (`KeyTooLarge`...).

use std::io;

use crate::io::PageId;

#[derive(Debug, thiserror::Error)]
pub enum BTreeError {
    /// A page failed its checks: checksum (torn or bit-flipped), self id
    /// (misdirected write), type, transaction order or structure.
    #[error("b+tree page {}: corrupt: {reason}", page_id.0)]
    Corrupt { page_id: PageId, reason: String },
    /// Reading a page failed (latent sector error); treat like `Corrupt`.
    #[error("b+tree page {}: read failed: {source}", page_id.0)]
    ReadFailed {
        page_id: PageId,
        #[source]
        source: io::Error,
    },
    /// A write or sync failed. The tree is poisoned: reopen it from what is durable.
    #[error("b+tree i/o error: {0}")]
    Io(#[source] io::Error),
    /// An earlier write or sync failed (or a commit was cancelled half-way);
    /// every call fails until the tree is reopened.
    #[error("b+tree unusable after an earlier failure ({cause}); reopen it")]
    Poisoned { cause: String },
    #[error("key is {len} bytes; the limit is {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes; the limit is {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("page size {page_size} is not a power of two between 512 and 65536")]
    InvalidPageSize { page_size: usize },
    #[error("page size mismatch: expected {expected}, found {found}")]
    PageSizeMismatch { expected: usize, found: usize },
    /// A snapshot stream was truncated, reordered, damaged or not ours.
    #[error("b+tree snapshot rejected: {reason}")]
    InvalidSnapshot { reason: String },
    /// An operation on this write transaction failed half-way; only abort is left.
    #[error("write transaction unusable after an earlier error: {cause}")]
    TxnFailed { cause: String },
}

impl BTreeError {
    pub(crate) fn corrupt(page_id: PageId, reason: String) -> BTreeError {
        BTreeError::Corrupt { page_id, reason }
    }

    /// The page a storage error names, if any.
    pub fn page_id(&self) -> Option<PageId> {
        match self {
            BTreeError::Corrupt { page_id, .. } | BTreeError::ReadFailed { page_id, .. } => Some(*page_id),
            _ => None,
        }
    }

    /// Whether the error says stored data is damaged (as opposed to a refused
    /// request or a failed write).
    pub fn is_corruption(&self) -> bool {
        matches!(self, BTreeError::Corrupt { .. } | BTreeError::ReadFailed { .. })
    }
}

pub type Result<T, E = BTreeError> = std::result::Result<T, E>;
