//! The node loop's side of leases: where the lessor (`server/lessor.rs`) meets
//! Raft, the clock and the clients.
//!
//! - Grants and revokes are proposed like writes; their answers come from
//!   applying the entry (`NodeLoop::apply` runs `Lessor::apply` per entry).
//! - Keepalives and time-to-live queries need the leader's expiries. The
//!   leader answers them itself; a follower forwards them to the leader over
//!   the peer protocol (`Transport::forward_lease`), and the leader answers
//!   once it has applied what the follower had, so a lease granted through
//!   the follower is known. This keeps every member usable for keepalives
//!   (COMPAT.md §4.9) without a Raft entry per keepalive.
//! - On every tick the leader proposes revokes for expired leases and
//!   checkpoints of remaining TTLs.
//! - Becoming leader promotes the lessor (expiries restart from the
//!   remaining TTLs); losing it demotes it.

use tokio::sync::oneshot;

use super::{Header, NodeError, NodeLoop, NodeOptions, WriteReply};
use crate::io::{Clock, Dir};
use crate::mvcc::WriteBatch;
use crate::mvcc::{Backend, LeaseId, MvccStore, WriteRequest, WriteResponse};
use crate::raft::{NodeId, Role};
use crate::server::handle::{self, ServerError};
use crate::server::lessor::{
    self, Applied, LeaseCommand, LeaseError, LeaseQuery, LeaseRequest, LeaseResponse, LeaseStatus, Lessor,
    LessorOptions, CHECKPOINT_BATCH_MAX, MAX_LEASE_TTL_SECONDS, REVOKES_PER_SECOND,
};
use crate::server::proposal::Command;
use crate::server::transport::TransportEvent;

type LeaseReply = oneshot::Sender<Result<(LeaseResponse, Header), ServerError>>;
type QueryReply = oneshot::Sender<Result<LeaseResponse, ServerError>>;

/// Server-chosen lease ids: etcd's layout, the low 16 bits of the member id
/// over 40 bits of wall-clock milliseconds and an 8-bit counter, kept positive.
/// The clock part keeps ids from repeating across restarts, the member part
/// across members; an id still taken locally is skipped.
const LEASE_ID_SUFFIX_BITS: u32 = 48;
const LEASE_ID_SUFFIX_MASK: u64 = (1 << LEASE_ID_SUFFIX_BITS) - 1;

pub(super) struct LeaseState {
    pub(super) lessor: Lessor,
    lease_id_prefix: u64,
    next_lease_id_suffix: u64,
    /// Queries forwarded by followers, waiting for this member to apply
    /// their sender's index.
    waiting_queries: Vec<WaitingQuery>,
}

struct WaitingQuery {
    query: LeaseQuery,
    applied_index: u64,
    reply: QueryReply,
    deadline_ns: u64,
}

fn open_lessor<B: Backend>(options: &NodeOptions, store: &MvccStore<B>) -> Result<Lessor, NodeError> {
    let tick_ms = options.tick.as_millis().max(1) as u64;
    let lessor_options = LessorOptions {
        min_ttl_seconds: lessor::min_ttl_seconds(options.election_ticks, options.tick),
        checkpoint_interval: options.lease_checkpoint_interval,
        revoke_retry: options.request_timeout,
        revokes_per_tick: (REVOKES_PER_SECOND * tick_ms / 1000).max(1) as usize,
    };
    Lessor::open(lessor_options, &store.backend().read()).map_err(|error| NodeError::State(error.to_string()))
}

impl LeaseState {
    pub(super) fn open<B: Backend>(
        options: &NodeOptions,
        store: &MvccStore<B>,
        wall_ns: i64,
    ) -> Result<LeaseState, NodeError> {
        let lessor = open_lessor(options, store)?;
        let wall_ms = (wall_ns.max(0) / 1_000_000) as u64;
        Ok(LeaseState {
            lessor,
            lease_id_prefix: (options.id.0 & 0xffff) << LEASE_ID_SUFFIX_BITS,
            next_lease_id_suffix: (wall_ms << 8) & LEASE_ID_SUFFIX_MASK,
            waiting_queries: Vec::new(),
        })
    }

    /// Reads the lease table again (after a snapshot replaced the state file;
    /// only followers install snapshots, and they do not expire leases).
    pub(super) fn reload<B: Backend>(&mut self, options: &NodeOptions, store: &MvccStore<B>) -> Result<(), NodeError> {
        self.lessor = open_lessor(options, store)?;
        Ok(())
    }

