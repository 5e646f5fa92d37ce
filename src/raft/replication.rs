//! Log replication: the leader's append stream with per-follower progress,
//! the follower's append/heartbeat/snapshot handling, and commitment.

use bytes::Bytes;

use super::node::Raft;
use super::progress::ProgressState;
use super::types::{Entry, EntryKind, Index, Message, MessageKind, NodeId, RaftError, ReadState, Role, Snapshot, Term};

impl Raft {
    pub(super) fn step_leader(&mut self, message: Message) {
        match message.kind {
            MessageKind::AppendResponse => self.handle_append_response(message),
            MessageKind::HeartbeatResponse => self.handle_heartbeat_response(message),
            MessageKind::Propose => {
                // Dropped forwarded proposals surface to their client as a timeout.
                let _ = self.propose_entries(message.from, message.entries);
            }
            MessageKind::ReadIndex => self.handle_read_request(message.from, message.context),
            MessageKind::TransferLeader => {
                let _ = self.handle_transfer_leader(Raft::transfer_target(&message));
            }
            // Appends, heartbeats and snapshots from another leader of our term
            // cannot exist (election safety); anything else is not for a leader.
            _ => {}
        }
    }

    pub(super) fn step_follower(&mut self, message: Message) {
        match message.kind {
            MessageKind::Append => {
                self.election_elapsed = 0;
                self.leader = message.from;
                self.handle_append(message);
            }
            MessageKind::Heartbeat => {
                self.election_elapsed = 0;
                self.leader = message.from;
                self.handle_heartbeat(message);
            }
            MessageKind::Snapshot => {
                self.election_elapsed = 0;
                self.leader = message.from;
                self.handle_snapshot(message);
            }
            MessageKind::Propose | MessageKind::TransferLeader if self.leader != NodeId::NONE => {
                let mut forward = message;
                forward.to = self.leader;
                self.send(forward);
            }
            MessageKind::ReadIndexResponse => self.read_states.push(ReadState {
                index: message.index,
                context: message.context,
            }),
            MessageKind::TimeoutNow => self.handle_timeout_now(),
            _ => {}
        }
    }

