//! Proves Raft's safety properties under randomized faults: 3- and 5-node
//! in-memory clusters with message loss, duplication, reordering, partitions,
//! crashes that lose unpersisted state, compaction, membership changes, leader
//! transfers and ReadIndex reads. After every step it checks election safety,
//! log matching, leader completeness, state-machine safety, commit durability
//! and read linearizability; at the end it heals everything and requires
//! progress. Each seed is deterministic: `RAFT_SEED=<seed>` replays one.

mod support;

use std::collections::BTreeMap;

use braid::raft::{ConfChange, ConfChangeKind, ConfState, Config, Index, NodeId, Role, Term};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use support::raft_cluster::{Cluster, Event};

const STEPS: usize = 1500;

/// Global knowledge accumulated over a run, against which every node is checked.
#[derive(Default)]
struct Oracle {
    /// term -> the one node that led it.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (data fingerprint, term of the previous entry).
    entries: BTreeMap<(Index, Term), (u64, Term)>,
    /// index -> term of the committed entry there.
    committed: BTreeMap<Index, Term>,
    /// index -> state-machine hash after applying it.
    applied_hashes: BTreeMap<Index, u64>,
    /// read context -> highest index known committed when the read was issued.
    read_floor: BTreeMap<Bytes, Index>,
    highest_commit: Index,
    checks: u64,
}

