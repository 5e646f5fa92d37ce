//! Member and cluster identities, derived the way etcd does it in spirit: a
//! stable hash of the peer URLs and the cluster token, so every member computes
//! the same IDs from the same `--initial-cluster`.

use crate::raft::NodeId;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in part.iter() {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash = (hash ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The member ID for a member with these peer URLs in the cluster named by `token`.
pub fn member_id(peer_urls: &[String], token: &str) -> NodeId {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let joined = urls.join(",");
    let id = fnv1a(&[joined.as_bytes(), token.as_bytes()]);
    NodeId(if id == 0 { 1 } else { id })
}

/// The ID MemberAdd gives a new member: like [`member_id`], with the wall
/// clock mixed in (etcd does the same), so a member re-added later with the
/// same URLs gets a new ID and is never mistaken for the removed one.
pub fn new_member_id(peer_urls: &[String], token: &str, wall_ns: i64) -> NodeId {
    let base = member_id(peer_urls, token);
    let id = fnv1a(&[&base.0.to_be_bytes(), &wall_ns.to_be_bytes()]);
    NodeId(if id == 0 { 1 } else { id })
}

/// The cluster ID for a set of members.
pub fn cluster_id(members: &[NodeId], token: &str) -> u64 {
    let mut sorted: Vec<u64> = members.iter().map(|member| member.0).collect();
    sorted.sort_unstable();
    let bytes: Vec<u8> = sorted.iter().flat_map(|member| member.to_be_bytes()).collect();
    fnv1a(&[&bytes, token.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_urls_and_token_not_on_order() {
        let a = member_id(&["http://a:2380".into(), "http://b:2380".into()], "t");
        let b = member_id(&["http://b:2380".into(), "http://a:2380".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:2380".into()], "t"));
        assert_ne!(a, member_id(&["http://a:2380".into(), "http://b:2380".into()], "u"));
        assert_eq!(
            cluster_id(&[NodeId(1), NodeId(2)], "t"),
            cluster_id(&[NodeId(2), NodeId(1)], "t")
        );
        assert_ne!(
            cluster_id(&[NodeId(1), NodeId(2)], "t"),
            cluster_id(&[NodeId(1), NodeId(2)], "u")
        );
    }

    #[test]
    fn added_member_ids_depend_on_the_time_too() {
        let urls = ["http://a:2380".to_string()];
        assert_eq!(new_member_id(&urls, "t", 5), new_member_id(&urls, "t", 5));
        assert_ne!(new_member_id(&urls, "t", 5), new_member_id(&urls, "t", 6));
        assert_ne!(new_member_id(&urls, "t", 5), member_id(&urls, "t"));
    }
}
