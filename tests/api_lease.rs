//! Proves etcd's Lease service works through the crates.io `etcd-client` crate
//! against real braid processes: grant (server- and client-chosen ids, minimum
//! and maximum TTL), keepalive, time-to-live with keys, the lease list, revoke
//! deleting keys in one revision, puts with unknown leases, expiry deleting
//! keys, leases surviving a restart, and a 3-member cluster where followers
//! forward keepalives to the leader and a new leader keeps the leases.

#![cfg(not(madsim))]

mod support;

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use support::braid_client::{connect, grpc_message, roles};
use support::process::{Server, BRAID};
use tonic::Code;

fn with_keys() -> Option<LeaseTimeToLiveOptions> {
    Some(LeaseTimeToLiveOptions::new().with_keys())
}

/// Keepalives of `id` on one stream: the crate sends the first itself and
/// turns its TTL 0 (etcd's answer for a missing lease) into an error.
async fn keep_alive_once(client: &mut Client, id: i64) -> (i64, i64) {
    let (mut keeper, mut stream) = match client.lease_keep_alive(id).await {
        Ok(stream) => stream,
        Err(etcd_client::Error::LeaseKeepAliveError(message)) if message == "lease not found" => return (id, 0),
        Err(error) => panic!("keepalive of {id} failed: {error:?}"),
    };
    keeper.keep_alive().await.unwrap();
    let response = stream.message().await.unwrap().expect("a keepalive answer");
    (response.id(), response.ttl())
}

fn sorted_ids(ids: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids
}

async fn lease_ids(client: &mut Client) -> Vec<i64> {
    sorted_ids(client.leases().await.unwrap().leases().iter().map(|lease| lease.id()))
}

async fn key_count(client: &mut Client, prefix: &str) -> i64 {
    let options = GetOptions::new().with_prefix().with_count_only();
    client.get(prefix, Some(options)).await.unwrap().count()
}

#[tokio::test]
async fn leases_work_through_the_etcd_client_crate() {
    let mut server = Server::start_single(BRAID, "lease");
    let mut client = connect(&server).await;

    let granted = client.lease_grant(60, None).await.unwrap();
    let id = granted.id();
    assert!(id > 0, "server-chosen ids are positive: {id}");
    assert_eq!(granted.ttl(), 60);
    assert!(granted.header().unwrap().revision() > 0);
    // The test flags (50 ms heartbeat, 10 ticks) make the minimum TTL 1 s.
    let chosen = client
        .lease_grant(0, Some(LeaseGrantOptions::new().with_id(1234)))
        .await
        .unwrap();
    assert_eq!((chosen.id(), chosen.ttl()), (1234, 1));
    let error = client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(1234)))
        .await
        .unwrap_err();
    let exists = (Code::FailedPrecondition, "etcdserver: lease already exists".to_string());
    assert_eq!(grpc_message(error), exists);
    let error = client.lease_grant(9_000_000_001, None).await.unwrap_err();
    let too_large = (Code::OutOfRange, "etcdserver: too large lease TTL".to_string());
    assert_eq!(grpc_message(error), too_large);
    let largest = client.lease_grant(9_000_000_000, None).await.unwrap();
    assert_ne!(largest.id(), id);

    let put = client
        .put("lk1", "a", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let before_revoke = put.header().unwrap().revision();
    client
        .put("lk2", "b", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let error = client
        .put("lk3", "c", Some(PutOptions::new().with_lease(777)))
        .await
        .unwrap_err();
    let not_found = (Code::NotFound, "etcdserver: requested lease not found".to_string());
    assert_eq!(grpc_message(error), not_found);

    let alive = client.lease_time_to_live(id, with_keys()).await.unwrap();
    assert_eq!((alive.id(), alive.granted_ttl()), (id, 60));
    assert!((55..=60).contains(&alive.ttl()), "remaining {}", alive.ttl());
    assert_eq!(alive.keys(), [b"lk1".to_vec(), b"lk2".to_vec()]);
    let unknown = client.lease_time_to_live(4321, None).await.unwrap();
    assert_eq!((unknown.id(), unknown.ttl()), (4321, -1));

    assert_eq!(keep_alive_once(&mut client, id).await, (id, 60));
    assert_eq!(keep_alive_once(&mut client, 4321).await, (4321, 0));
    // One stream serves many keepalives.
    let (mut keeper, mut stream) = client.lease_keep_alive(id).await.unwrap();
    for _ in 0..3 {
        keeper.keep_alive().await.unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap().ttl(), 60);
    }
    drop((keeper, stream));

    assert_eq!(lease_ids(&mut client).await, sorted_ids([id, 1234, largest.id()]));

    // Revoking deletes both keys in one revision.
    let revoked = client.lease_revoke(id).await.unwrap();
    assert_eq!(revoked.header().unwrap().revision(), before_revoke + 2);
    assert_eq!(key_count(&mut client, "lk").await, 0);
    let error = client.lease_revoke(id).await.unwrap_err();
    assert_eq!(grpc_message(error), not_found);
    assert_eq!(keep_alive_once(&mut client, id).await, (id, 0));

    // The lease table is on disk with the applied index: a kill -9 loses nothing.
    server.kill();
    server.spawn();
    let mut client = connect(&server).await;
    let ids = lease_ids(&mut client).await;
    assert!(
        ids.contains(&largest.id()) && !ids.contains(&id),
        "after restart: {ids:?}"
    );
    let restored = client.lease_time_to_live(largest.id(), None).await.unwrap();
    assert_eq!(restored.granted_ttl(), 9_000_000_000);
}

