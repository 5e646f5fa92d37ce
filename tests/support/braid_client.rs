//! braid processes with the crates.io `etcd-client` crate connected to them:
//! one member or a 3-member cluster on loopback, for end-to-end tests.

#![allow(dead_code)]

use std::time::Duration;

use etcd_client::Client;

use super::process::{free_port, temp_dir, Server};

pub const BRAID: &str = env!("CARGO_BIN_EXE_braid");

/// A one-member braid (not yet known to be ready: `connect` waits).
pub fn start_braid(label: &str) -> Server {
    let (client, peer) = (free_port(), free_port());
    let data_dir = temp_dir(label);
    let args = Server::member_args(
        "default",
        &data_dir,
        client,
        peer,
        &format!("default=http://127.0.0.1:{peer}"),
    );
    Server::start(BRAID, label, client, peer, args)
}

/// Members `m1`, `m2`, … of one braid cluster.
pub fn start_braid_cluster(size: usize) -> Vec<Server> {
    let names: Vec<String> = (1..=size).map(|index| format!("m{index}")).collect();
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = names
        .iter()
        .zip(&ports)
        .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
        .collect();
    let initial = initial.join(",");
    names
        .iter()
        .zip(&ports)
        .map(|(name, (client, peer))| {
            let data_dir = temp_dir(name);
            let args = Server::member_args(name, &data_dir, *client, *peer, &initial);
            Server::start(BRAID, name, *client, *peer, args)
        })
        .collect()
}

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