    /// Appends proposals on the leader, or forwards them to it.
    pub(super) fn propose_entries(&mut self, from: NodeId, entries: Vec<Entry>) -> Result<(), RaftError> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.role != Role::Leader {
            if self.leader == NodeId::NONE || from != self.id {
                return Err(RaftError::NoLeader);
            }
            let mut forward = Message::new(MessageKind::Propose, self.id, self.leader, Term(0));
            forward.entries = entries;
            self.send(forward);
            return Ok(());
        }
        if !self.tracker.conf.is_voter(self.id) {
            return Err(RaftError::NotMember);
        }
        if self.transferee.is_some() {
            return Err(RaftError::TransferInProgress);
        }
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::ConfChange) {
            self.check_conf_change(entry, entries.len())?;
        }
        self.append_entries(entries);
        if let Some(last) = self.log.entry(self.log.last_index()) {
            if last.kind == EntryKind::ConfChange {
                self.pending_conf_index = last.index;
            }
        }
        self.needs_broadcast = true;
        Ok(())
    }

    /// Stamps `entries` with our term and the next indexes and appends them.
    pub(super) fn append_entries(&mut self, entries: Vec<Entry>) {
        let term = self.term;
        let mut index = self.log.last_index();
        let stamped = entries.into_iter().map(|mut entry| {
            index = index.next();
            entry.index = index;
            entry.term = term;
            entry
        });
        self.log.append(stamped);
    }

    // ----- leader side ---------------------------------------------------

    /// Sends appends to every member, batching all entries appended since the
    /// last broadcast; members with nothing new get an empty append that
    /// carries the commit index.
    pub(super) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self
            .tracker
            .progress
            .keys()
            .copied()
            .filter(|node| *node != self.id)
            .collect();
        for peer in peers {
            self.send_appends(peer, true);
        }
    }

    /// Streams as many appends to `to` as its progress state and inflight
    /// window allow.
    pub(super) fn send_appends(&mut self, to: NodeId, send_if_empty: bool) {
        let mut sent_any = false;
        while self.send_append(to, send_if_empty && !sent_any) {
            sent_any = true;
            let more = self.tracker.progress.get(&to).is_some_and(|progress| {
                progress.state == ProgressState::Replicate && progress.next <= self.log.last_index()
            });
            if !more {
                break;
            }
        }
    }

    /// Sends one append (or the snapshot) to `to`. Returns whether anything was sent.
    pub(super) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(progress) = self.tracker.progress.get(&to) else {
            return false;
        };
        if progress.is_paused() {
            return false;
        }
        let next = progress.next;
        let previous = next.prev();
        let previous_term = self.log.term(previous);
        let Some(previous_term) = previous_term.filter(|_| next >= self.log.first_index()) else {
            return self.send_snapshot(to);
        };
        let entries = self
            .log
            .slice(next, self.log.last_index(), self.config.max_message_bytes);
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = entries.last().map(|entry| entry.index);
        let mut message = Message::new(MessageKind::Append, self.id, to, self.term);
        message.index = previous;
        message.log_term = previous_term;
        message.entries = entries;
        message.commit = self.log.committed;
        self.send(message);
        if let Some(progress) = self.tracker.progress.get_mut(&to) {
            progress.sent_entries(last);
        }
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let Some(progress) = self.tracker.progress.get_mut(&to) else {
            return false;
        };
        // A follower we have not heard from lately may be down; don't ship a
        // whole snapshot into the void.
        if !progress.recent_active {
            return false;
        }
        let live = self
            .config
            .live_snapshots
            .then(|| self.snapshot_meta_at(self.log.applied_out));
        let snapshot = match live.flatten() {
            Some(meta) => Snapshot {
                meta,
                data: Bytes::new(),
            },
            None => self.log.snapshot.clone(),
        };
        let Some(progress) = self.tracker.progress.get_mut(&to) else {
            return false;
        };
        progress.become_snapshot(snapshot.meta.index);
        let mut message = Message::new(MessageKind::Snapshot, self.id, to, self.term);
        message.snapshot = Some(snapshot);
        self.send(message);
        true
    }

    pub(super) fn broadcast_heartbeat(&mut self, context: Bytes) {
        let committed = self.log.committed;
        let beats: Vec<(NodeId, Index)> = self
            .tracker
            .progress
            .iter()
            .filter(|(node, _)| **node != self.id)
            .map(|(node, progress)| (*node, progress.matched.min(committed)))
            .collect();
        for (peer, commit) in beats {
            // Never tell a follower to commit past what it is known to hold.
            let mut message = Message::new(MessageKind::Heartbeat, self.id, peer, self.term);
            message.commit = commit;
            message.context = context.clone();
            self.send(message);
        }
    }

    fn handle_append_response(&mut self, message: Message) {
        let from = message.from;
        let last_index = self.log.last_index();
        let next_probe = if message.reject {
            Some(self.next_probe_index(&message))
        } else {
            None
        };
        let Some(progress) = self.tracker.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        if let Some(next_probe) = next_probe {
            if progress.maybe_decrease_to(message.index, next_probe) {
                self.send_append(from, true);
            }
            return;
        }
        let was_paused = progress.is_paused();
        let updated = progress.maybe_update(message.index);
        match progress.state {
            ProgressState::Probe if updated => progress.become_replicate(),
            ProgressState::Snapshot { .. } => progress.become_probe(),
            ProgressState::Replicate => progress.inflights.free_to(message.index),
            ProgressState::Probe => {}
        }
        let matched = progress.matched;
        if updated && self.maybe_commit() {
            self.needs_broadcast = true;
        }
        if self.role != Role::Leader {
            return; // the commit removed this leader from the configuration
        }
        if updated || was_paused {
            self.send_appends(from, false);
        }
        if self.transferee == Some(from) && matched == last_index {
            self.send_timeout_now(from);
        }
    }

    /// Where to probe next after a rejection, from the follower's hints: skip
    /// the whole conflicting term instead of one entry per round trip.
    fn next_probe_index(&self, message: &Message) -> Index {
        if message.reject_term == Term(0) {
            return message.reject_hint;
        }
        // The last entry of ours with the follower's conflicting term, if any:
        // both logs agree up to it (log matching).
        let mut index = message.index.min(self.log.last_index());
        while index >= self.log.first_index() {
            match self.log.term(index) {
                Some(term) if term == message.reject_term => return index.next(),
                Some(term) if term < message.reject_term => break,
                _ => {}
            }
            index = index.prev();
        }
        message.reject_hint
    }

    fn handle_heartbeat_response(&mut self, message: Message) {
        let from = message.from;
        let last_index = self.log.last_index();
        let Some(progress) = self.tracker.progress.get_mut(&from) else {
            return;
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        // A follower that answers heartbeats but acknowledged nothing over a
        // whole round while appends were in flight has lost one (a dropped
        // message, or it restarted): probe again instead of stalling forever.
        let stalled = progress.matched == progress.matched_at_last_heartbeat;
        if progress.state == ProgressState::Replicate && !progress.inflights.is_empty() && stalled {
            progress.become_probe();
        }
        progress.matched_at_last_heartbeat = progress.matched;
        // A probing follower gets a probe even when nothing new was appended
        // since it was last sent to: a member added to an idle cluster starts
        // with `next` past the end of the log and must be walked back.
        let probing = progress.state == ProgressState::Probe;
        if progress.matched < last_index {
            self.send_append(from, probing);
        }
        if !message.context.is_empty() {
            self.handle_read_ack(from, message.context);
        }
    }

    /// Commits the highest index a quorum holds, if it is from our term
    /// (Raft §5.4.2: older entries commit only indirectly). Returns whether the
    /// commit index moved.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let persisted = self.log.persisted;
        if let Some(own) = self.tracker.progress.get_mut(&self.id) {
            own.maybe_update(persisted);
        }
        let quorum_index = self.tracker.quorum_matched();
        if quorum_index > self.log.committed && self.log.term(quorum_index) == Some(self.term) {
            self.commit_to(quorum_index);
            return true;
        }
        false
    }

    // ----- follower side -------------------------------------------------

    fn handle_append(&mut self, message: Message) {
        let mut answer = Message::new(MessageKind::AppendResponse, self.id, message.from, self.term);
        if message.index < self.log.committed {
            // Everything up to our commit index is already known to match.
            answer.index = self.log.committed;
            self.send(answer);
            return;
        }
        if self.log.matches(message.index, message.log_term) {
            let last_new = self.log.merge(message.index, &message.entries);
            self.commit_to(message.commit.min(last_new));
            answer.index = last_new;
            self.send(answer);
            return;
        }
        // Reject, with hints that let the leader skip a whole term per round trip.
        answer.reject = true;
        answer.index = message.index;
        if message.index > self.log.last_index() {
            answer.reject_hint = self.log.last_index().next();
            answer.reject_term = Term(0);
        } else {
            let conflict_term = self.log.term(message.index).unwrap_or(Term(0));
            let mut first = message.index;
            while first > self.log.first_index()
                && first.prev() > self.log.committed
                && self.log.term(first.prev()) == Some(conflict_term)
            {
                first = first.prev();
            }
            answer.reject_hint = first;
            answer.reject_term = conflict_term;
        }
        self.send(answer);
    }

    fn handle_heartbeat(&mut self, message: Message) {
        let commit = message.commit.min(self.log.last_index());
        self.commit_to(commit);
        let mut answer = Message::new(MessageKind::HeartbeatResponse, self.id, message.from, self.term);
        answer.context = message.context;
        self.send(answer);
    }

    fn handle_snapshot(&mut self, message: Message) {
        let Some(snapshot) = message.snapshot else {
            return;
        };
        let mut answer = Message::new(MessageKind::AppendResponse, self.id, message.from, self.term);
        answer.index = if self.restore(snapshot) {
            self.log.last_index()
        } else {
            self.log.committed
        };
        self.send(answer);
    }

    /// Installs a leader's snapshot unless we already have what it covers.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let meta = &snapshot.meta;
        if meta.index <= self.log.committed {
            return false;
        }
        if !meta.conf_state.contains(self.id) {
            // A snapshot of a configuration without us would leave us unable
            // to tell whether we may vote; wait for the membership to catch up.
            return false;
        }
        if self.log.matches(meta.index, meta.term) {
            // We hold that entry already: just learn that it is committed.
            self.commit_to(meta.index);
            return false;
        }
        let conf = meta.conf_state.clone();
        let next = meta.index.next();
        // The log keeps only the position: the image goes to the caller once,
        // and a leader's snapshots carry the caller's current image anyway.
        self.log.restore(Snapshot {
            meta: snapshot.meta.clone(),
            data: Bytes::new(),
        });
        self.tracker.set_conf(conf, next);
        self.pending_snapshot = Some(snapshot);
        true
    }
}
