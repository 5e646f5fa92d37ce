//! One seeded chaos run: safety phase (clients + nemesis), heal, liveness
//! phase, then the checks. Everything about the run derives from the seed, so a
//! failing seed replays exactly.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use braid_jepsen::{check, CheckOptions, EtcdModel, History, RegisterModel};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::churn::replace_member;
use crate::cluster::Cluster;
use crate::lease_check::{run_lease_client, LeaseLog};
use crate::nemesis::{FaultCounts, FaultMix, Nemesis};
use crate::watch_check::{check_watches, run_watcher, WatchLog};
use crate::workload::{
    check_serializable_reads, missing_load_writes, read_every_key, run_client, run_load_writer, Recorder, Workload,
};

/// Concurrent clients: the whole-store history cannot be split by key, so its
/// search space is kept small with fewer clients.
const REGISTER_CLIENTS: u64 = 4;
const STORE_CLIENTS: u64 = 2;
/// Load writers on seeds with the load knob: enough to keep about 10k writes
/// per simulated second in flight on a healthy cluster.
const LOAD_WRITERS: u64 = 96;
/// Watchers on a watch seed (two, so their streams can be compared).
const WATCHERS: usize = 2;
const LEASE_CLIENTS: u64 = 2;
const SAFETY_PHASE: Duration = Duration::from_secs(20);
const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// Simulated time after which the run is declared stuck (a liveness failure).
pub const TIME_LIMIT: Duration = Duration::from_secs(300);
/// Wall time the checker may spend on one history; running out is a failure.
const CHECK_BUDGET: Duration = Duration::from_secs(30);

/// What one seed produced.
#[derive(Debug)]
pub struct RunReport {
    pub seed: u64,
    pub mix: FaultMix,
    pub workload: Option<Workload>,
    pub faults: FaultCounts,
    /// Everything else counted (message fates, invariant evaluations,
    /// serializable reads), by name, for the sweep's totals.
    pub counters: BTreeMap<String, u64>,
    pub operations: usize,
    pub ok_operations: usize,
    /// A digest of the history (operations and their simulated times): equal
    /// digests for two runs of one seed show the run is deterministic.
    pub trace_hash: u64,
    pub failure: Option<String>,
}

impl RunReport {
    /// A report for a seed that produced no run to speak of (it panicked, or
    /// its process printed nothing).
    pub fn failed(seed: u64, failure: String) -> RunReport {
        RunReport {
            seed,
            mix: FaultMix::none(),
            workload: None,
            faults: FaultCounts::default(),
            counters: BTreeMap::new(),
            operations: 0,
            ok_operations: 0,
            trace_hash: 0,
            failure: Some(failure),
        }
    }
}

fn history_digest(history: &History) -> u64 {
    braid::server::hooks::digest(&[history.to_jsonl_string().as_bytes()])
}

