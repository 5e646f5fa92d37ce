//! Txn execution, following etcd 3.5's `applierV3backend.Txn` step by step:
//! 1. every compare — including those of nested txns on the chosen path — is evaluated against
//!    the state *before* the txn (`compareToPath`);
//! 2. if the txn can write, the puts on the path are checked (`ignore_*` needs an existing
//!    key, a lease must exist), then the ranges on the path (revision not future, not
//!    compacted) — so a failing txn changes nothing;
//! 3. the ops on the path run in order, each seeing the earlier ones' writes; all writes share
//!    one revision.

use crate::mvcc::error::{MvccError, StoreError};
use crate::mvcc::key_index::{KeyIndex, KeyRange};
use crate::mvcc::read::{complete_range, evaluate_compare, plan_range, ValueSource};
use crate::mvcc::types::{
    DeleteRangeRequest, DeleteRangeResult, LeaseId, PutRequest, PutResult, RangeRequest, RangeResult, RequestOp,
    ResponseOp, Revision, TxnRequest, TxnResult,
};
use crate::mvcc::validate::{is_read_only, validate_txn};

/// Tells whether a lease exists (the lessor's knowledge, consulted while applying).
pub type LeaseExists<'a> = &'a (dyn Fn(LeaseId) -> bool + Sync);

/// What a txn runs against: the writer's in-progress write, or a reader's snapshot.
pub(crate) trait TxnContext {
    fn index(&self) -> &KeyIndex;
    fn values(&self) -> &dyn ValueSource;
    /// The revision a read at "now" sees: the txn's own revision once it has written.
    fn current(&self) -> i64;
    fn compact(&self) -> i64;
    /// A put inside a txn (already checked by `check_puts`).
    fn put(&mut self, request: &PutRequest) -> Result<PutResult, StoreError>;
    fn delete_range(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResult, StoreError>;

    fn range(&self, request: &RangeRequest) -> Result<RangeResult, StoreError> {
        let plan = plan_range(self.index(), request, self.current(), self.compact())?;
        Ok(complete_range(plan, request, self.values())?)
    }
}

/// The compare outcome of a txn and of every nested txn on the chosen branch, in op order.
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

impl TxnPath {
    fn branch<'a>(&self, request: &'a TxnRequest) -> &'a [RequestOp] {
        if self.succeeded {
            &request.success
        } else {
            &request.failure
        }
    }
}

pub(crate) fn execute_txn<C: TxnContext>(
    context: &mut C,
    request: &TxnRequest,
    lease_exists: LeaseExists<'_>,
) -> Result<TxnResult, StoreError> {
    validate_txn(request, usize::MAX)?;
    let begin = context.current();
    let path = compare_to_path(context, request, begin)?;
    if !is_read_only(request) {
        let mut deleted = Vec::new();
        check_puts(context, request, &path, begin, lease_exists, &mut deleted)?;
    }
    check_ranges(request, &path, begin, context.compact())?;
    execute_ops(context, request, &path, false)
}

fn compare_to_path<C: TxnContext>(context: &C, request: &TxnRequest, at: i64) -> Result<TxnPath, StoreError> {
    let mut succeeded = true;
    for compare in &request.compare {
        if !evaluate_compare(context.index(), compare, at, context.values())? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &request.success } else { &request.failure };
    let mut nested = Vec::new();
    for op in ops {
        if let RequestOp::Txn(nested_request) = op {
            nested.push(compare_to_path(context, nested_request, at)?);
        }
    }
    Ok(TxnPath { succeeded, nested })
}

