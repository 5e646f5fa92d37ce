//! An in-memory cluster of Raft cores with a controllable network and disks,
//! shared by the interaction scripts and the randomized test.
//!
//! Each node's "disk" is what the node handed out in `Ready` and the harness
//! persisted; a crash keeps the disk and loses everything else. The state
//! machine is a hash chain over applied entries, so two nodes that applied the
//! same index must hold the same hash (state-machine safety) and a snapshot is
//! just (index, hash).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use braid::raft::{
    ConfState, Config, Entry, EntryKind, HardState, Index, Message, NodeId, Persisted, Raft, Ready, Role, Snapshot,
    Term,
};
use bytes::Bytes;

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, ready: &Ready) {
        if let Some(snapshot) = &ready.snapshot {
            self.snapshot = snapshot.clone();
            self.entries.clear();
        }
        if let Some(first) = ready.entries.first() {
            let keep = (first.index.0 - self.snapshot.meta.index.0 - 1) as usize;
            assert!(keep <= self.entries.len(), "persisting with a gap at {}", first.index);
            self.entries.truncate(keep);
            self.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hard_state) = ready.hard_state {
            assert!(hard_state.term >= self.hard_state.term, "persisted term went backwards");
            self.hard_state = hard_state;
        }
    }

    /// The node compacted its in-memory log: drop the same prefix on disk.
    fn compact(&mut self, snapshot: Snapshot) {
        let drop = (snapshot.meta.index.0 - self.snapshot.meta.index.0) as usize;
        let drop = drop.min(self.entries.len());
        self.entries.drain(..drop);
        self.snapshot = snapshot;
    }
}

/// The replicated state machine: a hash chain over applied entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    pub applied: Index,
    pub hash: u64,
}

impl StateMachine {
    fn apply(&mut self, entry: &Entry) {
        assert_eq!(entry.index, self.applied.next(), "applied out of order");
        self.applied = entry.index;
        let mut hash = self.hash ^ entry.index.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for byte in entry.data.iter().chain([entry.kind as u8].iter()) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.hash = hash;
    }

    pub fn encode(&self) -> Bytes {
        let mut buffer = Vec::with_capacity(16);
        buffer.extend_from_slice(&self.applied.0.to_be_bytes());
        buffer.extend_from_slice(&self.hash.to_be_bytes());
        Bytes::from(buffer)
    }

    fn decode(data: &Bytes) -> StateMachine {
        assert_eq!(data.len(), 16, "bad snapshot data");
        StateMachine {
            applied: Index(u64::from_be_bytes(data[..8].try_into().unwrap())),
            hash: u64::from_be_bytes(data[8..].try_into().unwrap()),
        }
    }
}

pub struct Node {
    pub raft: Option<Raft>,
    pub disk: Disk,
    pub machine: StateMachine,
    /// A `Ready` whose messages went out but whose persistence is pending.
    pub in_flight: Option<Ready>,
    pub config: Config,
    pub initial_conf: ConfState,
    pub reads: Vec<(Index, Bytes)>,
    pub applied_data: Vec<Bytes>,
}

impl Node {
    pub fn raft(&self) -> &Raft {
        self.raft.as_ref().expect("node is down")
    }

    pub fn raft_mut(&mut self) -> &mut Raft {
        self.raft.as_mut().expect("node is down")
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }
}

