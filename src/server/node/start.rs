//! Starting a member: recovery of the WAL and the state file, the checks that
//! they belong together, and the node loop's initial state.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{
    lease, members, snapshot, NodeError, NodeLoop, NodeOptions, PlantedBugs, Started, INFLIGHT_APPENDS, STATE_FILE,
};
use crate::btree::{BTree, BTreeOptions};
use crate::io::{Clock, Dir};
use crate::mvcc::{BTreeBackend, MvccConfig, MvccStore};
use crate::raft::{self, Index, NodeId, Raft, Role};
use crate::server::alarms::AlarmSet;
use crate::server::handle::NodeHandle;
use crate::server::hooks::NodeHooks;
use crate::server::incarnation;
use crate::server::log_store::LogStore;
use crate::server::maintenance::LeaderTransfers;
use crate::server::membership::MemberTable;
use crate::server::transport::{PeerService, Transport};

/// Opens the member's storage in `dir`, recovers, and starts the node loop.
pub async fn start<D: Dir + Clone, C: Clock>(
    options: NodeOptions,
    dir: D,
    clock: Arc<C>,
) -> Result<Started<D>, NodeError> {
    start_with_hooks(options, dir, clock, NodeHooks::default()).await
}

/// `start`, with a test harness's fault and observer hooks.
pub async fn start_with_hooks<D: Dir + Clone, C: Clock>(
    options: NodeOptions,
    dir: D,
    clock: Arc<C>,
    hooks: NodeHooks,
) -> Result<Started<D>, NodeError> {
    let incarnation = incarnation::next_incarnation(&dir)
        .await
        .map_err(|error| NodeError::State(error.to_string()))?;
    let (log, mut persisted) = LogStore::open(dir.clone(), options.wal.clone()).await?;
    let pages = dir
        .open_pages(STATE_FILE, options.page_size)
        .await
        .map_err(|error| NodeError::State(error.to_string()))?;
    dir.sync_dir()
        .await
        .map_err(|error| NodeError::State(error.to_string()))?;
    let tree = BTree::open(
        pages,
        BTreeOptions {
            page_size: options.page_size,
        },
    )
    .await
    .map_err(|error| NodeError::State(error.to_string()))?;
    let bugs = PlantedBugs::from_environment();
    let mvcc_config = MvccConfig {
        #[cfg(feature = "sim-bugs")]
        planted_double_apply: bugs.double_apply,
        ..MvccConfig::default()
    };
    // The WAL replays whatever a crash takes from the state file after its last
    // durable commit, so apply rounds commit without fsync (`sync_state`).
    let store = MvccStore::open(BTreeBackend::with_deferred_durability(tree), mvcc_config)
        .await
        .map_err(|error| NodeError::State(error.to_string()))?;
    snapshot::recover_incoming(&dir, &store, persisted.snapshot.meta.index.0, options.page_size).await?;
    let applied = store.consistent_index().index;
    let recovered_entries = persisted.entries.len();
    // The planted double-apply bug hands Raft an applied index a few entries
    // short, so a restart applies them a second time (mvcc's exactly-once
    // guard is switched off with it).
    persisted.applied = Index(if bugs.double_apply {
        applied.saturating_sub(3)
    } else {
        applied
    });
    let last_logged = persisted
        .entries
        .last()
        .map_or(persisted.snapshot.meta.index.0, |entry| entry.index.0);
    if applied > last_logged && persisted.hard_state.commit.0 > 0 {
        return Err(NodeError::State(format!(
            "the state file has applied index {applied} but the WAL ends at {last_logged}: they do not belong together"
        )));
    }

    let members = MemberTable::load(&crate::mvcc::Backend::read(store.backend()))
        .map_err(|error| NodeError::State(error.to_string()))?;
    if members.is_removed(options.id) {
        return Err(NodeError::Removed);
    }

    let mut config = raft::Config::new(options.id);
    config.bootstrap_contexts = options.membership.bootstrap_contexts();
    config.election_ticks = options.election_ticks;
    config.heartbeat_ticks = 1;
    config.pre_vote = options.pre_vote;
    config.check_quorum = true;
    config.seed = options.seed;
    config.max_inflight_messages = INFLIGHT_APPENDS;
    config.live_snapshots = true;
    let raft = Raft::new(config, persisted, options.initial_conf.clone());

    let (events, event_inbox) = mpsc::unbounded_channel();
    let transport = Transport::new(options.id, options.cluster_id, events, hooks.faults.clone());
    for (peer, url) in &options.peer_urls {
        transport.add_peer(*peer, url.clone());
    }
    let peer_service = PeerService::new(&transport);
    let (handle, requests) = NodeHandle::new(store.clone(), options.id, options.cluster_id, options.max_request_bytes);
    // Maintenance (alarms, quota, auto compaction): `server::maintenance`.
    let alarms = AlarmSet::load(&crate::mvcc::Backend::read(store.backend()))
        .map_err(|error| NodeError::State(error.to_string()))?;
    handle.publish_alarms(alarms.clone());
    handle.set_quota_backend_bytes(options.maintenance.quota_backend_bytes);
    crate::server::auto_compaction::spawn(handle.clone(), Arc::clone(&clock), options.maintenance.auto_compaction);
    // Request ids and read contexts never repeat across restarts (see `incarnation`).
    let first_request_id = incarnation::first_id(incarnation);
    if let Some(observer) = &hooks.observer {
        observer.started(options.id, incarnation);
    }
    let leases = lease::LeaseState::open(&options, &store, clock.wall_ns())?;
    let members = members::Members::new(members, options.membership.clone(), options.peer_urls.clone());
    let mut node = NodeLoop {
        dir,
        incoming: None,
        last_state_sync_ns: clock.monotonic_ns(),
        state_sync: None,
        members,
        options,
        raft,
        log,
        store,
        transport,
        handle: handle.clone(),
        clock,
        next_request_id: first_request_id,
        pending_writes: BTreeMap::new(),
        waiting_reads: Vec::new(),
        reads_in_flight: BTreeMap::new(),
        reads_awaiting_apply: Vec::new(),
        next_read_context: first_request_id,
        read_round_started_ns: 0,
        proposals: Vec::new(),
        leader: NodeId::NONE,
        role: Role::Follower,
        leader_changes: 0,
        bugs,
        readies: 0,
        observer: hooks.observer,
        alarms,
        transfers: LeaderTransfers::default(),
        leases,
    };
    node.sync_members();
    let task = tokio::spawn(node.run(requests, event_inbox));
    Ok(Started {
        handle,
        peer_service,
        task,
        recovered_entries,
        recovered_applied: applied,
    })
}
