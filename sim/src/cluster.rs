//! A simulated braid cluster: one madsim node per member, each with its own
//! memory disk kept by the harness across kill/restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid::io::MemDir;
use braid::raft::{ConfState, NodeId};
use braid::server::hooks::NodeHooks;
use braid::server::node::{self, Backend, MembershipOptions, NodeError, NodeOptions};
use braid::server::NodeHandle;
use braid::wal::WalOptions;
use braid_proto::braidpb::peer_server::PeerServer;

use crate::clock::SimClock;
use crate::faults::FaultyTransport;
use crate::observer::Invariants;

pub const PEER_PORT: u16 = 2380;
pub const CLIENT_PORT: u16 = 2379;
/// Client URLs each member listens on (ports `CLIENT_PORT..`), as etcd's
/// `--listen-client-urls` allows several. madsim-tonic's server takes one
/// request at a time per listener and delivers each stream message after at
/// least a millisecond, so one listener caps a member near 1000 requests per
/// simulated second; the load writers spread over these to reach the
/// design's load.
pub const CLIENT_LISTENERS: u16 = 16;

/// The client ports: `CLIENT_PORT`, then more above the peer port.
fn client_ports() -> impl Iterator<Item = u16> {
    std::iter::once(CLIENT_PORT).chain(3001..3000 + CLIENT_LISTENERS)
}

pub type Handle = NodeHandle<Backend<MemDir>>;

pub struct Member {
    pub id: NodeId,
    pub ip: IpAddr,
    pub disk: MemDir,
    /// The member's clock; survives restarts like the disk.
    pub clock: SimClock,
    pub node: madsim::runtime::NodeHandle,
    /// The running member's handle, replaced on every (re)start.
    pub handle: Arc<Mutex<Option<Handle>>>,
}

pub struct Cluster {
    pub members: BTreeMap<NodeId, Member>,
    /// Message faults every member's transport consults.
    pub faults: Arc<FaultyTransport>,
    /// Invariants every member reports to.
    pub invariants: Arc<Invariants>,
    /// Options every member starts from (id, configuration and peers replaced).
    template: NodeOptions,
    origin: tokio::time::Instant,
    /// Hosts handed out so far (a new member never reuses an address).
    hosts_used: u64,
}

fn ip_of(index: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8))
}

/// How often members compact their logs and make their state files durable.
/// Most seeds compact every few dozen or hundred entries, keeping few, so
/// members that were down or cut off catch up by snapshot; some keep etcd's
/// defaults (which a run never reaches). State files become durable every
/// 20 ms to 1 s, or every 50 entries, so crashes land at every distance from
/// the last durable commit.
#[derive(Clone, Copy, Debug)]
struct LogCompaction {
    snapshot_count: u64,
    catchup_entries: u64,
    segment_size_bytes: u64,
    state_sync_interval: Duration,
    state_sync_entries: u64,
}

impl LogCompaction {
    fn for_seed(seed: u64) -> LogCompaction {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5a95_0c07);
        let state_sync_interval = Duration::from_millis([20, 100, 1000][rng.gen_range(0..3)]);
        let state_sync_entries = [50, 10_000][rng.gen_range(0..2)];
        if rng.gen_bool(0.2) {
            return LogCompaction {
                snapshot_count: 100_000,
                catchup_entries: braid::server::node::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
                segment_size_bytes: WalOptions::default().segment_size_bytes,
                state_sync_interval,
                state_sync_entries,
            };
        }
        LogCompaction {
            snapshot_count: [16, 64, 256][rng.gen_range(0..3)],
            catchup_entries: [0, 4, 32][rng.gen_range(0..3)],
            segment_size_bytes: [4096, 65_536][rng.gen_range(0..2)],
            state_sync_interval,
            state_sync_entries,
        }
    }
}

