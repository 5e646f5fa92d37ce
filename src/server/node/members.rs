//! The node loop's membership work (a child of `node.rs`, so it may use the
//! loop's fields): Cluster-service requests in, membership entries applied to
//! the member table, the transport kept in step with it, the member's own
//! "publish" after it starts, and stopping once removed.
//!
//! Every change goes through the log; its effect on the table is computed
//! while the entry is applied and written in the same B+tree commit as the
//! applied index (`ApplyEntry::extra`), so a restart finds the table exactly
//! as of the applied index.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{NodeError, NodeLoop};
use crate::io::{Clock, Dir};
use crate::mvcc::WriteBatch;
use crate::raft::{self, ConfChange, ConfChangeKind, EntryKind, NodeId, RaftError, Role};
use crate::server::cluster::new_member_id;
use crate::server::membership::{
    self, AttributeChange, Member, MemberAnswer, MemberRequest, MemberTable, MembershipError, Origin, REMOVED_TEXT,
};
use crate::server::ServerError;

/// How this member describes itself, and how strictly it checks changes.
#[derive(Clone, Debug, Default)]
pub struct MembershipOptions {
    /// `--name`; empty = never publish (tests and the simulation).
    pub name: String,
    /// `--advertise-client-urls`, published with the name.
    pub client_urls: Vec<String>,
    /// The founding members with their names and peer URLs, written into the
    /// bootstrap entries (empty contexts when empty).
    pub initial_members: Vec<Member>,
    /// `--initial-cluster-token`, mixed into the IDs MemberAdd gives.
    pub cluster_token: String,
    /// `--strict-reconfig-check`.
    pub strict_reconfig_check: bool,
}

impl MembershipOptions {
    /// The bootstrap entries' contexts for `raft::Config::bootstrap_contexts`.
    pub fn bootstrap_contexts(&self) -> BTreeMap<NodeId, Bytes> {
        self.initial_members
            .iter()
            .map(|member| (member.id, membership::encode_context(Origin::default(), member)))
            .collect()
    }
}

type MemberReply = oneshot::Sender<Result<MemberAnswer, ServerError>>;

struct PendingChange {
    reply: MemberReply,
    deadline_ns: u64,
    member: Member,
    /// A change the leader has not proposed yet: it waits (in request order)
    /// while another change is in flight or no entry of the leader's term is
    /// committed, and is validated again against the table when proposed.
    waiting: Option<MemberRequest>,
}

/// An unbroken run of messages from one peer: etcd's strict reconfiguration
/// check asks which peers have been connected since some time, and the
/// leader hears from every follower at least once per heartbeat.
#[derive(Clone, Copy, Debug)]
struct Contact {
    since_ns: u64,
    last_ns: u64,
}

/// The loop's membership state.
pub(super) struct Members {
    pub(super) table: MemberTable,
    options: MembershipOptions,
    pending: BTreeMap<u64, PendingChange>,
    /// The URL the transport has for each peer.
    peer_urls: BTreeMap<NodeId, String>,
    /// Requests answered by the entries of the batch being applied.
    answered: Vec<(u64, Member)>,
    publish_cooldown_ticks: u32,
    removed: bool,
    /// Peers heard from recently, for `--strict-reconfig-check`.
    contacts: BTreeMap<NodeId, Contact>,
}

impl Members {
    pub(super) fn new(table: MemberTable, options: MembershipOptions, peer_urls: BTreeMap<NodeId, String>) -> Self {
        Members {
            table,
            options,
            pending: BTreeMap::new(),
            peer_urls,
            answered: Vec::new(),
            publish_cooldown_ticks: 0,
            removed: false,
            contacts: BTreeMap::new(),
        }
    }
}

