//! Faults, chosen per seed (swarm testing): each class is switched on or off by
//! the seed, then given an intensity, so many seeds hit one or two classes
//! hard. Every fault is undone by `heal_all` before the liveness phase.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use braid::raft::NodeId;
use rand::rngs::SmallRng;
use rand::Rng;

use crate::cluster::Cluster;

/// The fault mix of one seed.
#[derive(Clone, Debug)]
pub struct FaultMix {
    pub partitions: bool,
    pub crashes: bool,
    pub pauses: bool,
    /// Slow or stalled fsyncs on one member's disk (a gray failure).
    pub slow_disks: bool,
    /// Mean time between nemesis actions.
    pub interval: Duration,
}

impl FaultMix {
    pub fn random(rng: &mut SmallRng) -> FaultMix {
        let mut mix = FaultMix {
            partitions: rng.gen_bool(0.6),
            crashes: rng.gen_bool(0.6),
            pauses: rng.gen_bool(0.4),
            slow_disks: rng.gen_bool(0.4),
            interval: Duration::from_millis(rng.gen_range(300..3000)),
        };
        if !(mix.partitions || mix.crashes || mix.pauses || mix.slow_disks) {
            mix.partitions = true;
        }
        mix
    }
}

/// Counts of injected faults by class, for the report.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts {
    pub isolations: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub slow_disks: u64,
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "isolations {} crashes {} pauses {} slow disks {}",
            self.isolations, self.crashes, self.pauses, self.slow_disks
        )
    }
}

/// The nemesis's view of what it broke, so it can undo all of it.
#[derive(Default)]
pub struct Nemesis {
    isolated: BTreeSet<NodeId>,
    crashed: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
    slowed: BTreeSet<NodeId>,
    pub counts: FaultCounts,
}

impl Nemesis {
    /// One random action within the seed's mix. At most one member is faulty at
    /// a time (f >= 1 for 3 or 5 members), so a quorum always remains.
    pub fn act(&mut self, cluster: &Cluster, mix: &FaultMix, rng: &mut SmallRng) {
        let faulty = self.isolated.len() + self.crashed.len() + self.paused.len() + self.slowed.len();
        if faulty > 0 {
            self.heal_all(cluster);
            return;
        }
        let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
        // The leader is the most interesting victim.
        let victim = match cluster.leader() {
            Some(leader) if rng.gen_bool(0.6) => leader,
            _ => ids[rng.gen_range(0..ids.len())],
        };
        let mut choices = Vec::new();
        if mix.partitions {
            choices.push(0);
        }
        if mix.crashes {
            choices.push(1);
        }
        if mix.pauses {
            choices.push(2);
        }
        if mix.slow_disks {
            choices.push(3);
        }
        match choices[rng.gen_range(0..choices.len())] {
            0 => {
                cluster.isolate(victim);
                self.isolated.insert(victim);
                self.counts.isolations += 1;
            }
            1 => {
                cluster.crash(victim, rng);
                self.crashed.insert(victim);
                self.counts.crashes += 1;
            }
            2 => {
                cluster.pause(victim);
                self.paused.insert(victim);
                self.counts.pauses += 1;
            }
            _ => {
                // From a slow disk up to a stall longer than the election timeout.
                let latency = Duration::from_millis(rng.gen_range(20..3000));
                cluster.members[&victim].disk.set_sync_latency(latency);
                self.slowed.insert(victim);
                self.counts.slow_disks += 1;
            }
        }
    }

    pub fn heal_all(&mut self, cluster: &Cluster) {
        for id in std::mem::take(&mut self.isolated) {
            cluster.heal(id);
        }
        for id in std::mem::take(&mut self.paused) {
            cluster.resume(id);
        }
        for id in std::mem::take(&mut self.slowed) {
            cluster.members[&id].disk.set_sync_latency(Duration::ZERO);
        }
        for id in std::mem::take(&mut self.crashed) {
            cluster.members[&id].disk.set_sync_latency(Duration::ZERO);
            cluster.restart(id);
        }
    }
}
