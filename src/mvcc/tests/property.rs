//! Proves the store (index + backend + batching + compaction + reopen + watches) behaves like
//! the naive model on random histories: every answer, every revision, the state at random past
//! revisions, lease attachments, hashes across restarts, and each watcher's exact event stream.
//! Seeded; `MVCC_PROPERTY_SEED=<n>` reruns one seed.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::model::{in_range, Model};
use crate::mvcc::{
    ApplyEntry, ApplyOutcome, CompactRequest, Compare, CompareResult, CompareTarget, ConsistentIndex,
    DeleteRangeRequest, Event, EventKind, LeaseId, MemBackend, MvccConfig, MvccError, MvccStore, PutRequest,
    RangeRequest, RequestOp, Revision, SortOrder, SortTarget, StoreError, TxnRequest, WatchFilters, WatchRequest,
    WatchResponse, Watcher, WriteRequest, WriteResponse,
};

const SEEDS: u64 = 40;
const OPERATIONS_PER_SEED: usize = 250;
const KEYS: [&[u8]; 8] = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"d", b"\xff"];
const VALUES: [&[u8]; 4] = [b"", b"x", b"xy", b"y"];

#[test]
fn store_matches_model_on_random_histories() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let seeds: Vec<u64> = match std::env::var("MVCC_PROPERTY_SEED") {
        Ok(seed) => vec![seed.parse().expect("MVCC_PROPERTY_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    let mut coverage = Coverage::default();
    let single_seed = seeds.len() == 1;
    for seed in seeds {
        eprintln!("mvcc property seed {seed} (rerun: MVCC_PROPERTY_SEED={seed})");
        runtime.block_on(run_seed(seed, &mut coverage));
    }
    eprintln!("mvcc property coverage: {:?}", coverage.counts);
    if !single_seed {
        // Guards against a generator that stopped producing the interesting cases.
        for outcome in [
            "put ok",
            "txn ok",
            "txn succeeded",
            "txn failed branch",
            "delete ok",
            "range ok",
            "compact ok",
            "error Compacted",
            "error FutureRevision",
            "error KeyNotFound",
            "error DuplicateKey",
            "error LeaseNotFound",
            "error ValueProvided",
            "error LeaseProvided",
            "watch events",
            "watch canceled",
            "revoke deleted",
            "batch",
        ] {
            assert!(
                coverage.counts.get(outcome).copied().unwrap_or(0) > 0,
                "never saw {outcome}: {:?}",
                coverage.counts
            );
        }
    }
}

#[derive(Default)]
struct Coverage {
    counts: BTreeMap<&'static str, u64>,
}

impl Coverage {
    fn saw(&mut self, outcome: &'static str) {
        *self.counts.entry(outcome).or_default() += 1;
    }

    fn saw_error(&mut self, error: MvccError) {
        self.saw(match error {
            MvccError::Compacted => "error Compacted",
            MvccError::FutureRevision => "error FutureRevision",
            MvccError::KeyNotProvided => "error KeyNotProvided",
            MvccError::KeyNotFound => "error KeyNotFound",
            MvccError::ValueProvided => "error ValueProvided",
            MvccError::LeaseProvided => "error LeaseProvided",
            MvccError::TooManyOperations => "error TooManyOperations",
            MvccError::DuplicateKey => "error DuplicateKey",
            MvccError::LeaseNotFound => "error LeaseNotFound",
            MvccError::WatcherRangeEmpty => "error WatcherRangeEmpty",
        });
    }
}

struct Run<'a> {
    coverage: &'a mut Coverage,
    rng: SmallRng,
    model: Model,
    backend: MemBackend,
    config: MvccConfig,
    store: MvccStore<MemBackend>,
    next_index: u64,
    watches: Vec<WatchCheck>,
}

async fn run_seed(seed: u64, coverage: &mut Coverage) {
    // The update fills `planted_double_apply`, which exists only with the
    // `sim-bugs` feature; without it clippy sees nothing left to fill.
    #[allow(clippy::needless_update)]
    let config = MvccConfig {
        watcher_buffer_events_max: 3,
        watch_response_events_max: 4,
        watch_history_chunk_entries: 5,
        compaction_batch_entries: 3,
        ..MvccConfig::default()
    };
    let backend = MemBackend::new();
    let store = MvccStore::open(backend.clone(), config.clone()).await.unwrap();
    let mut run = Run {
        coverage,
        rng: SmallRng::seed_from_u64(seed),
        model: Model::new(),
        backend,
        config,
        store,
        next_index: 1,
        watches: Vec::new(),
    };
    let specs = [
        WatchSpec {
            key: Bytes::from_static(&[0]),
            range_end: Bytes::from_static(&[0]),
            filters: WatchFilters::default(),
            prev_kv: true,
        },
        WatchSpec {
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"b"),
            filters: WatchFilters {
                no_put: false,
                no_delete: true,
            },
            prev_kv: false,
        },
        WatchSpec {
            key: Bytes::from_static(b"b"),
            range_end: Bytes::new(),
            filters: WatchFilters {
                no_put: true,
                no_delete: false,
            },
            prev_kv: true,
        },
    ];
    for spec in specs {
        let watcher = run.store.watch(spec.request(1)).unwrap();
        run.watches.push(WatchCheck { spec, watcher, next: 1 });
    }
    for step in 0..OPERATIONS_PER_SEED {
        run.step().await;
        run.check_state(seed, step);
    }
    for check in &mut run.watches {
        check.check(&run.store, &run.model, run.coverage);
    }
}

