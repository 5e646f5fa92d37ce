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
}