/// etcd's `checkRequestPut` over the path, against the pre-txn state at `begin`.
///
/// Deviation: etcd's duplicate-key check ignores from-key deletes (`range_end = "\0"`), so a
/// txn may delete a key that a later `ignore_*` put then expects; etcd 3.5 panics the member
/// there (`unexpected error during txn with writes`). braid tracks the path's deletes and
/// rejects that put up front with `key not found`, before anything is written.
fn check_puts<C: TxnContext>(
    context: &C,
    request: &TxnRequest,
    path: &TxnPath,
    begin: i64,
    lease_exists: LeaseExists<'_>,
    deleted: &mut Vec<KeyRange>,
) -> Result<(), MvccError> {
    let mut nested_paths = path.nested.iter();
    for op in path.branch(request) {
        match op {
            RequestOp::Put(put) => {
                if put.ignore_value || put.ignore_lease {
                    let exists = context.index().get(&put.key, begin).is_some();
                    if !exists || deleted.iter().any(|range| range.contains(&put.key)) {
                        return Err(MvccError::KeyNotFound);
                    }
                }
                if !put.lease.is_none() && !lease_exists(put.lease) {
                    return Err(MvccError::LeaseNotFound);
                }
            }
            RequestOp::DeleteRange(delete) => {
                deleted.push(KeyRange::new(delete.key.clone(), delete.range_end.clone()));
            }
            RequestOp::Txn(nested) => {
                let nested_path = nested_paths.next().expect("one path per nested txn");
                check_puts(context, nested, nested_path, begin, lease_exists, deleted)?;
            }
            RequestOp::Range(_) | RequestOp::Empty => {}
        }
    }
    Ok(())
}

/// etcd's `checkRequestRange`: 0 is always fine; otherwise not past the pre-txn revision and
/// not below the compact revision (so a negative revision fails once anything was compacted,
/// unlike a plain Range, as in etcd).
fn check_ranges(request: &TxnRequest, path: &TxnPath, begin: i64, compact: i64) -> Result<(), MvccError> {
    let mut nested_paths = path.nested.iter();
    for op in path.branch(request) {
        match op {
            RequestOp::Range(range) => {
                let revision = range.revision.0;
                if revision != 0 && revision > begin {
                    return Err(MvccError::FutureRevision);
                }
                if revision != 0 && revision < compact {
                    return Err(MvccError::Compacted);
                }
            }
            RequestOp::Txn(nested) => {
                let nested_path = nested_paths.next().expect("one path per nested txn");
                check_ranges(nested, nested_path, begin, compact)?;
            }
            RequestOp::Put(_) | RequestOp::DeleteRange(_) | RequestOp::Empty => {}
        }
    }
    Ok(())
}

fn execute_ops<C: TxnContext>(
    context: &mut C,
    request: &TxnRequest,
    path: &TxnPath,
    nested: bool,
) -> Result<TxnResult, StoreError> {
    let mut nested_paths = path.nested.iter();
    let mut responses = Vec::new();
    for op in path.branch(request) {
        let response = match op {
            RequestOp::Range(range) => ResponseOp::Range(context.range(range)?),
            RequestOp::Put(put) => ResponseOp::Put(context.put(put)?),
            RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(context.delete_range(delete)?),
            RequestOp::Txn(nested_request) => {
                let nested_path = nested_paths.next().expect("one path per nested txn");
                ResponseOp::Txn(execute_ops(context, nested_request, nested_path, true)?)
            }
            RequestOp::Empty => panic!("empty RequestOp passed validation"),
        };
        responses.push(response);
    }
    let revision = if nested {
        Revision(0)
    } else {
        Revision(context.current())
    };
    Ok(TxnResult {
        revision,
        succeeded: path.succeeded,
        responses,
    })
}

/// A read-only txn over a reader's snapshot.
pub(crate) struct ReadContext<'a> {
    pub index: &'a KeyIndex,
    pub values: &'a dyn ValueSource,
    pub current: i64,
    pub compact: i64,
}

impl TxnContext for ReadContext<'_> {
    fn index(&self) -> &KeyIndex {
        self.index
    }

    fn values(&self) -> &dyn ValueSource {
        self.values
    }

    fn current(&self) -> i64 {
        self.current
    }

    fn compact(&self) -> i64 {
        self.compact
    }

    fn put(&mut self, request: &PutRequest) -> Result<PutResult, StoreError> {
        panic!("put {:?} in a read-only txn", request.key)
    }

    fn delete_range(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResult, StoreError> {
        panic!("delete {:?} in a read-only txn", request.key)
    }
}
