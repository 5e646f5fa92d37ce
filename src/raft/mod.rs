//! The consensus core: a pure, synchronous, deterministic Raft state machine.
//!
//! Architecture invariant: nothing in this module performs I/O, reads a clock,
//! uses `async`, draws from a global RNG, or knows about protos or any other
//! braid layer (a tidy test enforces it). Time is `tick()`, randomness is a
//! seed in [`Config`], storage is whatever the caller does with [`Ready`].
//!
//! # Driving a node
//!
//! Inputs: [`Raft::step`] (a message from a peer), [`Raft::tick`],
//! [`Raft::propose`]/[`Raft::propose_batch`], [`Raft::propose_conf_change`],
//! [`Raft::read_index`], [`Raft::transfer_leader`], [`Raft::campaign`],
//! [`Raft::compact`], [`Raft::report_snapshot`], [`Raft::report_unreachable`].
//!
//! After inputs, if [`Raft::has_ready`], take [`Raft::ready`] and handle it
//! **in this order**:
//!
//! 1. `snapshot` (if any): make it durable and install it into the state
//!    machine before anything below; the log restarts after it.
//! 2. `entries` and `hard_state`: append the entries to the durable log (the
//!    first one may overwrite the log's tail from its index on) and persist the
//!    hard state. Start this at once; steps 3 and 5 may run while it is in flight.
//! 3. `messages`: send now, in parallel with step 2. These are the leader's
//!    appends, heartbeats, snapshots and TimeoutNow; they promise nothing about
//!    the leader's own disk (Raft thesis §10.2.1), so the leader replicates
//!    while its own write is in flight.
//! 4. `persisted_messages`: send only after step 2 is durable. They include
//!    vote grants and append acknowledgements, which promise durable state.
//! 5. `committed_entries`: apply to the state machine in order, each exactly
//!    once. They are committed and already durable on this node.
//! 6. `read_states`: answer the reads waiting on each context once the state
//!    machine has applied at least its `index`.
//! 7. [`Raft::advance`] once step 2 is durable. This is how the caller reports
//!    the persisted index back: only then does the leader count its own log
//!    towards the commit quorum. Do not call `ready` again before `advance`.
//!
//! `soft_state` changes (leader, role) are for observers; when the leader
//! changes, reads not yet released are dropped and their callers should fail
//! them ("leader changed") and retry.
//!
//! # What is implemented
//!
//! Elections with randomized timeouts, pre-vote and check-quorum (with leader
//! stickiness, so a node returning from a minority partition cannot depose a
//! healthy leader); replication with Probe/Replicate/Snapshot progress and an
//! inflight window; batching of proposals into one append; conflict-term
//! backtracking; the current-term commit rule; ReadIndex with one heartbeat
//! round per batch and forwarding from followers; single-server membership
//! changes with learners (`membership.rs`); snapshots and log compaction;
//! leader transfer via TimeoutNow.

mod election;
mod log;
mod membership;
mod node;
mod progress;
mod read_index;
mod replication;
mod types;

pub use node::{Config, Persisted, Raft, Ready, Status};
pub use progress::ProgressState;
pub use types::{
    ConfChange, ConfChangeKind, ConfState, Entry, EntryKind, HardState, Index, Message, MessageKind, NodeId, RaftError,
    ReadState, Role, Snapshot, SnapshotMeta, SoftState, Term, TRANSFER_CONTEXT,
};
