//! Proves that after any crash the WAL recovers exactly the state of some record
//! prefix that includes everything synced: random appends, overwrites,
//! truncations, snapshot markers, compactions and rotations on the in-memory
//! disk, crashed at random points (also mid-sync), over many seeds.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use braid::io::{CrashOptions, MemDir};
use braid::wal::{HardState, Recovered, SnapshotMarker, Wal, WalEntry, WalError, WalOptions};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEEDS: u64 = 1000;
const CYCLES_PER_SEED: usize = 3;

/// One record as the model sees it.
#[derive(Clone, Debug)]
enum Op {
    Entry(WalEntry),
    Hard(HardState),
    Marker(SnapshotMarker),
    Truncate(u64),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    hard_state: Option<HardState>,
    snapshot_marker: Option<SnapshotMarker>,
    entries: Vec<WalEntry>,
}

impl State {
    fn from_recovered(recovered: &Recovered) -> State {
        State {
            hard_state: recovered.hard_state,
            snapshot_marker: recovered.snapshot_marker.clone(),
            entries: recovered.entries.clone(),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Entry(entry) => {
                self.entries.retain(|kept| kept.index < entry.index);
                self.entries.push(entry.clone());
            }
            Op::Hard(hard_state) => self.hard_state = Some(*hard_state),
            Op::Marker(marker) => {
                self.entries.retain(|kept| kept.index > marker.index);
                self.snapshot_marker = Some(marker.clone());
            }
            Op::Truncate(from_index) => self.entries.retain(|kept| kept.index < *from_index),
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot_marker.as_ref().map_or(0, |marker| marker.index)
    }
}

/// One cycle: open and check against what the last cycle allowed, do random
/// work, crash. Returns what the next open may recover.
async fn cycle(
    dir: &MemDir,
    rng: &mut SmallRng,
    options: &WalOptions,
    expected: Candidates,
    coverage: &mut Coverage,
) -> Candidates {
    let (wal, recovered) = match Wal::open(dir.clone(), options.clone()).await {
        Ok(opened) => opened,
        Err(error) => panic!("open failed after a crash: {error}"),
    };
    let base = expected.check(&recovered);
    coverage.record_open(&recovered, wal.segment_names().await.len());
    if std::env::var_os("WAL_CRASH_TRACE").is_some() {
        eprintln!(
            "cycle: recovered {} segments {:?}",
            summary(&base),
            wal.segment_names().await
        );
    }

    let mut model = base.clone();
    let mut ops: Vec<Op> = Vec::new();
    let mut synced_ops = 0;
    let mut term = base.entries.last().map_or(1, |entry| entry.term);
    let steps = rng.gen_range(5..60);
    'work: for _ in 0..steps {
        let last_index = wal.last_index();
        let snapshot_index = model.snapshot_index();
        match rng.gen_range(0..100) {
            0..=39 => {
                let lowest = (snapshot_index + 1).max(last_index.saturating_sub(3)).max(1);
                let first = rng.gen_range(lowest..=last_index + 1);
                if rng.gen_bool(0.3) {
                    term += 1;
                }
                let batch: Vec<WalEntry> = (first..first + rng.gen_range(1..5))
                    .map(|index| {
                        let len = rng.gen_range(0..300);
                        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                        WalEntry {
                            index,
                            term,
                            data: Bytes::from(data),
                        }
                    })
                    .collect();
                let hard_state = rng.gen_bool(0.3).then(|| HardState {
                    term,
                    vote: rng.gen_range(0..5),
                    commit: rng.gen_range(0..=first),
                });
                if wal.append(&batch, hard_state).await.is_err() {
                    break 'work;
                }
                push(
                    &mut model,
                    &mut ops,
                    batch.into_iter().map(Op::Entry).chain(hard_state.map(Op::Hard)),
                );
            }
            40..=44 => {
                // Written but not synced: a crash may tear it.
                if wal.flush().await.is_err() {
                    break 'work;
                }
            }
            45..=49 => {
                let from_index = rng.gen_range(snapshot_index + 1..=last_index + 1);
                wal.truncate_suffix(from_index).await.expect("truncate");
                push(&mut model, &mut ops, [Op::Truncate(from_index)]);
            }
            50..=56 => {
                let index = rng.gen_range(snapshot_index..=last_index);
                let marker = SnapshotMarker {
                    index,
                    term,
                    payload: Bytes::copy_from_slice(&index.to_le_bytes()),
                };
                wal.append_snapshot_marker(marker.clone()).await.expect("marker");
                push(&mut model, &mut ops, [Op::Marker(marker)]);
                if rng.gen_bool(0.7) {
                    let removed = wal.compact(rng.gen_range(0..=index)).await.expect("compact");
                    coverage.segments_compacted += removed;
                    // Compaction syncs first.
                    synced_ops = ops.len();
                    if std::env::var_os("WAL_CRASH_TRACE").is_some() {
                        eprintln!(
                            "compacted {removed} at {}: now {:?}",
                            describe(ops.last().unwrap()),
                            wal.segment_names().await
                        );
                    }
                }
            }
            57..=84 => {
                wal.sync().await.expect("sync");
                synced_ops = ops.len();
            }
            85..=89 => {
                // Crash while a sync is in flight: it must not count as synced.
                dir.stall_syncs();
                // Every op is a record, so unsynced ops mean the sync has work to do.
                let had_unsynced = ops.len() > synced_ops;
                let mut sync = pin!(wal.sync());
                let mut context = Context::from_waker(Waker::noop());
                let outcome = sync.as_mut().poll(&mut context);
                dir.crash(rng);
                dir.resume_syncs();
                let result = match outcome {
                    Poll::Ready(result) => result,
                    Poll::Pending => sync.await,
                };
                if had_unsynced {
                    assert!(result.is_err(), "a sync interrupted by a crash reported success");
                    coverage.crashes_mid_sync += 1;
                } else {
                    assert!(result.is_ok(), "a sync with nothing to do failed: {result:?}");
                }
                return Candidates { base, ops, synced_ops };
            }
            90..=92 => {
                // fsync fails: the WAL must stop, and the failed sync covers nothing.
                dir.fail_next_syncs(1);
                let result = wal.sync().await;
                assert!(matches!(result, Ok(()) | Err(WalError::Io { .. })), "{result:?}");
                if result.is_ok() {
                    // Nothing was pending, so no fsync was issued.
                    dir.fail_next_syncs(0);
                    synced_ops = ops.len();
                } else {
                    assert!(matches!(wal.sync().await, Err(WalError::Failed(_))));
                    coverage.failed_fsyncs += 1;
                    break 'work;
                }
            }
            _ => {
                // A batch big enough to force a rotation.
                let index = last_index + 1;
                let entry = WalEntry {
                    index,
                    term,
                    data: Bytes::from(vec![index as u8; 700]),
                };
                if wal.append_entries(std::slice::from_ref(&entry)).await.is_err() {
                    break 'work;
                }
                push(&mut model, &mut ops, [Op::Entry(entry)]);
            }
        }
    }
    drop(wal);
    dir.crash_with(rng, &CrashOptions::default());
    Candidates { base, ops, synced_ops }
}

