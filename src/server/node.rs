//! The node loop: the one place that decides ordering (DESIGN.md invariant 6).
//!
//! One task owns the Raft core, the log store and the state machine. It waits
//! for a closed set of events — a client request, a peer message, a transport
//! loss report, a tick — handles every event that is already queued (so many
//! client writes become one Raft batch and many reads one ReadIndex round),
//! then works off `Ready` in the order `raft/mod.rs` documents:
//!
//! 1. send the leader's messages (they may leave before the local write),
//! 2. write entries and hard state to the WAL and fsync (one group commit),
//! 3. send the messages that promise durable state once the fsync is done,
//! 4. meanwhile, apply committed entries to MVCC in one B+tree commit that also records
//!    the applied index, and answer the clients waiting on them (the commit
//!    is deferred: `sync_state` makes the state file durable every
//!    `--backend-batch-interval`, and the WAL, compacted only up to the
//!    durable applied index, replays what a crash takes back),
//! 5. release linearizable reads whose index is applied,
//! 6. `advance`.
//!
//! A storage error ends the loop (fail-stop): nothing is acknowledged after it.
//!
//! Leases (the lessor, keepalives, expiry and checkpoints) hook in through
//! `node/lease.rs`; membership (the Cluster service, the member table) through
//! `node/members.rs`; start-up and recovery live in `node/start.rs`.

mod lease;
mod members;
mod snapshot;
mod start;

pub use members::MembershipOptions;
pub use snapshot::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES;
pub use start::{start, start_with_hooks};

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::alarms::AlarmSet;
use super::handle::{Applied, Header, MemberStatus, NodeHandle, Request, ServerError};
use super::hooks::{self, AppliedEntry, NodeObserver, Progress};
use super::lessor::{self, Lessor};
use super::log_store::{LogStore, PendingSync};
use super::maintenance::{screen_command, LeaderTransfers, MaintenanceOptions, Screened};
use super::proposal::{self, Command, Proposal};
use super::transport::{PeerService, Transport, TransportEvent};
use crate::io::{Clock, Dir};
use crate::mvcc::{ApplyEntry, ApplyOutcome, BTreeBackend, ConsistentIndex, MvccStore, WriteRequest, WriteResponse};
use crate::raft::{self, ConfState, EntryKind, Index, MessageKind, NodeId, Raft, RaftError, Ready, Role};
use crate::wal::{WalError, WalOptions};

/// etcd warns about an fdatasync slower than this.
const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// Appends in flight to one follower. Small on purpose: while the window is
/// full, new proposals wait in the leader's log and the next append carries
/// them all, so a busy leader sends few large messages instead of one per
/// round. With a window of 256 the simulation's 96 writers got one entry per
/// append and ~440 writes per simulated second; with 4, ~2000. On loopback
/// processes it kept throughput and halved p99 at 64 clients (3,333 → 3,759
/// puts/s, p99 69 → 33 ms, 3 members, noisy shared machine).
const INFLIGHT_APPENDS: usize = 4;

/// The name of the state file inside the data directory.
pub const STATE_FILE: &str = "state.db";

/// Everything a node needs to know to start.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub cluster_id: u64,
    /// The bootstrap membership (`--initial-cluster`); empty when joining.
    pub initial_conf: ConfState,
    /// Peer URLs (`http://host:port`) of the other members.
    pub peer_urls: BTreeMap<NodeId, String>,
    /// `--heartbeat-interval`: one Raft tick.
    pub tick: Duration,
    /// `--election-timeout` in ticks.
    pub election_ticks: u32,
    pub pre_vote: bool,
    pub max_request_bytes: usize,
    /// How long a write or linearizable read may wait (etcd: 5 s + 2 × election timeout).
    pub request_timeout: Duration,
    pub wal: WalOptions,
    pub page_size: usize,
    /// Seeds election jitter.
    pub seed: u64,
    /// Name, URLs and reconfiguration checks for the member table.
    pub membership: MembershipOptions,
    /// Quota and auto compaction (`server::maintenance`).
    pub maintenance: MaintenanceOptions,
    /// How often the leader checkpoints remaining lease TTLs through Raft
    /// (`lessor::DEFAULT_CHECKPOINT_INTERVAL`); `Duration::ZERO` turns it off.
    pub lease_checkpoint_interval: Duration,
    /// `--backend-batch-interval` and `--backend-batch-limit`: the state file's
    /// apply commits become durable at least this often, and after at most
    /// this many entries (etcd: 100 ms, 10000).
    pub state_sync_interval: Duration,
    pub state_sync_entries: u64,
    /// `--snapshot-count`: applied entries between log compactions (`node/snapshot.rs`).
    pub snapshot_count: u64,
    /// Entries kept after a compaction for followers a little behind
    /// (`DEFAULT_SNAPSHOT_CATCHUP_ENTRIES`).
    pub snapshot_catchup_entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("WAL: {0}")]
    Wal(#[from] WalError),
    #[error("state file: {0}")]
    State(String),
    #[error("corrupt entry {index}: {reason}")]
    CorruptEntry { index: u64, reason: String },
    /// This member was removed from the cluster (etcd's text); it stops, and
    /// refuses to start again from the same data directory.
    #[error("the member has been permanently removed from the cluster")]
    Removed,
}