/// Something a delivered or persisted step produced, for scripts to print.
pub enum Event {
    Sent(Message),
    Applied(NodeId, Entry),
    Read(NodeId, Index, Bytes),
    Snapshot(NodeId, Index),
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages sent and not yet delivered, in send order.
    pub network: Vec<Message>,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub events: Vec<Event>,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            nodes: BTreeMap::new(),
            network: Vec::new(),
            cut: BTreeSet::new(),
            events: Vec::new(),
        }
    }

    pub fn add_node(&mut self, config: Config, initial_conf: ConfState) {
        let id = config.id;
        let raft = Raft::new(config.clone(), Persisted::default(), initial_conf.clone());
        self.nodes.insert(
            id,
            Node {
                raft: Some(raft),
                disk: Disk::default(),
                machine: StateMachine::default(),
                in_flight: None,
                config,
                initial_conf,
                reads: Vec::new(),
                applied_data: Vec::new(),
            },
        );
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(&id).unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Phase one of handling a `Ready`: take it and send what may go before
    /// the disk write. Returns false if there was nothing to do.
    pub fn start_ready(&mut self, id: NodeId) -> bool {
        let node = self.node_mut(id);
        if node.in_flight.is_some() {
            return false;
        }
        let Some(raft) = node.raft.as_mut() else { return false };
        if !raft.has_ready() {
            return false;
        }
        let mut ready = raft.ready();
        let messages = std::mem::take(&mut ready.messages);
        node.in_flight = Some(ready);
        self.post(messages);
        true
    }

    /// Phase two: the disk write finished; persist, send the rest, apply, advance.
    pub fn finish_ready(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(mut ready) = node.in_flight.take() else {
            return false;
        };
        node.disk.persist(&ready);
        if let Some(snapshot) = &ready.snapshot {
            node.machine = StateMachine::decode(&snapshot.data);
            assert_eq!(
                node.machine.applied, snapshot.meta.index,
                "snapshot data disagrees with its meta"
            );
            self.events.push(Event::Snapshot(id, snapshot.meta.index));
        }
        let persisted = std::mem::take(&mut ready.persisted_messages);
        let mut applied = Vec::new();
        for entry in &ready.committed_entries {
            if entry.index <= node.machine.applied {
                continue; // covered by a snapshot installed meanwhile
            }
            node.machine.apply(entry);
            if entry.kind == EntryKind::Normal && !entry.data.is_empty() {
                node.applied_data.push(entry.data.clone());
            }
            applied.push(entry.clone());
        }
        for read in &ready.read_states {
            node.reads.push((read.index, read.context.clone()));
        }
        let reads: Vec<_> = ready
            .read_states
            .iter()
            .map(|read| (read.index, read.context.clone()))
            .collect();
        node.raft_mut().advance(&ready);
        self.post(persisted);
        for entry in applied {
            self.events.push(Event::Applied(id, entry));
        }
        for (index, context) in reads {
            self.events.push(Event::Read(id, index, context));
        }
        true
    }

    /// Both phases back to back (a node with an instant disk).
    pub fn handle_ready(&mut self, id: NodeId) -> bool {
        let started = self.start_ready(id);
        let finished = self.finish_ready(id);
        started || finished
    }

    fn post(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.events.push(Event::Sent(message.clone()));
            self.network.push(message);
        }
    }

    /// Delivers the message at `position` of the network queue (dropping it if
    /// its link is cut or an endpoint is down).
    pub fn deliver_at(&mut self, position: usize) -> Option<Message> {
        let message = self.network.remove(position);
        if self.cut.contains(&(message.from, message.to)) {
            return None;
        }
        let node = self.nodes.get_mut(&message.to)?;
        let raft = node.raft.as_mut()?;
        if std::env::var_os("RAFT_TRACE").is_some() {
            println!("deliver {message:?}");
        }
        raft.step(message.clone());
        Some(message)
    }

    /// Handles readies and delivers messages until nothing moves. Returns the
    /// delivered messages in order.
    pub fn stabilize(&mut self, limit: usize) -> Vec<Message> {
        let mut delivered = Vec::new();
        for _ in 0..limit {
            let mut progressed = false;
            for id in self.ids() {
                progressed |= self.handle_ready(id);
            }
            while !self.network.is_empty() {
                progressed = true;
                if let Some(message) = self.deliver_at(0) {
                    delivered.push(message);
                }
            }
            if !progressed {
                return delivered;
            }
        }
        panic!("cluster did not stabilize within {limit} rounds");
    }

    /// Kills a node: its in-memory state and unpersisted `Ready` are lost.
    pub fn crash(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        node.raft = None;
        node.in_flight = None;
        self.network.retain(|message| message.to != id && message.from != id);
    }

    /// Restarts a crashed node from its disk; the state machine restarts from
    /// the snapshot and re-applies committed entries.
    pub fn restart(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        assert!(node.raft.is_none(), "restart of a running node {id}");
        let persisted = Persisted {
            hard_state: node.disk.hard_state,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
            applied: node.disk.snapshot.meta.index,
        };
        node.machine = if node.disk.snapshot.meta.index > Index(0) {
            StateMachine::decode(&node.disk.snapshot.data)
        } else {
            StateMachine::default()
        };
        node.raft = Some(Raft::new(node.config.clone(), persisted, node.initial_conf.clone()));
    }

    /// Compacts a node's log up to its applied index.
    pub fn compact(&mut self, id: NodeId, index: Index) -> Result<(), braid::raft::RaftError> {
        let node = self.node_mut(id);
        // The image is only right for the applied index; other indexes are
        // passed through so the core's own range check can be exercised.
        let data = node.machine.encode();
        node.raft_mut().compact(index, data)?;
        let snapshot = node.raft().snapshot().clone();
        node.disk.compact(snapshot);
        Ok(())
    }

    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.cut.clear();
        for (a, group_a) in groups.iter().enumerate() {
            for (b, group_b) in groups.iter().enumerate() {
                if a != b {
                    for from in group_a {
                        for to in group_b {
                            self.cut.insert((*from, *to));
                        }
                    }
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .iter()
            .filter_map(|(id, node)| {
                node.raft
                    .as_ref()
                    .filter(|raft| raft.role() == Role::Leader)
                    .map(|raft| (*id, raft.term()))
            })
            .collect()
    }
}
