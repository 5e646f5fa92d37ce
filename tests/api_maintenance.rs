//! Proves etcd's Maintenance service works on braid processes through the crates.io
//! `etcd-client` crate: the snapshot stream (chunks counting down, SHA-256 last, size rule)
//! taken while writes go on, restored with `braid snapshot restore` into a new cluster that
//! serves its keys; the NOSPACE alarm with a tiny quota (raised, refusing puts only,
//! surviving a restart, disarmed); Defragment during writes; MoveLeader on 3 processes.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, Compare, CompareOp, Txn, TxnOp};
use sha2::{Digest, Sha256};
use support::process::{free_port, start_cluster, temp_dir, Server};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");

fn start_braid(label: &str, extra: &[&str]) -> Server {
    let (client, peer) = (free_port(), free_port());
    let data_dir = temp_dir(label);
    let mut args = Server::member_args(
        "default",
        &data_dir,
        client,
        peer,
        &format!("default=http://127.0.0.1:{peer}"),
    );
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Server::start(BRAID, label, client, peer, args)
}

async fn connect(server: &Server) -> Client {
    for _ in 0..100 {
        if let Ok(mut client) = Client::connect([server.endpoint()], None).await {
            if client.get("probe", None).await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("braid did not answer within 10 s; log:\n{}", server.log());
}

fn grpc_status(error: etcd_client::Error) -> (tonic::Code, String) {
    match error {
        etcd_client::Error::GRpcStatus(status) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Takes a snapshot; checks the stream's framing and returns the saved file's bytes.
async fn save_snapshot(client: &mut Client) -> Vec<u8> {
    let mut stream = client.snapshot().await.unwrap();
    let mut payload = Vec::new();
    let mut digest = None;
    let mut total = None;
    while let Some(message) = stream.message().await.unwrap() {
        assert!(digest.is_none(), "a message after the digest");
        if payload.len() as u64 == total.unwrap_or(u64::MAX) {
            assert_eq!(message.remaining_bytes(), 0);
            digest = Some(message.blob().to_vec());
            continue;
        }
        assert!(
            message.blob().len() <= 32 * 1024,
            "chunk of {} bytes",
            message.blob().len()
        );
        payload.extend_from_slice(message.blob());
        let announced = payload.len() as u64 + message.remaining_bytes();
        assert_eq!(
            *total.get_or_insert(announced),
            announced,
            "remaining_bytes counts down"
        );
    }
    let digest = digest.expect("the stream ends with a digest");
    assert_eq!(digest, Sha256::digest(&payload).to_vec(), "SHA-256 of the payload");
    let mut file = payload;
    file.extend_from_slice(&digest);
    assert_eq!(file.len() % 512, 32, "etcd's snapshot size rule");
    file
}

fn braid_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BRAID).args(args).output().unwrap()
}

#[tokio::test]
async fn snapshot_taken_during_writes_restores_into_a_new_cluster() {
    let server = start_braid("snapshot", &[]);
    let mut client = connect(&server).await;
    for index in 0..300 {
        client
            .put(format!("key-{index:03}"), format!("value-{index}"), None)
            .await
            .unwrap();
    }
    let revision = client.status().await.unwrap().header().unwrap().revision();
    // Writes go on while the snapshot streams; none of them may block or break it.
    let mut writer = connect(&server).await;
    let writes = tokio::spawn(async move {
        for index in 0..200 {
            writer.put(format!("later-{index:03}"), "x", None).await.unwrap();
        }
    });
    let file = save_snapshot(&mut client).await;
    writes.await.unwrap();
    client.put("after-snapshot", "x", None).await.unwrap();

    let directory = temp_dir("snapshot-file");
    let path = directory.join("saved.db");
    std::fs::write(&path, &file).unwrap();
    let path = path.to_str().unwrap();
    let status = braid_command(&["snapshot", "status", path, "-w", "json"]);
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let snapshot_revision = status["revision"].as_i64().unwrap();
    assert!(snapshot_revision >= revision, "{status}");

    let (client_port, peer_port) = (free_port(), free_port());
    let data_dir = temp_dir("restored");
    std::fs::remove_dir_all(&data_dir).unwrap();
    let data_dir_text = data_dir.to_str().unwrap();
    let cluster = format!("restored=http://127.0.0.1:{peer_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let restore_args = [
        "snapshot",
        "restore",
        path,
        "--data-dir",
        data_dir_text,
        "--name",
        "restored",
        "--initial-cluster",
        &cluster,
        "--initial-cluster-token",
        "restored-token",
        "--initial-advertise-peer-urls",
        &peer_url,
    ];
    let restored = braid_command(&restore_args);
    assert!(restored.status.success(), "{restored:?}");
    assert!(
        !braid_command(&restore_args).status.success(),
        "restoring over a data dir"
    );
    let mut damaged = file.clone();
    damaged[4096 + 100] ^= 1;
    let damaged_path = directory.join("damaged.db");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let refused = braid_command(&["snapshot", "status", damaged_path.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("SHA-256"),
        "{refused:?}"
    );

    let mut args = Server::member_args("restored", &data_dir, client_port, peer_port, &cluster);
    args.push("--initial-cluster-token=restored-token".to_string());
    let restored = Server::start(BRAID, "restored", client_port, peer_port, args);
    let mut reader = connect(&restored).await;
    let keys = reader
        .get("key-", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys.kvs().len(), 300);
    assert_eq!(keys.kvs()[299].value_str().unwrap(), "value-299");
    assert!(reader.get("after-snapshot", None).await.unwrap().kvs().is_empty());
    let put = reader.put("new-cluster", "yes", None).await.unwrap();
    assert_eq!(
        put.header().unwrap().revision(),
        snapshot_revision + 1,
        "revisions carry on"
    );
    let _ = std::fs::remove_dir_all(directory);
}

#[tokio::test]
async fn nospace_alarm_refuses_puts_until_disarmed_and_survives_a_restart() {
    let mut server = start_braid("nospace", &["--quota-backend-bytes=150000"]);
    let mut client = connect(&server).await;
    let member_id = client.status().await.unwrap().header().unwrap().member_id();
    let lease = client.lease_grant(60, None).await.unwrap().id();
    let value = "x".repeat(3000);
    let mut refused = None;
    for index in 0..200 {
        if let Err(error) = client.put(format!("big-{}", index % 5), value.clone(), None).await {
            refused = Some(grpc_status(error));
            break;
        }
    }
    let space_exceeded = (
        tonic::Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded".to_string(),
    );
    assert_eq!(refused, Some(space_exceeded.clone()), "the quota was reached");
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    let listed: Vec<(u64, AlarmType)> = alarms
        .alarms()
        .iter()
        .map(|alarm| (alarm.member_id(), alarm.alarm()))
        .collect();
    assert_eq!(listed, vec![(member_id, AlarmType::Nospace)]);
    let errors = client.status().await.unwrap().errors().to_vec();
    assert_eq!(errors, vec![format!("memberID:{member_id} alarm:NOSPACE ")]);

    // Refused: a small put and a txn with a put. Allowed: reads, deletes, a txn without puts.
    let error = client.put("small", "1", None).await.unwrap_err();
    assert_eq!(grpc_status(error), space_exceeded);
    let txn = Txn::new()
        .when([Compare::version("small", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("small", "1", None)]);
    assert_eq!(grpc_status(client.txn(txn).await.unwrap_err()), space_exceeded);
    let txn = Txn::new().and_then([TxnOp::delete("big-4", None)]);
    assert!(client.txn(txn).await.unwrap().succeeded());
    // Leases as in etcd: a grant is refused, a revoke (which frees space) is not.
    let error = client.lease_grant(60, None).await.unwrap_err();
    assert_eq!(grpc_status(error), space_exceeded);
    client.lease_revoke(lease).await.unwrap();
    assert_eq!(client.get("big-0", None).await.unwrap().kvs().len(), 1);
    let deleted = client.delete("big-3", None).await.unwrap();
    let revision = deleted.header().unwrap().revision();

    // The alarm is in the state file: it is still there after a restart.
    server.kill();
    server.spawn();
    let mut client = connect(&server).await;
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert_eq!(alarms.alarms().len(), 1, "the alarm survives a restart");
    assert_eq!(
        grpc_status(client.put("small", "1", None).await.unwrap_err()),
        space_exceeded
    );

    client.compact(revision, None).await.unwrap();
    client.defragment().await.unwrap();
    let mut options = AlarmOptions::new();
    options.with_member(member_id);
    let disarmed = client
        .alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options))
        .await
        .unwrap();
    assert_eq!(disarmed.alarms().len(), 1, "etcd answers with the alarm it cleared");
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert!(alarms.alarms().is_empty());
    client.put("small", "1", None).await.unwrap();
    client.lease_grant(60, None).await.unwrap();
    assert!(client.status().await.unwrap().errors().is_empty());
}

#[tokio::test]
async fn defragment_during_writes_blocks_nothing_and_gives_space_back() {
    let server = start_braid("defrag", &[]);
    let mut client = connect(&server).await;
    let value = "v".repeat(2000);
    for round in 0..5 {
        for index in 0..100 {
            client
                .put(format!("k{index}"), format!("{round}{value}"), None)
                .await
                .unwrap();
        }
    }
    let status = client.status().await.unwrap();
    let revision = status.header().unwrap().revision();
    let in_use_before = status.raft_used_db_size();
    client.compact(revision, None).await.unwrap();
    let mut writer = connect(&server).await;
    let writes = tokio::spawn(async move {
        for index in 0..300 {
            writer.put(format!("during-{index}"), "x", None).await.unwrap();
        }
    });
    for _ in 0..5 {
        client.defragment().await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), writes)
        .await
        .expect("writes went on during defragmentation")
        .unwrap();
    client.defragment().await.unwrap();
    let in_use_after = client.status().await.unwrap().raft_used_db_size();
    assert!(
        in_use_after < in_use_before,
        "bytes in use went from {in_use_before} to {in_use_after}"
    );
    let during = client
        .get(
            "during-",
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(during.count(), 300);
}

#[tokio::test]
async fn move_leader_hands_leadership_over_on_three_processes() {
    let members = start_cluster(BRAID, &["m1", "m2", "m3"]);
    let mut clients = Vec::new();
    for member in &members {
        clients.push(connect(member).await);
    }
    let mut ids = Vec::new();
    let mut leader = 0;
    for client in &mut clients {
        let status = client.status().await.unwrap();
        ids.push(status.header().unwrap().member_id());
        leader = status.leader();
    }
    let leader_index = ids.iter().position(|id| *id == leader).expect("a leader");
    let target_index = (leader_index + 1) % 3;
    let follower_index = (leader_index + 2) % 3;

    let error = clients[follower_index]
        .move_leader(ids[target_index])
        .await
        .unwrap_err();
    assert_eq!(
        grpc_status(error),
        (tonic::Code::FailedPrecondition, "etcdserver: not leader".to_string())
    );
    let error = clients[leader_index].move_leader(0x1234).await.unwrap_err();
    assert_eq!(
        grpc_status(error),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: bad leader transferee".to_string()
        )
    );
    clients[leader_index].move_leader(ids[target_index]).await.unwrap();
    for client in &mut clients {
        let mut seen = 0;
        for _ in 0..50 {
            seen = client.status().await.unwrap().leader();
            if seen == ids[target_index] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, ids[target_index], "every member follows the new leader");
    }
    clients[follower_index].put("after-move", "1", None).await.unwrap();
}