#[tokio::test]
async fn an_expired_lease_deletes_its_keys_in_one_revision() {
    let server = Server::start_single(BRAID, "lease-expiry");
    let mut client = connect(&server).await;
    let id = client.lease_grant(1, None).await.unwrap().id();
    for key in ["ek1", "ek2", "ek3"] {
        client
            .put(key, "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
    }
    let last_put = client.get("ek", None).await.unwrap().header().unwrap().revision();
    let started = Instant::now();
    while key_count(&mut client, "ek").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a 1 s lease still holds its keys after 10 s; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let revision = client.get("ek", None).await.unwrap().header().unwrap().revision();
    assert_eq!(revision, last_put + 1, "three deletes, one revision");
    assert!(!lease_ids(&mut client).await.contains(&id));
    assert_eq!(client.lease_time_to_live(id, None).await.unwrap().ttl(), -1);
}

#[tokio::test]
async fn followers_forward_keepalives_and_a_new_leader_keeps_the_leases() {
    let mut members = Server::start_cluster(BRAID, &["m1", "m2", "m3"]);
    let mut clients = Vec::new();
    for member in &members {
        clients.push(connect(member).await);
    }
    let (leader, followers) = roles(&mut clients)
        .await
        .expect("a leader after every member took a write");
    let (first, second) = (followers[0], followers[1]);

    let id = clients[first].lease_grant(60, None).await.unwrap().id();
    clients[second]
        .put("fk", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    assert_eq!(keep_alive_once(&mut clients[first], id).await, (id, 60));
    assert_eq!(keep_alive_once(&mut clients[second], 999).await, (999, 0));
    let alive = clients[second].lease_time_to_live(id, with_keys()).await.unwrap();
    assert!((55..=60).contains(&alive.ttl()), "remaining {}", alive.ttl());
    assert_eq!(alive.keys(), [b"fk".to_vec()]);
    for client in clients.iter_mut() {
        // A linearizable read first: the member has applied the grant.
        client.get("fk", None).await.unwrap();
        assert_eq!(lease_ids(client).await, vec![id]);
    }

    // The leader dies: the new one neither drops nor shortens the lease.
    members[leader].kill();
    let survivors: Vec<usize> = followers.clone();
    let started = Instant::now();
    let remaining = loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new leader answered within 20 s"
        );
        match clients[survivors[0]].lease_time_to_live(id, with_keys()).await {
            Ok(answer) if answer.ttl() > 0 => break answer,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!((50..=60).contains(&remaining.ttl()), "remaining {}", remaining.ttl());
    assert_eq!(remaining.keys(), [b"fk".to_vec()]);
    assert_eq!(keep_alive_once(&mut clients[survivors[1]], id).await, (id, 60));
    clients[survivors[1]].lease_revoke(id).await.unwrap();
    assert_eq!(key_count(&mut clients[survivors[0]], "fk").await, 0);
}
