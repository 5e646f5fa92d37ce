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
    /// Mean time between nemesis actions.
    pub interval: Duration,
}

impl FaultMix {
    pub fn random(rng: &mut SmallRng) -> FaultMix {
        let mut mix = FaultMix {
            partitions: rng.gen_bool(0.6),
            crashes: rng.gen_bool(0.6),
            pauses: rng.gen_bool(0.4),
            interval: Duration::from_millis(rng.gen_range(300..3000)),
        };
        if !(mix.partitions || mix.crashes || mix.pauses) {
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
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "isolations {} crashes {} pauses {}",
            self.isolations, self.crashes, self.pauses
        )
    }
}

/// The nemesis's view of what it broke, so it can undo all of it.
#[derive(Default)]
pub struct Nemesis {
    isolated: BTreeSet<NodeId>,
    crashed: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
    pub counts: FaultCounts,
}

impl Nemesis {
    /// One random action within the seed's mix. At most one member is faulty at
    /// a time (f = 1 for 3 members), so a quorum always remains.
    pub fn act(&mut self, cluster: &Cluster, mix: &FaultMix, rng: &mut SmallRng) {
        let faulty = self.isolated.len() + self.crashed.len() + self.paused.len();
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
            _ => {
                cluster.pause(victim);
                self.paused.insert(victim);
                self.counts.pauses += 1;
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
        for id in std::mem::take(&mut self.crashed) {
            cluster.restart(id);
        }
    }
}