pub type Backend<D> = BTreeBackend<<D as Dir>::Pages>;

/// A started node: the handle for the API, the peer service to serve, and the
/// loop's task (which ends only with a fatal error).
pub struct Started<D: Dir> {
    pub handle: NodeHandle<Backend<D>>,
    pub peer_service: PeerService,
    pub task: tokio::task::JoinHandle<Result<(), NodeError>>,
    /// Entries recovered from the WAL and the applied index found in the state file.
    pub recovered_entries: usize,
    pub recovered_applied: u64,
}

/// Bugs planted on purpose to prove the simulation catches them
/// (`BRAID_SIM_BUG=<name>`, only in builds with the `sim-bugs` feature, which
/// only the simulation enables). Production builds compile them to `false`.
#[derive(Clone, Copy, Debug, Default)]
struct PlantedBugs {
    /// Send acknowledgements before the WAL write, and fsync only now and then.
    ack_before_fsync: bool,
    /// Serve linearizable reads from local state without ReadIndex.
    read_without_read_index: bool,
    /// Apply the last few entries again after a restart.
    double_apply: bool,
}

impl PlantedBugs {
    #[cfg(feature = "sim-bugs")]
    fn from_environment() -> PlantedBugs {
        let bug = std::env::var("BRAID_SIM_BUG").unwrap_or_default();
        PlantedBugs {
            ack_before_fsync: bug == "ack-before-fsync",
            read_without_read_index: bug == "read-without-readindex",
            double_apply: bug == "double-apply",
        }
    }

    #[cfg(not(feature = "sim-bugs"))]
    fn from_environment() -> PlantedBugs {
        PlantedBugs::default()
    }
}

/// Who proposed an entry (member, request id), if a client, and the answer
/// decided before mvcc ran (an alarm change, an alarm's refusal, a lease
/// error), to give instead of mvcc's result.
type EntryOrigin = (Option<(u64, u64)>, Option<Result<Applied, ServerError>>);

type WriteReply = oneshot::Sender<Result<(Applied, Header), ServerError>>;
type ReadReply = oneshot::Sender<Result<(), ServerError>>;

struct PendingWrite {
    reply: WriteReply,
    deadline_ns: u64,
}

/// A state file sync running in its own task (`sync_state`).
struct StateSync {
    /// Its outcome and how long it took.
    answer: oneshot::Receiver<(Result<(), crate::mvcc::BackendError>, Duration)>,
    /// Dropped with the loop: the task then stops at its next await, so a loop
    /// whose task was aborted leaves no write behind for a member restarted in
    /// the same process. (An exiting loop waits for it instead, in `run`.)
    _cancel_on_drop: oneshot::Sender<()>,
}

struct PendingRead {
    reply: ReadReply,
    deadline_ns: u64,
}

