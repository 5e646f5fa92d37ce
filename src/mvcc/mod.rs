//! etcd's MVCC semantics (COMPAT.md §2.0–§2.3): revisions, the key index with generations,
//! Range/Put/DeleteRange/Txn/Compact, hashes, lease attachments and watches, persisted through
//! the `Backend` seam. It knows nothing of Raft or protos: the server hands it committed
//! entries with their (index, term), the api layer converts its types to and from protos.
//!
//! How the server uses it:
//! - `MvccStore::open(backend, config)` rebuilds the index; `consistent_index()` says where to
//!   resume applying the Raft log.
//! - Committed entries go through `apply(entries, lease_exists)` (or `apply_put`, …): each
//!   batch is one backend commit that also records the last entry's (index, term); entries at
//!   or below the consistent index are skipped (`ApplyOutcome::AlreadyApplied`).
//! - Reads (`range`, `read_txn` for read-only txns, `hash_kv`, `keys_for_lease`) run
//!   concurrently with applies and see the last published revision.
//! - After `Compact`, the server runs `compaction_step`/`finish_compaction` (awaiting it when
//!   the request asked for `physical`).
//! - `watch(request)` returns a `Watcher`; its `recv` yields events, never blocking writers.
//! - The api layer runs `validate_*` before proposing (with `--max-txn-ops` for txns).
//!
//! Reading order: `types` (the vocabulary), `error`, `backend` (the persistence seam),
//! `encoding` (byte layout), `key_index` (per-key generations), `validate` (stateless request
//! checks), `read` (range and compare), `txn`, `store` (state, open, reads; its header explains
//! the concurrency), `apply` (the write path), `watch`.

pub mod apply;
pub mod backend;
pub mod btree_backend;
mod encoding;
pub mod error;
mod key_index;
mod read;
pub mod store;
mod txn;
pub mod types;
pub mod validate;
pub mod watch;

#[cfg(test)]
mod tests;

pub use apply::{ApplyEntry, ApplyOutcome, WriteRequest, WriteResponse};
pub use backend::{
    Backend, BackendError, BackendImage, BackendRead, BatchOp, Bucket, MemBackend, ScanVisitor, WriteBatch,
};
pub use btree_backend::{BTreeBackend, BTreeRead};
pub use error::{MvccError, StoreError};
pub use key_index::{KeyRange, RangeEnd};
pub use store::{MvccConfig, MvccStore};
pub use txn::LeaseExists;
pub use types::*;
pub use validate::{is_read_only, validate_delete_range, validate_put, validate_range, validate_txn};
pub use watch::{WatchFilters, WatchRequest, WatchResponse, WatchStep, Watcher, WatcherId};
