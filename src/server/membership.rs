//! The member table (etcd's `membership.RaftCluster`): who is in the cluster,
//! with the names and URLs `MemberList` shows, replicated through Raft and
//! persisted atomically with the applied index.
//!
//! Where each fact comes from:
//! - Who is a member, and whether a learner, comes from membership-change
//!   entries (`EntryKind::ConfChange`). Their context carries the member's
//!   attributes (peer URLs, and the name for bootstrap members), so a member
//!   that joins later learns everything from the leader's log, as in etcd.
//! - A member's name and client URLs come from the "publish" entry the member
//!   proposes itself once it runs (etcd's `ClusterMemberAttrSetRequest`), and
//!   MemberUpdate's new peer URLs from an "update" entry. Both are normal
//!   entries whose first byte is [`MEMBER_ENTRY_TAG`], which no client
//!   proposal starts with (those start with their format version, 1).
//!
//! The table follows Raft's own validity rules for changes (`ConfState::apply`):
//! a change Raft skips, the table skips too, so the two never disagree.
//!
//! Persistence: bucket `Membership`, key `member/<id>` → the encoded member,
//! `removed/<id>` → empty. The writes travel in `ApplyEntry::extra`, so they
//! commit in the same B+tree commit as the entry's applied index.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::mvcc::{BackendError, BackendRead, Bucket, WriteBatch};
use crate::raft::{ConfChange, ConfChangeKind, ConfState, NodeId};

/// The first byte of a normal entry that changes member attributes.
pub const MEMBER_ENTRY_TAG: u8 = 0xC1;
const CONTEXT_VERSION: u8 = 1;
const MEMBER_KEY: &[u8] = b"member/";
const REMOVED_KEY: &[u8] = b"removed/";

/// etcd's `readyPercent`: a learner may be promoted once its log matches this
/// share of the leader's.
pub const LEARNER_READY_PERCENT: f64 = 0.9;

/// etcd's text for a member that was removed (startup refusal and shutdown).
pub const REMOVED_TEXT: &str = "the member has been permanently removed from the cluster";

/// One member as `MemberList` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    /// Empty until the member publishes it ("unstarted").
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member publishes them.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// etcd's `IsStarted`: the member has published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// Why a membership request is refused; `api` maps each to etcd's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// `--strict-reconfig-check`: the change would leave fewer connected
    /// voters than a quorum (etcd's `ErrUnhealthy`, gRPC Unavailable).
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// Only the leader can decide this (promotion); the API forwards to `leader`.
    #[error("etcdserver: not leader")]
    NotLeader { leader: NodeId },
}

/// A membership request from the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRequest {
    Add { peer_urls: Vec<String>, is_learner: bool },
    Remove { id: NodeId },
    Update { id: NodeId, peer_urls: Vec<String> },
    Promote { id: NodeId },
}

/// What a member attribute entry asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeChange {
    /// The member itself publishes its name and client URLs.
    Publish {
        id: NodeId,
        name: String,
        client_urls: Vec<String>,
    },
    /// MemberUpdate: new peer URLs.
    PeerUrls { id: NodeId, peer_urls: Vec<String> },
}

/// The answer to a [`MemberRequest`]: the member it concerned (for MemberAdd,
/// the new member) and the table after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAnswer {
    pub member: Member,
    pub members: Vec<Member>,
    pub header: super::Header,
}

/// Who is waiting for an entry: the proposing member and its request id
/// (0/0 for entries nobody waits for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub member: u64,
    pub request: u64,
}

/// The member table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberTable {
    members: BTreeMap<NodeId, Member>,
    removed: BTreeSet<NodeId>,
}

impl MemberTable {
    /// Every member, ordered by ID (etcd's `MembersByID`).
    pub fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn is_removed(&self, id: NodeId) -> bool {
        self.removed.contains(&id)
    }

    pub fn removed(&self) -> &BTreeSet<NodeId> {
        &self.removed
    }

    /// The configuration Raft should have once the same entries are applied.
    pub fn conf_state(&self) -> ConfState {
        let voters = self
            .members
            .values()
            .filter(|member| !member.is_learner)
            .map(|member| member.id);
        let learners = self
            .members
            .values()
            .filter(|member| member.is_learner)
            .map(|member| member.id);
        ConfState::new(voters, learners)
    }