struct NodeLoop<D: Dir, C: Clock> {
    /// The data directory (snapshot images wait here while installing).
    dir: D,
    /// A received snapshot waiting for Raft to accept it (`node/snapshot.rs`).
    incoming: Option<snapshot::IncomingImage>,
    /// When the state file was last made durable (`sync_state`).
    last_state_sync_ns: u64,
    /// The state file sync running in the background, if any (`sync_state`).
    state_sync: Option<StateSync>,
    members: members::Members,
    options: NodeOptions,
    raft: Raft,
    log: LogStore<D>,
    store: MvccStore<Backend<D>>,
    transport: Transport,
    handle: NodeHandle<Backend<D>>,
    clock: Arc<C>,
    /// Next id for a write this member proposes (see `start` for why it
    /// starts at the wall clock).
    next_request_id: u64,
    /// Writes proposed by this member, by request id, until applied.
    pending_writes: BTreeMap<u64, PendingWrite>,
    /// Reads that arrived since the last ReadIndex round was started.
    waiting_reads: Vec<PendingRead>,
    /// ReadIndex rounds in flight, by context.
    reads_in_flight: BTreeMap<u64, Vec<PendingRead>>,
    /// Confirmed reads waiting for the state machine to reach their index.
    reads_awaiting_apply: Vec<(Index, Vec<PendingRead>)>,
    next_read_context: u64,
    /// When the newest ReadIndex round started (`start_read_round`).
    read_round_started_ns: u64,
    /// Writes received in this round, proposed together.
    proposals: Vec<(u64, Bytes)>,
    leader: NodeId,
    role: Role,
    leader_changes: u64,
    bugs: PlantedBugs,
    readies: u64,
    observer: Option<Arc<dyn NodeObserver>>,
    /// Alarms as of the last applied entry (`server::alarms`).
    alarms: AlarmSet,
    transfers: LeaderTransfers,
    leases: lease::LeaseState,
}

enum Event {
    Request(Request),
    Transport(TransportEvent),
    Tick,
    Closed,
}

impl<D: Dir, C: Clock> NodeLoop<D, C> {
    async fn run(
        mut self,
        requests: mpsc::Receiver<Request>,
        transport_events: mpsc::UnboundedReceiver<TransportEvent>,
    ) -> Result<(), NodeError> {
        let result = self.serve(requests, transport_events).await;
        // A state file sync still running owns a handle on the page file: let it
        // finish before the loop is gone, so a member restarted in the same
        // process never shares its files with a write from this one.
        if let Some(running) = self.state_sync.take() {
            let _ = running.answer.await;
        }
        result
    }

    async fn serve(
        &mut self,
        mut requests: mpsc::Receiver<Request>,
        mut transport_events: mpsc::UnboundedReceiver<TransportEvent>,
    ) -> Result<(), NodeError> {
        let tick = self.options.tick;
        let clock = Arc::clone(&self.clock);
        let mut next_tick = Box::pin(clock.sleep(tick));
        self.publish();
        loop {
            let event = tokio::select! {
                request = requests.recv() => request.map_or(Event::Closed, Event::Request),
                event = transport_events.recv() => event.map_or(Event::Closed, Event::Transport),
                () = &mut next_tick => Event::Tick,
            };
            match event {
                Event::Closed => return Ok(()),
                Event::Tick => {
                    next_tick = Box::pin(clock.sleep(tick));
                    self.raft.tick();
                    self.expire_requests();
                    self.tick_members();
                    self.tick_leases();
                }
                Event::Request(request) => self.handle_request(request),
                Event::Transport(event) => self.handle_transport(event).await,
            }
            // Take everything already queued: this is where batching happens.
            while let Ok(request) = requests.try_recv() {
                self.handle_request(request);
            }
            while let Ok(event) = transport_events.try_recv() {
                self.handle_transport(event).await;
            }
            self.flush_proposals();
            loop {
                // A round the last Ready confirmed lets the reads that waited for it start the next.
                self.start_read_round();
                if !self.raft.has_ready() {
                    break;
                }
                let ready = self.raft.ready();
                self.handle_ready(ready).await?;
            }
            self.sync_state()?;
            self.check_removed()?;
            self.publish();
            self.transfers.observe(self.raft.leader(), self.clock.monotonic_ns());
        }
    }

