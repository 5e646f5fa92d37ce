//! gRPC connections to the cluster, and finding its leader through
//! Maintenance.Status (what `etcdctl endpoint status` reads), so braid and
//! etcd are found the same way.

use std::time::Duration;

use braid_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use braid_proto::etcdserverpb::{StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

use crate::options::{Options, Target};

/// How long one connection attempt or one Status call may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn connect(url: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| format!("{url}: {error}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    endpoint
        .connect()
        .await
        .map_err(|error| format!("cannot connect to {url}: {error}"))
}

pub async fn status(url: &str) -> Result<StatusResponse, String> {
    let channel = connect(url).await?;
    let mut client = MaintenanceClient::new(channel);
    match tokio::time::timeout(CONNECT_TIMEOUT, client.status(StatusRequest {})).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(format!("{url}: Status failed: {status}")),
        Err(_) => Err(format!("{url}: Status took longer than {CONNECT_TIMEOUT:?}")),
    }
}

/// The endpoint whose member reports itself leader, or why none does.
pub async fn find_leader(urls: &[String]) -> Result<String, String> {
    let mut problems = Vec::new();
    for url in urls {
        match status(url).await {
            Ok(response) => {
                let member = response.header.as_ref().map_or(0, |header| header.member_id);
                if response.leader != 0 && response.leader == member {
                    return Ok(url.clone());
                }
                problems.push(format!("{url}: member {member:x} follows {:x}", response.leader));
            }
            Err(problem) => problems.push(problem),
        }
    }
    Err(format!("no endpoint reports itself leader ({})", problems.join("; ")))
}

/// The endpoints the load goes to: all of them, or only the leader.
pub async fn targets(options: &Options) -> Result<Vec<String>, String> {
    match options.target {
        Target::All => Ok(options.endpoints.clone()),
        Target::Leader => Ok(vec![find_leader(&options.endpoints).await?]),
    }
}

/// `options.connections` channels; channel `i` goes to target `i % targets.len()`.
pub async fn channels(options: &Options, targets: &[String]) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(options.connections);
    for index in 0..options.connections {
        channels.push(connect(&targets[index % targets.len()]).await?);
    }
    Ok(channels)
}

/// The `status` workload: one line per endpoint; succeeds once some member leads.
pub async fn print_status(options: &Options) -> Result<(), String> {
    for url in &options.endpoints {
        match status(url).await {
            Ok(response) => {
                let header = response.header.unwrap_or_default();
                eprintln!(
                    "{url}: member {:x} leader {:x} term {} raft index {} revision {} version {}",
                    header.member_id,
                    response.leader,
                    response.raft_term,
                    response.raft_index,
                    header.revision,
                    response.version
                );
            }
            Err(problem) => eprintln!("{problem}"),
        }
    }
    let leader = find_leader(&options.endpoints).await?;
    println!("{leader}");
    Ok(())
}
