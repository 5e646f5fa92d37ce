//! Raft core microbenchmarks (divan): a 3-node in-memory cluster driven through
//! the full propose -> ready -> step -> advance pipeline with instant "disks",
//! so the figures are the core's own cost per entry, and the leader's cost of
//! stepping one append acknowledgement.
//!
//! Run: `cargo bench --bench raft` (divan flags after `--`, e.g. `-- --sample-count 20`).
//! `cargo test --benches` runs each case once as a smoke test.

use std::collections::VecDeque;

use braid::raft::{ConfState, Config, Index, Message, MessageKind, NodeId, Persisted, Raft, Role};
use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::{black_box, Bencher};

fn main() {
    divan::main();
}

/// Entries kept in the leader's log before the bench compacts it, so long runs
/// measure a steady state rather than a growing log.
const KEEP_ENTRIES: u64 = 10_000;

struct Cluster {
    nodes: Vec<Raft>,
    network: VecDeque<Message>,
    applied: Index,
}

impl Cluster {
    fn elected() -> Cluster {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let conf = ConfState::new(ids, []);
        let nodes = ids
            .iter()
            .map(|id| Raft::new(Config::new(*id), Persisted::default(), conf.clone()))
            .collect();
        let mut cluster = Cluster {
            nodes,
            network: VecDeque::new(),
            applied: Index(0),
        };
        cluster.nodes[0].campaign();
        cluster.pump();
        assert_eq!(cluster.nodes[0].role(), Role::Leader);
        cluster
    }

    /// Moves every ready and message until the cluster is quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for node in &mut self.nodes {
                if node.has_ready() {
                    moved = true;
                    let ready = node.ready();
                    self.network.extend(ready.messages.iter().cloned());
                    self.network.extend(ready.persisted_messages.iter().cloned());
                    if let Some(last) = ready.committed_entries.last() {
                        if node.id() == NodeId(1) {
                            self.applied = last.index;
                        }
                    }
                    black_box(&ready.committed_entries);
                    node.advance(&ready);
                }
            }
            while let Some(message) = self.network.pop_front() {
                moved = true;
                let to = (message.to.0 - 1) as usize;
                self.nodes[to].step(message);
            }
            if !moved {
                return;
            }
        }
    }

    /// Proposes `batch` entries on the leader and runs them to applied on all three.
    fn round(&mut self, batch: &[Bytes]) {
        let before = self.applied;
        self.nodes[0]
            .propose_batch(batch.to_vec())
            .expect("leader accepts proposals");
        self.pump();
        assert!(self.applied.0 >= before.0 + batch.len() as u64, "the batch was applied");
        if self.applied.0 > 2 * KEEP_ENTRIES {
            let through = Index(self.applied.0 - KEEP_ENTRIES);
            for node in &mut self.nodes {
                node.compact(through, Bytes::new()).expect("applied entries compact");
            }
        }
    }
}

/// Entries per proposal batch: one client, a busy server's group, a saturated one.
#[divan::bench(args = [1, 64, 512])]
fn propose_commit_apply(bencher: Bencher, batch: usize) {
    let mut cluster = Cluster::elected();
    let entries = vec![Bytes::from(vec![7u8; 256]); batch];
    bencher
        .counter(ItemsCount::new(batch))
        .bench_local(|| cluster.round(&entries));
}

/// The leader stepping one follower's acknowledgement of an append (the most
/// frequent message a leader handles under load).
#[divan::bench]
fn leader_steps_append_response(bencher: Bencher) {
    let mut cluster = Cluster::elected();
    let payload = [Bytes::from(vec![7u8; 256])];
    cluster.round(&payload);
    let leader = &cluster.nodes[0];
    let mut response = Message::new(MessageKind::AppendResponse, NodeId(2), NodeId(1), leader.term());
    response.index = cluster.applied;
    bencher.bench_local(|| {
        cluster.nodes[0].step(response.clone());
        if cluster.nodes[0].has_ready() {
            let ready = cluster.nodes[0].ready();
            cluster.nodes[0].advance(black_box(&ready));
        }
    });
}