    fn handle_request(&mut self, request: Request) {
        let deadline_ns = self.clock.monotonic_ns() + self.options.request_timeout.as_nanos() as u64;
        match request {
            Request::Write { request, reply } => self.propose(request, reply, deadline_ns),
            Request::Lease { request, reply } => self.handle_lease_request(request, reply, deadline_ns),
            Request::LinearizableRead { reply } if self.bugs.read_without_read_index => {
                let _ = reply.send(Ok(()));
            }
            Request::LinearizableRead { reply } => self.waiting_reads.push(PendingRead { reply, deadline_ns }),
            Request::Member { request, reply } => self.handle_member_request(request, reply, deadline_ns),
            Request::MoveLeader { target, reply } => self.transfers.start(&mut self.raft, target, deadline_ns, reply),
        }
    }

    /// Queues `command` for this round's proposal batch; `reply` gets its result once applied.
    fn propose(&mut self, command: Command, reply: WriteReply, deadline_ns: u64) {
        let (id, data) = self.encode_proposal(command);
        if data.len() > self.options.max_request_bytes {
            let _ = reply.send(Err(ServerError::TooLarge));
            return;
        }
        self.pending_writes.insert(id, PendingWrite { reply, deadline_ns });
        self.proposals.push((id, data));
    }

    /// `command` as an entry from this member, under a new request id.
    fn encode_proposal(&mut self, command: Command) -> (u64, Bytes) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let data = proposal::encode(&Proposal {
            origin: self.options.id.0,
            id,
            command,
        });
        (id, data)
    }

    async fn handle_transport(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Received(message) if message.kind == MessageKind::Snapshot => {
                self.note_contact(message.from);
                if let Some(message) = self.receive_snapshot(*message).await {
                    self.raft.step(message);
                }
            }
            TransportEvent::Received(message) => {
                self.note_contact(message.from);
                self.raft.step(*message);
            }
            TransportEvent::SnapshotSent { to, delivered } => self.raft.report_snapshot(to, delivered),
            TransportEvent::Unreachable(peer) => {
                self.note_lost_contact(peer);
                self.raft.report_unreachable(peer);
            }
            TransportEvent::Removed => self.learned_removal(),
            TransportEvent::LeaseQuery {
                query,
                applied_index,
                reply,
                confirmed,
            } => self.handle_lease_query(query, applied_index, reply, confirmed),
        }
    }

    /// Proposes every write queued in this round as one batch.
    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals);
        let (ids, data): (Vec<u64>, Vec<Bytes>) = batch.into_iter().unzip();
        if let Err(error) = self.raft.propose_batch(data) {
            self.handle
                .metrics()
                .proposals_failed
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            let error = map_raft_error(error);
            for id in ids {
                if let Some(write) = self.pending_writes.remove(&id) {
                    let _ = write.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Starts one ReadIndex round for every read waiting, unless a round is in
    /// flight: as in etcd's read loop, reads that arrive meanwhile share the
    /// next round, so a busy member sends one heartbeat round per round trip
    /// instead of one per loop iteration. A round not confirmed within two
    /// heartbeat intervals (a lost message) no longer holds the next one back;
    /// the next round's confirmation covers it too (`confirm_read`).
    fn start_read_round(&mut self) {
        if self.waiting_reads.is_empty() {
            return;
        }
        let now = self.clock.monotonic_ns();
        let patience_ns = 2 * self.options.tick.as_nanos() as u64;
        if !self.reads_in_flight.is_empty() && now.saturating_sub(self.read_round_started_ns) < patience_ns {
            return;
        }
        self.read_round_started_ns = now;
        let reads = std::mem::take(&mut self.waiting_reads);
        let context = self.next_read_context;
        self.next_read_context += 1;
        match self.raft.read_index(Bytes::copy_from_slice(&context.to_be_bytes())) {
            Ok(()) => {
                self.reads_in_flight.insert(context, reads);
            }
            Err(error) => {
                let error = map_raft_error(error);
                for read in reads {
                    let _ = read.reply.send(Err(error.clone()));
                }
            }
        }
    }

    async fn handle_ready(&mut self, mut ready: Ready) -> Result<(), NodeError> {
        if let Some(soft) = ready.soft_state {
            self.observe_soft_state(soft);
        }
        if let Some(snapshot) = ready.snapshot.take() {
            self.install_snapshot(&snapshot).await?;
        }
        // Snapshots leave once this round is applied (`node/snapshot.rs`).
        let (snapshots, messages): (Vec<_>, Vec<_>) = std::mem::take(&mut ready.messages)
            .into_iter()
            .partition(|message| message.kind == MessageKind::Snapshot);
        self.transport.send(messages);
        self.readies += 1;
        if self.bugs.ack_before_fsync {
            self.transport.send(std::mem::take(&mut ready.persisted_messages));
        }
        // The WAL write goes out now; its fsync runs while committed entries
        // are applied (they are already durable here), and the messages that
        // promise durable state leave as soon as it completes.
        let started = self.clock.monotonic_ns();
        let sync = if self.bugs.ack_before_fsync && self.readies % 16 != 0 {
            self.log.append_without_sync(&ready).await?;
            None
        } else {
            self.log.write(&ready).await?
        };
        let messages = std::mem::take(&mut ready.persisted_messages);
        let waiting = match sync {
            Some(sync) => Some(self.send_after_sync(sync, messages, started)),
            None => {
                // Nothing to wait for (no entries, or only the commit index moved).
                self.transport.send(messages);
                None
            }
        };
        let persisted = async {
            match waiting {
                Some(waiting) => waiting.await,
                None => Ok(()),
            }
        };
        let applied = async {
            if ready.committed_entries.is_empty() {
                return Ok(());
            }
            let started = self.clock.monotonic_ns();
            self.apply(&ready.committed_entries).await?;
            let took = Duration::from_nanos(self.clock.monotonic_ns().saturating_sub(started));
            self.handle.metrics().backend_commit.observe(took);
            Ok::<(), NodeError>(())
        };
        let (persisted, applied) = tokio::join!(persisted, applied);
        persisted?;
        applied?;
        self.send_snapshots(snapshots);
        for state in &ready.read_states {
            self.confirm_read(state);
        }
        self.release_applied_reads();
        self.raft.advance(&ready);
        self.maybe_compact_log().await
    }

    /// Waits for `sync` (timing it from `started` for the fsync histogram),
    /// then sends `messages`, which promise what it makes durable. Owns what it
    /// needs, so it runs alongside the apply, which borrows the loop.
    fn send_after_sync(
        &self,
        sync: PendingSync<D>,
        messages: Vec<raft::Message>,
        started: u64,
    ) -> impl std::future::Future<Output = Result<(), WalError>> + Send + 'static {
        let (clock, transport) = (Arc::clone(&self.clock), self.transport.clone());
        let metrics = Arc::clone(self.handle.metrics());
        async move {
            sync.wait().await?;
            let took = Duration::from_nanos(clock.monotonic_ns().saturating_sub(started));
            metrics.wal_fsync.observe(took);
            if took > SLOW_FSYNC {
                metrics.slow_fsyncs.fetch_add(1, Ordering::Relaxed);
                eprintln!("braid: slow fdatasync: took {took:?}, expected under {SLOW_FSYNC:?}");
            }
            transport.send(messages);
            Ok(())
        }
    }

    /// Makes the state file's apply commits durable once `state_sync_interval`
    /// passed or `state_sync_entries` were applied since the last time. Until
    /// then a crash takes them back to the last durable commit and the WAL
    /// (which keeps everything after it: `maybe_compact_log`) replays them.
    ///
    /// The sync runs in its own task, one at a time: flushing a 100 ms batch of
    /// B+tree pages took 3–6 ms at one client, and awaiting it here stalled
    /// every proposal, acknowledgement and read behind it (braid's p99 at one
    /// client was 3× etcd's). Applies go on meanwhile (`MvccStore::sync` holds
    /// the writer lock only for its short last step); a failure is reported
    /// here on the next pass and ends the loop (fail-stop).
    fn sync_state(&mut self) -> Result<(), NodeError> {
        if let Some(running) = &mut self.state_sync {
            let (result, took) = match running.answer.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return Ok(()),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(NodeError::State(
                        "the state file sync task ended without an answer".into(),
                    ))
                }
                Ok(finished) => finished,
            };
            self.state_sync = None;
            result.map_err(|error| NodeError::State(error.to_string()))?;
            self.last_state_sync_ns = self.clock.monotonic_ns();
            self.handle.metrics().backend_commit.observe(took);
        }
        let applied = self.store.consistent_index().index;
        let durable = self.store.durable_consistent_index().index;
        if applied == durable {
            return Ok(());
        }
        let now = self.clock.monotonic_ns();
        let interval_ns = self.options.state_sync_interval.as_nanos() as u64;
        if applied - durable < self.options.state_sync_entries && now - self.last_state_sync_ns < interval_ns {
            return Ok(());
        }
        let (store, clock) = (self.store.clone(), Arc::clone(&self.clock));
        let (reply, answer) = oneshot::channel();
        let (cancel, cancelled) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let sync = async {
                let started = clock.monotonic_ns();
                let result = store.sync().await.map(|_| ());
                (
                    result,
                    Duration::from_nanos(clock.monotonic_ns().saturating_sub(started)),
                )
            };
            tokio::select! {
                biased;
                // The loop was dropped (its task aborted): stop at the next await.
                _ = cancelled => {}
                finished = sync => {
                    let _ = reply.send(finished);
                }
            }
        });
        self.state_sync = Some(StateSync {
            answer,
            _cancel_on_drop: cancel,
        });
        Ok(())
    }

    fn observe_soft_state(&mut self, soft: raft::SoftState) {
        if soft.leader != self.leader {
            if soft.leader != NodeId::NONE {
                self.leader_changes += 1;
                eprintln!(
                    "braid: member {:x} elected leader {:x} at term {}",
                    self.options.id.0,
                    soft.leader.0,
                    self.raft.term()
                );
            } else {
                eprintln!(
                    "braid: member {:x} lost the leader at term {}",
                    self.options.id.0,
                    self.raft.term()
                );
            }
            // Rounds in flight belonged to the old leadership; Raft dropped them.
            for (_, reads) in std::mem::take(&mut self.reads_in_flight) {
                for read in reads {
                    let _ = read.reply.send(Err(ServerError::LeaderChanged));
                }
            }
        }
        if soft.role == Role::Leader && self.role != Role::Leader {
            if let Some(observer) = &self.observer {
                observer.became_leader(self.options.id, self.raft.term().0);
            }
        }
        if soft.role != self.role {
            self.lease_role_changed(soft.role);
        }
        self.leader = soft.leader;
        self.role = soft.role;
    }

    /// Applies committed entries, in as few state-machine commits as the
    /// lessor allows, and answers the clients of the writes this member proposed.
    async fn apply(&mut self, entries: &[raft::Entry]) -> Result<(), NodeError> {
        let applied = self.store.consistent_index().index;
        let mut batch = Vec::with_capacity(entries.len());
        let mut origins = Vec::with_capacity(entries.len());
        let mut membership_changed = false;
        let mut digests = Vec::new();
        let mut batch_consults_leases = false;
        let mut alarms_changed = false;
        for entry in entries {
            let attributes = entry.kind == EntryKind::Normal && super::membership::is_attribute_entry(&entry.data);
            membership_changed |= entry.kind == EntryKind::ConfChange || attributes;
            let position = ConsistentIndex {
                index: entry.index.0,
                term: entry.term.0,
            };
            let (command, origin) = match entry.kind {
                // Member attribute entries (first byte 0xC1) are not client proposals.
                EntryKind::Normal if attributes => (Command::Write(WriteRequest::Noop), None),
                EntryKind::Normal if !entry.data.is_empty() => {
                    let decoded = proposal::decode(entry.data.clone()).map_err(|error| NodeError::CorruptEntry {
                        index: entry.index.0,
                        reason: error.to_string(),
                    })?;
                    (decoded.command, Some((decoded.origin, decoded.id)))
                }
                // Leader no-ops and membership changes only advance the applied index.
                _ => (Command::Write(WriteRequest::Noop), None),
            };
            // mvcc asks the lessor whether a lease exists while a batch executes:
            // a put with a lease must not share a batch with a grant or revoke
            // that comes before it in the log (see `lease.rs`).
            if batch_consults_leases && Lessor::changes_lease_set(&command) {
                let (batch, origins) = (std::mem::take(&mut batch), std::mem::take(&mut origins));
                self.apply_batch(batch, origins, std::mem::take(&mut digests)).await?;
                batch_consults_leases = false;
            }
            let (request, mut extra, answer) = if position.index <= applied {
                // Applied before a restart: the lease table and alarms on disk have it already.
                let lessor::Applied { request, extra, .. } = self.leases.already_applied(command);
                (request, extra, None)
            } else {
                alarms_changed |= matches!(command, Command::Alarm(_));
                // Alarms first: a command they refuse must not reach the lessor either.
                match screen_command(&mut self.alarms, command) {
                    Screened::Decided { extra, answer } => (WriteRequest::Noop, extra, Some(answer)),
                    Screened::Pass(command) => {
                        let lessor::Applied { request, extra, error } =
                            self.leases.lessor.apply(command, self.clock.monotonic_ns());
                        (request, extra, error.map(|error| Err(ServerError::Lease(error))))
                    }
                }
            };
            // Membership entries change the member table; its writes commit with the entry.
            if position.index > applied {
                extra.extend(self.apply_member_entry(entry));
            }
            batch_consults_leases |= lessor::consults_leases(&request);
            if self.observer.is_some() {
                digests.push(entry_digest(entry));
            }
            batch.push(ApplyEntry {
                position,
                request,
                extra,
            });
            origins.push((origin, answer));
        }
        self.apply_batch(batch, origins, digests).await?;
        // The API refuses writes by the published alarms: publish once they are durable.
        if alarms_changed {
            self.handle.publish_alarms(self.alarms.clone());
        }
        if membership_changed {
            self.after_member_apply();
        }
        self.release_lease_queries();
        Ok(())
    }

    /// One state-machine commit; `origins` pairs each entry with its proposer
    /// and the lease error to answer instead of mvcc's result; `digests`
    /// (index, term, digest) are for the observer, empty without one.
    async fn apply_batch(
        &mut self,
        batch: Vec<ApplyEntry>,
        origins: Vec<EntryOrigin>,
        digests: Vec<(u64, u64, u64)>,
    ) -> Result<(), NodeError> {
        if batch.is_empty() {
            return Ok(());
        }
        let lessor = &self.leases.lessor;
        let outcomes = self
            .store
            .apply(batch, &|lease| lessor.contains(lease))
            .await
            .map_err(|error| NodeError::State(error.to_string()))?;
        if let Some(observer) = &self.observer {
            report_applied(observer.as_ref(), self.options.id, &digests, &outcomes);
        }
        for (outcome, (origin, decided)) in outcomes.into_iter().zip(origins) {
            let Some((origin, id)) = origin else { continue };
            if origin != self.options.id.0 {
                continue;
            }
            let Some(write) = self.pending_writes.remove(&id) else {
                continue;
            };
            let answer = match (outcome, decided) {
                // Applied before a restart: its client is long gone.
                (ApplyOutcome::AlreadyApplied { .. }, _) => continue,
                (_, Some(decided)) => decided.map(|applied| (applied, self.header())),
                (ApplyOutcome::Applied(Ok(response)), None) => {
                    let mut header = self.header();
                    header.revision = response_revision(&response).unwrap_or(header.revision);
                    Ok((Applied::Write(response), header))
                }
                (ApplyOutcome::Applied(Err(error)), None) => Err(ServerError::Mvcc(error)),
            };
            let _ = write.reply.send(answer);
        }
        Ok(())
    }

    fn confirm_read(&mut self, state: &raft::ReadState) {
        let Ok(context) = <[u8; 8]>::try_from(state.context.as_ref()) else {
            return;
        };
        let context = u64::from_be_bytes(context);
        // Rounds are confirmed in order: an older round still waiting is
        // covered by this one (its index can only be lower).
        let confirmed: Vec<u64> = self.reads_in_flight.range(..=context).map(|(key, _)| *key).collect();
        for key in confirmed {
            if let Some(reads) = self.reads_in_flight.remove(&key) {
                self.reads_awaiting_apply.push((state.index, reads));
            }
        }
    }

    fn release_applied_reads(&mut self) {
        let applied = Index(self.store.consistent_index().index);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_awaiting_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_awaiting_apply = waiting;
        for (_, reads) in ready {
            for read in reads {
                let _ = read.reply.send(Ok(()));
            }
        }
    }

    /// Fails writes and reads that waited longer than the request timeout.
    fn expire_requests(&mut self) {
        let now = self.clock.monotonic_ns();
        let expired: Vec<u64> = self
            .pending_writes
            .iter()
            .filter(|(_, write)| write.deadline_ns <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(write) = self.pending_writes.remove(&id) {
                self.handle.metrics().proposals_failed.fetch_add(1, Ordering::Relaxed);
                let _ = write.reply.send(Err(ServerError::Timeout));
            }
        }
        let expire = |reads: &mut Vec<PendingRead>| {
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(reads)
                .into_iter()
                .partition(|read| read.deadline_ns <= now);
            *reads = kept;
            for read in expired {
                let _ = read.reply.send(Err(ServerError::Timeout));
            }
        };
        for reads in self.reads_in_flight.values_mut() {
            expire(reads);
        }
        for (_, reads) in &mut self.reads_awaiting_apply {
            expire(reads);
        }
        self.reads_in_flight.retain(|_, reads| !reads.is_empty());
        self.reads_awaiting_apply.retain(|(_, reads)| !reads.is_empty());
    }

    fn header(&self) -> Header {
        Header {
            cluster_id: self.options.cluster_id,
            member_id: self.options.id.0,
            revision: self.store.current_revision().0,
            raft_term: self.raft.term().0,
        }
    }

    fn publish(&self) {
        self.handle
            .metrics()
            .proposals_pending
            .store(self.pending_writes.len() as u64, Ordering::Relaxed);
        let status = self.raft.status();
        if let Some(observer) = &self.observer {
            let progress = Progress {
                term: status.term.0,
                commit: status.committed.0,
                applied: self.store.consistent_index().index,
                durable_applied: self.store.durable_consistent_index().index,
                revision: self.store.current_revision().0,
            };
            observer.progress(self.options.id, progress);
        }
        let stats = self.store.backend().tree().stats();
        self.handle.publish(MemberStatus {
            member_id: self.options.id.0,
            cluster_id: self.options.cluster_id,
            leader: status.leader.0,
            raft_term: status.term.0,
            raft_index: status.committed.0,
            raft_applied_index: self.store.consistent_index().index,
            is_learner: status.conf_state.is_learner(self.options.id),
            db_size_bytes: stats.file_bytes as i64,
            db_size_in_use_bytes: stats.in_use_bytes as i64,
            is_leader: status.role == Role::Leader,
            leader_changes_seen: self.leader_changes,
        });
    }
}

