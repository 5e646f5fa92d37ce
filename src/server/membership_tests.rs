//! The member table: changes follow Raft's validity rules, records survive a
//! reload from the backend, codecs round-trip and refuse malformed bytes, and
//! etcd's pre-proposal checks give etcd's errors.

use super::*;
use crate::mvcc::{Backend, MemBackend};

fn change(kind: ConfChangeKind, node: u64) -> ConfChange {
    ConfChange {
        kind,
        node: NodeId(node),
        context: Bytes::new(),
    }
}

fn member(id: u64, name: &str, port: u16) -> Member {
    Member {
        id: NodeId(id),
        name: name.to_string(),
        peer_urls: vec![format!("http://127.0.0.1:{port}")],
        client_urls: if name.is_empty() {
            Vec::new()
        } else {
            vec![format!("http://127.0.0.1:{}", port - 1)]
        },
        is_learner: false,
    }
}

/// Three started voters 1, 2, 3.
fn three() -> MemberTable {
    let mut table = MemberTable::default();
    for id in 1..=3 {
        let _ = table.apply_conf_change(
            &change(ConfChangeKind::AddVoter, id),
            Some(&member(id, &format!("n{id}"), 2380 + id as u16 * 10)),
        );
    }
    table
}

#[test]
fn changes_follow_raft_and_skip_what_raft_skips() {
    let mut table = three();
    assert_eq!(table.conf_state(), ConfState::new([1, 2, 3].map(NodeId), []));
    // Adding an existing voter again is skipped by Raft, so by the table too.
    assert!(table
        .apply_conf_change(&change(ConfChangeKind::AddVoter, 1), None)
        .is_empty());
    let learner = member(4, "", 2420);
    let writes = table.apply_conf_change(&change(ConfChangeKind::AddLearner, 4), Some(&learner));
    assert_eq!(writes.len(), 1);
    assert!(table.member(NodeId(4)).unwrap().is_learner);
    assert!(!table.member(NodeId(4)).unwrap().is_started());
    // Promotion keeps the attributes.
    let _ = table.apply_conf_change(&change(ConfChangeKind::AddVoter, 4), None);
    assert_eq!(
        table.member(NodeId(4)).unwrap(),
        &Member {
            is_learner: false,
            ..learner
        }
    );
    let writes = table.apply_conf_change(&change(ConfChangeKind::RemoveVoter, 2), None);
    assert_eq!(writes.len(), 2);
    assert!(table.is_removed(NodeId(2)));
    assert!(table.member(NodeId(2)).is_none());
    assert!(table
        .apply_conf_change(&change(ConfChangeKind::RemoveVoter, 2), None)
        .is_empty());
    assert_eq!(table.conf_state(), ConfState::new([1, 3, 4].map(NodeId), []));
}

#[test]
fn attributes_change_only_known_members() {
    let mut table = three();
    let publish = AttributeChange::Publish {
        id: NodeId(2),
        name: "renamed".to_string(),
        client_urls: vec!["http://10.0.0.2:2379".to_string()],
    };
    assert_eq!(table.apply_attributes(&publish).len(), 1);
    assert_eq!(table.member(NodeId(2)).unwrap().name, "renamed");
    let update = AttributeChange::PeerUrls {
        id: NodeId(2),
        peer_urls: vec!["http://10.0.0.2:2380".to_string()],
    };
    let _ = table.apply_attributes(&update);
    assert_eq!(table.member(NodeId(2)).unwrap().peer_urls, ["http://10.0.0.2:2380"]);
    let unknown = AttributeChange::PeerUrls {
        id: NodeId(9),
        peer_urls: Vec::new(),
    };
    assert!(table.apply_attributes(&unknown).is_empty());
}

