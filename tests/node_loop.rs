//! Proves the node loop end to end without the gRPC API: one and three
//! members on loopback, writes through any member, linearizable reads, a
//! leader crash with a new leader elected, recovery from the WAL and state
//! file after restart, and alarms refusing puts and lease grants at apply.

#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use braid::io::{MemDir, SystemClock};
use braid::mvcc::{LeaseId, PutRequest, RangeRequest, WriteRequest, WriteResponse};
use braid::raft::{ConfState, NodeId};
use braid::server::alarms::{AlarmAction, AlarmChange, AlarmKind, AlarmMember};
use braid::server::lessor::{LeaseError, LeaseRequest, LeaseResponse};
use braid::server::node::{self, MembershipOptions, NodeOptions, Started};
use braid::server::ServerError;
use braid::wal::WalOptions;
use braid_proto::braidpb::peer_server::PeerServer;
use bytes::Bytes;
use rand::SeedableRng;

fn options(id: u64, members: &[u64], ports: &BTreeMap<u64, u16>) -> NodeOptions {
    NodeOptions {
        id: NodeId(id),
        cluster_id: 7,
        initial_conf: ConfState::new(members.iter().map(|member| NodeId(*member)), []),
        peer_urls: members
            .iter()
            .filter(|member| **member != id)
            .map(|member| (NodeId(*member), format!("http://127.0.0.1:{}", ports[member])))
            .collect(),
        tick: Duration::from_millis(20),
        election_ticks: 10,
        pre_vote: true,
        max_request_bytes: 1_572_864,
        request_timeout: Duration::from_secs(5),
        wal: WalOptions::default(),
        page_size: 4096,
        seed: id,
        membership: MembershipOptions::default(),
        maintenance: Default::default(),
        lease_checkpoint_interval: braid::server::lessor::DEFAULT_CHECKPOINT_INTERVAL,
        state_sync_interval: Duration::from_millis(100),
        state_sync_entries: 10_000,
        snapshot_count: 100_000,
        snapshot_catchup_entries: braid::server::node::DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
    }
}

