//! Raft core throughput: a 3-node in-memory cluster driven through the full
//! propose -> ready -> step -> advance pipeline with instant "disks", so the
//! figure is the core's own cost per entry. Bounded: a fixed number of
//! proposals. Run with `cargo bench --bench raft`.

use std::collections::VecDeque;
use std::hint::black_box;

use braid::raft::{ConfState, Config, Index, Message, NodeId, Persisted, Raft, Role};
use bytes::Bytes;

const BATCH: usize = 64;
const BATCHES: usize = 20_000;

fn main() {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let conf = ConfState::new(ids, []);
    let mut nodes: Vec<Raft> = ids
        .iter()
        .map(|id| Raft::new(Config::new(*id), Persisted::default(), conf.clone()))
        .collect();
    let mut network: VecDeque<Message> = VecDeque::new();
    nodes[0].campaign();
    let pump = |nodes: &mut Vec<Raft>, network: &mut VecDeque<Message>| -> Index {
        let mut applied = Index(0);
        loop {
            let mut moved = false;
            for node in nodes.iter_mut() {
                if node.has_ready() {
                    moved = true;
                    let ready = node.ready();
                    network.extend(ready.messages.iter().cloned());
                    network.extend(ready.persisted_messages.iter().cloned());
                    if node.id() == NodeId(1) {
                        if let Some(last) = ready.committed_entries.last() {
                            applied = last.index;
                        }
                    }
                    black_box(&ready.committed_entries);
                    node.advance(&ready);
                }
            }
            while let Some(message) = network.pop_front() {
                moved = true;
                let to = (message.to.0 - 1) as usize;
                nodes[to].step(message);
            }
            if !moved {
                return applied;
            }
        }
    };
    pump(&mut nodes, &mut network);
    assert_eq!(nodes[0].role(), Role::Leader);
    let payload = Bytes::from(vec![7u8; 256]);
    let started = std::time::Instant::now();
    let mut last = Index(0);
    for _ in 0..BATCHES {
        nodes[0]
            .propose_batch(vec![payload.clone(); BATCH])
            .expect("leader accepts proposals");
        last = pump(&mut nodes, &mut network).max(last);
    }
    let elapsed = started.elapsed();
    let entries = BATCHES * BATCH;
    println!(
        "raft core, 3 nodes, batches of {BATCH} x 256 B: {entries} entries committed and applied in {:.2?} = {:.0} entries/s ({:.0} ns/entry, last index {last})",
        elapsed,
        entries as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / entries as f64,
    );
}