#[tokio::test]
async fn the_table_survives_a_reload_from_the_backend() {
    let backend = MemBackend::new();
    let mut table = MemberTable::default();
    let mut batch = WriteBatch::new();
    for id in 1..=3 {
        batch.extend(table.apply_conf_change(
            &change(ConfChangeKind::AddVoter, id),
            Some(&member(id, &format!("n{id}"), 2380 + id as u16)),
        ));
    }
    batch.extend(table.apply_conf_change(&change(ConfChangeKind::AddLearner, 7), Some(&member(7, "", 2400))));
    batch.extend(table.apply_conf_change(&change(ConfChangeKind::RemoveVoter, 3), None));
    backend.apply(batch).await.unwrap();
    assert_eq!(MemberTable::load(&backend.read()).unwrap(), table);
    assert!(MemberTable::load(&MemBackend::new().read())
        .unwrap()
        .members()
        .is_empty());

    let mut corrupt = WriteBatch::new();
    corrupt.put(member_key(NodeId(1)), Bytes::from_static(b"junk"));
    backend.apply(corrupt).await.unwrap();
    assert!(MemberTable::load(&backend.read()).is_err());
}

#[test]
fn codecs_round_trip_and_refuse_every_truncation() {
    let origin = Origin { member: 7, request: 9 };
    let full = Member {
        is_learner: true,
        ..member(5, "n5", 2450)
    };
    let context = encode_context(origin, &full);
    assert_eq!(decode_context(context.clone()), Some((origin, full.clone())));
    assert_eq!(decode_context(Bytes::new()), None);
    assert_eq!(decode_member(encode_member(&full)), Some(full));
    let changes = [
        AttributeChange::Publish {
            id: NodeId(5),
            name: "n5".to_string(),
            client_urls: vec!["http://a:1".to_string(), "http://b:2".to_string()],
        },
        AttributeChange::PeerUrls {
            id: NodeId(6),
            peer_urls: vec!["http://c:3".to_string()],
        },
    ];
    for attribute in &changes {
        let data = encode_attributes(origin, attribute);
        assert!(is_attribute_entry(&data));
        assert_eq!(decode_attributes(data.clone()), Some((origin, attribute.clone())));
        for length in 0..data.len() {
            assert_eq!(
                decode_attributes(data.slice(..length)),
                None,
                "prefix of {length} bytes"
            );
        }
        let mut longer = data.to_vec();
        longer.push(0);
        assert_eq!(decode_attributes(Bytes::from(longer)), None);
    }
    for length in 0..context.len() {
        assert_eq!(
            decode_context(context.slice(..length)),
            None,
            "prefix of {length} bytes"
        );
    }
    // A client proposal (format version 1) is never taken for a member entry.
    assert!(!is_attribute_entry(&[1, 0, 0]));
}

#[test]
fn checks_give_etcds_errors() {
    let mut table = three();
    let url = |port: u16| vec![format!("http://127.0.0.1:{port}")];
    assert_eq!(table.check_add(&[], false, true), Err(MembershipError::BadUrls));
    for bad in [
        "127.0.0.1:2380",
        "http://127.0.0.1",
        "http://:2380",
        "http://h:2380/path",
        "ftp://h:1",
    ] {
        assert_eq!(
            table.check_add(&[bad.to_string()], false, true),
            Err(MembershipError::BadUrls),
            "{bad}"
        );
    }
    assert_eq!(
        table.check_add(&url(2390), false, true),
        Err(MembershipError::PeerUrlExists)
    );
    assert_eq!(table.check_add(&url(2500), false, true), Ok(()));
    assert_eq!(table.check_add(&url(2500), true, true), Ok(()));
    let _ = table.apply_conf_change(&change(ConfChangeKind::AddLearner, 8), Some(&member(8, "", 2480)));
    assert_eq!(
        table.check_add(&url(2500), true, true),
        Err(MembershipError::TooManyLearners)
    );

    // Two unstarted voters out of five: one more voter would leave 3 of 6 started.
    let _ = table.apply_conf_change(&change(ConfChangeKind::AddVoter, 9), Some(&member(9, "", 2490)));
    assert_eq!(table.check_add(&url(2500), false, true), Ok(()));
    let _ = table.apply_conf_change(&change(ConfChangeKind::AddVoter, 10), Some(&member(10, "", 2510)));
    assert_eq!(
        table.check_add(&url(2500), false, true),
        Err(MembershipError::NotEnoughStarted)
    );
    assert_eq!(table.check_add(&url(2500), false, false), Ok(()));
    // Removing a started voter leaves 2 started of 4.
    assert_eq!(
        table.check_remove(NodeId(1), true),
        Err(MembershipError::NotEnoughStarted)
    );
    assert_eq!(table.check_remove(NodeId(10), true), Ok(()));
    assert_eq!(table.check_remove(NodeId(8), true), Ok(()));
    assert_eq!(table.check_remove(NodeId(77), false), Err(MembershipError::NotFound));

    let table = {
        let mut table = three();
        let _ = table.apply_conf_change(&change(ConfChangeKind::AddLearner, 8), Some(&member(8, "", 2480)));
        table
    };
    assert_eq!(
        table.check_promote(NodeId(8), Some(89), 100, true),
        Err(MembershipError::LearnerNotReady)
    );
    assert_eq!(table.check_promote(NodeId(8), Some(90), 100, true), Ok(()));
    assert_eq!(
        table.check_promote(NodeId(2), Some(100), 100, true),
        Err(MembershipError::NotLearner)
    );
    assert_eq!(
        table.check_promote(NodeId(77), None, 100, true),
        Err(MembershipError::NotFound)
    );
    assert_eq!(
        table.check_update(NodeId(2), &url(2410)),
        Err(MembershipError::PeerUrlExists)
    );
    assert_eq!(table.check_update(NodeId(2), &url(2400)), Ok(()));
    assert_eq!(
        table.check_update(NodeId(77), &url(2999)),
        Err(MembershipError::NotFound)
    );
}