impl<D: Dir, C: Clock> NodeLoop<D, C> {
    /// Takes a Cluster-service request. MemberUpdate is an ordinary entry any
    /// member may propose. Adds, removals and promotions are decided by the
    /// leader alone (a follower answers `NotLeader` and the API forwards the
    /// request): only the leader knows which change is in flight and which
    /// peers it is connected to, and it queues a change that arrives while
    /// another is in flight instead of letting Raft drop it.
    pub(super) fn handle_member_request(&mut self, request: MemberRequest, reply: MemberReply, deadline_ns: u64) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        if let MemberRequest::Update { .. } = request {
            let origin = Origin {
                member: self.options.id.0,
                request: id,
            };
            match self.prepare_member_change(request, origin) {
                Ok((member, _)) => {
                    let pending = PendingChange {
                        reply,
                        deadline_ns,
                        member,
                        waiting: None,
                    };
                    self.members.pending.insert(id, pending);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            }
            return;
        }
        if self.role != Role::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let pending = PendingChange {
            reply,
            deadline_ns,
            member: Member::default(),
            waiting: Some(request),
        };
        self.members.pending.insert(id, pending);
        self.propose_waiting_member_change();
    }

    fn not_leader(&self) -> ServerError {
        match self.leader {
            NodeId::NONE => ServerError::NoLeader,
            leader => ServerError::Membership(MembershipError::NotLeader { leader }),
        }
    }

    /// Proposes the oldest waiting change once Raft can take it. Only when
    /// every committed entry is applied: the checks read the applied table,
    /// which must already hold the change that was in flight.
    fn propose_waiting_member_change(&mut self) {
        let status = self.raft.status();
        if status.committed != status.applied_out {
            return;
        }
        let Some((&id, _)) = self
            .members
            .pending
            .iter()
            .find(|(_, pending)| pending.waiting.is_some())
        else {
            return;
        };
        let Some(request) = self
            .members
            .pending
            .get_mut(&id)
            .and_then(|pending| pending.waiting.take())
        else {
            return;
        };
        let refused = |members: &mut Members, error: ServerError| {
            if let Some(pending) = members.pending.remove(&id) {
                let _ = pending.reply.send(Err(error));
            }
        };
        if self.role != Role::Leader {
            let error = self.not_leader();
            refused(&mut self.members, error);
            return;
        }
        let origin = Origin {
            member: self.options.id.0,
            request: id,
        };
        let (member, change) = match self.prepare_member_change(request.clone(), origin) {
            Ok((member, Some(change))) => (member, change),
            Ok((_, None)) => panic!("request {id}: {request:?} is not a configuration change"),
            Err(error) => return refused(&mut self.members, error),
        };
        match self.raft.propose_conf_change(change) {
            Ok(()) => {
                if let Some(pending) = self.members.pending.get_mut(&id) {
                    pending.member = member;
                }
            }
            Err(RaftError::ConfChangeInProgress | RaftError::TransferInProgress) => {
                if let Some(pending) = self.members.pending.get_mut(&id) {
                    pending.waiting = Some(request);
                }
            }
            Err(error) => refused(&mut self.members, super::map_raft_error(error)),
        }
    }

    /// Notes a message from `peer` (for the strict reconfiguration check).
    pub(super) fn note_contact(&mut self, peer: NodeId) {
        let now = self.clock.monotonic_ns();
        let quiet_ns = self.election_timeout_ns();
        let contact = self.members.contacts.entry(peer).or_insert(Contact {
            since_ns: now,
            last_ns: now,
        });
        if now.saturating_sub(contact.last_ns) > quiet_ns {
            contact.since_ns = now;
        }
        contact.last_ns = now;
    }

    /// Messages to `peer` were lost: it no longer counts as connected.
    pub(super) fn note_lost_contact(&mut self, peer: NodeId) {
        self.members.contacts.remove(&peer);
    }

    fn election_timeout_ns(&self) -> u64 {
        self.options.tick.as_nanos() as u64 * u64::from(self.options.election_ticks)
    }

    /// Whether `peer` was heard from within the last election timeout and,
    /// with `for_ns`, continuously for at least that long. etcd asks for 5 s
    /// of connection (`HealthInterval`); braid asks for one election
    /// timeout, the span after which it would call a silent peer gone.
    fn in_contact(&self, peer: NodeId, for_ns: u64) -> bool {
        let now = self.clock.monotonic_ns();
        self.members.contacts.get(&peer).is_some_and(|contact| {
            now.saturating_sub(contact.last_ns) <= self.election_timeout_ns()
                && now.saturating_sub(contact.since_ns) >= for_ns
        })
    }

