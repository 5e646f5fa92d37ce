//! The crates.io `etcd-client` crate connected to braid processes, for
//! end-to-end tests.

#![allow(dead_code)]

use std::time::Duration;

use etcd_client::Client;

use super::process::Server;

/// A client of `server` alone, once it accepts a write (bounded: 10 s).
pub async fn connect(server: &Server) -> Client {
    for _ in 0..100 {
        if let Ok(mut client) = Client::connect([server.endpoint()], None).await {
            if client.put("probe", "1", None).await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} did not accept the etcd-client crate within 10 s; log:\n{}",
        server.name,
        server.log()
    );
}

pub fn grpc_message(error: etcd_client::Error) -> (tonic::Code, String) {
    match error {
        etcd_client::Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// The member indexes of the leader and of the others, as the members report it.
pub async fn roles(clients: &mut [Client]) -> Option<(usize, Vec<usize>)> {
    let mut leader = None;
    let mut followers = Vec::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let status = client.status().await.ok()?;
        if status.leader() == status.header()?.member_id() {
            leader = Some(index);
        } else {
            followers.push(index);
        }
    }
    leader.map(|leader| (leader, followers))
}