    /// Applies a membership change exactly as Raft does (`ConfState::apply`),
    /// taking the member's attributes from `attributes` when it is added.
    /// Returns the writes that persist the result (empty if Raft skips it).
    pub fn apply_conf_change(&mut self, change: &ConfChange, attributes: Option<&Member>) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let mut conf = self.conf_state();
        if conf.apply(change).is_err() {
            return batch;
        }
        let id = change.node;
        match change.kind {
            ConfChangeKind::AddVoter | ConfChangeKind::AddLearner => {
                let is_learner = change.kind == ConfChangeKind::AddLearner;
                let member = self.members.entry(id).or_insert_with(|| {
                    let mut member = attributes.cloned().unwrap_or_default();
                    member.id = id;
                    member
                });
                member.is_learner = is_learner;
                batch.put(member_key(id), encode_member(member));
            }
            ConfChangeKind::RemoveVoter => {
                self.members.remove(&id);
                self.removed.insert(id);
                batch.delete(member_key(id));
                batch.put(removed_key(id), Bytes::new());
            }
        }
        batch
    }

    /// Applies an attribute entry; unknown members are skipped (a publish may
    /// race with the member's removal).
    pub fn apply_attributes(&mut self, change: &AttributeChange) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let id = match change {
            AttributeChange::Publish { id, .. } | AttributeChange::PeerUrls { id, .. } => *id,
        };
        let Some(member) = self.members.get_mut(&id) else {
            return batch;
        };
        match change {
            AttributeChange::Publish { name, client_urls, .. } => {
                member.name = name.clone();
                member.client_urls = client_urls.clone();
            }
            AttributeChange::PeerUrls { peer_urls, .. } => member.peer_urls = peer_urls.clone(),
        }
        batch.put(member_key(id), encode_member(member));
        batch
    }

    /// Reads the table persisted in the backend.
    pub fn load<R: BackendRead>(read: &R) -> Result<MemberTable, BackendError> {
        let mut table = MemberTable::default();
        let (start, end) = Bucket::Membership.bounds();
        let mut failure = None;
        read.scan(&start, &end, &mut |raw_key, value| {
            let key = &raw_key[1..];
            let parsed = if let Some(id) = key.strip_prefix(MEMBER_KEY) {
                decode_member(Bytes::copy_from_slice(value))
                    .filter(|member| Some(member.id.0) == parse_id(id))
                    .map(|member| {
                        table.members.insert(member.id, member);
                    })
            } else if let Some(id) = key.strip_prefix(REMOVED_KEY) {
                parse_id(id).map(|id| {
                    table.removed.insert(NodeId(id));
                })
            } else {
                None
            };
            if parsed.is_none() {
                failure = Some(format!("malformed membership record {raw_key:?}"));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(message) => Err(BackendError::new(message)),
            None => Ok(table),
        }
    }

    /// The writes that delete this table from the backend: a state file restored from a
    /// snapshot must not carry the old cluster's members into the new one, whose table
    /// its bootstrap entries rebuild (etcd's restore rewrites its members bucket too).
    pub fn forget_all(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for id in self.members.keys() {
            batch.delete(member_key(*id));
        }
        for id in &self.removed {
            batch.delete(removed_key(*id));
        }
        batch
    }

    // ----- validation (etcd's checks before proposing) --------------------

    /// MemberAdd: valid URLs, not in use, at most one learner, and with
    /// `strict` enough started voters to keep a quorum (`IsReadyToAddVotingMember`).
    pub fn check_add(&self, peer_urls: &[String], is_learner: bool, strict: bool) -> Result<(), MembershipError> {
        check_urls(peer_urls)?;
        self.check_urls_unused(peer_urls, None)?;
        if is_learner {
            if self.members.values().any(|member| member.is_learner) {
                return Err(MembershipError::TooManyLearners);
            }
        } else if strict && !self.ready_for_one_more_voter() {
            return Err(MembershipError::NotEnoughStarted);
        }
        Ok(())
    }

    /// MemberRemove (etcd's `IsReadyToRemoveVotingMember` under strict checking).
    pub fn check_remove(&self, id: NodeId, strict: bool) -> Result<(), MembershipError> {
        let member = self.existing(id)?;
        if member.is_learner || !strict {
            return Ok(());
        }
        let voters: Vec<&Member> = self.voters().filter(|voter| voter.id != id).collect();
        let started = voters.iter().filter(|voter| voter.is_started()).count();
        if started < voters.len() / 2 + 1 {
            return Err(MembershipError::NotEnoughStarted);
        }
        Ok(())
    }

    /// MemberUpdate: the member exists and no other member uses the URLs.
    pub fn check_update(&self, id: NodeId, peer_urls: &[String]) -> Result<(), MembershipError> {
        check_urls(peer_urls)?;
        self.existing(id)?;
        self.check_urls_unused(peer_urls, Some(id))
    }

    /// MemberPromote, on the leader: `matched` is the learner's log match and
    /// `leader_matched` the leader's (etcd's `isLearnerReady` then
    /// `IsReadyToPromoteMember`).
    pub fn check_promote(
        &self,
        id: NodeId,
        matched: Option<u64>,
        leader_matched: u64,
        strict: bool,
    ) -> Result<(), MembershipError> {
        if let Some(matched) = matched {
            if (matched as f64) < leader_matched as f64 * LEARNER_READY_PERCENT {
                return Err(MembershipError::LearnerNotReady);
            }
        }
        if !self.existing(id)?.is_learner {
            return Err(MembershipError::NotLearner);
        }
        if strict && !self.ready_for_one_more_voter() {
            return Err(MembershipError::NotEnoughStarted);
        }
        Ok(())
    }

    /// MemberAdd under strict checking, after [`Self::check_add`]: every voter
    /// is connected (etcd's `isConnectedFullySince`, asked for learners too).
    /// `connected` answers for the peers; `own` always counts.
    pub fn check_add_connectivity(
        &self,
        own: NodeId,
        connected: impl Fn(NodeId) -> bool,
    ) -> Result<(), MembershipError> {
        if self.voters().all(|voter| voter.id == own || connected(voter.id)) {
            Ok(())
        } else {
            Err(MembershipError::Unhealthy)
        }
    }

    /// MemberRemove under strict checking, after [`Self::check_remove`]
    /// (etcd's `mayRemoveMember`): a learner, or a peer this member has no
    /// contact with (`active` false), may always go, since it is not part of
    /// the active quorum; otherwise the voters `connected` (counting `own`),
    /// less the one leaving, must still be a quorum of the remaining voters.
    pub fn check_remove_connectivity(
        &self,
        id: NodeId,
        own: NodeId,
        active: impl Fn(NodeId) -> bool,
        connected: impl Fn(NodeId) -> bool,
    ) -> Result<(), MembershipError> {
        if self.member(id).is_some_and(|member| member.is_learner) || (id != own && !active(id)) {
            return Ok(());
        }
        let voters = self.voters().count();
        let connected = self
            .voters()
            .filter(|voter| voter.id == own || connected(voter.id))
            .count();
        if connected.saturating_sub(1) < 1 + voters.saturating_sub(1) / 2 {
            return Err(MembershipError::Unhealthy);
        }
        Ok(())
    }

    fn existing(&self, id: NodeId) -> Result<&Member, MembershipError> {
        self.members.get(&id).ok_or(MembershipError::NotFound)
    }

    fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|member| !member.is_learner)
    }

    fn ready_for_one_more_voter(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.voters().filter(|voter| voter.is_started()).count();
        // etcd allows growing a 1-member cluster to 2 (restoring from backup).
        if started == 1 && members == 2 {
            return true;
        }
        // A quorum of the grown cluster: more than half.
        started > members / 2
    }

    fn check_urls_unused(&self, peer_urls: &[String], except: Option<NodeId>) -> Result<(), MembershipError> {
        let in_use = self
            .members
            .values()
            .filter(|member| Some(member.id) != except)
            .flat_map(|member| member.peer_urls.iter());
        for url in in_use {
            if peer_urls.contains(url) {
                return Err(MembershipError::PeerUrlExists);
            }
        }
        Ok(())
    }
}