/// The scenario; runs inside a madsim runtime seeded with `seed`.
pub async fn scenario(seed: u64) -> (RunReport, History) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mix = FaultMix::random(&mut rng);
    let members = if rng.gen_bool(0.3) { 5 } else { 3 };
    let workload = if rng.gen_bool(0.3) {
        Workload::Store
    } else {
        Workload::Register
    };
    // Heavy load costs real time: one seed in ten. The whole-store model
    // cannot see the load writers' keys (they move the global revision), so
    // only register seeds carry it.
    let load = rng.gen_bool(0.1) && workload == Workload::Register;
    let mut cluster = Cluster::start(members, seed);
    let urls: Vec<String> = cluster.members.keys().map(|id| cluster.client_url(*id)).collect();
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let start = tokio::time::Instant::now();
    let deadline = start + SAFETY_PHASE;
    let runtime = madsim::runtime::Handle::current();
    let mut clients = Vec::new();
    let client_count = match workload {
        Workload::Register => REGISTER_CLIENTS,
        Workload::Store => STORE_CLIENTS,
    };
    for id in 0..client_count {
        let node = runtime
            .create_node()
            .name(format!("client{id}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, id as u8 + 1)))
            .build();
        let urls = urls.clone();
        let recorder = Arc::clone(&recorder);
        let client_seed = rng.gen();
        let client = run_client(id, workload, urls, client_seed, start, deadline, recorder);
        clients.push(node.spawn(client));
    }

    let load_acknowledged = Arc::new(Mutex::new(Vec::new()));
    if load {
        let load_urls = cluster.all_client_urls();
        let loader = runtime
            .create_node()
            .name("loader")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
            .build();
        for id in 0..LOAD_WRITERS {
            let writer = run_load_writer(
                id,
                load_urls.clone(),
                rng.gen(),
                deadline,
                Arc::clone(&load_acknowledged),
            );
            clients.push(loader.spawn(writer));
        }
    }

    // Half the seeds also watch the workload's keys, resuming across faults.
    let mut watch_rng = SmallRng::seed_from_u64(seed ^ 0x3a7c_4e11);
    let watch_logs: Vec<Arc<Mutex<WatchLog>>> = if watch_rng.gen_bool(0.5) {
        (0..WATCHERS).map(|_| Arc::default()).collect()
    } else {
        Vec::new()
    };
    if !watch_logs.is_empty() {
        let watcher_node = runtime
            .create_node()
            .name("watchers")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 4, 1)))
            .build();
        for log in &watch_logs {
            let watcher = run_watcher(urls.clone(), watch_rng.gen(), deadline, Arc::clone(log));
            clients.push(watcher_node.spawn(watcher));
        }
    }

    // Some register seeds also run lease clients (grant, keepalive, revoke,
    // and reads checking that leases neither expire early nor outlive a
    // revoke). Their puts move the global revision, which the whole-store
    // model cannot account for, as with the load writers.
    let lease_log = Arc::new(Mutex::new(LeaseLog::default()));
    let leases = watch_rng.gen_bool(0.5) && workload == Workload::Register;
    if leases {
        let leaser = runtime
            .create_node()
            .name("leasers")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 5, 1)))
            .build();
        for id in 0..LEASE_CLIENTS {
            let client = run_lease_client(id, urls.clone(), watch_rng.gen(), deadline, Arc::clone(&lease_log));
            clients.push(leaser.spawn(client));
        }
    }

    // A third of the seeds replace members now and then (`churn.rs`).
    let mut churn_rng = SmallRng::seed_from_u64(seed ^ 0xc4a2_7e55);
    let churn = churn_rng.gen_bool(0.3);

    // Safety phase: the nemesis acts while the clients run.
    let mut nemesis = Nemesis::default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while tokio::time::Instant::now() < deadline {
        let pause = mix.interval.mul_f64(rng.gen_range(0.5..1.5));
        tokio::time::sleep(pause).await;
        if churn && nemesis.is_quiet() && churn_rng.gen_bool(0.3) {
            match replace_member(&mut cluster, &mut churn_rng).await {
                Ok(_) => nemesis.counts.member_replacements += 1,
                Err(error) => {
                    if std::env::var_os("SIM_DEBUG").is_some() {
                        eprintln!("seed {seed}: member replacement stopped: {error}");
                    }
                }
            }
            continue;
        }
        nemesis.act(&cluster, &mix, &mut rng);
    }
    nemesis.heal_all(&cluster);
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("seed {seed}: safety phase over, faults {}", nemesis.counts);
    }
    for client in clients {
        let _ = client.await;
    }

    // Liveness phase: with everything healed, every member must serve a write
    // and a linearizable read within the bound.
    let mut failure = liveness(&cluster, workload, start, &recorder).await.err();

    // Final: a power failure of every member at once (unsynced data dropped,
    // kept or torn per page), a restart, and a read of every key. A write that
    // was acknowledged but not durable on a quorum shows up as a lost write.
    if failure.is_none() {
        for id in cluster.members.keys() {
            cluster.crash(*id, &mut rng);
        }
        for id in cluster.members.keys() {
            cluster.restart(*id);
        }
        let checker = runtime
            .create_node()
            .name("final-reader")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)))
            .build();
        let read_deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
        // Members may have been replaced: read from the ones there now.
        let urls: Vec<String> = cluster.members.keys().map(|id| cluster.client_url(*id)).collect();
        let reader = read_every_key(200, workload, urls.clone(), start, read_deadline, Arc::clone(&recorder));
        let unread = checker.spawn(reader).await.unwrap_or_default();
        if !unread.is_empty() {
            failure = Some(format!(
                "after a power failure of every member, keys {unread:?} could not be read"
            ));
        }
        let acknowledged = load_acknowledged.lock().unwrap().clone();
        if failure.is_none() && !acknowledged.is_empty() {
            let read_deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
            let check = missing_load_writes(urls.clone(), acknowledged, read_deadline);
            match checker.spawn(check).await {
                Ok(Ok(missing)) if missing.is_empty() => {}
                Ok(Ok(missing)) => {
                    failure = Some(format!(
                        "after a power failure of every member, {} acknowledged writes are lost, e.g. {:?}",
                        missing.len(),
                        &missing[..missing.len().min(3)]
                    ))
                }
                Ok(Err(error)) => failure = Some(error),
                Err(_) => failure = Some("the load check's task failed".to_string()),
            }
        }
    }

    // Let restarted members report in before the invariants are read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (violations, violation_count) = cluster.invariants.violations();
    if !violations.is_empty() {
        let more = violation_count - violations.len();
        let mut message = format!("invariant violated: {}", violations.join("; "));
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        failure = Some(message);
    }
    let (history, serializable_reads) = {
        let mut recorder = recorder.lock().unwrap();
        (
            std::mem::take(&mut recorder.history),
            std::mem::take(&mut recorder.serializable_reads),
        )
    };
    if failure.is_none() {
        failure = check_serializable_reads(&history, &serializable_reads).err();
    }
    let watch_logs: Vec<WatchLog> = watch_logs
        .iter()
        .map(|log| std::mem::take(&mut *log.lock().unwrap()))
        .collect();
    if failure.is_none() {
        failure = check_watches(&history, &watch_logs).err();
    }
    let lease_log = std::mem::take(&mut *lease_log.lock().unwrap());
    if failure.is_none() && !lease_log.violations.is_empty() {
        failure = Some(lease_log.violations.join("; "));
    }
    let fates = cluster.faults.counts();
    let counters: BTreeMap<String, u64> = [
        ("invariant-evaluations", cluster.invariants.evaluations()),
        ("snapshots-installed", cluster.invariants.snapshots_installed()),
        ("serializable-reads", serializable_reads.len() as u64),
        ("load-seeds", u64::from(load)),
        (
            "load-writes-acknowledged",
            load_acknowledged.lock().unwrap().len() as u64,
        ),
        ("watch-seeds", u64::from(!watch_logs.is_empty())),
        (
            "watch-events",
            watch_logs.iter().map(|log| log.events.len() as u64).sum(),
        ),
        ("watch-sessions", watch_logs.iter().map(|log| log.sessions).sum()),
        ("lease-seeds", u64::from(leases)),
        ("leases-granted", lease_log.granted),
        ("lease-keepalives", lease_log.keepalives),
        ("leases-revoked", lease_log.revoked),
        ("lease-reads-checked", lease_log.checked_reads),
        ("messages-dropped", fates.dropped),
        ("messages-duplicated", fates.duplicated),
        ("messages-corrupted", fates.corrupted),
        ("messages-delayed", fates.delayed),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_string(), count))
    .collect();
    let operations = history.len();
    let ok_operations = history
        .operations
        .iter()
        .filter(|op| op.status == braid_jepsen::Status::Ok)
        .count();
    let trace_hash = history_digest(&history);
    (
        RunReport {
            seed,
            mix,
            workload: Some(workload),
            faults: nemesis.counts,
            counters,
            operations,
            ok_operations,
            trace_hash,
            failure,
        },
        history,
    )
}