#[test]
fn strict_checks_count_connected_voters_as_etcd_does() {
    let table = {
        let mut table = three();
        let _ = table.apply_conf_change(&change(ConfChangeKind::AddLearner, 8), Some(&member(8, "", 2480)));
        table
    };
    let own = NodeId(1);
    let everyone = |_: NodeId| true;
    let not_3 = |peer: NodeId| peer != NodeId(3);
    // An add needs every voter connected; the learner does not count.
    assert_eq!(table.check_add_connectivity(own, everyone), Ok(()));
    assert_eq!(
        table.check_add_connectivity(own, not_3),
        Err(MembershipError::Unhealthy)
    );
    assert_eq!(table.check_add_connectivity(own, |peer| peer != NodeId(8)), Ok(()));
    // Voter 3 unreachable: removing it is fine, removing 2 would leave 1 of 2.
    assert_eq!(table.check_remove_connectivity(NodeId(3), own, not_3, not_3), Ok(()));
    assert_eq!(
        table.check_remove_connectivity(NodeId(2), own, not_3, not_3),
        Err(MembershipError::Unhealthy)
    );
    // Removing ourselves counts ourselves as the one leaving.
    assert_eq!(
        table.check_remove_connectivity(own, own, not_3, not_3),
        Err(MembershipError::Unhealthy)
    );
    assert_eq!(table.check_remove_connectivity(own, own, everyone, everyone), Ok(()));
    // Reachable but connected too recently counts as not connected.
    assert_eq!(
        table.check_remove_connectivity(NodeId(2), own, everyone, not_3),
        Err(MembershipError::Unhealthy)
    );
    assert_eq!(
        table.check_remove_connectivity(NodeId(8), own, everyone, |_| false),
        Ok(())
    );
}

#[test]
fn client_proposals_are_never_attribute_entries() {
    use crate::mvcc::{PutRequest, WriteRequest};
    use crate::server::proposal::{self, Command, Proposal};
    let put = PutRequest::new(Bytes::from_static(b"key"), Bytes::from_static(b"value"));
    for command in [
        Command::Write(WriteRequest::Noop),
        Command::Write(WriteRequest::Put(put)),
    ] {
        // An origin whose first byte is the tag must not matter: only the first byte counts.
        let data = proposal::encode(&Proposal {
            origin: u64::from(MEMBER_ENTRY_TAG) << 56,
            id: u64::MAX,
            command,
        });
        assert!(
            !is_attribute_entry(&data),
            "proposal {data:?} looks like a member entry"
        );
    }
    let change = AttributeChange::Publish {
        id: NodeId(1),
        name: "one".to_string(),
        client_urls: Vec::new(),
    };
    let data = encode_attributes(Origin::default(), &change);
    assert!(is_attribute_entry(&data));
    assert!(
        proposal::decode(data).is_err(),
        "an attribute entry decodes as a proposal"
    );
}
