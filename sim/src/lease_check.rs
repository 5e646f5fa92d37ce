//! Lease clients under faults, checking etcd's lease promises as a client
//! sees them, on the real gRPC API:
//! - **never early**: a key attached to a lease is there when read (a
//!   linearizable Range that returned) before half the TTL has passed since a
//!   grant or keepalive was sent that answered with that TTL. Half, not all:
//!   a member's clock may run up to 30% fast in the simulation, and expiry is
//!   measured on the leader's clock, as in etcd;
//! - **revoke deletes**: once a LeaseRevoke is acknowledged, a linearizable
//!   read no longer finds the lease's key.
//!
//! Any request may fail or time out under faults; a client then simply moves
//! on to its next lease. Times are the simulation's global clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_proto::etcdserverpb::kv_client::KvClient;
use braid_proto::etcdserverpb::lease_client::LeaseClient;
use braid_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// What the lease clients did and found.
#[derive(Default, Debug)]
pub struct LeaseLog {
    pub granted: u64,
    pub keepalives: u64,
    pub revoked: u64,
    /// Reads that were checked against a live lease or an acknowledged revoke.
    pub checked_reads: u64,
    pub violations: Vec<String>,
}

struct Session {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
}

async fn connect(url: &str) -> Option<Session> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .timeout(REQUEST_TIMEOUT);
    let channel = tokio::time::timeout(REQUEST_TIMEOUT, endpoint.connect())
        .await
        .ok()?
        .ok()?;
    Some(Session {
        kv: KvClient::new(channel.clone()),
        lease: LeaseClient::new(channel),
    })
}

/// Whether `key` exists, by a linearizable read; `None` if the read failed.
async fn exists(session: &mut Session, key: &str) -> Option<bool> {
    let request = RangeRequest {
        key: Bytes::from(key.to_string()),
        ..RangeRequest::default()
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, session.kv.range(request))
        .await
        .ok()?
        .ok()?;
    Some(response.into_inner().count > 0)
}

/// One keepalive on a fresh stream; the TTL it answered (0: lease gone).
async fn keep_alive_once(session: &mut Session, id: i64) -> Option<i64> {
    let (requests, receiver) = tokio::sync::mpsc::channel(1);
    requests.send(LeaseKeepAliveRequest { id }).await.ok()?;
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|request| (request, receiver))
    });
    let call = async {
        let mut responses = session.lease.lease_keep_alive(stream).await.ok()?.into_inner();
        responses.message().await.ok()?.map(|response| response.ttl)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call).await.ok()?
}

/// Runs leases until `deadline`; see the module docs.
pub async fn run_lease_client(
    id: u64,
    urls: Vec<String>,
    seed: u64,
    deadline: tokio::time::Instant,
    log: Arc<Mutex<LeaseLog>>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut number = 0u64;
    while tokio::time::Instant::now() < deadline {
        number += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
        let url = &urls[rng.gen_range(0..urls.len())];
        let Some(mut session) = connect(url).await else {
            continue;
        };
        let key = format!("lease/{id}/{number}");
        let requested_ttl = [2, 3, 5][rng.gen_range(0..3)];
        let sent = tokio::time::Instant::now();
        let grant = LeaseGrantRequest {
            ttl: requested_ttl,
            id: 0,
        };
        let Ok(Ok(granted)) = tokio::time::timeout(REQUEST_TIMEOUT, session.lease.lease_grant(grant)).await else {
            continue;
        };
        let granted = granted.into_inner();
        log.lock().unwrap().granted += 1;
        let mut alive_until = sent + Duration::from_secs(granted.ttl.max(0) as u64) / 2;
        let put = PutRequest {
            key: Bytes::from(key.clone()),
            value: Bytes::from_static(b"leased"),
            lease: granted.id,
            ..PutRequest::default()
        };
        if !matches!(
            tokio::time::timeout(REQUEST_TIMEOUT, session.kv.put(put)).await,
            Ok(Ok(_))
        ) {
            continue;
        }
        for _ in 0..rng.gen_range(0..4) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(200..900))).await;
            let sent = tokio::time::Instant::now();
            if let Some(ttl) = keep_alive_once(&mut session, granted.id).await {
                if ttl > 0 {
                    log.lock().unwrap().keepalives += 1;
                    alive_until = alive_until.max(sent + Duration::from_secs(ttl as u64) / 2);
                }
            }
            let found = exists(&mut session, &key).await;
            let returned = tokio::time::Instant::now();
            if returned < alive_until {
                let mut log = log.lock().unwrap();
                match found {
                    Some(true) => log.checked_reads += 1,
                    Some(false) => log.violations.push(format!(
                        "lease {:x} (TTL {} s) expired early: {key} was gone {:?} before half its TTL had passed \
                         since the last grant or keepalive",
                        granted.id,
                        granted.ttl,
                        alive_until - returned
                    )),
                    None => {}
                }
            }
        }
        if rng.gen_bool(0.5) {
            let revoke = LeaseRevokeRequest { id: granted.id };
            if matches!(
                tokio::time::timeout(REQUEST_TIMEOUT, session.lease.lease_revoke(revoke)).await,
                Ok(Ok(_))
            ) {
                log.lock().unwrap().revoked += 1;
                if let Some(found) = exists(&mut session, &key).await {
                    let mut log = log.lock().unwrap();
                    log.checked_reads += 1;
                    if found {
                        log.violations.push(format!(
                            "lease {:x} was revoked (acknowledged) but {key} is still there",
                            granted.id
                        ));
                    }
                }
            }
        }
    }
}