async fn liveness(
    cluster: &Cluster,
    workload: Workload,
    start: tokio::time::Instant,
    recorder: &Arc<Mutex<Recorder>>,
) -> Result<(), String> {
    let bound = tokio::time::Instant::now() + LIVENESS_BOUND;
    // Clients need a network address: the checker runs on its own node.
    let checker = madsim::runtime::Handle::current()
        .create_node()
        .name("liveness")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)))
        .build();
    for (position, id) in cluster.members.keys().enumerate() {
        let urls = vec![cluster.client_url(*id)];
        let mut served = false;
        while tokio::time::Instant::now() < bound && !served {
            let before = recorder.lock().unwrap().history.len();
            // One client for a short burst against this member only.
            let burst_end = tokio::time::Instant::now() + Duration::from_secs(2);
            let client = run_client(
                100 + position as u64,
                workload,
                urls.clone(),
                position as u64,
                start,
                burst_end,
                Arc::clone(recorder),
            );
            let _ = checker.spawn(client).await;
            let recorder = recorder.lock().unwrap();
            served = recorder.history.operations[before..]
                .iter()
                .any(|op| op.status == braid_jepsen::Status::Ok);
        }
        if !served {
            return Err(format!(
                "liveness: member {id} served no request within {LIVENESS_BOUND:?} after healing"
            ));
        }
    }
    converge(cluster, bound).await
}