/// An entry's (index, term, digest of kind and bytes) for the observer.
fn entry_digest(entry: &raft::Entry) -> (u64, u64, u64) {
    let kind = [entry.kind as u8];
    (entry.index.0, entry.term.0, hooks::digest(&[&kind, &entry.data]))
}

/// Tells the observer about every entry applied just now.
fn report_applied(
    observer: &dyn NodeObserver,
    member: NodeId,
    digests: &[(u64, u64, u64)],
    outcomes: &[ApplyOutcome<WriteResponse>],
) {
    for (&(index, term, digest), outcome) in digests.iter().zip(outcomes) {
        let revision = match outcome {
            ApplyOutcome::Applied(Ok(WriteResponse::Noop { revision })) => Some(revision.0),
            ApplyOutcome::Applied(Ok(response)) => response_revision(response),
            ApplyOutcome::Applied(Err(_)) => None,
            ApplyOutcome::AlreadyApplied { .. } => continue,
        };
        observer.applied(
            member,
            AppliedEntry {
                index,
                term,
                digest,
                revision,
            },
        );
    }
}

fn response_revision(response: &WriteResponse) -> Option<i64> {
    match response {
        WriteResponse::Put(result) => Some(result.revision.0),
        WriteResponse::DeleteRange(result) | WriteResponse::RevokeLease(result) => Some(result.revision.0),
        WriteResponse::Txn(result) => Some(result.revision.0),
        WriteResponse::Compact(_) | WriteResponse::Noop { .. } => None,
    }
}

fn map_raft_error(error: RaftError) -> ServerError {
    match error {
        RaftError::NoLeader | RaftError::NotLeader => ServerError::NoLeader,
        RaftError::TransferInProgress => ServerError::LeaderChanged,
        _ => ServerError::NoLeader,
    }
}