fn push(model: &mut State, ops: &mut Vec<Op>, new_ops: impl IntoIterator<Item = Op>) {
    for op in new_ops {
        model.apply(&op);
        ops.push(op);
    }
}

/// The states recovery may legally return: the base plus any prefix of `ops`
/// at least `synced_ops` long.
#[derive(Clone, Debug, Default)]
struct Candidates {
    base: State,
    ops: Vec<Op>,
    synced_ops: usize,
}

impl Candidates {
    fn check(&self, recovered: &Recovered) -> State {
        let got = State::from_recovered(recovered);
        let mut state = self.base.clone();
        for (length, op) in std::iter::once(None).chain(self.ops.iter().map(Some)).enumerate() {
            if let Some(op) = op {
                state.apply(op);
            }
            if length >= self.synced_ops && state == got {
                return got;
            }
        }
        panic!(
            "recovered state matches no prefix of at least {} of {} ops\nrecovered: {:?}\nops: {:?}",
            self.synced_ops,
            self.ops.len(),
            summary(&got),
            self.ops.iter().map(describe).collect::<Vec<_>>()
        );
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::Entry(entry) => format!("E{}/{}", entry.index, entry.term),
        Op::Hard(hard_state) => format!("H{}/{}/{}", hard_state.term, hard_state.vote, hard_state.commit),
        Op::Marker(marker) => format!("M{}/{}", marker.index, marker.term),
        Op::Truncate(from_index) => format!("T{from_index}"),
    }
}