/// Waits until every member has applied the same revision and reports the
/// same HashKV there (their MVCC histories agree), or fails at `bound`.
async fn converge(cluster: &Cluster, bound: tokio::time::Instant) -> Result<(), String> {
    let mut last = String::new();
    while tokio::time::Instant::now() < bound {
        let handles: Vec<_> = cluster.members.keys().map(|id| (*id, cluster.handle(*id))).collect();
        let revisions: Vec<i64> = handles
            .iter()
            .filter_map(|(_, handle)| handle.as_ref().map(|handle| handle.store().current_revision().0))
            .collect();
        let (Some(low), Some(high)) = (revisions.iter().min(), revisions.iter().max()) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if revisions.len() == handles.len() && low == high {
            let hashes: Vec<(braid::raft::NodeId, Option<u32>)> = handles
                .iter()
                .map(|(id, handle)| {
                    let hash = handle.as_ref().and_then(|handle| {
                        handle
                            .store()
                            .hash_kv(braid::mvcc::Revision(*low))
                            .ok()
                            .map(|result| result.hash)
                    });
                    (*id, hash)
                })
                .collect();
            if hashes.iter().all(|(_, hash)| hash.is_some() && *hash == hashes[0].1) {
                return Ok(());
            }
            last = format!("HashKV at revision {low} differs: {hashes:?}");
        } else {
            last = format!("members are at revisions {revisions:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "liveness: the members did not converge within {LIVENESS_BOUND:?}: {last}"
    ))
}

/// Runs one seed in a fresh madsim runtime on the current thread, then checks
/// its history. The checker runs after the simulation: inside it, time is
/// simulated and would not advance while the checker computes, so its
/// wall-time budget could never expire.
pub fn run_seed(seed: u64) -> RunReport {
    let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(TIME_LIMIT);
    let (mut report, history) = runtime.block_on(scenario(seed));
    drop(runtime);
    if report.failure.is_none() {
        let options = CheckOptions::default().with_budget(CHECK_BUDGET);
        let result = match report.workload {
            Some(Workload::Store) => check(&EtcdModel::new(), &history, &options),
            _ => check(&RegisterModel::revision_aware(), &history, &options),
        };
        match result {
            Ok(result) if result.verdict.is_ok() => {}
            Ok(result) => report.failure = Some(format!("history is not linearizable: {}", result.verdict)),
            Err(error) => report.failure = Some(format!("history could not be checked: {error}")),
        }
    }
    report
}
