//! Proves the crates.io `etcd-client` crate (a real Rust etcd client, not our
//! generated stubs) works against a braid node unchanged: KV with options,
//! transactions, compaction, typed errors, and Maintenance.Status.

#![cfg(not(madsim))]

mod support;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};
use support::braid_client::{connect, grpc_message};
use support::process::{Server, BRAID};

#[tokio::test]
async fn the_etcd_client_crate_works_unchanged() {
    let server = Server::start_single(BRAID, "etcd-client");
    let mut client = connect(&server).await;

    let put = client
        .put("foo", "bar", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(put.prev_key().is_none());
    let revision = put.header().unwrap().revision();
    let put = client
        .put("foo", "baz", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(put.prev_key().unwrap().value(), b"bar");
    assert_eq!(put.header().unwrap().revision(), revision + 1);

    for (key, value) in [("k1", "c"), ("k2", "a"), ("k3", "b")] {
        client.put(key, value, None).await.unwrap();
    }
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Value, SortOrder::Ascend)
        .with_limit(2);
    let response = client.get("k", Some(options)).await.unwrap();
    let keys: Vec<&str> = response.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, ["k2", "k3"]);
    assert!(response.more());
    assert_eq!(response.count(), 3);
    let counted = client
        .get("k", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert_eq!((counted.count(), counted.kvs().len()), (3, 0));

    let txn = Txn::new()
        .when([Compare::value("foo", CompareOp::Equal, "baz")])
        .and_then([TxnOp::put("foo", "qux", None), TxnOp::get("k1", None)])
        .or_else([TxnOp::put("foo", "never", None)]);
    let response = client.txn(txn).await.unwrap();
    assert!(response.succeeded());
    assert_eq!(response.op_responses().len(), 2);

    let deleted = client
        .delete("k", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 3);

    let current = client.get("foo", None).await.unwrap().header().unwrap().revision();
    client.compact(current - 1, None).await.unwrap();
    let error = client
        .get("foo", Some(GetOptions::new().with_revision(current - 2)))
        .await
        .unwrap_err();
    assert_eq!(
        grpc_message(error),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".to_string()
        )
    );
    let error = client
        .get("foo", Some(GetOptions::new().with_revision(current + 100)))
        .await
        .unwrap_err();
    assert_eq!(
        grpc_message(error),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".to_string()
        )
    );
    let error = client.put("", "x", None).await.unwrap_err();
    assert_eq!(
        grpc_message(error),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".to_string()
        )
    );

    let status = client.status().await.unwrap();
    assert_eq!(status.version(), "3.5.17");
    assert_ne!(status.leader(), 0);
    assert!(status.raft_index() > 0);
    assert_eq!(status.header().unwrap().member_id(), status.leader());

    // The member list holds this one member (published name and URLs are checked on processes).
    let members = client.member_list().await.unwrap();
    let ids: Vec<u64> = members.members().iter().map(|member| member.id()).collect();
    assert_eq!(ids, vec![status.header().unwrap().member_id()]);

    // A service braid does not build yet answers UNIMPLEMENTED, not a fake success.
    let error = client.lock("a-lock", None).await.unwrap_err();
    assert_eq!(grpc_message(error).0, tonic::Code::Unimplemented);
}