impl Run<'_> {
    async fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=54 => {
                let count = if self.rng.gen_bool(0.2) {
                    self.rng.gen_range(2..5)
                } else {
                    1
                };
                let requests = (0..count).map(|_| self.random_write()).collect();
                self.apply(requests).await;
            }
            55..=74 => {
                let request = self.random_range();
                let expected = self.model.range(&request);
                match &expected {
                    Ok(_) => self.coverage.saw("range ok"),
                    Err(error) => self.coverage.saw_error(*error),
                }
                assert_eq!(
                    self.store.range(&request).map_err(request_error),
                    expected,
                    "{request:?}"
                );
            }
            75..=79 => {
                let revision = Revision(self.random_revision());
                self.apply(vec![WriteRequest::Compact(CompactRequest { revision })])
                    .await;
            }
            80..=84 => {
                let hash = self.store.hash_kv(Revision(0)).unwrap();
                self.store.compaction_step().await.unwrap();
                assert_eq!(
                    self.store.hash_kv(Revision(0)).unwrap(),
                    hash,
                    "physical compaction changes no hash"
                );
            }
            85..=87 => {
                let hash = self.store.hash_kv(Revision(0)).unwrap();
                let consistent_index = self.store.consistent_index();
                self.store = MvccStore::open(self.backend.clone(), self.config.clone())
                    .await
                    .unwrap();
                assert_eq!(self.store.hash_kv(Revision(0)).unwrap(), hash, "reopen changes no hash");
                assert_eq!(self.store.consistent_index(), consistent_index);
                for check in &mut self.watches {
                    // Resume where the old watcher stopped (etcd's resumable guarantee).
                    check.watcher = self.store.watch(check.spec.request(check.next)).unwrap();
                }
            }
            88..=91 => {
                let lease = LeaseId(self.rng.gen_range(1..=3));
                if self.model.leases.contains(&lease) {
                    self.apply(vec![WriteRequest::RevokeLease(lease)]).await;
                    self.model.leases.remove(&lease);
                } else {
                    self.model.leases.insert(lease);
                }
            }
            92..=93 => {
                // A re-delivered Raft entry is skipped.
                let revision = self.store.current_revision();
                let old = ConsistentIndex {
                    index: self.rng.gen_range(0..self.next_index),
                    term: 1,
                };
                let put = WriteRequest::Put(PutRequest::new(
                    Bytes::from_static(b"a"),
                    Bytes::from_static(b"replayed"),
                ));
                let outcomes = self
                    .store
                    .apply(vec![ApplyEntry::new(old, put)], &|_| true)
                    .await
                    .unwrap();
                assert!(matches!(outcomes[..], [ApplyOutcome::AlreadyApplied { .. }]));
                assert_eq!(self.store.current_revision(), revision);
            }
            _ => {
                for check in &mut self.watches {
                    check.check(&self.store, &self.model, self.coverage);
                }
            }
        }
        if self.rng.gen_bool(0.3) {
            let index = self.rng.gen_range(0..self.watches.len());
            self.watches[index].check(&self.store, &self.model, self.coverage);
        }
    }

    /// Applies `requests` as one batch to the store, one by one to the model, and compares.
    async fn apply(&mut self, requests: Vec<WriteRequest>) {
        let entries: Vec<ApplyEntry> = requests
            .iter()
            .map(|request| {
                let position = ConsistentIndex {
                    index: self.next_index,
                    term: 1,
                };
                self.next_index += 1;
                ApplyEntry::new(position, request.clone())
            })
            .collect();
        if entries.len() > 1 {
            self.coverage.saw("batch");
        }
        let leases = self.model.leases.clone();
        let outcomes = self
            .store
            .apply(entries, &move |lease| leases.contains(&lease))
            .await
            .unwrap();
        for (request, outcome) in requests.iter().zip(outcomes) {
            let expected = match request {
                WriteRequest::Put(put) => self.model.put(put).map(WriteResponse::Put),
                WriteRequest::DeleteRange(delete) => self.model.delete(delete).map(WriteResponse::DeleteRange),
                WriteRequest::Txn(txn) => self.model.txn(txn).map(WriteResponse::Txn),
                WriteRequest::Compact(compact) => self.model.compact(compact.revision.0).map(WriteResponse::Compact),
                WriteRequest::RevokeLease(lease) => Ok(WriteResponse::RevokeLease(self.model.revoke(*lease))),
                WriteRequest::Noop => unreachable!(),
            };
            match &expected {
                Ok(WriteResponse::Put(_)) => self.coverage.saw("put ok"),
                Ok(WriteResponse::DeleteRange(_)) => self.coverage.saw("delete ok"),
                Ok(WriteResponse::Compact(_)) => self.coverage.saw("compact ok"),
                Ok(WriteResponse::RevokeLease(result)) if result.deleted > 0 => self.coverage.saw("revoke deleted"),
                Ok(WriteResponse::Txn(result)) => {
                    self.coverage.saw("txn ok");
                    self.coverage.saw(if result.succeeded {
                        "txn succeeded"
                    } else {
                        "txn failed branch"
                    });
                }
                Ok(_) => {}
                Err(error) => self.coverage.saw_error(*error),
            }
            assert_eq!(outcome, ApplyOutcome::Applied(expected), "{request:?}");
        }
    }

    fn check_state(&mut self, seed: u64, step: usize) {
        let context = format!("seed {seed} step {step}");
        assert_eq!(self.store.current_revision().0, self.model.current(), "{context}");
        assert_eq!(
            self.store.compact_revision().0,
            self.model.compact_revision,
            "{context}"
        );
        let oldest = self.model.compact_revision.max(1);
        let at = self.rng.gen_range(oldest..=self.model.current());
        let mut everything = RangeRequest::new(Bytes::from_static(&[0]), Bytes::from_static(&[0]));
        everything.revision = Revision(at);
        assert_eq!(
            self.store.range(&everything).map_err(request_error),
            self.model.range(&everything),
            "{context} at {at}"
        );
        for lease in 1..=3 {
            let lease = LeaseId(lease);
            let attached: Vec<Bytes> = self
                .model
                .snapshots
                .last()
                .unwrap()
                .values()
                .filter(|kv| kv.lease == lease)
                .map(|kv| kv.key.clone())
                .collect();
            assert_eq!(self.store.keys_for_lease(lease), attached, "{context} lease {lease:?}");
        }
    }

    fn key(&mut self) -> Bytes {
        Bytes::from_static(KEYS[self.rng.gen_range(0..KEYS.len())])
    }

    fn value(&mut self) -> Bytes {
        Bytes::from_static(VALUES[self.rng.gen_range(0..VALUES.len())])
    }

    fn range_end(&mut self, key: &Bytes) -> Bytes {
        match self.rng.gen_range(0..5) {
            0 | 1 => Bytes::new(),
            2 => {
                let mut end = key.to_vec();
                *end.last_mut().unwrap() = end.last().unwrap().saturating_add(1);
                Bytes::from(end)
            }
            3 => Bytes::from_static(&[0]),
            _ => self.key(),
        }
    }

    /// A revision around the interesting window: compacted, readable and future.
    fn random_revision(&mut self) -> i64 {
        let low = self.model.compact_revision - 1;
        self.rng.gen_range(low..=self.model.current() + 1)
    }

    fn lease(&mut self) -> LeaseId {
        if self.rng.gen_bool(0.6) {
            LeaseId::NONE
        } else {
            LeaseId(self.rng.gen_range(1..=3))
        }
    }

    fn random_put(&mut self) -> PutRequest {
        let mut put = PutRequest::new(self.key(), self.value());
        put.lease = self.lease();
        put.prev_kv = self.rng.gen_bool(0.3);
        put.ignore_value = self.rng.gen_bool(0.1);
        put.ignore_lease = self.rng.gen_bool(0.1);
        if put.ignore_value && self.rng.gen_bool(0.7) {
            put.value = Bytes::new();
        }
        if put.ignore_lease && self.rng.gen_bool(0.7) {
            put.lease = LeaseId::NONE;
        }
        put
    }

    fn random_delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        let range_end = self.range_end(&key);
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.rng.gen_bool(0.5),
        }
    }

    fn random_range(&mut self) -> RangeRequest {
        let key = self.key();
        let range_end = self.range_end(&key);
        let mut range = RangeRequest::new(key, range_end);
        let revision = |run: &mut Run| {
            if run.rng.gen_bool(0.5) {
                0
            } else {
                run.random_revision()
            }
        };
        range.revision = Revision(revision(self));
        range.limit = if self.rng.gen_bool(0.5) {
            0
        } else {
            self.rng.gen_range(-1..4)
        };
        range.sort_order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][self.rng.gen_range(0..3)];
        range.sort_target = [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ][self.rng.gen_range(0..5)];
        range.keys_only = self.rng.gen_bool(0.2);
        range.count_only = self.rng.gen_bool(0.1);
        if self.rng.gen_bool(0.3) {
            let filter = Revision(self.rng.gen_range(0..=self.model.current() + 1));
            match self.rng.gen_range(0..4) {
                0 => range.min_mod_revision = filter,
                1 => range.max_mod_revision = filter,
                2 => range.min_create_revision = filter,
                _ => range.max_create_revision = filter,
            }
        }
        range
    }

    fn random_compare(&mut self) -> Compare {
        let key = self.key();
        let range_end = if self.rng.gen_bool(0.8) {
            Bytes::new()
        } else {
            self.range_end(&key)
        };
        let number = self.rng.gen_range(0..=self.model.current());
        let target = match self.rng.gen_range(0..5) {
            0 => CompareTarget::Version(number.min(3)),
            1 => CompareTarget::CreateRevision(Revision(number)),
            2 => CompareTarget::ModRevision(Revision(number)),
            3 => CompareTarget::Value(self.value()),
            _ => CompareTarget::Lease(self.lease()),
        };
        let result = [
            CompareResult::Equal,
            CompareResult::Greater,
            CompareResult::Less,
            CompareResult::NotEqual,
        ][self.rng.gen_range(0..4)];
        Compare {
            key,
            range_end,
            target,
            result,
        }
    }

    fn random_txn(&mut self, depth: usize) -> TxnRequest {
        let compares = self.rng.gen_range(0..3);
        let compare = (0..compares).map(|_| self.random_compare()).collect();
        let ops = |run: &mut Run| {
            let count = run.rng.gen_range(0..4);
            (0..count)
                .map(|_| match run.rng.gen_range(0..10) {
                    0..=2 => RequestOp::Range(run.random_range()),
                    3..=5 => RequestOp::Put(run.random_put()),
                    6..=7 => RequestOp::DeleteRange(run.random_delete()),
                    8 if depth < 2 => RequestOp::Txn(run.random_txn(depth + 1)),
                    _ => RequestOp::Range(run.random_range()),
                })
                .collect::<Vec<_>>()
        };
        let success = ops(self);
        let failure = ops(self);
        TxnRequest {
            compare,
            success,
            failure,
        }
    }

    fn random_write(&mut self) -> WriteRequest {
        match self.rng.gen_range(0..10) {
            0..=4 => WriteRequest::Put(self.random_put()),
            5..=6 => WriteRequest::DeleteRange(self.random_delete()),
            _ => WriteRequest::Txn(self.random_txn(0)),
        }
    }
}

