//! A deliberately naive model of etcd's store for the property tests: one full copy of the
//! key space per revision, and the event list of every revision. No index, no backend, no
//! compaction bookkeeping beyond the compact revision — if the store and this disagree, one of
//! them is wrong. (Request validation is shared: `validate_*` is tested on its own.)

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::mvcc::{
    is_read_only, validate_delete_range, validate_put, validate_txn, CompactResult, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResult, Event, EventKind, KeyValue, LeaseId, MvccError, PutRequest, PutResult,
    RangeRequest, RangeResult, RequestOp, ResponseOp, Revision, SortOrder, SortTarget, TxnRequest, TxnResult,
};

type Snapshot = BTreeMap<Bytes, KeyValue>;

pub(crate) struct Model {
    /// `snapshots[r]` = the key space at revision r (index 0 unused, 1 = empty store).
    pub snapshots: Vec<Snapshot>,
    /// `events[r]` = the events of revision r, in op order.
    pub events: Vec<Vec<Event>>,
    pub compact_revision: i64,
    pub leases: BTreeSet<LeaseId>,
}

pub(crate) fn in_range(start: &[u8], range_end: &[u8], key: &[u8]) -> bool {
    if range_end.is_empty() {
        key == start
    } else if range_end == [0] {
        key >= start
    } else {
        key >= start && key < range_end
    }
}

impl Model {
    pub fn new() -> Self {
        Model {
            snapshots: vec![Snapshot::new(), Snapshot::new()],
            events: vec![Vec::new(), Vec::new()],
            compact_revision: -1,
            leases: BTreeSet::new(),
        }
    }

    pub fn current(&self) -> i64 {
        (self.snapshots.len() - 1) as i64
    }

    fn latest(&self) -> &Snapshot {
        self.snapshots.last().expect("revision 1 exists")
    }