    fn next_lease_id(&mut self) -> LeaseId {
        loop {
            let candidate =
                (self.lease_id_prefix | (self.next_lease_id_suffix & LEASE_ID_SUFFIX_MASK)) & i64::MAX as u64;
            self.next_lease_id_suffix = self.next_lease_id_suffix.wrapping_add(1);
            let id = LeaseId(candidate as i64);
            if !id.is_none() && !self.lessor.contains(id) {
                return id;
            }
        }
    }

    /// An entry at or below the applied index after a restart: mvcc skips it,
    /// and the lease table (and alarms) loaded from disk already hold its effect.
    pub(super) fn already_applied(&self, command: Command) -> Applied {
        let request = match command {
            Command::Write(request) => request,
            Command::Lease(_) | Command::Alarm(_) => WriteRequest::Noop,
        };
        Applied {
            request,
            extra: WriteBatch::new(),
            error: None,
        }
    }
}

impl<D: Dir, C: Clock> NodeLoop<D, C> {
    pub(super) fn handle_lease_request(&mut self, request: LeaseRequest, reply: LeaseReply, deadline_ns: u64) {
        match request {
            LeaseRequest::Grant { id, ttl_seconds } => {
                if ttl_seconds > MAX_LEASE_TTL_SECONDS {
                    let _ = reply.send(Err(ServerError::Lease(LeaseError::TtlTooLarge)));
                    return;
                }
                let id = if id.is_none() { self.leases.next_lease_id() } else { id };
                // The same clamp the lessor applies to the entry on this member.
                let ttl = self.leases.lessor.granted_ttl(ttl_seconds);
                let command = Command::Lease(LeaseCommand::Grant { id, ttl_seconds });
                self.propose_and_relay(command, deadline_ns, reply, move |_| LeaseResponse::Granted {
                    id,
                    ttl_seconds: ttl,
                });
            }
            LeaseRequest::Revoke(id) => {
                let command = Command::Write(WriteRequest::RevokeLease(id));
                self.propose_and_relay(command, deadline_ns, reply, |_| LeaseResponse::Revoked);
            }
            LeaseRequest::KeepAlive(id) => self.ask_leader(LeaseQuery::KeepAlive(id), reply),
            LeaseRequest::TimeToLive { id, keys } => self.ask_leader(LeaseQuery::TimeToLive { id, keys }, reply),
            // etcd lists the local lessor's leases, without asking the leader.
            LeaseRequest::Leases => {
                let _ = reply.send(Ok((LeaseResponse::Leases(self.leases.lessor.ids()), self.header())));
            }
        }
    }

    /// Proposes `command` and answers `reply` with `answer(response)` once it is applied.
    fn propose_and_relay(
        &mut self,
        command: Command,
        deadline_ns: u64,
        reply: LeaseReply,
        answer: impl FnOnce(WriteResponse) -> LeaseResponse + Send + 'static,
    ) {
        let (write_reply, applied): (WriteReply, _) = oneshot::channel();
        self.propose(command, write_reply, deadline_ns);
        tokio::spawn(async move {
            let result = match applied.await {
                Ok(Ok((handle::Applied::Write(response), header))) => Ok((answer(response), header)),
                Ok(Ok((other, _))) => panic!("the node answered a lease command with {other:?}"),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(ServerError::Stopped),
            };
            let _ = reply.send(result);
        });
    }

    /// Answers a keepalive or time-to-live query here if this member leads
    /// (once its leadership is confirmed), otherwise through the leader.
    fn ask_leader(&mut self, query: LeaseQuery, reply: LeaseReply) {
        if self.role == Role::Leader {
            let (query_reply, answer) = oneshot::channel();
            self.confirm_leadership_then_answer(query, 0, query_reply);
            let header = self.header();
            tokio::spawn(async move {
                let answer = answer.await.unwrap_or(Err(ServerError::Stopped));
                let _ = reply.send(answer.map(|response| (response, header)));
            });
            return;
        }
        if self.leader == NodeId::NONE {
            let _ = reply.send(Err(ServerError::NoLeader));
            return;
        }
        let forward = self.transport.forward_lease(
            self.leader,
            query,
            self.store.consistent_index().index,
            self.options.request_timeout,
        );
        let header = self.header();
        tokio::spawn(async move {
            let _ = reply.send(forward.await.map(|response| (response, header)));
        });
    }

    /// Runs a ReadIndex round (a heartbeat quorum) before `query` is
    /// answered, as etcd does before renewing a lease: a deposed leader that
    /// has not heard of the new term yet must not renew a lease the new
    /// leader will expire on its own schedule.
    fn confirm_leadership_then_answer(&mut self, query: LeaseQuery, applied_index: u64, reply: QueryReply) {
        let (read_reply, confirmed) = oneshot::channel();
        let deadline_ns = self.clock.monotonic_ns() + self.options.request_timeout.as_nanos() as u64;
        self.waiting_reads.push(super::PendingRead {
            reply: read_reply,
            deadline_ns,
        });
        let transport = self.transport.clone();
        tokio::spawn(async move {
            match confirmed.await {
                Ok(Ok(())) => transport.loop_back(TransportEvent::LeaseQuery {
                    query,
                    applied_index,
                    reply,
                    confirmed: true,
                }),
                Ok(Err(error)) => {
                    let _ = reply.send(Err(error));
                }
                Err(_) => {
                    let _ = reply.send(Err(ServerError::Stopped));
                }
            }
        });
    }