fn request_error(error: StoreError) -> MvccError {
    match error {
        StoreError::Request(error) => error,
        StoreError::Backend(error) => panic!("backend: {error}"),
    }
}

#[derive(Clone, Debug)]
struct WatchSpec {
    key: Bytes,
    range_end: Bytes,
    filters: WatchFilters,
    prev_kv: bool,
}

impl WatchSpec {
    fn request(&self, start_revision: i64) -> WatchRequest {
        WatchRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            start_revision: Revision(start_revision),
            filters: self.filters,
            prev_kv: self.prev_kv,
        }
    }

    fn keeps(&self, event: &Event) -> bool {
        let kept_kind = match event.kind {
            EventKind::Put => !self.filters.no_put,
            EventKind::Delete => !self.filters.no_delete,
        };
        kept_kind && in_range(&self.key, &self.range_end, &event.kv.key)
    }
}

struct WatchCheck {
    spec: WatchSpec,
    watcher: Watcher<MemBackend>,
    /// The first revision not yet received.
    next: i64,
}

impl WatchCheck {
    /// What revision `revision` must look like to this watcher now; two variants at the compact
    /// revision (queued live before compaction, or replayed after it).
    fn expected(&self, model: &Model, revision: i64) -> [Vec<Event>; 2] {
        let shape = |events: Vec<Event>| -> Vec<Event> {
            events
                .into_iter()
                .filter(|event| self.spec.keeps(event))
                .map(|event| {
                    if self.spec.prev_kv {
                        model.with_prev_kv(event)
                    } else {
                        event
                    }
                })
                .collect()
        };
        let full = shape(model.events[revision as usize].clone());
        let replayed = if revision == model.compact_revision {
            shape(model.events_after_compaction_at(revision))
        } else {
            full.clone()
        };
        [full, replayed]
    }