    /// The member the request concerns and the change to propose (`None`
    /// when it was proposed as an attribute entry).
    fn prepare_member_change(
        &mut self,
        request: MemberRequest,
        origin: Origin,
    ) -> Result<(Member, Option<ConfChange>), ServerError> {
        let strict = self.members.options.strict_reconfig_check;
        let table = &self.members.table;
        let refuse = ServerError::Membership;
        let (kind, member) = match request {
            MemberRequest::Add { peer_urls, is_learner } => {
                table.check_add(&peer_urls, is_learner, strict).map_err(refuse)?;
                if strict {
                    let window_ns = self.election_timeout_ns();
                    table
                        .check_add_connectivity(self.options.id, |peer| self.in_contact(peer, window_ns))
                        .map_err(refuse)?;
                }
                let wall_ns = self.clock.wall_ns();
                let id = new_member_id(&peer_urls, &self.members.options.cluster_token, wall_ns);
                if table.member(id).is_some() || table.is_removed(id) {
                    return Err(refuse(MembershipError::MemberExists));
                }
                let member = Member {
                    id,
                    peer_urls,
                    is_learner,
                    ..Member::default()
                };
                let kind = if is_learner {
                    ConfChangeKind::AddLearner
                } else {
                    ConfChangeKind::AddVoter
                };
                (kind, member)
            }
            MemberRequest::Remove { id } => {
                table.check_remove(id, strict).map_err(refuse)?;
                if strict {
                    let window_ns = self.election_timeout_ns();
                    table
                        .check_remove_connectivity(
                            id,
                            self.options.id,
                            |peer| self.in_contact(peer, 0),
                            |peer| self.in_contact(peer, window_ns),
                        )
                        .map_err(refuse)?;
                }
                (
                    ConfChangeKind::RemoveVoter,
                    table.member(id).cloned().unwrap_or_default(),
                )
            }
            MemberRequest::Promote { id } => {
                if self.role != Role::Leader {
                    return Err(self.not_leader());
                }
                let progress = self.raft.progress();
                let matched_of = |node: NodeId| {
                    progress
                        .iter()
                        .find(|(peer, ..)| *peer == node)
                        .map(|(_, matched, _)| matched.0)
                };
                let leader_matched = matched_of(self.options.id).unwrap_or(0);
                table
                    .check_promote(id, matched_of(id), leader_matched, strict)
                    .map_err(refuse)?;
                let mut member = table.member(id).cloned().unwrap_or_default();
                member.is_learner = false;
                (ConfChangeKind::AddVoter, member)
            }
            MemberRequest::Update { id, peer_urls } => {
                table.check_update(id, &peer_urls).map_err(refuse)?;
                let mut member = table.member(id).cloned().unwrap_or_default();
                let change = AttributeChange::PeerUrls {
                    id,
                    peer_urls: peer_urls.clone(),
                };
                self.raft
                    .propose(membership::encode_attributes(origin, &change))
                    .map_err(super::map_raft_error)?;
                member.peer_urls = peer_urls;
                return Ok((member, None));
            }
        };
        let change = ConfChange {
            kind,
            node: member.id,
            context: membership::encode_context(origin, &member),
        };
        Ok((member, Some(change)))
    }

