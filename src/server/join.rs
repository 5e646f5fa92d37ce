//! Joining an existing cluster (`--initial-cluster-state existing`): ask the
//! peers named in `--initial-cluster` for the cluster ID and member table, and
//! find this member in it by its peer URLs, as etcd's
//! `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs` do. The ID
//! comes from the cluster (MemberAdd chose it), never from local flags.

use braid_proto::braidpb;
use braid_proto::braidpb::peer_client::PeerClient;

use super::membership::Member;
use crate::raft::NodeId;

/// What a running member told us about its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCluster {
    pub cluster_id: u64,
    pub members: Vec<Member>,
}

impl RemoteCluster {
    /// The member whose peer URLs are exactly `own_peer_urls` (order aside).
    pub fn find_self(&self, own_peer_urls: &[String]) -> Result<&Member, String> {
        let mut wanted = own_peer_urls.to_vec();
        wanted.sort();
        self.members
            .iter()
            .find(|member| {
                let mut urls = member.peer_urls.clone();
                urls.sort();
                urls == wanted
            })
            .ok_or_else(|| {
                format!(
                    "error validating peerURLs: no member of the existing cluster has peer URLs {own_peer_urls:?} \
                     (add this member with 'etcdctl member add' first)"
                )
            })
    }
}

/// Asks each peer URL in turn; the first that answers wins.
pub async fn fetch_cluster(peer_urls: &[String]) -> Result<RemoteCluster, String> {
    let mut failures = Vec::new();
    for url in peer_urls {
        match fetch_from(url).await {
            Ok(cluster) => return Ok(cluster),
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    Err(format!(
        "cannot fetch cluster info from peer urls: {}",
        if failures.is_empty() {
            "no other member in --initial-cluster".to_string()
        } else {
            failures.join("; ")
        }
    ))
}

async fn fetch_from(url: &str) -> Result<RemoteCluster, String> {
    let mut client = PeerClient::connect(url.to_string())
        .await
        .map_err(|error| error.to_string())?;
    let response = client
        .members(braidpb::MembersRequest {})
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    let members = response
        .members
        .into_iter()
        .map(|member| Member {
            id: NodeId(member.id),
            name: member.name,
            peer_urls: member.peer_urls,
            client_urls: member.client_urls,
            is_learner: member.is_learner,
        })
        .collect();
    Ok(RemoteCluster {
        cluster_id: response.cluster_id,
        members,
    })
}
