//! Proves the unchanged server runs on the simulator: three members elect a
//! leader, take writes, survive the leader's isolation and later its crash
//! (losing unsynced data), and after healing every acknowledged write is
//! readable on every member.

use std::time::Duration;

use braid::mvcc::{PutRequest, RangeRequest, WriteRequest};
use braid::raft::NodeId;
use braid::server::ServerError;
use bytes::Bytes;
use rand::SeedableRng;

use crate::cluster::{Cluster, Handle};

async fn put(handle: &Handle, key: &str) -> Result<(), ServerError> {
    let request = WriteRequest::Put(PutRequest::new(Bytes::from(key.to_string()), Bytes::from_static(b"v")));
    handle.write(request).await.map(|_| ())
}

/// Writes through any live member until one acknowledges (bounded in time).
async fn put_somewhere(cluster: &Cluster, key: &str) -> bool {
    for _ in 0..100 {
        for id in cluster.members.keys() {
            if let Some(handle) = cluster.handle(*id) {
                if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(3), put(&handle, key)).await {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn read(handle: &Handle, key: &str) -> bool {
    if handle.linearizable_barrier().await.is_err() {
        return false;
    }
    let request = RangeRequest::new(Bytes::from(key.to_string()), Bytes::new());
    handle.store().range(&request).is_ok_and(|result| result.count == 1)
}

#[madsim::test]
async fn three_members_keep_acknowledged_writes_through_partition_and_crash() {
    let seed = madsim::runtime::Handle::current().seed();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let cluster = Cluster::start(3, seed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut acknowledged = Vec::new();
    for round in 0..20 {
        let key = format!("before-{round}");
        if put_somewhere(&cluster, &key).await {
            acknowledged.push(key);
        }
    }
    assert!(!acknowledged.is_empty(), "no write was acknowledged");

    let leader = cluster.leader().expect("a leader after the first writes");
    cluster.isolate(leader);
    for round in 0..10 {
        let key = format!("partitioned-{round}");
        if put_somewhere(&cluster, &key).await {
            acknowledged.push(key);
        }
    }
    cluster.heal(leader);

    let leader = {
        let mut found = None;
        for _ in 0..50 {
            found = cluster.leader();
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        found.expect("a leader after healing")
    };
    cluster.crash(leader, &mut rng);
    for round in 0..10 {
        let key = format!("crashed-{round}");
        if put_somewhere(&cluster, &key).await {
            acknowledged.push(key);
        }
    }
    cluster.restart(leader);
    tokio::time::sleep(Duration::from_secs(5)).await;

    println!(
        "seed {seed}: {} writes acknowledged, leader {leader} crashed",
        acknowledged.len()
    );
    for id in cluster.members.keys().copied().collect::<Vec<NodeId>>() {
        let handle = cluster.handle(id).expect("every member is running again");
        for key in &acknowledged {
            let mut found = false;
            for _ in 0..50 {
                if read(&handle, key).await {
                    found = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(found, "seed {seed}: member {id} lost acknowledged write {key}");
        }
    }
}

/// The design's load on a healthy cluster: the load writers for five
/// simulated seconds, then every acknowledged key read back. Prints the rate
/// reached (a figure for the report, not a gate).
#[madsim::test]
async fn load_writers_reach_the_design_load_and_lose_nothing() {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    use crate::workload::{missing_load_writes, run_load_writer};

    let seed = madsim::runtime::Handle::current().seed();
    let cluster = Cluster::start(3, seed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let urls = cluster.all_client_urls();
    let loader = madsim::runtime::Handle::current()
        .create_node()
        .name("loader")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
        .build();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let phase = Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + phase;
    let writers: Vec<_> = (0..96u64)
        .map(|id| {
            loader.spawn(run_load_writer(
                id,
                urls.clone(),
                seed ^ id,
                deadline,
                Arc::clone(&acknowledged),
            ))
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    println!(
        "seed {seed}: {} writes acknowledged in {phase:?}: {:.0} writes per simulated second",
        acknowledged.len(),
        acknowledged.len() as f64 / phase.as_secs_f64()
    );
    assert!(!acknowledged.is_empty(), "no load write was acknowledged");
    let read_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let missing = loader
        .spawn(missing_load_writes(urls, acknowledged, read_deadline))
        .await
        .unwrap()
        .expect("the keys are readable");
    assert!(missing.is_empty(), "acknowledged writes are missing: {missing:?}");
}
