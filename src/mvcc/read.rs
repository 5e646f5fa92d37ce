//! Reading at a revision: Range (etcd's `applierV3backend.Range` + `rangeKeys`) and Compare
//! evaluation, over a key index and a source of stored values. Readers and the writer share
//! this code; they differ in where values come from.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::mvcc::backend::{BackendError, BackendRead};
use crate::mvcc::encoding::{decode_entry, revision_raw_key, RevisionKey, StoredEntry};
use crate::mvcc::error::{MvccError, StoreError};
use crate::mvcc::key_index::{KeyIndex, KeyRange};
use crate::mvcc::types::{
    Compare, CompareResult, CompareTarget, KeyValue, RangeRequest, RangeResult, Revision, SortOrder, SortTarget,
};

/// Where stored values are fetched from, by revision.
pub trait ValueSource {
    fn value(&self, revision: RevisionKey) -> Result<Bytes, BackendError>;

    fn key_value(&self, revision: RevisionKey) -> Result<KeyValue, BackendError> {
        match decode_entry(revision, &self.value(revision)?)? {
            StoredEntry::Put(kv) => Ok(kv),
            StoredEntry::Tombstone(key) => {
                panic!("index points at tombstone {revision:?} of {key:?} as a live value")
            }
        }
    }
}

/// A backend snapshot as a value source.
pub struct SnapshotValues<'a, R: BackendRead>(pub &'a R);

impl<R: BackendRead> ValueSource for SnapshotValues<'_, R> {
    fn value(&self, revision: RevisionKey) -> Result<Bytes, BackendError> {
        match self.0.get(&revision_raw_key(revision))? {
            Some(value) => Ok(value),
            // The index and the backend are updated together; a miss means a bug or a backend
            // that lost committed data.
            None => panic!("revision {revision:?} is in the key index but not in the backend"),
        }
    }
}

/// The index-side half of a range: which revisions to fetch, decided under the index lock.
#[derive(Debug)]
pub struct RangePlan {
    revisions: Vec<RevisionKey>,
    count: usize,
    header_revision: i64,
}

/// Revision checks in etcd's order (future, then compacted), then the index walk. `current` is
/// the revision a read at "now" sees; `compact` the compact revision.
pub fn plan_range(
    index: &KeyIndex,
    request: &RangeRequest,
    current: i64,
    compact: i64,
) -> Result<RangePlan, MvccError> {
    let at = read_revision(request.revision.0, current, compact)?;
    let range = KeyRange::new(request.key.clone(), request.range_end.clone());
    if request.count_only {
        let mut count = 0;
        index.visit_alive(&range, at, |_, _| count += 1);
        return Ok(RangePlan {
            revisions: Vec::new(),
            count,
            header_revision: current,
        });
    }
    let (revisions, count) = index.revisions(&range, at, fetch_limit(request));
    Ok(RangePlan {
        revisions,
        count,
        header_revision: current,
    })
}

/// Checks a requested revision (≤ 0 = `current`) and returns the revision to read at.
pub fn read_revision(requested: i64, current: i64, compact: i64) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    let at = if requested <= 0 { current } else { requested };
    if at < compact {
        return Err(MvccError::Compacted);
    }
    Ok(at)
}

/// etcd fetches everything when it must sort (an explicit order) or filter, else `limit + 1`
/// to learn `more`. A non-key sort target with order NONE sorts only what was fetched.
fn fetch_limit(request: &RangeRequest) -> usize {
    let filtered = request.min_mod_revision.0 != 0
        || request.max_mod_revision.0 != 0
        || request.min_create_revision.0 != 0
        || request.max_create_revision.0 != 0;
    if request.sort_order != SortOrder::None || filtered || request.limit <= 0 {
        0
    } else {
        usize::try_from(request.limit).unwrap_or(usize::MAX).saturating_add(1)
    }
}

/// The value-side half: fetch, filter, sort, cut.
pub fn complete_range(
    plan: RangePlan,
    request: &RangeRequest,
    values: &dyn ValueSource,
) -> Result<RangeResult, BackendError> {
    let mut kvs = Vec::with_capacity(plan.revisions.len());
    for revision in plan.revisions {
        kvs.push(values.key_value(revision)?);
    }
    let keep = |kv: &KeyValue| {
        (request.max_mod_revision.0 == 0 || kv.mod_revision <= request.max_mod_revision)
            && (request.min_mod_revision.0 == 0 || kv.mod_revision >= request.min_mod_revision)
            && (request.max_create_revision.0 == 0 || kv.create_revision <= request.max_create_revision)
            && (request.min_create_revision.0 == 0 || kv.create_revision >= request.min_create_revision)
    };
    kvs.retain(keep);
    sort_kvs(&mut kvs, request.sort_order, request.sort_target);
    let mut more = false;
    if request.limit > 0 {
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if request.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    Ok(RangeResult {
        revision: Revision(plan.header_revision),
        kvs,
        more,
        count: plan.count as i64,
    })
}

/// Input is in ascending key order. Ties keep key order (etcd's sort is unstable, so its tie
/// order is unspecified; ascending key order is the natural choice).
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let compare = |left: &KeyValue, right: &KeyValue| match target {
        SortTarget::Key => left.key.cmp(&right.key),
        SortTarget::Version => left.version.cmp(&right.version),
        SortTarget::Create => left.create_revision.cmp(&right.create_revision),
        SortTarget::Mod => left.mod_revision.cmp(&right.mod_revision),
        SortTarget::Value => left.value.cmp(&right.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|left, right| compare(right, left)),
        _ => kvs.sort_by(compare),
    }
}

/// A plain range at `at` (no checks): the live key-values of `range`.
pub fn key_values_at(
    index: &KeyIndex,
    range: &KeyRange,
    at: i64,
    values: &dyn ValueSource,
) -> Result<Vec<KeyValue>, BackendError> {
    let (revisions, _) = index.revisions(range, at, 0);
    revisions
        .into_iter()
        .map(|revision| values.key_value(revision))
        .collect()
}

/// etcd's `applyCompare`: every key of the range must satisfy the compare; an empty range
/// compares the zero key-value, except that a VALUE compare on missing keys is false.
pub fn evaluate_compare(
    index: &KeyIndex,
    compare: &Compare,
    at: i64,
    values: &dyn ValueSource,
) -> Result<bool, StoreError> {
    let range = KeyRange::new(compare.key.clone(), compare.range_end.clone());
    let kvs = key_values_at(index, &range, at, values)?;
    if kvs.is_empty() {
        if matches!(compare.target, CompareTarget::Value(_)) {
            return Ok(false);
        }
        return Ok(compare_key_value(compare, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_key_value(compare, kv)))
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
        CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value[..].cmp(&value[..]),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}
