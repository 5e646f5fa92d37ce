//! Request checks that need no store state (etcd's `v3rpc/key.go`: `checkRangeRequest`,
//! `checkPutRequest`, `checkDeleteRequest`, `checkTxnRequest`, `checkIntervals`). The api layer
//! runs them before proposing; the store runs them again when applying (without the
//! `max_txn_ops` bound, which is configuration and must not make members disagree).

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::mvcc::error::MvccError;
use crate::mvcc::types::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

pub fn validate_range(request: &RangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::KeyNotProvided);
    }
    Ok(())
}

pub fn validate_put(request: &PutRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::KeyNotProvided);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if request.ignore_lease && !request.lease.is_none() {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

pub fn validate_delete_range(request: &DeleteRangeRequest) -> Result<(), MvccError> {
    if request.key.is_empty() {
        return Err(MvccError::KeyNotProvided);
    }
    Ok(())
}

/// Every check etcd makes on a Txn before proposing it, in etcd's order: op counts, empty
/// keys and `ignore_*` misuse (recursively), then duplicate keys in each branch.
pub fn validate_txn(request: &TxnRequest, max_txn_ops: usize) -> Result<(), MvccError> {
    check_txn_shape(request, max_txn_ops)?;
    check_intervals(&request.success)?;
    check_intervals(&request.failure)?;
    Ok(())
}

/// Whether the txn (both branches, recursively) contains no put or delete; etcd serves such
/// txns like reads, without a new revision.
pub fn is_read_only(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| match op {
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
        RequestOp::Txn(nested) => is_read_only(nested),
        RequestOp::Range(_) | RequestOp::Empty => true,
    })
}

fn check_txn_shape(request: &TxnRequest, max_txn_ops: usize) -> Result<(), MvccError> {
    let operations = request
        .compare
        .len()
        .max(request.success.len())
        .max(request.failure.len());
    if operations > max_txn_ops {
        return Err(MvccError::TooManyOperations);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(MvccError::KeyNotProvided);
    }
    // Nested txns get what is left of the budget.
    for op in request.success.iter().chain(&request.failure) {
        check_op(op, max_txn_ops - operations)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), MvccError> {
    match op {
        RequestOp::Range(range) => validate_range(range),
        RequestOp::Put(put) => validate_put(put),
        RequestOp::DeleteRange(delete) => validate_delete_range(delete),
        RequestOp::Txn(nested) => check_txn_shape(nested, max_txn_ops),
        RequestOp::Empty => Err(MvccError::KeyNotFound),
    }
}

/// A delete's interval as etcd's interval tree sees it: `range_end` empty = the one key,
/// otherwise `[key, range_end)` compared bytewise. A `"\0"` range end (from-key) is an empty
/// interval there, so from-key deletes never conflict with puts (etcd 3.5 behaviour).
#[derive(Clone, Debug)]
struct DeleteInterval {
    start: Bytes,
    end: Option<Bytes>,
}

impl DeleteInterval {
    fn covers(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == &self.start[..],
            Some(end) => &self.start[..] <= key && key < &end[..],
        }
    }
}

/// etcd's `checkIntervals`, reproduced step for step (including its asymmetries: a nested
/// txn's puts are checked against the deletes of this level and of *earlier* nested txns only,
/// and the same key may be put in both branches of one nested txn).
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<DeleteInterval>), MvccError> {
    let mut deletes: Vec<DeleteInterval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) => Some(DeleteInterval {
                start: delete.key.clone(),
                end: (!delete.range_end.is_empty()).then(|| delete.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let covered = |deletes: &[DeleteInterval], key: &[u8]| deletes.iter().any(|delete| delete.covers(key));

    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || covered(&deletes, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            if puts.contains(key) && !puts_then.contains(key) {
                return Err(MvccError::DuplicateKey);
            }
            if covered(&deletes, key) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        // etcd unions the nested intervals overlapping ["\0", ∞), which leaves out exactly
        // the from-key ones; those never cover a key anyway.
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }

    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || covered(&deletes, &put.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}