    fn commit(&mut self, snapshot: Snapshot, events: Vec<Event>) {
        if !events.is_empty() {
            self.snapshots.push(snapshot);
            self.events.push(events);
        }
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeResult, MvccError> {
        if request.key.is_empty() {
            return Err(MvccError::KeyNotProvided);
        }
        range_in(request, self.current(), self.compact_revision, |at| {
            &self.snapshots[at as usize]
        })
    }

    pub fn put(&mut self, request: &PutRequest) -> Result<PutResult, MvccError> {
        validate_put(request)?;
        if !request.lease.is_none() && !self.leases.contains(&request.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let mut working = self.latest().clone();
        let mut events = Vec::new();
        let result = put_in(&mut working, &mut events, request, self.current() + 1)?;
        self.commit(working, events);
        Ok(result)
    }

    pub fn delete(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResult, MvccError> {
        validate_delete_range(request)?;
        let mut working = self.latest().clone();
        let mut events = Vec::new();
        let result = delete_in(&mut working, &mut events, request, self.current());
        self.commit(working, events);
        Ok(result)
    }

    pub fn revoke(&mut self, lease: LeaseId) -> DeleteRangeResult {
        let keys: Vec<Bytes> = self
            .latest()
            .values()
            .filter(|kv| kv.lease == lease)
            .map(|kv| kv.key.clone())
            .collect();
        let mut working = self.latest().clone();
        let mut events = Vec::new();
        for key in &keys {
            delete_in(
                &mut working,
                &mut events,
                &DeleteRangeRequest::new(key.clone(), Bytes::new()),
                self.current(),
            );
        }
        self.commit(working, events);
        DeleteRangeResult {
            revision: Revision(self.current()),
            deleted: keys.len() as i64,
            prev_kvs: Vec::new(),
        }
    }

    pub fn compact(&mut self, revision: i64) -> Result<CompactResult, MvccError> {
        if revision <= self.compact_revision {
            return Err(MvccError::Compacted);
        }
        if revision > self.current() {
            return Err(MvccError::FutureRevision);
        }
        self.compact_revision = revision;
        Ok(CompactResult {
            revision: Revision(self.current()),
        })
    }

    pub fn txn(&mut self, request: &TxnRequest) -> Result<TxnResult, MvccError> {
        validate_txn(request, usize::MAX)?;
        let begin = self.current();
        let before = self.latest().clone();
        let path = Path::evaluate(&before, request);
        if !is_read_only(request) {
            self.check_puts(&before, request, &path, &mut Vec::new())?;
        }
        check_ranges(request, &path, begin, self.compact_revision)?;
        let mut working = before;
        let mut events = Vec::new();
        let result = self.run(&mut working, &mut events, request, &path, begin, false);
        self.commit(working, events);
        Ok(result)
    }

    fn check_puts(
        &self,
        before: &Snapshot,
        request: &TxnRequest,
        path: &Path,
        deleted: &mut Vec<(Bytes, Bytes)>,
    ) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in path.branch(request) {
            match op {
                RequestOp::Put(put) => {
                    if put.ignore_value || put.ignore_lease {
                        let gone = deleted.iter().any(|(start, end)| in_range(start, end, &put.key));
                        if !before.contains_key(&put.key) || gone {
                            return Err(MvccError::KeyNotFound);
                        }
                    }
                    if !put.lease.is_none() && !self.leases.contains(&put.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                RequestOp::DeleteRange(delete) => deleted.push((delete.key.clone(), delete.range_end.clone())),
                RequestOp::Txn(inner) => self.check_puts(before, inner, nested.next().unwrap(), deleted)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn run(
        &self,
        working: &mut Snapshot,
        events: &mut Vec<Event>,
        request: &TxnRequest,
        path: &Path,
        begin: i64,
        is_nested: bool,
    ) -> TxnResult {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in path.branch(request) {
            let current = begin + i64::from(!events.is_empty());
            responses.push(match op {
                RequestOp::Range(range) => {
                    let result = range_in(range, current, self.compact_revision, |at| {
                        if at > begin {
                            &*working
                        } else {
                            &self.snapshots[at as usize]
                        }
                    });
                    ResponseOp::Range(result.expect("ranges were checked"))
                }
                RequestOp::Put(put) => {
                    ResponseOp::Put(put_in(working, events, put, begin + 1).expect("puts were checked"))
                }
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(delete_in(working, events, delete, begin)),
                RequestOp::Txn(inner) => {
                    ResponseOp::Txn(self.run(working, events, inner, nested.next().unwrap(), begin, true))
                }
                RequestOp::Empty => unreachable!(),
            });
        }
        let revision = if is_nested {
            0
        } else {
            begin + i64::from(!events.is_empty())
        };
        TxnResult {
            revision: Revision(revision),
            succeeded: path.succeeded,
            responses,
        }
    }
}

/// Range over `snapshot_at(revision)` with etcd's option semantics.
fn range_in<'a>(
    request: &RangeRequest,
    current: i64,
    compact: i64,
    snapshot_at: impl Fn(i64) -> &'a Snapshot,
) -> Result<RangeResult, MvccError> {
    if request.revision.0 > current {
        return Err(MvccError::FutureRevision);
    }
    let at = if request.revision.0 <= 0 {
        current
    } else {
        request.revision.0
    };
    if at < compact {
        return Err(MvccError::Compacted);
    }
    let all: Vec<KeyValue> = snapshot_at(at)
        .values()
        .filter(|kv| in_range(&request.key, &request.range_end, &kv.key))
        .cloned()
        .collect();
    let count = all.len() as i64;
    if request.count_only {
        return Ok(RangeResult {
            revision: Revision(current),
            kvs: Vec::new(),
            more: false,
            count,
        });
    }
    let filtering = request.min_mod_revision.0 != 0
        || request.max_mod_revision.0 != 0
        || request.min_create_revision.0 != 0
        || request.max_create_revision.0 != 0;
    let mut kvs = if request.sort_order == SortOrder::None && !filtering && request.limit > 0 {
        all.into_iter().take(request.limit as usize + 1).collect()
    } else {
        all
    };
    kvs.retain(|kv| {
        let unset_or = |bound: Revision, holds: bool| bound.0 == 0 || holds;
        unset_or(request.min_mod_revision, kv.mod_revision >= request.min_mod_revision)
            && unset_or(request.max_mod_revision, kv.mod_revision <= request.max_mod_revision)
            && unset_or(
                request.min_create_revision,
                kv.create_revision >= request.min_create_revision,
            )
            && unset_or(
                request.max_create_revision,
                kv.create_revision <= request.max_create_revision,
            )
    });
    let order = if request.sort_target != SortTarget::Key && request.sort_order == SortOrder::None {
        SortOrder::Ascend
    } else {
        request.sort_order
    };
    let sort_key = |kv: &KeyValue| -> (i64, Bytes) {
        match request.sort_target {
            SortTarget::Key => (0, kv.key.clone()),
            SortTarget::Version => (kv.version, Bytes::new()),
            SortTarget::Create => (kv.create_revision.0, Bytes::new()),
            SortTarget::Mod => (kv.mod_revision.0, Bytes::new()),
            SortTarget::Value => (0, kv.value.clone()),
        }
    };
    match order {
        SortOrder::Ascend => kvs.sort_by_key(sort_key),
        SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(sort_key(kv))),
        SortOrder::None => {}
    }
    let mut more = false;
    if request.limit > 0 && kvs.len() > request.limit as usize {
        kvs.truncate(request.limit as usize);
        more = true;
    }
    if request.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
    }
    Ok(RangeResult {
        revision: Revision(current),
        kvs,
        more,
        count,
    })
}

fn put_in(
    working: &mut Snapshot,
    events: &mut Vec<Event>,
    request: &PutRequest,
    revision: i64,
) -> Result<PutResult, MvccError> {
    let previous = working.get(&request.key).cloned();
    if (request.ignore_value || request.ignore_lease) && previous.is_none() {
        return Err(MvccError::KeyNotFound);
    }
    let kv = KeyValue {
        key: request.key.clone(),
        create_revision: previous.as_ref().map_or(Revision(revision), |kv| kv.create_revision),
        mod_revision: Revision(revision),
        version: previous.as_ref().map_or(1, |kv| kv.version + 1),
        value: if request.ignore_value {
            previous.as_ref().unwrap().value.clone()
        } else {
            request.value.clone()
        },
        lease: if request.ignore_lease {
            previous.as_ref().unwrap().lease
        } else {
            request.lease
        },
    };
    working.insert(kv.key.clone(), kv.clone());
    events.push(Event {
        kind: EventKind::Put,
        kv,
        prev_kv: None,
    });
    Ok(PutResult {
        revision: Revision(revision),
        prev_kv: if request.prev_kv { previous } else { None },
    })
}

fn delete_in(
    working: &mut Snapshot,
    events: &mut Vec<Event>,
    request: &DeleteRangeRequest,
    begin: i64,
) -> DeleteRangeResult {
    let doomed: Vec<KeyValue> = working
        .values()
        .filter(|kv| in_range(&request.key, &request.range_end, &kv.key))
        .cloned()
        .collect();
    for kv in &doomed {
        working.remove(&kv.key);
        let tombstone = KeyValue {
            key: kv.key.clone(),
            mod_revision: Revision(begin + 1),
            ..KeyValue::default()
        };
        events.push(Event {
            kind: EventKind::Delete,
            kv: tombstone,
            prev_kv: None,
        });
    }
    let revision = if doomed.is_empty() && events.is_empty() {
        begin
    } else {
        begin + 1
    };
    DeleteRangeResult {
        revision: Revision(revision),
        deleted: doomed.len() as i64,
        prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
    }
}

struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

impl Path {
    fn evaluate(before: &Snapshot, request: &TxnRequest) -> Path {
        let succeeded = request.compare.iter().all(|compare| {
            let kvs: Vec<&KeyValue> = before
                .values()
                .filter(|kv| in_range(&compare.key, &compare.range_end, &kv.key))
                .collect();
            if kvs.is_empty() {
                if matches!(compare.target, CompareTarget::Value(_)) {
                    return false;
                }
                return holds(compare.result, &compare.target, &KeyValue::default());
            }
            kvs.iter().all(|kv| holds(compare.result, &compare.target, kv))
        });
        let branch = if succeeded { &request.success } else { &request.failure };
        let nested = branch
            .iter()
            .filter_map(|op| match op {
                RequestOp::Txn(inner) => Some(Path::evaluate(before, inner)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    fn branch<'a>(&self, request: &'a TxnRequest) -> &'a [RequestOp] {
        if self.succeeded {
            &request.success
        } else {
            &request.failure
        }
    }
}

fn holds(result: CompareResult, target: &CompareTarget, kv: &KeyValue) -> bool {
    let ordering = match target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
        CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.cmp(value),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

fn check_ranges(request: &TxnRequest, path: &Path, begin: i64, compact: i64) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in path.branch(request) {
        match op {
            RequestOp::Range(range) if range.revision.0 != 0 => {
                if range.revision.0 > begin {
                    return Err(MvccError::FutureRevision);
                }
                if range.revision.0 < compact {
                    return Err(MvccError::Compacted);
                }
            }
            RequestOp::Txn(inner) => check_ranges(inner, nested.next().unwrap(), begin, compact)?,
            _ => {}
        }
    }
    Ok(())
}

impl Model {
    /// The events a watcher replaying revision `revision` from history receives once the store
    /// has been compacted at `revision`: a put that the same revision then deleted is gone.
    pub fn events_after_compaction_at(&self, revision: i64) -> Vec<Event> {
        let events = &self.events[revision as usize];
        events
            .iter()
            .enumerate()
            .filter(|(position, event)| {
                event.kind != EventKind::Put || !events[position + 1..].iter().any(|later| later.kv.key == event.kv.key)
            })
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// What a watcher with `prev_kv` receives for `event` now.
    pub fn with_prev_kv(&self, mut event: Event) -> Event {
        let is_create = event.kind == EventKind::Put && event.kv.create_revision == event.kv.mod_revision;
        let at = event.kv.mod_revision.0 - 1;
        if !is_create && at >= self.compact_revision {
            event.prev_kv = self.snapshots[at as usize].get(&event.kv.key).cloned();
        }
        event
    }
}
