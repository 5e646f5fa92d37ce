//! ReadIndex linearizable reads (Raft thesis §6.4).
//!
//! The leader records its commit index for a read, then proves it is still the
//! leader with one heartbeat round: once a quorum has answered a heartbeat that
//! carried the read's context, no newer leader can have committed anything the
//! read would miss. One round confirms every read queued before it, so the
//! server batches many client reads under one context. A new leader first
//! commits an entry of its own term, since before that its commit index may be
//! behind the cluster's.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::node::{PendingRead, Raft};
use super::types::{Message, MessageKind, NodeId, ReadState};

impl Raft {
    pub(super) fn handle_read_request(&mut self, requester: NodeId, context: Bytes) {
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads_before_commit.push((requester, context));
            return;
        }
        let index = self.log.committed;
        let mut acks = BTreeSet::new();
        acks.insert(self.id);
        if self.tracker.has_quorum(acks.iter().copied()) {
            // A single voter is its own quorum.
            self.release_read(requester, context, index);
            return;
        }
        self.pending_reads.push_back(PendingRead {
            context: context.clone(),
            index,
            requester,
            acks,
        });
        self.broadcast_heartbeat(context);
    }

    pub(super) fn handle_read_ack(&mut self, from: NodeId, context: Bytes) {
        let Some(position) = self.pending_reads.iter().position(|read| read.context == context) else {
            return;
        };
        self.pending_reads[position].acks.insert(from);
        let confirmed = self
            .tracker
            .has_quorum(self.pending_reads[position].acks.iter().copied());
        if !confirmed {
            return;
        }
        // Confirming this round confirms every read queued before it.
        let released: Vec<PendingRead> = self.pending_reads.drain(..=position).collect();
        for read in released {
            self.release_read(read.requester, read.context, read.index);
        }
    }

    pub(super) fn release_reads_before_commit(&mut self) {
        for (requester, context) in std::mem::take(&mut self.reads_before_commit) {
            self.handle_read_request(requester, context);
        }
    }

    fn release_read(&mut self, requester: NodeId, context: Bytes, index: super::types::Index) {
        if requester == self.id {
            self.read_states.push(ReadState { index, context });
        } else {
            let mut answer = Message::new(MessageKind::ReadIndexResponse, self.id, requester, self.term);
            answer.index = index;
            answer.context = context;
            self.send(answer);
        }
    }
}
