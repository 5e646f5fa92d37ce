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
use crate::faults::{MessageChaos, KIND_NAMES};

/// The fault mix of one seed.
#[derive(Clone, Debug)]
pub struct FaultMix {
    /// Isolation, one-way cuts, majority/minority splits and bridges.
    pub partitions: bool,
    pub crashes: bool,
    pub pauses: bool,
    /// Slow or stalled fsyncs on one member's disk (a gray failure).
    pub slow_disks: bool,
    /// Packet loss (retransmission delays) and latency spikes for everyone.
    pub network: bool,
    /// Raft messages dropped, duplicated, corrupted or reordered by kind.
    pub messages: bool,
    /// Wall-clock steps and rate drift on one member.
    pub clocks: bool,
    /// Leadership moved to another member (Maintenance.MoveLeader's path).
    pub transfers: bool,
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
            network: rng.gen_bool(0.4),
            messages: rng.gen_bool(0.4),
            clocks: rng.gen_bool(0.4),
            transfers: rng.gen_bool(0.3),
            interval: Duration::from_millis(rng.gen_range(300..3000)),
        };
        let any = [
            mix.partitions,
            mix.crashes,
            mix.pauses,
            mix.slow_disks,
            mix.network,
            mix.messages,
            mix.clocks,
            mix.transfers,
        ];
        if !any.contains(&true) {
            mix.partitions = true;
        }
        mix
    }

    /// No faults at all (a report for a seed that never ran).
    pub fn none() -> FaultMix {
        FaultMix {
            partitions: false,
            crashes: false,
            pauses: false,
            slow_disks: false,
            network: false,
            messages: false,
            clocks: false,
            transfers: false,
            interval: Duration::ZERO,
        }
    }
}

/// Counts of injected faults by class, for the report.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts {
    pub isolations: u64,
    pub one_way_cuts: u64,
    pub splits: u64,
    pub bridges: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub slow_disks: u64,
    pub packet_loss: u64,
    pub latency_spikes: u64,
    pub message_chaos: u64,
    pub clock_steps: u64,
    pub clock_drifts: u64,
    pub leader_transfers: u64,
    /// Followers replaced by new members (`churn.rs`).
    pub member_replacements: u64,
}

