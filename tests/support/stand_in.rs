//! One member's gRPC services over loopback with a task standing in for the node loop: writes
//! are applied straight to an in-memory store, barriers succeed, and either can be made to
//! fail. For API tests that need no Raft.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use braid::api::{add_services, ApiLimits};
use braid::mvcc::{ApplyEntry, ConsistentIndex, MemBackend, MvccConfig, MvccStore};
use braid::raft::NodeId;
use braid::server::alarms::AlarmSet;
use braid::server::{Applied, Command, MemberStatus, NodeHandle, Request as NodeRequest, ServerError};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

pub const MEMBER_ID: u64 = 0x8e9e05c52164694d;
pub const CLUSTER_ID: u64 = 0xcdf818194e3a8c32;
pub const TERM: u64 = 3;
/// etcd's `--max-request-bytes` default.
pub const MAX_REQUEST_BYTES: usize = 1_572_864;

pub struct StandIn {
    pub node: NodeHandle<MemBackend>,
    pub address: SocketAddr,
    /// Linearizable barriers the node loop was asked for.
    pub barriers: Arc<AtomicUsize>,
    /// When set, the node loop fails every write / barrier with it.
    pub write_failure: Arc<Mutex<Option<ServerError>>>,
    pub barrier_failure: Arc<Mutex<Option<ServerError>>>,
}

impl StandIn {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

pub fn leader_status() -> MemberStatus {
    MemberStatus {
        member_id: MEMBER_ID,
        cluster_id: CLUSTER_ID,
        leader: MEMBER_ID,
        raft_term: TERM,
        raft_index: 40,
        raft_applied_index: 39,
        is_learner: false,
        db_size_bytes: 1 << 20,
        db_size_in_use_bytes: 1 << 19,
        is_leader: true,
        leader_changes_seen: 1,
    }
}

pub async fn start_stand_in(max_request_bytes: usize, limits: ApiLimits) -> StandIn {
    start_stand_in_with(max_request_bytes, limits, MvccConfig::default()).await
}

pub async fn start_stand_in_with(max_request_bytes: usize, limits: ApiLimits, config: MvccConfig) -> StandIn {
    let store = MvccStore::open(MemBackend::new(), config).await.unwrap();
    let (node, mut inbox) = NodeHandle::new(store.clone(), NodeId(MEMBER_ID), CLUSTER_ID, max_request_bytes);
    node.publish(leader_status());
    let barriers = Arc::new(AtomicUsize::new(0));
    let write_failure: Arc<Mutex<Option<ServerError>>> = Arc::default();
    let barrier_failure: Arc<Mutex<Option<ServerError>>> = Arc::default();

    let (loop_node, loop_barriers) = (node.clone(), Arc::clone(&barriers));
    let (loop_write_failure, loop_barrier_failure) = (Arc::clone(&write_failure), Arc::clone(&barrier_failure));
    tokio::spawn(async move {
        let mut index = 0;
        let mut alarms = AlarmSet::default();
        while let Some(request) = inbox.recv().await {
            match request {
                NodeRequest::Write { request, reply } => {
                    if let Some(error) = loop_write_failure.lock().unwrap().clone() {
                        let _ = reply.send(Err(error));
                        continue;
                    }
                    let request = match request {
                        Command::Write(request) => request,
                        Command::Alarm(change) => {
                            let (changed, _) = alarms.apply(change);
                            loop_node.publish_alarms(alarms.clone());
                            let _ = reply.send(Ok((Applied::Alarm(changed), loop_node.header())));
                            continue;
                        }
                        // Only the node loop proposes lease commands itself.
                        Command::Lease(_) => {
                            let _ = reply.send(Err(ServerError::Stopped));
                            continue;
                        }
                    };
                    index += 1;
                    let entry = ApplyEntry::new(ConsistentIndex { index, term: TERM }, request);
                    let outcome = store.apply(vec![entry], &|_| false).await.expect("memory backend");
                    let result = outcome.into_iter().next().unwrap().expect_applied();
                    let _ = reply.send(
                        result
                            .map(|response| (Applied::Write(response), loop_node.header()))
                            .map_err(ServerError::Mvcc),
                    );
                }
                // The stand-in has no member table; the Cluster service is tested on processes.
                NodeRequest::Member { reply, .. } => {
                    let _ = reply.send(Err(ServerError::Stopped));
                }
                // A stand-in has no Raft to hand leadership over with.
                NodeRequest::MoveLeader { reply, .. } => {
                    let _ = reply.send(Err(ServerError::LeaderTransferTimeout));
                }
                // Leases have their own tests (tests/api_lease.rs) against a real node.
                NodeRequest::Lease { reply, .. } => {
                    let _ = reply.send(Err(ServerError::Stopped));
                }
                NodeRequest::LinearizableRead { reply } => {
                    loop_barriers.fetch_add(1, Ordering::SeqCst);
                    let _ = reply.send(match loop_barrier_failure.lock().unwrap().clone() {
                        Some(error) => Err(error),
                        None => Ok(()),
                    });
                }
            }
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = add_services(Server::builder(), node.clone(), limits);
    // Without TCP_NODELAY a response split over two segments waits ~40 ms for a delayed ACK.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(router.serve_with_incoming(incoming));
    StandIn {
        node,
        address,
        barriers,
        write_failure,
        barrier_failure,
    }
}