impl Cluster {
    /// Creates and starts `size` members.
    pub fn start(size: u64, seed: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let faults = Arc::new(FaultyTransport::new(seed ^ 0xfa17));
        let invariants = Arc::new(Invariants::default());
        let compaction = LogCompaction::for_seed(seed);
        let template = NodeOptions {
            id: NodeId(1),
            cluster_id: 0xb4a1d,
            initial_conf: ConfState::new(ids.iter().copied(), []),
            peer_urls: BTreeMap::new(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            pre_vote: true,
            max_request_bytes: 1_572_864,
            request_timeout: Duration::from_secs(7),
            wal: WalOptions {
                segment_size_bytes: compaction.segment_size_bytes,
            },
            page_size: 4096,
            seed,
            membership: MembershipOptions::default(),
            maintenance: Default::default(),
            lease_checkpoint_interval: braid::server::lessor::DEFAULT_CHECKPOINT_INTERVAL,
            state_sync_interval: compaction.state_sync_interval,
            state_sync_entries: compaction.state_sync_entries,
            snapshot_count: compaction.snapshot_count,
            snapshot_catchup_entries: compaction.catchup_entries,
        };
        let mut cluster = Cluster {
            members: BTreeMap::new(),
            faults,
            invariants,
            template,
            origin: tokio::time::Instant::now(),
            hosts_used: 0,
        };
        for id in &ids {
            let ip = cluster.next_ip();
            let peers = ids
                .iter()
                .filter(|peer| *peer != id)
                .map(|peer| (*peer, format!("http://{}:{PEER_PORT}", ip_of(peer.0))))
                .collect();
            cluster.launch(*id, ip, cluster.template.initial_conf.clone(), peers);
        }
        cluster
    }

    /// The address for the next member (founding members get 10.0.0.1..).
    pub fn next_ip(&mut self) -> IpAddr {
        self.hosts_used += 1;
        ip_of(self.hosts_used)
    }

    pub fn peer_url(ip: IpAddr) -> String {
        format!("http://{ip}:{PEER_PORT}")
    }

    /// Starts member `id` on a new madsim node at `ip` with an empty disk:
    /// a founding member with the bootstrap `initial_conf`, or a member
    /// joining after MemberAdd with an empty one (`--initial-cluster-state
    /// existing`), which learns the cluster from the leader.
    pub fn launch(&mut self, id: NodeId, ip: IpAddr, initial_conf: ConfState, peer_urls: BTreeMap<NodeId, String>) {
        let runtime = madsim::runtime::Handle::current();
        let disk = MemDir::new();
        let clock = SimClock::new(self.origin);
        let hooks = NodeHooks {
            faults: Some(self.faults.clone()),
            observer: Some(self.invariants.clone()),
        };
        let slot: Arc<Mutex<Option<Handle>>> = Arc::new(Mutex::new(None));
        let options = NodeOptions {
            id,
            initial_conf,
            peer_urls,
            seed: self.template.seed ^ id.0,
            ..self.template.clone()
        };
        let node_disk = disk.clone();
        let node_clock = clock.clone();
        let node_slot = Arc::clone(&slot);
        let node = runtime
            .create_node()
            .name(format!("n{}", id.0))
            .ip(ip)
            .init(move || {
                let options = options.clone();
                let disk = node_disk.clone();
                let clock = Arc::new(node_clock.clone());
                let hooks = hooks.clone();
                let slot = Arc::clone(&node_slot);
                async move {
                    let started = match node::start_with_hooks(options, disk, clock, hooks).await {
                        Ok(started) => started,
                        // A removed member refuses to start again, as in production.
                        Err(NodeError::Removed) => return,
                        Err(error) => panic!("member starts from its disk: {error:?}"),
                    };
                    *slot.lock().unwrap() = Some(started.handle.clone());
                    let service = PeerServer::new(started.peer_service.clone());
                    let address = SocketAddr::new(ip, PEER_PORT);
                    tokio::spawn(async move {
                        let _ = tonic::transport::Server::builder()
                            .add_service(service)
                            .serve(address)
                            .await;
                    });
                    // The client API, exactly as the binary mounts it.
                    for port in client_ports() {
                        let mut builder = tonic::transport::Server::builder();
                        let limits = braid::api::ApiLimits::default();
                        let api = braid::add_api_services!(builder, started.handle.clone(), limits);
                        let client_address = SocketAddr::new(ip, port);
                        tokio::spawn(async move {
                            if let Err(error) = api.serve(client_address).await {
                                eprintln!("client API on {client_address} stopped: {error}");
                            }
                        });
                    }
                    let _ = started.task.await;
                }
            })
            .build();
        self.members.insert(
            id,
            Member {
                id,
                ip,
                disk,
                clock,
                node,
                handle: slot,
            },
        );
    }

    /// Stops a member for good (after it was removed from the cluster).
    pub fn retire(&mut self, id: NodeId) {
        if let Some(member) = self.members.remove(&id) {
            *member.handle.lock().unwrap() = None;
            madsim::runtime::Handle::current().kill(member.node.id());
        }
    }

    pub fn handle(&self, id: NodeId) -> Option<Handle> {
        self.members[&id].handle.lock().unwrap().clone()
    }

    /// Kills a member; its disk keeps only what was synced (per-page fate drawn
    /// from `rng`).
    pub fn crash(&self, id: NodeId, rng: &mut impl rand::RngCore) {
        let member = &self.members[&id];
        *member.handle.lock().unwrap() = None;
        madsim::runtime::Handle::current().kill(member.node.id());
        member.disk.crash(rng);
    }

    pub fn restart(&self, id: NodeId) {
        madsim::runtime::Handle::current().restart(self.members[&id].node.id());
    }

    /// Stops polling a member (a GC pause or a frozen VM); its timers and
    /// sockets stay.
    pub fn pause(&self, id: NodeId) {
        madsim::runtime::Handle::current().pause(self.members[&id].node.id());
    }

    pub fn resume(&self, id: NodeId) {
        madsim::runtime::Handle::current().resume(self.members[&id].node.id());
    }

    pub fn client_url(&self, id: NodeId) -> String {
        format!("http://{}:{CLIENT_PORT}", self.members[&id].ip)
    }

    /// Every client URL of every member.
    pub fn all_client_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for member in self.members.values() {
            for port in client_ports() {
                urls.push(format!("http://{}:{port}", member.ip));
            }
        }
        urls
    }

    pub fn isolate(&self, id: NodeId) {
        madsim::net::NetSim::current().clog_node(self.members[&id].node.id());
    }

    pub fn heal(&self, id: NodeId) {
        madsim::net::NetSim::current().unclog_node(self.members[&id].node.id());
    }

    /// Stops traffic from `from` to `to` only (a one-way partition).
    pub fn cut_link(&self, from: NodeId, to: NodeId) {
        let (from, to) = (self.members[&from].node.id(), self.members[&to].node.id());
        madsim::net::NetSim::current().clog_link(from, to);
    }

    pub fn restore_link(&self, from: NodeId, to: NodeId) {
        let (from, to) = (self.members[&from].node.id(), self.members[&to].node.id());
        madsim::net::NetSim::current().unclog_link(from, to);
    }

    /// The member that currently believes it leads, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .keys()
            .copied()
            .find(|id| self.handle(*id).is_some_and(|handle| handle.status().is_leader))
    }
}