    /// Once per tick: fail the expired changes, propose a waiting one, and
    /// publish this member's attributes if needed.
    pub(super) fn tick_members(&mut self) {
        let now = self.clock.monotonic_ns();
        let expired: Vec<u64> = self
            .members
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline_ns <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(pending) = self.members.pending.remove(&id) {
                let _ = pending.reply.send(Err(ServerError::Timeout));
            }
        }
        self.propose_waiting_member_change();
        self.maybe_publish();
    }

    /// etcd's `publishV3`: once running, a member replicates its name and
    /// client URLs, retrying every election timeout until the table has them.
    fn maybe_publish(&mut self) {
        let options = &self.members.options;
        if options.name.is_empty() || self.leader == NodeId::NONE {
            return;
        }
        let Some(own) = self.members.table.member(self.options.id) else {
            return;
        };
        if own.name == options.name && own.client_urls == options.client_urls {
            return;
        }
        if self.members.publish_cooldown_ticks > 0 {
            self.members.publish_cooldown_ticks -= 1;
            return;
        }
        self.members.publish_cooldown_ticks = self.options.election_ticks;
        let change = AttributeChange::Publish {
            id: self.options.id,
            name: options.name.clone(),
            client_urls: options.client_urls.clone(),
        };
        // A lost publish is retried; nothing waits for it.
        let _ = self
            .raft
            .propose(membership::encode_attributes(Origin::default(), &change));
    }

    /// Applies a committed entry's membership effect to the table and returns
    /// the writes persisting it (empty for entries without one).
    pub(super) fn apply_member_entry(&mut self, entry: &raft::Entry) -> WriteBatch {
        let (origin, member, batch) = match entry.kind {
            EntryKind::ConfChange => {
                let Some(change) = ConfChange::decode(&entry.data) else {
                    return WriteBatch::new();
                };
                let context = membership::decode_context(change.context.clone());
                let attributes = context.as_ref().map(|(_, member)| member);
                let batch = self.members.table.apply_conf_change(&change, attributes);
                let member = self
                    .members
                    .table
                    .member(change.node)
                    .cloned()
                    .or_else(|| attributes.cloned())
                    .unwrap_or_default();
                (context.map(|(origin, _)| origin), member, batch)
            }
            EntryKind::Normal if membership::is_attribute_entry(&entry.data) => {
                let Some((origin, change)) = membership::decode_attributes(entry.data.clone()) else {
                    return WriteBatch::new();
                };
                let batch = self.members.table.apply_attributes(&change);
                let id = match &change {
                    AttributeChange::Publish { id, .. } | AttributeChange::PeerUrls { id, .. } => *id,
                };
                let member = self.members.table.member(id).cloned().unwrap_or_default();
                (Some(origin), member, batch)
            }
            EntryKind::Normal => return WriteBatch::new(),
        };
        if let Some(origin) = origin {
            if origin.member == self.options.id.0 {
                self.members.answered.push((origin.request, member));
            }
        }
        batch
    }

    /// After the batch with membership entries is durable: answer the
    /// requests, re-point the transport, publish the table, and notice our
    /// own removal.
    pub(super) fn after_member_apply(&mut self) {
        let members = self.members.table.members();
        for (id, member) in std::mem::take(&mut self.members.answered) {
            if let Some(pending) = self.members.pending.remove(&id) {
                let member = if member.id == NodeId::NONE {
                    pending.member
                } else {
                    member
                };
                let answer = MemberAnswer {
                    member,
                    members: members.clone(),
                    header: self.header(),
                };
                let _ = pending.reply.send(Ok(answer));
            }
        }
        self.sync_members();
        if self.members.table.is_removed(self.options.id) {
            self.members.removed = true;
        }
    }

    /// Points the transport at the table's peer URLs and tells the API and
    /// the peer service about the table.
    pub(super) fn sync_members(&mut self) {
        let own = self.options.id;
        for member in self.members.table.members() {
            let Some(url) = member.peer_urls.first() else { continue };
            if member.id == own || self.members.peer_urls.get(&member.id) == Some(url) {
                continue;
            }
            self.transport.add_peer(member.id, url.clone());
            self.members.peer_urls.insert(member.id, url.clone());
        }
        for removed in self.members.table.removed() {
            if self.members.peer_urls.remove(removed).is_some() {
                self.transport.remove_peer(*removed);
            }
        }
        let members = self.members.table.members();
        self.transport
            .set_members(members.clone(), self.members.table.removed().clone());
        self.handle.publish_members(members);
    }

    /// A peer told us we were removed.
    pub(super) fn learned_removal(&mut self) {
        self.members.removed = true;
    }

    /// Ends the loop once this member is removed (etcd stops the server; the
    /// process exits).
    pub(super) fn check_removed(&mut self) -> Result<(), NodeError> {
        if !self.members.removed {
            return Ok(());
        }
        eprintln!("braid: member {:x}: {REMOVED_TEXT}; stopping", self.options.id.0);
        for (_, pending) in std::mem::take(&mut self.members.pending) {
            let _ = pending.reply.send(Err(ServerError::Stopped));
        }
        Err(NodeError::Removed)
    }
}
