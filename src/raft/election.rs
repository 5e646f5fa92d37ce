//! Message dispatch by term and role, and elections (pre-vote, votes, leader
//! transfer's TimeoutNow).

use super::node::{CampaignKind, Raft};
use super::progress::VoteResult;
use super::types::{Message, MessageKind, NodeId, Role, Term, TRANSFER_CONTEXT};

impl Raft {
    /// Feeds one message from a peer into the state machine.
    pub fn step(&mut self, message: Message) {
        if message.to != self.id {
            return;
        }
        // Forwarded requests are not bound to the sender's term.
        let term_free = matches!(
            message.kind,
            MessageKind::Propose | MessageKind::ReadIndex | MessageKind::TransferLeader
        );
        if !term_free && !self.check_term(&message) {
            return;
        }
        match message.kind {
            MessageKind::Vote | MessageKind::PreVote => self.handle_vote_request(message),
            _ => match self.role {
                Role::Leader => self.step_leader(message),
                Role::Candidate | Role::PreCandidate => self.step_candidate(message),
                Role::Follower => self.step_follower(message),
            },
        }
    }

    /// Reconciles our term with the message's. Returns false if the message
    /// must be dropped.
    fn check_term(&mut self, message: &Message) -> bool {
        if message.term > self.term {
            if matches!(message.kind, MessageKind::Vote | MessageKind::PreVote) {
                let forced = message.context.as_ref() == TRANSFER_CONTEXT;
                // Leader stickiness: while we hear from a live leader, nobody
                // (a rejoining partitioned node, a removed member) may depose it.
                let in_lease = self.config.check_quorum
                    && self.leader != NodeId::NONE
                    && self.election_elapsed < self.config.election_ticks;
                if in_lease && !forced {
                    return false;
                }
            }
            match message.kind {
                // A pre-vote changes nobody's term; a granted pre-vote response
                // carries the term the pre-candidate asked about.
                MessageKind::PreVote => {}
                MessageKind::PreVoteResponse if !message.reject => {}
                _ => {
                    let leader = if matches!(
                        message.kind,
                        MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot
                    ) {
                        message.from
                    } else {
                        NodeId::NONE
                    };
                    self.become_follower(message.term, leader);
                }
            }
            return true;
        }
        if message.term < self.term {
            match message.kind {
                // A stale leader (one that was partitioned away) learns our term
                // from this answer and steps down. Without it, a node whose term
                // was raised while the leader could not reach it would be stuck.
                MessageKind::Append | MessageKind::Heartbeat if self.config.check_quorum || self.config.pre_vote => {
                    let answer = Message::new(MessageKind::AppendResponse, self.id, message.from, self.term);
                    self.send(answer);
                }
                MessageKind::PreVote => {
                    let mut answer = Message::new(MessageKind::PreVoteResponse, self.id, message.from, self.term);
                    answer.reject = true;
                    self.send(answer);
                }
                _ => {}
            }
            return false;
        }
        true
    }

    fn handle_vote_request(&mut self, message: Message) {
        let pre_vote = message.kind == MessageKind::PreVote;
        let can_vote = self.vote == message.from
            || (self.vote == NodeId::NONE && self.leader == NodeId::NONE)
            || (pre_vote && message.term > self.term);
        let response_kind = if pre_vote {
            MessageKind::PreVoteResponse
        } else {
            MessageKind::VoteResponse
        };
        if can_vote && self.log.is_up_to_date(message.index, message.log_term) {
            // Grants carry the message's term so the (pre-)candidate counts them.
            let answer = Message::new(response_kind, self.id, message.from, message.term);
            if !pre_vote {
                self.election_elapsed = 0;
                self.vote = message.from;
            }
            self.send(answer);
        } else {
            let mut answer = Message::new(response_kind, self.id, message.from, self.term);
            answer.reject = true;
            self.send(answer);
        }
    }

    pub(super) fn start_campaign(&mut self, kind: CampaignKind) {
        if !self.is_promotable() {
            return;
        }
        let (vote_kind, term) = match kind {
            CampaignKind::PreElection => {
                let term = self.term;
                self.reset(term);
                self.role = Role::PreCandidate;
                (MessageKind::PreVote, Term(term.0 + 1))
            }
            CampaignKind::Election | CampaignKind::Transfer => {
                let term = Term(self.term.0 + 1);
                self.reset(term);
                self.role = Role::Candidate;
                self.vote = self.id;
                (MessageKind::Vote, term)
            }
        };
        self.votes.insert(self.id, true);
        if self.tracker.tally(&self.votes) == VoteResult::Won {
            self.win_election();
            return;
        }
        let id = self.id;
        let voters: Vec<NodeId> = self
            .tracker
            .conf
            .voters
            .iter()
            .copied()
            .filter(|voter| *voter != id)
            .collect();
        for voter in voters {
            let mut request = Message::new(vote_kind, self.id, voter, term);
            request.index = self.log.last_index();
            request.log_term = self.log.last_term();
            if kind == CampaignKind::Transfer {
                request.context = bytes::Bytes::from_static(TRANSFER_CONTEXT);
            }
            self.send(request);
        }
    }

    fn win_election(&mut self) {
        match self.role {
            Role::PreCandidate => self.start_campaign(CampaignKind::Election),
            Role::Candidate => self.become_leader(),
            role => panic!("{} won an election as {role:?}", self.id),
        }
    }

    fn step_candidate(&mut self, message: Message) {
        let expected = match self.role {
            Role::PreCandidate => MessageKind::PreVoteResponse,
            _ => MessageKind::VoteResponse,
        };
        match message.kind {
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                // A leader exists for our term: it won.
                let term = message.term;
                self.become_follower(term, message.from);
                self.step_follower(message);
            }
            kind if kind == expected => {
                self.votes.insert(message.from, !message.reject);
                match self.tracker.tally(&self.votes) {
                    VoteResult::Won => self.win_election(),
                    VoteResult::Lost => {
                        let term = self.term;
                        self.become_follower(term, NodeId::NONE);
                    }
                    VoteResult::Pending => {}
                }
            }
            // No leader to forward to; proposals and reads are dropped and the
            // requester times out.
            _ => {}
        }
    }

    pub(super) fn handle_timeout_now(&mut self) {
        // A transfer target campaigns at once, skipping pre-vote: the old
        // leader vouched that our log is up to date.
        self.start_campaign(CampaignKind::Transfer);
    }

    pub(super) fn handle_transfer_leader(&mut self, to: NodeId) -> Result<(), super::types::RaftError> {
        use super::types::RaftError;
        if to == self.id {
            return Ok(());
        }
        if !self.tracker.conf.is_voter(to) {
            return Err(RaftError::BadTransferee);
        }
        if self.transferee == Some(to) {
            return Ok(());
        }
        self.transferee = Some(to);
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        let caught_up = self
            .tracker
            .progress
            .get(&to)
            .is_some_and(|progress| progress.matched == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    pub(super) fn send_timeout_now(&mut self, to: NodeId) {
        let message = Message::new(MessageKind::TimeoutNow, self.id, to, self.term);
        self.send(message);
    }

    /// Decodes the transfer target a follower forwarded in `index`.
    pub(super) fn transfer_target(message: &Message) -> NodeId {
        NodeId(message.index.0)
    }
}
