//! Seams through which a test harness watches and disturbs a running node
//! without changing it: the simulation's faulty transport and its invariant
//! observer plug in here. Production passes `NodeHooks::default()` (no faults,
//! no observer), and the node then skips all work done only for them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::raft::{Message, NodeId};

/// What becomes of one outgoing peer message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    /// Lost without a trace (one-way loss: the sender learns nothing).
    Drop,
    /// Delivered twice.
    Duplicate,
    /// Delivered after this long; messages sent later may overtake it.
    Delay(Duration),
    /// Delivered with one bit flipped in the frame's payload: the receiver's
    /// checksum must reject it.
    Corrupt,
}

/// Decides the fate of every message a node sends to a peer.
pub trait MessageFaults: Send + Sync + 'static {
    fn fate(&self, message: &Message) -> Fate;
}

/// One applied state-machine entry, as the observer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    /// A digest of the entry's kind and bytes.
    pub digest: u64,
    /// The store revision the entry's response reported (`None` when it
    /// failed or reports none).
    pub revision: Option<i64>,
}

/// A node's progress after one round of its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// The applied index the state file holds durably: a crash now restarts
    /// from it and the WAL replays the rest.
    pub durable_applied: u64,
    pub revision: i64,
}

/// Told what a node does, as it does it. Every method runs on the node's
/// loop, so implementations must be quick and must not block.
pub trait NodeObserver: Send + Sync + 'static {
    /// The node started (or restarted) from its disk.
    fn started(&self, member: NodeId, incarnation: u64);
    /// The node became leader of `term`.
    fn became_leader(&self, member: NodeId, term: u64);
    /// The node applied `entry` (in index order).
    fn applied(&self, member: NodeId, entry: AppliedEntry);
    /// The node finished a round of its loop.
    fn progress(&self, member: NodeId, progress: Progress);
    /// The node replaced its state with a leader's snapshot, which had applied
    /// through `applied`; entries up to it are not applied one by one.
    fn installed_snapshot(&self, member: NodeId, applied: u64);
}

/// The optional seams, all off by default.
#[derive(Clone, Default)]
pub struct NodeHooks {
    pub faults: Option<Arc<dyn MessageFaults>>,
    pub observer: Option<Arc<dyn NodeObserver>>,
}

impl fmt::Debug for NodeHooks {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NodeHooks")
            .field("faults", &self.faults.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// FNV-1a over `parts`: cheap, stable across builds, good enough to tell
/// entries apart.
pub fn digest(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in *part {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
