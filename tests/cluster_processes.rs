//! Proves a 3-member braid cluster of real processes on loopback keeps every
//! acknowledged write through `kill -9` of the leader during writes, elects a
//! new leader within a few election timeouts, lets the killed member catch up
//! after a restart with the same flags, and keeps all data through a restart of
//! the whole cluster. Clients are Debian's etcdctl.

#![cfg(not(madsim))]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::process::{etcdctl, require_tool, start_cluster, Server, BRAID, ETCDCTL};

struct Cluster {
    members: Vec<Server>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            members: start_cluster(BRAID, &["m1", "m2", "m3"]),
        }
    }

    fn endpoints(&self) -> String {
        self.members.iter().map(Server::endpoint).collect::<Vec<_>>().join(",")
    }

    /// The index of the member that reports itself leader (bounded wait).
    fn leader(&self, limit: Duration) -> usize {
        let started = Instant::now();
        while started.elapsed() < limit {
            for (position, member) in self.members.iter().enumerate() {
                let output = etcdctl(&member.endpoint(), &["endpoint", "status", "-w", "json"], None);
                let text = String::from_utf8_lossy(&output.stdout);
                let value: serde_json::Value = match serde_json::from_str(&text) {
                    Ok(value) => value,
                    Err(_) => continue,
                };
                let status = &value[0]["Status"];
                let (leader, id) = (&status["leader"], &status["header"]["member_id"]);
                if !leader.is_null() && leader == id {
                    return position;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no leader within {limit:?}");
    }
}

fn put(endpoints: &str, key: &str, value: &str) -> bool {
    etcdctl(endpoints, &["put", key, value], None).status.success()
}

/// Every written key and value on one member (one linearizable range).
fn all_values(endpoint: &str) -> std::collections::BTreeMap<String, String> {
    let output = etcdctl(endpoint, &["get", "c", "--prefix"], None);
    assert!(
        output.status.success(),
        "range on {endpoint} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| (pair[0].to_string(), pair.get(1).unwrap_or(&"").to_string()))
        .collect()
}

fn get_value(endpoint: &str, key: &str, serializable: bool) -> Option<String> {
    let consistency = if serializable {
        "--consistency=s"
    } else {
        "--consistency=l"
    };
    let output = etcdctl(endpoint, &["get", key, "--print-value-only", consistency], None);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn three_members_survive_kill_9_of_the_leader_and_full_restarts() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let mut cluster = Cluster::start();
    let endpoints = cluster.endpoints();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));

    // Three clients write while the leader is killed.
    let writers: Vec<_> = (0..3)
        .map(|client| {
            let endpoints = endpoints.clone();
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                for round in 0..40 {
                    let (key, value) = (format!("c{client}-k{round}"), format!("v{round}"));
                    if put(&endpoints, &key, &value) {
                        acknowledged.lock().unwrap().push((key, value));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let leader = cluster.leader(Duration::from_secs(10));
    let killed_at = Instant::now();
    cluster.members[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|position| *position != leader).collect();
    // A new leader within a few election timeouts (500 ms here).
    let new_leader = {
        let mut found = None;
        while killed_at.elapsed() < Duration::from_secs(10) && found.is_none() {
            for position in &survivors {
                let output = etcdctl(
                    &cluster.members[*position].endpoint(),
                    &["endpoint", "status", "-w", "json"],
                    None,
                );
                let text = String::from_utf8_lossy(&output.stdout);
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                    let status = &value[0]["Status"];
                    if !status["leader"].is_null() && status["leader"] == status["header"]["member_id"] {
                        found = Some(*position);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        found.expect("a new leader within 10 s of killing the old one")
    };
    let election = killed_at.elapsed();
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 60,
        "only {} of 120 writes were acknowledged",
        acknowledged.len()
    );
    println!(
        "new leader {new_leader} after {election:?}; {} writes acknowledged",
        acknowledged.len()
    );
    let stored = all_values(&cluster.members[survivors[0]].endpoint());
    for (key, value) in &acknowledged {
        assert_eq!(stored.get(key), Some(value), "acknowledged {key} lost");
    }

    // The killed member restarts with the same flags and catches up.
    cluster.members[leader].spawn();
    let restarted = cluster.members[leader].endpoint();
    let (last_key, last_value) = acknowledged.last().unwrap().clone();
    let started = Instant::now();
    while get_value(&restarted, &last_key, true).as_deref() != Some(last_value.as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the restarted member did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The whole cluster restarts and keeps everything.
    for member in &mut cluster.members {
        member.kill();
    }
    for member in &mut cluster.members {
        member.spawn();
    }
    for member in &cluster.members {
        member.wait_ready(Duration::from_secs(30));
    }
    for member in &cluster.members {
        let stored = all_values(&member.endpoint());
        for (key, value) in &acknowledged {
            assert_eq!(
                stored.get(key),
                Some(value),
                "{key} missing on {} after a full restart",
                member.name
            );
        }
    }
}
