//! Proves Raft log compaction and snapshot catch-up on real braid processes:
//! with `--snapshot-count=50 --experimental-snapshot-catchup-entries=10`, a
//! member kept down while the others write far past its log catches up by a
//! streamed snapshot when it comes back, serves the same data and the same
//! HashKV as the others, and restarts again from the installed snapshot.
//! Clients are Debian's etcdctl.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use support::process::{etcdctl, eventually, free_port, require_tool, temp_dir, Server, BRAID, ETCDCTL};

const KEYS: usize = 240;

fn start_compacting_cluster(names: &[&str]) -> Vec<Server> {
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let initial = names
        .iter()
        .zip(&ports)
        .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Server> = names
        .iter()
        .zip(&ports)
        .map(|(name, (client, peer))| {
            let mut args = Server::member_args(name, &temp_dir(name), *client, *peer, &initial);
            args.push("--snapshot-count=50".to_string());
            args.push("--experimental-snapshot-catchup-entries=10".to_string());
            Server::start(BRAID, name, *client, *peer, args)
        })
        .collect();
    for member in &members {
        member.wait_ready(Duration::from_secs(30));
    }
    members
}

/// `key`'s value as the member at `endpoint` holds it locally (a serializable read).
fn local_value(endpoint: &str, key: &str) -> Option<String> {
    let output = etcdctl(endpoint, &["get", key, "--print-value-only", "--consistency=s"], None);
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// (revision, hash) that `endpoint hashkv` reports for each member.
fn hashes(endpoints: &str) -> Vec<(i64, u64)> {
    let output = etcdctl(endpoints, &["endpoint", "hashkv", "-w", "json"], None);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    value
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|member| {
                    let result = &member["HashKV"];
                    (
                        result["header"]["revision"].as_i64().unwrap_or(-1),
                        result["hash"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_member_down_past_the_compacted_log_catches_up_by_snapshot() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let mut members = start_compacting_cluster(&["s1", "s2", "s3"]);
    members[2].kill();
    let survivors = format!("{},{}", members[0].endpoint(), members[1].endpoint());
    for number in 0..KEYS {
        let key = format!("key-{number:04}");
        // If s3 led, the first puts may time out until the survivors elect a
        // leader; putting the same value again is harmless.
        eventually(Duration::from_secs(20), &format!("put {key}"), || {
            let output = etcdctl(&survivors, &["put", &key, &format!("value-{number}")], None);
            output.status.success().then_some(())
        });
    }
    let compacted = members[..2]
        .iter()
        .any(|member| member.log().contains("compacted its log"));
    assert!(compacted, "no survivor compacted its log:\n{}", members[0].log());

    members[2].spawn();
    let last_key = format!("key-{:04}", KEYS - 1);
    let back = members[2].endpoint();
    let value = eventually(Duration::from_secs(30), "the restarted member catches up", || {
        local_value(&back, &last_key)
    });
    assert_eq!(value, format!("value-{}", KEYS - 1));
    // The install logs once it has finished, a moment after reads see it.
    eventually(
        Duration::from_secs(5),
        "the member logs that it installed a snapshot",
        || members[2].log().contains("installed a snapshot").then_some(()),
    );
    assert_eq!(local_value(&back, "key-0000").as_deref(), Some("value-0"));

    let all = members.iter().map(Server::endpoint).collect::<Vec<_>>().join(",");
    let converged = eventually(Duration::from_secs(20), "equal HashKV on all members", || {
        let hashes = hashes(&all);
        (hashes.len() == 3 && hashes.iter().all(|entry| *entry == hashes[0])).then_some(hashes)
    });
    assert!(converged[0].0 > KEYS as i64, "{converged:?}");

    // A restart now begins from the snapshot recorded in its WAL.
    members[2].kill();
    members[2].spawn();
    members[2].wait_ready(Duration::from_secs(30));
    assert_eq!(local_value(&back, &last_key), Some(format!("value-{}", KEYS - 1)));
    let output = etcdctl(&all, &["put", "after", "restart"], None);
    assert!(output.status.success());
    eventually(
        Duration::from_secs(20),
        "the restarted member applies new writes",
        || local_value(&back, "after").filter(|value| value == "restart"),
    );
}