    /// A keepalive or time-to-live query for this member as the leader: from
    /// a follower, or from this member once its leadership is `confirmed`.
    pub(super) fn handle_lease_query(
        &mut self,
        query: LeaseQuery,
        applied_index: u64,
        reply: QueryReply,
        confirmed: bool,
    ) {
        if self.role != Role::Leader {
            let _ = reply.send(Err(ServerError::LeaderChanged));
        } else if !confirmed {
            self.confirm_leadership_then_answer(query, applied_index, reply);
        } else if self.store.consistent_index().index >= applied_index {
            let _ = reply.send(self.answer_query(query));
        } else {
            let deadline_ns = self.clock.monotonic_ns() + self.options.request_timeout.as_nanos() as u64;
            self.leases.waiting_queries.push(WaitingQuery {
                query,
                applied_index,
                reply,
                deadline_ns,
            });
        }
    }

    /// Answers forwarded queries whose index is now applied (after each apply).
    pub(super) fn release_lease_queries(&mut self) {
        if self.leases.waiting_queries.is_empty() {
            return;
        }
        let applied = self.store.consistent_index().index;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leases.waiting_queries)
            .into_iter()
            .partition(|query| query.applied_index <= applied);
        self.leases.waiting_queries = waiting;
        for waiting in ready {
            let _ = waiting.reply.send(self.answer_query(waiting.query));
        }
    }

    /// The leader's answer: renew, or report the remaining TTL.
    fn answer_query(&mut self, query: LeaseQuery) -> Result<LeaseResponse, ServerError> {
        if !self.leases.lessor.is_primary() {
            return Err(ServerError::LeaderChanged);
        }
        let now_ns = self.clock.monotonic_ns();
        Ok(match query {
            LeaseQuery::KeepAlive(id) => LeaseResponse::KeepAlive {
                ttl_seconds: self.leases.lessor.renew(id, now_ns).unwrap_or(0),
            },
            LeaseQuery::TimeToLive { id, keys } => {
                let status = self
                    .leases
                    .lessor
                    .time_to_live(id, now_ns)
                    .map(|(remaining, granted)| LeaseStatus {
                        remaining_seconds: remaining,
                        granted_ttl_seconds: granted,
                        keys: if keys {
                            self.store.keys_for_lease(id)
                        } else {
                            Vec::new()
                        },
                    });
                LeaseResponse::TimeToLive(status)
            }
        })
    }

    /// Every tick: time out forwarded queries; on the leader, propose revokes
    /// of expired leases and checkpoints of remaining TTLs.
    pub(super) fn tick_leases(&mut self) {
        let now_ns = self.clock.monotonic_ns();
        if !self.leases.waiting_queries.is_empty() {
            let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leases.waiting_queries)
                .into_iter()
                .partition(|query| query.deadline_ns <= now_ns);
            self.leases.waiting_queries = waiting;
            for query in expired {
                let _ = query.reply.send(Err(ServerError::Timeout));
            }
        }
        if self.role != Role::Leader {
            return;
        }
        for id in self.leases.lessor.take_expired(now_ns) {
            self.propose_internal(Command::Write(WriteRequest::RevokeLease(id)));
        }
        let checkpoints = self.leases.lessor.take_checkpoints(now_ns);
        for chunk in checkpoints.chunks(CHECKPOINT_BATCH_MAX) {
            self.propose_internal(Command::Lease(LeaseCommand::Checkpoint(chunk.to_vec())));
        }
    }

    /// Proposes a command of the lessor's own, which no client waits for. A
    /// lost one is proposed again by a later tick (revokes) or interval
    /// (checkpoints).
    fn propose_internal(&mut self, command: Command) {
        let proposal = self.encode_proposal(command);
        self.proposals.push(proposal);
    }

    pub(super) fn lease_role_changed(&mut self, role: Role) {
        if role == Role::Leader {
            self.leases.lessor.promote(self.clock.monotonic_ns());
        } else if self.leases.lessor.is_primary() {
            self.leases.lessor.demote();
            for query in std::mem::take(&mut self.leases.waiting_queries) {
                let _ = query.reply.send(Err(ServerError::LeaderChanged));
            }
        }
    }
}