fn fingerprint(entry: &braid::raft::Entry) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ entry.kind as u64;
    for byte in entry.data.iter() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Oracle {
    fn check_node(&mut self, cluster: &Cluster, id: NodeId, seed: u64, step: usize) {
        let node = cluster.node(id);
        let Some(raft) = node.raft.as_ref() else { return };
        let status = raft.status();
        self.checks += 1;
        // Election safety: at most one leader per term.
        if status.role == Role::Leader {
            let leader = *self.leaders.entry(status.term).or_insert(id);
            assert_eq!(
                leader, id,
                "seed {seed} step {step}: two leaders in term {}",
                status.term
            );
            // Leader completeness: every committed entry is in the leader's log.
            let snapshot_index = raft.snapshot().meta.index;
            for (index, term) in self.committed.range(snapshot_index.next()..) {
                let held = raft
                    .log_entries()
                    .find(|entry| entry.index == *index)
                    .map(|entry| entry.term);
                assert_eq!(
                    held,
                    Some(*term),
                    "seed {seed} step {step}: leader {id} of term {} lacks committed entry {index}",
                    status.term
                );
            }
        }
        // Log matching: one (index, term) names one entry, with one predecessor.
        let mut previous_term = raft.snapshot().meta.term;
        for entry in raft.log_entries() {
            let record = (fingerprint(entry), previous_term);
            let known = *self.entries.entry((entry.index, entry.term)).or_insert(record);
            assert_eq!(
                known, record,
                "seed {seed} step {step}: node {id} holds a different entry at {}/{}",
                entry.term, entry.index
            );
            previous_term = entry.term;
        }
        // Committed entries never change.
        for entry in raft.log_entries().filter(|entry| entry.index <= status.committed) {
            let term = *self.committed.entry(entry.index).or_insert(entry.term);
            assert_eq!(
                term, entry.term,
                "seed {seed} step {step}: committed entry {} changed",
                entry.index
            );
        }
        self.highest_commit = self.highest_commit.max(status.committed);
    }

    fn check_events(&mut self, cluster: &mut Cluster, seed: u64, step: usize) {
        for event in std::mem::take(&mut cluster.events) {
            match event {
                Event::Applied(id, entry) => {
                    // State-machine safety: the same index leaves the same state everywhere.
                    let hash = cluster.node(id).machine.hash;
                    let machine_index = cluster.node(id).machine.applied;
                    if machine_index == entry.index {
                        let known = *self.applied_hashes.entry(entry.index).or_insert(hash);
                        assert_eq!(
                            known, hash,
                            "seed {seed} step {step}: node {id} diverged at {}",
                            entry.index
                        );
                    }
                }
                Event::Read(id, index, context) => {
                    // Linearizable reads: the read point covers everything
                    // committed before the read was asked for.
                    if let Some(floor) = self.read_floor.get(&context) {
                        assert!(
                            index >= *floor,
                            "seed {seed} step {step}: node {id} released read {context:?} at {index} below {floor}"
                        );
                    }
                }
                Event::Snapshot(..) | Event::Sent(_) => {}
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Tick,
    Deliver,
    StartReady,
    FinishReady,
    Propose,
    Read,
    Compact,
    Transfer,
    Membership,
    Partition,
    Crash,
    Restart,
}

/// The fault mix, drawn per seed (swarm testing): many seeds hammer one or
/// two fault classes hard instead of every seed sprinkling a little of each.
#[derive(Debug)]
struct Knobs {
    weights: Vec<(Action, u32)>,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    /// Chance that a crash hits the current leader.
    target_leader: f64,
}

impl Knobs {
    fn random(rng: &mut SmallRng) -> Knobs {
        fn choose<T: Copy>(rng: &mut SmallRng, options: &[T]) -> T {
            options[rng.gen_range(0..options.len())]
        }
        let crash = choose(rng, &[0, 1, 3, 8]);
        let weights = vec![
            (Action::Tick, 20),
            (Action::Deliver, 25),
            (Action::StartReady, 15),
            (Action::FinishReady, 15),
            (Action::Propose, choose(rng, &[3, 10, 20])),
            (Action::Read, choose(rng, &[0, 3])),
            (Action::Compact, choose(rng, &[0, 1, 3])),
            (Action::Transfer, choose(rng, &[0, 1, 2])),
            (Action::Membership, choose(rng, &[0, 1, 2])),
            (Action::Partition, choose(rng, &[0, 1, 3, 6])),
            (Action::Crash, crash),
            (Action::Restart, crash.max(1) * 2),
        ];
        Knobs {
            weights,
            loss: choose(rng, &[0.0, 0.02, 0.1]),
            duplicate: choose(rng, &[0.0, 0.05]),
            reorder: choose(rng, &[0.0, 0.3]),
            target_leader: choose(rng, &[0.0, 0.5, 0.9]),
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> Action {
        let total: u32 = self.weights.iter().map(|(_, weight)| weight).sum();
        let mut roll = rng.gen_range(0..total);
        for (action, weight) in &self.weights {
            if roll < *weight {
                return *action;
            }
            roll -= weight;
        }
        unreachable!("roll below the total weight")
    }
}

struct Run {
    knobs: Knobs,
    rng: SmallRng,
    cluster: Cluster,
    oracle: Oracle,
    seed: u64,
    members: Vec<NodeId>,
    proposals: u64,
    reads: u64,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = SmallRng::seed_from_u64(seed);
        let size = if rng.gen_bool(0.5) { 3 } else { 5 };
        let members: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let mut cluster = Cluster::new();
        let pre_vote = rng.gen_bool(0.8);
        let check_quorum = rng.gen_bool(0.8);
        let conf = ConfState::new(members.clone(), []);
        for id in &members {
            let mut config = Config::new(*id);
            config.seed = seed.wrapping_mul(31).wrapping_add(id.0);
            config.pre_vote = pre_vote;
            config.check_quorum = check_quorum;
            config.max_inflight_messages = rng.gen_range(1..8);
            config.max_message_bytes = rng.gen_range(1..200);
            cluster.add_node(config, conf.clone());
        }
        Run {
            knobs: Knobs::random(&mut rng),
            rng,
            cluster,
            oracle: Oracle::default(),
            seed,
            members,
            proposals: 0,
            reads: 0,
        }
    }

    fn random_node(&mut self) -> NodeId {
        self.members[self.rng.gen_range(0..self.members.len())]
    }

    fn step(&mut self, step: usize, faults: bool) {
        let id = self.random_node();
        let action = self.knobs.pick(&mut self.rng);
        match action {
            Action::Tick => {
                if let Some(raft) = self.cluster.node_mut(id).raft.as_mut() {
                    raft.tick();
                }
            }
            Action::Deliver if !self.cluster.network.is_empty() => {
                let position = if faults && self.rng.gen_bool(self.knobs.reorder) {
                    self.rng.gen_range(0..self.cluster.network.len()) // reorder
                } else {
                    0
                };
                if faults && self.rng.gen_bool(self.knobs.loss) {
                    self.cluster.network.remove(position); // loss
                } else {
                    if faults && self.rng.gen_bool(self.knobs.duplicate) {
                        let copy = self.cluster.network[position].clone();
                        self.cluster.network.push(copy); // duplication
                    }
                    self.cluster.deliver_at(position);
                }
            }
            Action::StartReady => {
                self.cluster.start_ready(id);
            }
            Action::FinishReady => {
                self.cluster.finish_ready(id);
            }
            Action::Propose => {
                self.proposals += 1;
                let data = Bytes::from(format!("v{}-{}", self.seed, self.proposals));
                if let Some(raft) = self.cluster.node_mut(id).raft.as_mut() {
                    let _ = raft.propose(data);
                }
            }
            Action::Read => {
                self.reads += 1;
                let context = Bytes::from(format!("read-{}", self.reads));
                let floor = self.oracle.highest_commit;
                if let Some(raft) = self.cluster.node_mut(id).raft.as_mut() {
                    if raft.read_index(context.clone()).is_ok() {
                        self.oracle.read_floor.insert(context, floor);
                    }
                }
            }
            Action::Compact => {
                let applied = self.cluster.node(id).machine.applied;
                if self.cluster.node(id).is_up() && self.cluster.node(id).in_flight.is_none() {
                    let _ = self.cluster.compact(id, applied);
                }
            }
            Action::Transfer => {
                let to = self.random_node();
                if let Some(raft) = self.cluster.node_mut(id).raft.as_mut() {
                    let _ = raft.transfer_leader(to);
                }
            }
            Action::Membership => {
                // Membership: toggle one node between voter, learner and removed.
                let target = self.random_node();
                let Some(raft) = self.cluster.node_mut(id).raft.as_mut() else {
                    return;
                };
                let conf = raft.conf_state().clone();
                let kind = if conf.is_voter(target) {
                    if conf.voters.len() <= 3 {
                        return;
                    }
                    if self.rng.gen_bool(0.5) {
                        ConfChangeKind::RemoveVoter
                    } else {
                        return;
                    }
                } else if conf.is_learner(target) {
                    ConfChangeKind::AddVoter
                } else {
                    ConfChangeKind::AddLearner
                };
                let _ = raft.propose_conf_change(ConfChange {
                    kind,
                    node: target,
                    context: Bytes::new(),
                });
            }
            Action::Partition if faults => {
                let groups = self.rng.gen_range(1..=3);
                let assignment: Vec<Vec<NodeId>> = (0..groups)
                    .map(|group| {
                        self.members
                            .iter()
                            .copied()
                            .enumerate()
                            .filter(|(position, _)| position % groups == group)
                            .map(|(_, node)| node)
                            .collect()
                    })
                    .collect();
                if groups == 1 {
                    self.cluster.heal();
                } else {
                    let mut shuffled = assignment;
                    shuffled.rotate_left(self.rng.gen_range(0..groups));
                    self.cluster.partition(&shuffled);
                }
            }
            Action::Crash if faults => {
                // Prefer a node whose disk write is in flight: that is where
                // acknowledging before persisting would lose data.
                let writing: Vec<NodeId> = self
                    .members
                    .iter()
                    .copied()
                    .filter(|node| self.cluster.node(*node).in_flight.is_some())
                    .collect();
                let leader = self
                    .cluster
                    .leaders()
                    .iter()
                    .max_by_key(|(_, term)| *term)
                    .map(|(node, _)| *node);
                let victim = if let Some(leader) = leader.filter(|_| self.rng.gen_bool(self.knobs.target_leader)) {
                    leader
                } else if !writing.is_empty() && self.rng.gen_bool(0.5) {
                    writing[self.rng.gen_range(0..writing.len())]
                } else {
                    id
                };
                if self.cluster.node(victim).is_up() {
                    self.cluster.crash(victim);
                }
            }
            Action::Restart if !self.cluster.node(id).is_up() => self.cluster.restart(id),
            _ => {}
        }
        self.oracle.check_node(&self.cluster, id, self.seed, step);
        for other in self.cluster.ids() {
            if other != id
                && self
                    .cluster
                    .node(other)
                    .raft
                    .as_ref()
                    .is_some_and(|raft| raft.role() == Role::Leader)
            {
                self.oracle.check_node(&self.cluster, other, self.seed, step);
            }
        }
        self.oracle.check_events(&mut self.cluster, self.seed, step);
    }

    /// Heals everything and requires that a leader emerges and a new proposal
    /// is applied by every running member of its configuration.
    fn liveness(&mut self) {
        self.cluster.heal();
        for id in self.cluster.ids() {
            if !self.cluster.node(id).is_up() {
                self.cluster.restart(id);
            }
        }
        let marker = Bytes::from(format!("liveness-{}", self.seed));
        let mut proposed = false;
        for round in 0..3000 {
            for id in self.cluster.ids() {
                if let Some(raft) = self.cluster.node_mut(id).raft.as_mut() {
                    raft.tick();
                }
            }
            self.cluster.stabilize(10_000);
            for id in self.cluster.ids() {
                self.oracle.check_node(&self.cluster, id, self.seed, STEPS + round);
            }
            self.oracle.check_events(&mut self.cluster, self.seed, STEPS + round);
            let leaders = self.cluster.leaders();
            let Some((leader, _)) = leaders.iter().max_by_key(|(_, term)| *term).copied() else {
                continue;
            };
            if !proposed {
                proposed = self.cluster.node_mut(leader).raft_mut().propose(marker.clone()).is_ok();
                continue;
            }
            let members = self.cluster.node(leader).raft().conf_state().clone();
            let done = members
                .members()
                .all(|member| self.cluster.node(member).applied_data.contains(&marker));
            if done {
                return;
            }
        }
        panic!("seed {}: no progress after healing", self.seed);
    }
}

fn run_seed(seed: u64) -> (u64, u64, u64) {
    let mut run = Run::new(seed);
    for step in 0..STEPS {
        let faults = step < STEPS * 2 / 3;
        run.step(step, faults);
    }
    run.liveness();
    (run.oracle.checks, run.proposals, run.reads)
}

#[test]
fn randomized_clusters_stay_safe() {
    let seeds: Vec<u64> = match std::env::var("RAFT_SEED") {
        Ok(seed) => vec![seed.parse().expect("RAFT_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var("RAFT_SEEDS").map_or(2000, |count| count.parse().unwrap());
            let from: u64 = std::env::var("RAFT_SEED_FROM").map_or(1, |from| from.parse().unwrap());
            (from..from + count).collect()
        }
    };
    let mut failures = Vec::new();
    let mut totals = (0, 0, 0);
    for seed in &seeds {
        match std::panic::catch_unwind(|| run_seed(*seed)) {
            Ok((checks, proposals, reads)) => {
                totals.0 += checks;
                totals.1 += proposals;
                totals.2 += reads;
            }
            Err(_) => failures.push(*seed),
        }
    }
    println!(
        "{} seeds x {STEPS} steps: {} node checks, {} proposals, {} reads",
        seeds.len(),
        totals.0,
        totals.1,
        totals.2
    );
    for seed in &failures {
        println!("repro: RAFT_SEED={seed} cargo test --test raft_random -- --nocapture");
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed: {failures:?}",
        failures.len(),
        seeds.len()
    );
}