    /// Receives everything ready and checks it is exactly the model's stream from `next`.
    fn check(&mut self, store: &MvccStore<MemBackend>, model: &Model, coverage: &mut Coverage) {
        loop {
            match self.watcher.try_recv().unwrap() {
                Some(WatchResponse::Events {
                    events,
                    revision: covered,
                }) => {
                    assert!(!events.is_empty());
                    assert!(
                        covered.0 <= model.current(),
                        "{:?}: response revision {covered} is in the future",
                        self.spec
                    );
                    let mut rest = &events[..];
                    while let Some(first) = rest.first() {
                        let revision = first.kv.mod_revision.0;
                        let length = rest
                            .iter()
                            .take_while(|event| event.kv.mod_revision.0 == revision)
                            .count();
                        let (group, tail) = rest.split_at(length);
                        self.skip_to(model, revision);
                        let [full, replayed] = self.expected(model, revision);
                        assert!(
                            group == full || group == replayed,
                            "{:?} at {revision}: got {group:?}, expected {full:?}",
                            self.spec
                        );
                        coverage.saw("watch events");
                        if full != replayed && group == replayed {
                            coverage.saw("watch replayed compact revision");
                        }
                        self.next = revision + 1;
                        rest = tail;
                    }
                    // Everything up to the response's revision has been delivered.
                    self.skip_to(model, covered.0 + 1);
                }
                Some(WatchResponse::Canceled { compact_revision }) => {
                    coverage.saw("watch canceled");
                    assert_eq!(compact_revision.0, model.compact_revision);
                    assert!(
                        self.next < compact_revision.0,
                        "canceled at {compact_revision} though next is {}",
                        self.next
                    );
                    self.next = compact_revision.0;
                    self.watcher = store.watch(self.spec.request(self.next)).unwrap();
                }
                None => {
                    // Caught up: nothing may be missing up to the current revision.
                    self.skip_to(model, model.current() + 1);
                    return;
                }
            }
        }
    }

    /// Asserts the revisions in `next..revision` have no events for this watcher.
    fn skip_to(&mut self, model: &Model, revision: i64) {
        assert!(
            revision >= self.next,
            "{:?}: revision {revision} again (next {})",
            self.spec,
            self.next
        );
        for skipped in self.next..revision {
            let [full, replayed] = self.expected(model, skipped);
            assert!(
                full.is_empty() || replayed.is_empty(),
                "{:?}: missed revision {skipped}: {full:?}",
                self.spec
            );
        }
        self.next = revision;
    }
}