impl FaultCounts {
    /// (class name, count) pairs, in a stable order.
    pub fn classes(&self) -> [(&'static str, u64); 14] {
        [
            ("isolations", self.isolations),
            ("one-way cuts", self.one_way_cuts),
            ("splits", self.splits),
            ("bridges", self.bridges),
            ("crashes", self.crashes),
            ("pauses", self.pauses),
            ("slow disks", self.slow_disks),
            ("packet loss", self.packet_loss),
            ("latency spikes", self.latency_spikes),
            ("message chaos", self.message_chaos),
            ("clock steps", self.clock_steps),
            ("clock drifts", self.clock_drifts),
            ("leader transfers", self.leader_transfers),
            ("member replacements", self.member_replacements),
        ]
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .classes()
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        formatter.write_str(&parts.join(", "))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Partition,
    Crash,
    Pause,
    SlowDisk,
    Network,
    Messages,
    Clock,
    Transfer,
}

/// The nemesis's view of what it broke, so it can undo all of it.
#[derive(Default)]
pub struct Nemesis {
    isolated: BTreeSet<NodeId>,
    cut_links: BTreeSet<(NodeId, NodeId)>,
    crashed: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
    slowed: BTreeSet<NodeId>,
    drifting: BTreeSet<NodeId>,
    network_degraded: bool,
    messages_faulty: bool,
    pub counts: FaultCounts,
}

impl Nemesis {
    /// Nothing is broken right now.
    pub fn is_quiet(&self) -> bool {
        self.isolated.is_empty()
            && self.cut_links.is_empty()
            && self.crashed.is_empty()
            && self.paused.is_empty()
            && self.slowed.is_empty()
            && self.drifting.is_empty()
            && !self.network_degraded
            && !self.messages_faulty
    }

    /// One random action within the seed's mix, alternating with healing. At
    /// most one member is down or cut off from the majority at a time (f >= 1
    /// for 3 or 5 members), so a quorum always remains.
    pub fn act(&mut self, cluster: &Cluster, mix: &FaultMix, rng: &mut SmallRng) {
        if !self.is_quiet() {
            self.heal_all(cluster);
            return;
        }
        let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
        // The leader is the most interesting victim.
        let victim = match cluster.leader() {
            Some(leader) if rng.gen_bool(0.6) => leader,
            _ => ids[rng.gen_range(0..ids.len())],
        };
        let enabled = [
            (mix.partitions, Action::Partition),
            (mix.crashes, Action::Crash),
            (mix.pauses, Action::Pause),
            (mix.slow_disks, Action::SlowDisk),
            (mix.network, Action::Network),
            (mix.messages, Action::Messages),
            (mix.clocks, Action::Clock),
            (mix.transfers, Action::Transfer),
        ];
        let choices: Vec<Action> = enabled
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, action)| *action)
            .collect();
        match choices[rng.gen_range(0..choices.len())] {
            Action::Partition => self.partition(cluster, &ids, victim, rng),
            Action::Crash => {
                cluster.crash(victim, rng);
                self.crashed.insert(victim);
                self.counts.crashes += 1;
            }
            Action::Pause => {
                cluster.pause(victim);
                self.paused.insert(victim);
                self.counts.pauses += 1;
            }
            Action::SlowDisk => {
                // From a slow disk up to a stall longer than the election timeout.
                let latency = Duration::from_millis(rng.gen_range(20..3000));
                cluster.members[&victim].disk.set_sync_latency(latency);
                self.slowed.insert(victim);
                self.counts.slow_disks += 1;
            }
            Action::Network => {
                let network = madsim::net::NetSim::current();
                if rng.gen_bool(0.5) {
                    let loss = rng.gen_range(0.05..0.3);
                    network.update_config(|config| config.packet_loss_rate = loss);
                    self.counts.packet_loss += 1;
                } else {
                    // Beyond the election timeout (1 s) at the top of the range.
                    let high = Duration::from_millis(rng.gen_range(50..1500));
                    network.update_config(|config| config.send_latency = Duration::from_millis(1)..high);
                    self.counts.latency_spikes += 1;
                }
                self.network_degraded = true;
            }
            Action::Messages => {
                cluster.faults.set(random_chaos(&ids, rng));
                self.messages_faulty = true;
                self.counts.message_chaos += 1;
            }
            Action::Transfer => self.transfer(cluster, &ids, rng),
            Action::Clock => {
                let clock = &cluster.members[&victim].clock;
                if rng.gen_bool(0.5) {
                    // Seconds to hours, either way.
                    let step_ns = rng.gen_range(1_000_000_000i64..7_200_000_000_000);
                    clock.step_wall(if rng.gen_bool(0.5) { step_ns } else { -step_ns });
                    self.counts.clock_steps += 1;
                } else {
                    clock.set_drift_ppm(rng.gen_range(-300_000..300_000));
                    self.drifting.insert(victim);
                    self.counts.clock_drifts += 1;
                }
            }
        }
    }