struct Member {
    started: Started<MemDir>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(id: u64, members: &[u64], ports: &BTreeMap<u64, u16>, dir: MemDir) -> Member {
    let started = node::start(options(id, members, ports), dir, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    let service = PeerServer::new(started.peer_service.clone()).max_decoding_message_size(1 << 30);
    let address = format!("127.0.0.1:{}", ports[&id]).parse().unwrap();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve(address)
            .await;
    });
    Member { started, server }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn put(member: &Member, key: &str, value: &str) -> Result<i64, ServerError> {
    let request = WriteRequest::Put(PutRequest::new(
        Bytes::from(key.to_string()),
        Bytes::from(value.to_string()),
    ));
    match member.started.handle.write(request).await? {
        (WriteResponse::Put(result), _) => Ok(result.revision.0),
        (other, _) => panic!("unexpected response {other:?}"),
    }
}

async fn get(member: &Member, key: &str) -> Option<Bytes> {
    member.started.handle.linearizable_barrier().await.unwrap();
    let request = RangeRequest::new(Bytes::from(key.to_string()), Bytes::new());
    let result = member.started.handle.store().range(&request).unwrap();
    result.kvs.first().map(|kv| kv.value.clone())
}

/// Retries a write until the cluster has a leader (bounded).
async fn put_eventually(member: &Member, key: &str, value: &str) -> i64 {
    for _ in 0..200 {
        match put(member, key, value).await {
            Ok(revision) => return revision,
            Err(ServerError::NoLeader | ServerError::LeaderChanged | ServerError::Timeout) => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(error) => panic!("write failed: {error}"),
        }
    }
    panic!("no leader within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_writes_reads_and_recovers() {
    let ports: BTreeMap<u64, u16> = [(1, free_port())].into();
    let dir = MemDir::new();
    let member = start(1, &[1], &ports, dir.clone()).await;
    assert_eq!(
        put_eventually(&member, "a", "1").await,
        2,
        "the first write is revision 2"
    );
    assert_eq!(put(&member, "b", "2").await.unwrap(), 3);
    assert_eq!(get(&member, "a").await.as_deref(), Some(&b"1"[..]));
    member.started.task.abort();
    member.server.abort();
    let _ = member.started.task.await;
    // Restart on the same disk: everything acknowledged is there.
    let member = start(1, &[1], &ports, dir).await;
    assert!(member.started.recovered_entries > 0);
    assert_eq!(put_eventually(&member, "c", "3").await, 4);
    assert_eq!(get(&member, "b").await.as_deref(), Some(&b"2"[..]));
}

/// The apply loop screens every entry through the alarms before the lessor:
/// these requests skip the API's early quota check, so the refusals come
/// from applying the entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_refuse_puts_and_lease_grants_when_applied() {
    let ports: BTreeMap<u64, u16> = [(1, free_port())].into();
    let member = start(1, &[1], &ports, MemDir::new()).await;
    put_eventually(&member, "a", "1").await;
    let handle = &member.started.handle;
    let grant = || LeaseRequest::Grant {
        id: LeaseId(0),
        ttl_seconds: 60,
    };
    let nospace = |action| AlarmChange {
        action,
        member: AlarmMember {
            member_id: 1,
            alarm: AlarmKind::NoSpace,
        },
    };
    let (raised, _) = handle.change_alarm(nospace(AlarmAction::Activate)).await.unwrap();
    assert_eq!(raised, Some(nospace(AlarmAction::Activate).member));
    assert_eq!(put(&member, "b", "2").await, Err(ServerError::NoSpace));
    assert_eq!(handle.lease(grant()).await, Err(ServerError::NoSpace));
    // A revoke is not refused: the lessor answers it.
    assert_eq!(
        handle.lease(LeaseRequest::Revoke(LeaseId(99))).await,
        Err(ServerError::Lease(LeaseError::NotFound))
    );
    assert!(handle
        .lease(LeaseRequest::Leases)
        .await
        .is_ok_and(|(leases, _)| leases == LeaseResponse::Leases(vec![])));
    handle.change_alarm(nospace(AlarmAction::Deactivate)).await.unwrap();
    let (granted, _) = handle.lease(grant()).await.unwrap();
    assert!(
        matches!(granted, LeaseResponse::Granted { ttl_seconds: 60, .. }),
        "{granted:?}"
    );
    assert_eq!(put(&member, "b", "2").await, Ok(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_the_loss_of_the_leader() {
    let ids = [1u64, 2, 3];
    let ports: BTreeMap<u64, u16> = ids.iter().map(|id| (*id, free_port())).collect();
    let dirs: BTreeMap<u64, MemDir> = ids.iter().map(|id| (*id, MemDir::new())).collect();
    let mut members = BTreeMap::new();
    for id in ids {
        members.insert(id, start(id, &ids, &ports, dirs[&id].clone()).await);
    }
    // Writes through every member, leader or not.
    let mut acknowledged = Vec::new();
    for (round, id) in ids.iter().cycle().take(30).enumerate() {
        let key = format!("key-{round}");
        put_eventually(&members[id], &key, "v").await;
        acknowledged.push(key);
    }
    for id in ids {
        for key in &acknowledged {
            assert!(get(&members[&id], key).await.is_some(), "member {id} lacks {key}");
        }
    }
    // Crash the leader.
    let leader = ids
        .iter()
        .copied()
        .find(|id| members[id].started.handle.status().is_leader)
        .expect("a leader");
    let crashed = members.remove(&leader).unwrap();
    crashed.started.task.abort();
    crashed.server.abort();
    let _ = crashed.started.task.await;
    // A power failure too: the state file's deferred commits are lost (it
    // reopens at its last durable commit) and the WAL brings them back.
    dirs[&leader].crash(&mut rand::rngs::SmallRng::seed_from_u64(7));
    let survivor = members.keys().next().copied().unwrap();
    put_eventually(&members[&survivor], "after-crash", "v").await;
    for key in &acknowledged {
        assert!(get(&members[&survivor], key).await.is_some(), "acknowledged {key} lost");
    }
    // The crashed member comes back on its disk and catches up.
    let restarted = start(leader, &ids, &ports, dirs[&leader].clone()).await;
    for _ in 0..200 {
        if restarted.started.handle.store().consistent_index().index
            >= members[&survivor].started.handle.store().consistent_index().index
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(get(&restarted, "after-crash").await.as_deref(), Some(&b"v"[..]));
    for key in &acknowledged {
        assert!(get(&restarted, key).await.is_some(), "restarted member lacks {key}");
    }
}
