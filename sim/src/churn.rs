//! Membership churn: the etcd runbook for replacing a member, as a nemesis
//! action. Through the leader, remove a follower (which stops itself), then add
//! a new voter with a fresh disk and address and start it joining an existing
//! cluster; on most seeds the leader's log is compacted by then, so it catches
//! up by snapshot. Done only while no other fault is active, so a quorum of
//! the new configuration is always up.

use std::time::Duration;

use braid::raft::{ConfState, NodeId};
use braid::server::membership::MemberRequest;
use rand::rngs::SmallRng;
use rand::Rng;

use crate::cluster::Cluster;

/// How long one membership change may take before it counts as failed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the leader's applied member table lists `id` (polled up to `CHANGE_TIMEOUT`).
async fn listed(
    cluster: &Cluster,
    leader: NodeId,
    wanted: impl Fn(&braid::server::membership::Member) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if let Some(handle) = cluster.handle(leader) {
            if handle.members().iter().any(&wanted) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Replaces a random follower with a new member; returns (removed, added).
/// An `Err` says where the runbook stopped (the cluster is left consistent:
/// a member is retired only once the leader's table no longer lists it).
pub async fn replace_member(cluster: &mut Cluster, rng: &mut SmallRng) -> Result<(NodeId, NodeId), String> {
    let leader = cluster.leader().ok_or("no leader")?;
    let handle = cluster.handle(leader).ok_or("the leader is not running")?;
    let followers: Vec<NodeId> = cluster.members.keys().copied().filter(|id| *id != leader).collect();
    if followers.len() < 2 {
        return Err("too few members to replace one".to_string());
    }
    let victim = followers[rng.gen_range(0..followers.len())];
    let removal = tokio::time::timeout(
        CHANGE_TIMEOUT,
        handle.change_membership(MemberRequest::Remove { id: victim }),
    );
    let removed = matches!(removal.await, Ok(Ok(_)));
    // An answer that did not come may still have happened: ask the table.
    if !removed && listed(cluster, leader, |member| member.id == victim).await {
        return Err(format!("removing member {} failed", victim.0));
    }
    cluster.retire(victim);

    let ip = cluster.next_ip();
    let url = Cluster::peer_url(ip);
    let request = MemberRequest::Add {
        peer_urls: vec![url.clone()],
        is_learner: false,
    };
    let added = match tokio::time::timeout(CHANGE_TIMEOUT, handle.change_membership(request)).await {
        Ok(Ok(answer)) => Some(answer.member.id),
        _ => None,
    };
    let added = match added {
        Some(id) => id,
        None if listed(cluster, leader, |member| member.peer_urls.contains(&url)).await => handle
            .members()
            .iter()
            .find(|member| member.peer_urls.contains(&url))
            .map(|member| member.id)
            .ok_or("the added member vanished")?,
        None => return Err(format!("adding a member at {url} failed after removing {}", victim.0)),
    };
    let peers = cluster
        .members
        .values()
        .map(|member| (member.id, Cluster::peer_url(member.ip)))
        .collect();
    cluster.launch(added, ip, ConfState::default(), peers);
    Ok((victim, added))
}