fn summary(state: &State) -> String {
    let indexes: Vec<(u64, u64)> = state.entries.iter().map(|entry| (entry.index, entry.term)).collect();
    format!(
        "hard {:?} marker {:?} entries {:?}",
        state.hard_state, state.snapshot_marker, indexes
    )
}

/// How much each seed exercised, so the test fails if it stops reaching the cases.
#[derive(Debug, Default)]
struct Coverage {
    opens: usize,
    torn_tails: usize,
    unproven_records_dropped: usize,
    most_segments: usize,
    segments_compacted: usize,
    crashes_mid_sync: usize,
    failed_fsyncs: usize,
}

impl Coverage {
    fn record_open(&mut self, recovered: &Recovered, segments: usize) {
        self.opens += 1;
        // A torn tail of zeros is cut without a repair (it may be the zeros
        // the production devices write ahead); it still counts as one here.
        self.torn_tails += recovered.repairs.len() + usize::from(recovered.zero_tail_bytes > 0);
        self.unproven_records_dropped += recovered
            .repairs
            .iter()
            .map(|repair| repair.dropped_records)
            .sum::<usize>();
        self.most_segments = self.most_segments.max(segments);
    }
}

async fn run_seed(seed: u64, coverage: &mut Coverage) {
    if let Some(only) = std::env::var_os("WAL_CRASH_SEED") {
        if only.to_string_lossy() != seed.to_string() {
            return;
        }
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let options = WalOptions {
        segment_size_bytes: rng.gen_range(512..4096),
    };
    let dir = MemDir::new();
    let mut expected = Candidates::default();
    for _ in 0..CYCLES_PER_SEED {
        expected = cycle(&dir, &mut rng, &options, expected, coverage).await;
    }
    let (wal, recovered) = Wal::open(dir.clone(), options.clone()).await.expect("final open");
    expected.check(&recovered);
    coverage.record_open(&recovered, wal.segment_names().await.len());
}

/// Prints the seed if the test panics while it is alive.
struct SeedReporter(u64);

impl Drop for SeedReporter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "wal crash test failed: seed {} (rerun: WAL_CRASH_SEED={} WAL_CRASH_TRACE=1)",
                self.0, self.0
            );
        }
    }
}

#[tokio::test]
async fn recovery_after_random_crashes_keeps_every_synced_record() {
    let seeds = std::env::var("WAL_CRASH_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(SEEDS);
    let mut coverage = Coverage::default();
    for seed in 0..seeds {
        let reporter = SeedReporter(seed);
        run_seed(seed, &mut coverage).await;
        drop(reporter);
    }
    eprintln!("{seeds} seeds: {coverage:?}");
    if seeds == SEEDS && std::env::var_os("WAL_CRASH_SEED").is_none() {
        assert!(coverage.torn_tails > 300, "{coverage:?}");
        assert!(coverage.unproven_records_dropped > 40, "{coverage:?}");
        assert!(coverage.most_segments >= 4, "{coverage:?}");
        assert!(coverage.segments_compacted > 300, "{coverage:?}");
        assert!(coverage.crashes_mid_sync > 300, "{coverage:?}");
        assert!(coverage.failed_fsyncs > 300, "{coverage:?}");
    }
}
