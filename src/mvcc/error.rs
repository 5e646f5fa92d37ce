//! Errors: request errors carry etcd's exact texts (clients match them byte for byte, COMPAT §3);
//! backend failures are a separate, fatal type (the caller fail-stops, DESIGN invariant 8).

use std::fmt;

use crate::mvcc::backend::BackendError;

/// A request the store refuses. `Display` is etcd's message, character for character; the
/// gRPC code is the api layer's business (it is noted on each variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MvccError {
    /// OutOfRange.
    Compacted,
    /// OutOfRange.
    FutureRevision,
    /// InvalidArgument: empty key in Range/Put/DeleteRange/Compare.
    KeyNotProvided,
    /// InvalidArgument: ignore_value/ignore_lease on a missing key; empty `RequestOp`.
    KeyNotFound,
    /// InvalidArgument.
    ValueProvided,
    /// InvalidArgument.
    LeaseProvided,
    /// InvalidArgument.
    TooManyOperations,
    /// InvalidArgument.
    DuplicateKey,
    /// NotFound: put with a lease the lessor does not know.
    LeaseNotFound,
    /// Watch create rejected (a `cancel_reason`, not a gRPC error).
    WatcherRangeEmpty,
}

impl MvccError {
    pub fn message(self) -> &'static str {
        match self {
            MvccError::Compacted => "etcdserver: mvcc: required revision has been compacted",
            MvccError::FutureRevision => "etcdserver: mvcc: required revision is a future revision",
            MvccError::KeyNotProvided => "etcdserver: key is not provided",
            MvccError::KeyNotFound => "etcdserver: key not found",
            MvccError::ValueProvided => "etcdserver: value is provided",
            MvccError::LeaseProvided => "etcdserver: lease is provided",
            MvccError::TooManyOperations => "etcdserver: too many operations in txn request",
            MvccError::DuplicateKey => "etcdserver: duplicate key given in txn request",
            MvccError::LeaseNotFound => "etcdserver: requested lease not found",
            MvccError::WatcherRangeEmpty => "mvcc: watcher range is empty",
        }
    }
}

impl fmt::Display for MvccError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for MvccError {}

/// What a read can fail with: a request error, or a fatal backend error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    Request(MvccError),
    Backend(BackendError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Request(error) => error.fmt(formatter),
            StoreError::Backend(error) => error.fmt(formatter),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<MvccError> for StoreError {
    fn from(error: MvccError) -> Self {
        StoreError::Request(error)
    }
}

impl From<BackendError> for StoreError {
    fn from(error: BackendError) -> Self {
        StoreError::Backend(error)
    }
}
