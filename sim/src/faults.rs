//! FaultyTransport: the fate of each Raft message a member sends, per message
//! kind and per directed link, turned on and off by the nemesis.
//!
//! Raft messages travel as checksummed frames, so a corrupted frame must be
//! rejected by the receiver and recovered from like a lost one.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use braid::raft::{Message, MessageKind, NodeId};
use braid::server::hooks::{Fate, MessageFaults};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One configuration of message faults (all zero = deliver everything).
#[derive(Clone, Debug, Default)]
pub struct MessageChaos {
    /// Kinds affected; empty = every kind.
    pub kinds: BTreeSet<MessageKindName>,
    /// Links affected as (from, to); empty = every link.
    pub links: BTreeSet<(NodeId, NodeId)>,
    pub drop: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// Chance of a delay (which lets later messages overtake: reordering).
    pub delay: f64,
    pub delay_max: Duration,
}

/// `MessageKind` is not `Ord`; the chaos config names kinds by this.
pub type MessageKindName = &'static str;

pub fn kind_name(kind: MessageKind) -> MessageKindName {
    match kind {
        MessageKind::Append => "append",
        MessageKind::AppendResponse => "append-response",
        MessageKind::Vote => "vote",
        MessageKind::VoteResponse => "vote-response",
        MessageKind::PreVote => "pre-vote",
        MessageKind::PreVoteResponse => "pre-vote-response",
        MessageKind::Heartbeat => "heartbeat",
        MessageKind::HeartbeatResponse => "heartbeat-response",
        MessageKind::Snapshot => "snapshot",
        MessageKind::Propose => "propose",
        MessageKind::ReadIndex => "read-index",
        MessageKind::ReadIndexResponse => "read-index-response",
        MessageKind::TimeoutNow => "timeout-now",
        _ => "other",
    }
}

pub const KIND_NAMES: [MessageKindName; 13] = [
    "append",
    "append-response",
    "vote",
    "vote-response",
    "pre-vote",
    "pre-vote-response",
    "heartbeat",
    "heartbeat-response",
    "snapshot",
    "propose",
    "read-index",
    "read-index-response",
    "timeout-now",
];

/// Counts of fates dealt, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct FateCounts {
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub delayed: u64,
}

struct State {
    chaos: MessageChaos,
    rng: SmallRng,
    counts: FateCounts,
}

/// Shared by every member of a cluster (each member's transport asks it).
pub struct FaultyTransport {
    state: Mutex<State>,
}

impl FaultyTransport {
    pub fn new(seed: u64) -> FaultyTransport {
        FaultyTransport {
            state: Mutex::new(State {
                chaos: MessageChaos::default(),
                rng: SmallRng::seed_from_u64(seed),
                counts: FateCounts::default(),
            }),
        }
    }

    pub fn set(&self, chaos: MessageChaos) {
        self.state.lock().unwrap().chaos = chaos;
    }

    pub fn heal(&self) {
        self.set(MessageChaos::default());
    }

    pub fn counts(&self) -> FateCounts {
        self.state.lock().unwrap().counts
    }
}

impl MessageFaults for FaultyTransport {
    fn fate(&self, message: &Message) -> Fate {
        let mut state = self.state.lock().unwrap();
        let State { chaos, rng, counts } = &mut *state;
        let kind_hit = chaos.kinds.is_empty() || chaos.kinds.contains(kind_name(message.kind));
        let link_hit = chaos.links.is_empty() || chaos.links.contains(&(message.from, message.to));
        if !(kind_hit && link_hit) {
            return Fate::Deliver;
        }
        let roll: f64 = rng.gen();
        let mut threshold = chaos.drop;
        if roll < threshold {
            counts.dropped += 1;
            return Fate::Drop;
        }
        threshold += chaos.duplicate;
        // A forwarded proposal is the one message Raft does not treat as
        // idempotent: a duplicate is a second write (etcd/raft alike). The
        // transport is a TCP stream that never resends, so it cannot
        // duplicate one; every other kind may be duplicated.
        if roll < threshold && message.kind != MessageKind::Propose {
            counts.duplicated += 1;
            return Fate::Duplicate;
        }
        threshold += chaos.corrupt;
        if roll < threshold {
            counts.corrupted += 1;
            return Fate::Corrupt;
        }
        threshold += chaos.delay;
        if roll < threshold && !chaos.delay_max.is_zero() {
            counts.delayed += 1;
            return Fate::Delay(rng.gen_range(Duration::ZERO..chaos.delay_max));
        }
        Fate::Deliver
    }
}