    /// Asks the leader to hand leadership to another member, as
    /// `etcdctl move-leader` does; the transfer runs on its own and may fail
    /// (the nemesis only starts it).
    fn transfer(&mut self, cluster: &Cluster, ids: &[NodeId], rng: &mut SmallRng) {
        let Some(leader) = cluster.leader() else { return };
        let Some(handle) = cluster.handle(leader) else { return };
        let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != leader).collect();
        let target = others[rng.gen_range(0..others.len())];
        self.counts.leader_transfers += 1;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle.move_leader(target)).await;
        });
    }

    fn partition(&mut self, cluster: &Cluster, ids: &[NodeId], victim: NodeId, rng: &mut SmallRng) {
        let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != victim).collect();
        match rng.gen_range(0..4) {
            0 => {
                cluster.isolate(victim);
                self.isolated.insert(victim);
                self.counts.isolations += 1;
            }
            1 => {
                // One way: the victim can send but not hear, or hear but not send.
                let outgoing = rng.gen_bool(0.5);
                for other in &others {
                    let link = if outgoing { (victim, *other) } else { (*other, victim) };
                    self.cut(cluster, link);
                }
                self.counts.one_way_cuts += 1;
            }
            2 => {
                // Majority/minority: the victim plus (for 5) one more on the small side.
                let mut minority = vec![victim];
                if ids.len() == 5 {
                    minority.push(others[rng.gen_range(0..others.len())]);
                }
                for small in &minority {
                    for large in ids.iter().filter(|id| !minority.contains(id)) {
                        self.cut(cluster, (*small, *large));
                        self.cut(cluster, (*large, *small));
                    }
                }
                self.counts.splits += 1;
            }
            _ => {
                // A bridge: the victim talks to both halves, which cannot talk to each other.
                let (left, right) = others.split_at(others.len() / 2);
                for a in left {
                    for b in right {
                        self.cut(cluster, (*a, *b));
                        self.cut(cluster, (*b, *a));
                    }
                }
                self.counts.bridges += 1;
            }
        }
    }

    fn cut(&mut self, cluster: &Cluster, link: (NodeId, NodeId)) {
        cluster.cut_link(link.0, link.1);
        self.cut_links.insert(link);
    }

    pub fn heal_all(&mut self, cluster: &Cluster) {
        for id in std::mem::take(&mut self.isolated) {
            cluster.heal(id);
        }
        for (from, to) in std::mem::take(&mut self.cut_links) {
            cluster.restore_link(from, to);
        }
        for id in std::mem::take(&mut self.paused) {
            cluster.resume(id);
        }
        for id in std::mem::take(&mut self.slowed) {
            cluster.members[&id].disk.set_sync_latency(Duration::ZERO);
        }
        for id in std::mem::take(&mut self.drifting) {
            cluster.members[&id].clock.heal();
        }
        if std::mem::take(&mut self.network_degraded) {
            madsim::net::NetSim::current().update_config(|config| *config = madsim::net::Config::default());
        }
        if std::mem::take(&mut self.messages_faulty) {
            cluster.faults.heal();
        }
        for id in std::mem::take(&mut self.crashed) {
            cluster.members[&id].disk.set_sync_latency(Duration::ZERO);
            cluster.restart(id);
        }
    }
}

/// A message-fault configuration: some kinds (or all), some links (or all),
/// with seed-chosen rates.
fn random_chaos(ids: &[NodeId], rng: &mut SmallRng) -> MessageChaos {
    let mut chaos = MessageChaos::default();
    if rng.gen_bool(0.5) {
        for kind in KIND_NAMES {
            if rng.gen_bool(0.3) {
                chaos.kinds.insert(kind);
            }
        }
    }
    if rng.gen_bool(0.3) {
        let from = ids[rng.gen_range(0..ids.len())];
        for to in ids.iter().filter(|id| **id != from) {
            chaos.links.insert((from, *to));
        }
    }
    chaos.drop = if rng.gen_bool(0.6) {
        rng.gen_range(0.0..0.4)
    } else {
        0.0
    };
    chaos.duplicate = if rng.gen_bool(0.4) {
        rng.gen_range(0.0..0.3)
    } else {
        0.0
    };
    chaos.corrupt = if rng.gen_bool(0.3) {
        rng.gen_range(0.0..0.1)
    } else {
        0.0
    };
    chaos.delay = if rng.gen_bool(0.5) {
        rng.gen_range(0.0..0.3)
    } else {
        0.0
    };
    chaos.delay_max = Duration::from_millis(rng.gen_range(1..1500));
    chaos
}