/// etcd's `types.NewURLs`: at least one URL, each `http(s)://host:port` with no path.
pub fn check_urls(urls: &[String]) -> Result<(), MembershipError> {
    if urls.is_empty() {
        return Err(MembershipError::BadUrls);
    }
    for url in urls {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or(MembershipError::BadUrls)?;
        let (host, port) = rest.rsplit_once(':').ok_or(MembershipError::BadUrls)?;
        if host.is_empty() || port.parse::<u16>().is_err() || rest.contains('/') {
            return Err(MembershipError::BadUrls);
        }
    }
    Ok(())
}

// ----- entry and record encodings -------------------------------------------

fn member_key(id: NodeId) -> Bytes {
    Bucket::Membership.raw_key(&[MEMBER_KEY, &id.0.to_be_bytes()].concat())
}

fn removed_key(id: NodeId) -> Bytes {
    Bucket::Membership.raw_key(&[REMOVED_KEY, &id.0.to_be_bytes()].concat())
}

fn parse_id(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn put_string(buffer: &mut BytesMut, text: &str) {
    buffer.put_u32(text.len() as u32);
    buffer.put_slice(text.as_bytes());
}

fn put_strings(buffer: &mut BytesMut, texts: &[String]) {
    buffer.put_u32(texts.len() as u32);
    for text in texts {
        put_string(buffer, text);
    }
}

fn take_string(data: &mut Bytes) -> Option<String> {
    if data.remaining() < 4 {
        return None;
    }
    let length = data.get_u32() as usize;
    if data.remaining() < length {
        return None;
    }
    String::from_utf8(data.split_to(length).to_vec()).ok()
}

fn take_strings(data: &mut Bytes) -> Option<Vec<String>> {
    if data.remaining() < 4 {
        return None;
    }
    let count = data.get_u32() as usize;
    // Each string takes at least its 4-byte length: bounds a hostile count.
    if count > data.remaining() / 4 {
        return None;
    }
    (0..count).map(|_| take_string(data)).collect()
}

fn take_u64(data: &mut Bytes) -> Option<u64> {
    (data.remaining() >= 8).then(|| data.get_u64())
}

fn put_member(buffer: &mut BytesMut, member: &Member) {
    buffer.put_u64(member.id.0);
    put_string(buffer, &member.name);
    put_strings(buffer, &member.peer_urls);
    put_strings(buffer, &member.client_urls);
    buffer.put_u8(u8::from(member.is_learner));
}

fn take_member(data: &mut Bytes) -> Option<Member> {
    let id = NodeId(take_u64(data)?);
    let name = take_string(data)?;
    let peer_urls = take_strings(data)?;
    let client_urls = take_strings(data)?;
    if !data.has_remaining() {
        return None;
    }
    let is_learner = match data.get_u8() {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some(Member {
        id,
        name,
        peer_urls,
        client_urls,
        is_learner,
    })
}

/// The persisted form of a member.
pub fn encode_member(member: &Member) -> Bytes {
    let mut buffer = BytesMut::new();
    put_member(&mut buffer, member);
    buffer.freeze()
}

pub fn decode_member(mut data: Bytes) -> Option<Member> {
    let member = take_member(&mut data)?;
    (!data.has_remaining()).then_some(member)
}

/// Both entry payloads open with a tag byte and the origin.
fn start_payload(tag: u8, origin: Origin) -> BytesMut {
    let mut buffer = BytesMut::new();
    buffer.put_u8(tag);
    buffer.put_u64(origin.member);
    buffer.put_u64(origin.request);
    buffer
}

fn take_payload_start(data: &mut Bytes, tag: u8) -> Option<Origin> {
    if !data.has_remaining() || data.get_u8() != tag {
        return None;
    }
    Some(Origin {
        member: take_u64(data)?,
        request: take_u64(data)?,
    })
}

/// A membership-change context: who waits for it, and the member's attributes.
pub fn encode_context(origin: Origin, member: &Member) -> Bytes {
    let mut buffer = start_payload(CONTEXT_VERSION, origin);
    put_member(&mut buffer, member);
    buffer.freeze()
}

/// Decodes a context; `None` for an empty or malformed one (the change still
/// takes effect, with blank attributes).
pub fn decode_context(mut data: Bytes) -> Option<(Origin, Member)> {
    let origin = take_payload_start(&mut data, CONTEXT_VERSION)?;
    let member = take_member(&mut data)?;
    (!data.has_remaining()).then_some((origin, member))
}

/// Whether a normal entry's data is a member attribute entry.
pub fn is_attribute_entry(data: &[u8]) -> bool {
    data.first() == Some(&MEMBER_ENTRY_TAG)
}

pub fn encode_attributes(origin: Origin, change: &AttributeChange) -> Bytes {
    let mut buffer = start_payload(MEMBER_ENTRY_TAG, origin);
    match change {
        AttributeChange::Publish { id, name, client_urls } => {
            buffer.put_u8(1);
            buffer.put_u64(id.0);
            put_string(&mut buffer, name);
            put_strings(&mut buffer, client_urls);
        }
        AttributeChange::PeerUrls { id, peer_urls } => {
            buffer.put_u8(2);
            buffer.put_u64(id.0);
            put_strings(&mut buffer, peer_urls);
        }
    }
    buffer.freeze()
}

pub fn decode_attributes(mut data: Bytes) -> Option<(Origin, AttributeChange)> {
    let origin = take_payload_start(&mut data, MEMBER_ENTRY_TAG)?;
    if !data.has_remaining() {
        return None;
    }
    let kind = data.get_u8();
    let id = NodeId(take_u64(&mut data)?);
    let change = match kind {
        1 => AttributeChange::Publish {
            id,
            name: take_string(&mut data)?,
            client_urls: take_strings(&mut data)?,
        },
        2 => AttributeChange::PeerUrls {
            id,
            peer_urls: take_strings(&mut data)?,
        },
        _ => return None,
    };
    (!data.has_remaining()).then_some((origin, change))
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
