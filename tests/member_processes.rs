//! Proves etcd's membership runbooks work on real braid processes with Debian's
//! etcdctl: `member add` then starting the member with `--initial-cluster-state
//! existing` (it catches up from the leader's log and serves), `member remove`
//! under writes (the removed process exits, keeps no acknowledged write from
//! the others, and refuses to start again), and a learner that serves only
//! Status and serializable reads until `member promote` succeeds; plus the
//! crates.io etcd-client crate's member API.

#![cfg(not(madsim))]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::process::{etcdctl, eventually, free_port, require_tool, start_cluster, temp_dir, Server, ETCDCTL};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const REMOVED: &str = "the member has been permanently removed from the cluster";
const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// One line of `etcdctl member list`.
#[derive(Debug)]
struct Listed {
    id: String,
    status: String,
    name: String,
    client_urls: String,
    is_learner: bool,
}

fn member_list(endpoint: &str) -> Result<Vec<Listed>, String> {
    let output = etcdctl(endpoint, &["member", "list"], None);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).to_string());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            Listed {
                id: fields[0].to_string(),
                status: fields[1].to_string(),
                name: fields[2].to_string(),
                client_urls: fields[4].to_string(),
                is_learner: fields[5] == "true",
            }
        })
        .collect())
}

/// `etcdctl member add`, returning the new member's hex ID and the
/// `ETCD_INITIAL_CLUSTER` value it prints. Retried (bounded) while the leader
/// answers `unhealthy cluster`: it has not been connected to every voter for an
/// election timeout yet (just started, or a new leader), as etcd's strict check.
fn member_add(endpoint: &str, name: &str, peer_port: u16, learner: bool) -> (String, String) {
    let peer_urls = format!("--peer-urls=http://127.0.0.1:{peer_port}");
    let mut args = vec!["member", "add", name, &peer_urls];
    if learner {
        args.push("--learner");
    }
    let stdout = eventually(Duration::from_secs(20), "member add", || {
        let output = etcdctl(endpoint, &args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains(UNHEALTHY) {
            return None;
        }
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "member add: {stdout}{stderr}");
        Some(stdout)
    });
    let id = stdout.split_whitespace().nth(1).expect("Member <id> added").to_string();
    let cluster = stdout
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .expect("ETCD_INITIAL_CLUSTER")
        .trim_end_matches('"')
        .to_string();
    (id, cluster)
}

/// Starts `name` as a member joining an existing cluster.
fn start_joining(name: &str, client: u16, peer: u16, initial_cluster: &str) -> Server {
    let mut args = Server::member_args(name, &temp_dir(name), client, peer, initial_cluster);
    args.push("--initial-cluster-state=existing".to_string());
    Server::start(BRAID, name, client, peer, args)
}

fn values(endpoint: &str, prefix: &str, serializable: bool) -> Option<Vec<String>> {
    let consistency = if serializable { "s" } else { "l" };
    let consistency = format!("--consistency={consistency}");
    let output = etcdctl(endpoint, &["get", prefix, "--prefix", &consistency], None);
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

#[test]
fn a_fourth_member_joins_and_serves_then_a_removed_member_exits_for_good() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let mut members = start_cluster(BRAID, &["m1", "m2", "m3"]);
    for index in 0..20 {
        assert!(
            etcdctl(&members[0].endpoint(), &["put", &format!("k{index:02}"), "v"], None)
                .status
                .success()
        );
    }
    let expected = values(&members[0].endpoint(), "k", false).unwrap();

    let (client, peer) = (free_port(), free_port());
    let (id, initial_cluster) = member_add(&members[1].endpoint(), "n4", peer, false);
    let listed = member_list(&members[0].endpoint()).unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let added = listed.iter().find(|member| member.id == id).unwrap();
    assert_eq!((added.status.as_str(), added.name.as_str()), ("unstarted", ""));

    let n4 = start_joining("n4", client, peer, &initial_cluster);
    n4.wait_ready(Duration::from_secs(30));
    assert_eq!(values(&n4.endpoint(), "k", true).unwrap(), expected);
    assert!(etcdctl(&n4.endpoint(), &["put", "from-n4", "1"], None).status.success());
    // n4 publishes its name and client URL; every member lists it started.
    eventually(Duration::from_secs(10), "n4 published", || {
        let listed = member_list(&members[2].endpoint()).ok()?;
        let n4 = listed.iter().find(|member| member.id == id)?;
        (n4.status == "started" && n4.name == "n4" && n4.client_urls == format!("http://127.0.0.1:{client}"))
            .then_some(())
    });

    // Remove m3 while clients write through the other members.
    let endpoints = format!("{},{},{}", members[0].endpoint(), members[1].endpoint(), n4.endpoint());
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, acknowledged, endpoints) = (Arc::clone(&stop), Arc::clone(&acknowledged), endpoints.clone());
        std::thread::spawn(move || {
            let mut index = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("load{index:04}");
                if etcdctl(&endpoints, &["put", &key, "x"], None).status.success() {
                    acknowledged.lock().unwrap().push(key);
                }
                index += 1;
            }
        })
    };
    let m3_id = listed.iter().find(|member| member.name == "m3").unwrap().id.clone();
    let output = etcdctl(&members[0].endpoint(), &["member", "remove", &m3_id], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = members[2].wait_exit(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let log = members[2].log();
    assert!(
        status.is_some_and(|status| status.success()),
        "m3 still runs or failed: {status:?}\n{log}"
    );
    assert!(log.contains(REMOVED), "{log}");

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty(), "no write succeeded during the removal");
    let stored = values(&members[0].endpoint(), "load", false).unwrap();
    for key in &acknowledged {
        assert!(stored.contains(key), "acknowledged {key} is missing");
    }
    let listed = member_list(&n4.endpoint()).unwrap();
    let mut names: Vec<&str> = listed.iter().map(|member| member.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["m1", "m2", "n4"]);

    // The removed member refuses to start from its old data dir, as etcd does.
    members[2].spawn();
    let status = members[2].wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|status| !status.success()), "{status:?}");
    assert!(members[2].log().contains(REMOVED), "{}", members[2].log());
}

#[test]
fn a_learner_serves_only_status_and_serializable_reads_until_promoted() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let members = start_cluster(BRAID, &["m1", "m2", "m3"]);
    assert!(etcdctl(&members[0].endpoint(), &["put", "k", "v"], None)
        .status
        .success());
    let (client, peer) = (free_port(), free_port());
    let (id, initial_cluster) = member_add(&members[0].endpoint(), "l4", peer, true);
    let second = etcdctl(
        &members[0].endpoint(),
        &["member", "add", "l5", "--learner", "--peer-urls=http://127.0.0.1:1"],
        None,
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("etcdserver: too many learner members in cluster"));

    let learner = start_joining("l4", client, peer, &initial_cluster);
    eventually(Duration::from_secs(30), "the learner catches up", || {
        (values(&learner.endpoint(), "k", true)? == ["k", "v"]).then_some(())
    });
    let status = etcdctl(&learner.endpoint(), &["endpoint", "status"], None);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(", true, "),
        "IS LEARNER"
    );
    for args in [&["put", "x", "1"][..], &["get", "k"], &["member", "list"]] {
        let output = etcdctl(&learner.endpoint(), args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} on a learner succeeded");
        assert!(
            stderr.contains("etcdserver: rpc not supported for learner"),
            "{args:?}: {stderr}"
        );
    }

    // Promote through every voter in turn: followers forward to the leader.
    let mut errors = Vec::new();
    eventually(Duration::from_secs(20), "the promotion", || {
        let endpoint = members[errors.len() % 3].endpoint();
        let output = etcdctl(&endpoint, &["member", "promote", &id], None);
        if output.status.success() {
            return Some(());
        }
        errors.push(String::from_utf8_lossy(&output.stderr).to_string());
        None
    });
    for error in &errors {
        assert!(error.contains("which is in sync with leader"), "{error}");
    }
    let listed = member_list(&members[1].endpoint()).unwrap();
    assert!(!listed.iter().find(|member| member.id == id).unwrap().is_learner);
    eventually(Duration::from_secs(10), "the promoted member takes writes", || {
        etcdctl(&learner.endpoint(), &["put", "x", "1"], None)
            .status
            .success()
            .then_some(())
    });
    let again = etcdctl(&members[0].endpoint(), &["member", "promote", &id], None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("etcdserver: can only promote a learner member"));
}

#[tokio::test]
async fn the_etcd_client_crate_manages_members() {
    use etcd_client::{Client, Error, MemberAddOptions};

    let (client_port, peer_port) = (free_port(), free_port());
    let args = Server::member_args(
        "solo",
        &temp_dir("members-crate"),
        client_port,
        peer_port,
        &format!("solo=http://127.0.0.1:{peer_port}"),
    );
    let server = Server::start(BRAID, "solo", client_port, peer_port, args);
    let mut client = None;
    for _ in 0..100 {
        if let Ok(mut connected) = Client::connect([server.endpoint()], None).await {
            if connected
                .member_list()
                .await
                .is_ok_and(|list| list.members().first().is_some_and(|own| !own.client_urls().is_empty()))
            {
                client = Some(connected);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.unwrap_or_else(|| panic!("braid never listed itself; log:\n{}", server.log()));
    let listed = client.member_list().await.unwrap();
    let own = listed.members()[0].id();
    assert_eq!(listed.header().unwrap().member_id(), own);
    assert_eq!(
        listed.members()[0].client_urls(),
        [format!("http://127.0.0.1:{client_port}")]
    );
    assert_eq!(
        listed.members()[0].peer_urls(),
        [format!("http://127.0.0.1:{peer_port}")]
    );

    let added = client
        .member_add(["http://127.0.0.1:1"], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .unwrap();
    let learner = added.member().unwrap().clone();
    assert!(learner.is_learner() && learner.name().is_empty() && learner.client_urls().is_empty());
    assert_eq!(added.member_list().len(), 2);

    let status_of = |error: Error| match error {
        Error::GRpcStatus(status) => (format!("{:?}", status.code()), status.message().to_string()),
        other => panic!("not a gRPC status: {other:?}"),
    };
    let refused = client.member_promote(learner.id()).await.unwrap_err();
    assert_eq!(
        status_of(refused),
        (
            "FailedPrecondition".to_string(),
            "etcdserver: can only promote a learner member which is in sync with leader".to_string()
        )
    );
    let refused = client.member_promote(own).await.unwrap_err();
    assert_eq!(status_of(refused).1, "etcdserver: can only promote a learner member");
    let updated = client
        .member_update(learner.id(), vec!["http://127.0.0.1:2".to_string()])
        .await
        .unwrap();
    let after = updated
        .members()
        .iter()
        .find(|member| member.id() == learner.id())
        .unwrap();
    assert_eq!(after.peer_urls(), ["http://127.0.0.1:2"]);
    let refused = client.member_add(["http://127.0.0.1:2"], None).await.unwrap_err();
    assert_eq!(
        status_of(refused),
        (
            "FailedPrecondition".to_string(),
            "etcdserver: Peer URLs already exists".to_string()
        )
    );
    let removed = client.member_remove(learner.id()).await.unwrap();
    assert_eq!(removed.members().len(), 1);
    let refused = client.member_remove(learner.id()).await.unwrap_err();
    assert_eq!(
        status_of(refused),
        ("NotFound".to_string(), "etcdserver: member not found".to_string())
    );
}

/// The index of the member that reports itself leader (bounded wait).
fn leader_index(members: &[Server]) -> usize {
    eventually(Duration::from_secs(20), "a leader", || {
        members.iter().position(|member| {
            let output = etcdctl(&member.endpoint(), &["endpoint", "status", "-w", "json"], None);
            let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
            let status = &value[0]["Status"];
            !status["leader"].is_null() && status["leader"] == status["header"]["member_id"]
        })
    })
}

fn id_of(endpoint: &str, name: &str) -> String {
    let listed = member_list(endpoint).unwrap();
    listed
        .iter()
        .find(|member| member.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {listed:?}"))
        .id
        .clone()
}

/// `etcdctl member remove`, retried (bounded) while the leader answers
/// `unhealthy cluster`; panics on any other failure.
fn member_remove(endpoint: &str, id: &str) {
    eventually(Duration::from_secs(20), "member remove", || {
        let output = etcdctl(endpoint, &["member", "remove", id], None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains(UNHEALTHY) {
            return None;
        }
        assert!(output.status.success(), "member remove {id}: {stderr}");
        Some(())
    });
}

/// `etcdctl endpoint hashkv --rev=revision` of one member, once it has that revision.
fn hash_kv(endpoint: &str, revision: i64) -> u64 {
    let revision = format!("--rev={revision}");
    eventually(Duration::from_secs(10), "hashkv", || {
        let output = etcdctl(endpoint, &["endpoint", "hashkv", &revision, "-w", "json"], None);
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        value[0]["HashKV"]["hash"].as_u64()
    })
}

#[test]
fn a_cluster_migrates_to_three_new_members_one_at_a_time_under_writes() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let mut old = start_cluster(BRAID, &["m1", "m2", "m3"]);
    let endpoints = Arc::new(Mutex::new(old.iter().map(Server::endpoint).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, acknowledged, endpoints) = (Arc::clone(&stop), Arc::clone(&acknowledged), Arc::clone(&endpoints));
        std::thread::spawn(move || {
            // Light and bounded: one etcdctl put at a time, at most 2000.
            for index in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let current = endpoints.lock().unwrap().join(",");
                let key = format!("mig{index:04}");
                if etcdctl(&current, &["put", &key, "x"], None).status.success() {
                    acknowledged.lock().unwrap().push(key);
                }
            }
        })
    };

    let mut new = Vec::new();
    for (step, old_member) in old.iter_mut().enumerate() {
        let through = endpoints.lock().unwrap()[0].clone();
        let name = format!("n{}", step + 1);
        let (client, peer) = (free_port(), free_port());
        let (_, initial_cluster) = member_add(&through, &name, peer, false);
        let member = start_joining(&name, client, peer, &initial_cluster);
        // Caught up: it answers a linearizable read (it has applied the leader's commit index).
        member.wait_ready(Duration::from_secs(30));
        // Through the new member, which forwards to the leader unless it is the leader.
        member_remove(&member.endpoint(), &id_of(&member.endpoint(), &old_member.name));
        let status = old_member.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|status| status.success()),
            "{} still runs or failed: {status:?}\n{}",
            old_member.name,
            old_member.log()
        );
        let mut current = endpoints.lock().unwrap();
        let position = current
            .iter()
            .position(|endpoint| *endpoint == old_member.endpoint())
            .unwrap();
        current[position] = member.endpoint();
        drop(current);
        new.push(member);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 10,
        "only {} writes during the migration",
        acknowledged.len()
    );
    for member in &new {
        let stored = values(&member.endpoint(), "mig", false).unwrap();
        for key in &acknowledged {
            assert!(stored.contains(key), "acknowledged {key} is missing on {}", member.name);
        }
    }
    let listed = member_list(&new[2].endpoint()).unwrap();
    let mut names: Vec<(&str, &str)> = listed
        .iter()
        .map(|member| (member.name.as_str(), member.status.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("n1", "started"), ("n2", "started"), ("n3", "started")]);
    let output = etcdctl(&new[0].endpoint(), &["get", "mig", "-w", "json"], None);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let revision = value["header"]["revision"].as_i64().unwrap();
    let hashes: Vec<u64> = new.iter().map(|member| hash_kv(&member.endpoint(), revision)).collect();
    assert!(
        hashes.iter().all(|hash| *hash == hashes[0]),
        "HashKV at {revision}: {hashes:?}"
    );
    eprintln!(
        "{} acknowledged writes, HashKV at {revision}: {:#x}",
        acknowledged.len(),
        hashes[0]
    );
}

#[test]
fn strict_reconfig_check_refuses_changes_that_break_the_connected_quorum() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let mut members = start_cluster(BRAID, &["m1", "m2", "m3"]);
    let leader = leader_index(&members);
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let (dead, live) = (followers[0], followers[1]);
    let ids: Vec<String> = members
        .iter()
        .map(|member| id_of(&members[leader].endpoint(), &member.name))
        .collect();
    members[dead].kill();
    let through = members[live].endpoint();

    // A learner add changes no quorum: use it as the probe (undone when it
    // passes) until the leader has noticed the dead member.
    eventually(Duration::from_secs(10), "the leader notices the dead member", || {
        let args = ["member", "add", "probe", "--learner", "--peer-urls=http://127.0.0.1:1"];
        let output = etcdctl(&through, &args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains(UNHEALTHY) {
            return Some(());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{stderr}");
        let id = stdout.split_whitespace().nth(1).unwrap().to_string();
        assert!(etcdctl(&through, &["member", "remove", &id], None).status.success());
        None
    });
    // As etcd 3.4: every voter must be connected to add; a removal must leave a
    // connected quorum (the leader counts itself).
    let voter_add = ["member", "add", "n4", "--peer-urls=http://127.0.0.1:2"];
    for args in [
        &voter_add[..],
        &["member", "remove", &ids[live]],
        &["member", "remove", &ids[leader]],
    ] {
        let output = etcdctl(&through, args, None);
        assert!(!output.status.success(), "{args:?} was accepted");
        // etcdctl retries Unavailable once (logging a warning), as against etcd.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.lines().last(),
            Some(format!("Error: {UNHEALTHY}").as_str()),
            "{args:?}"
        );
    }
    // The dead member is not part of the active quorum: it may go, and then
    // the cluster takes new members again.
    let output = etcdctl(&through, &["member", "remove", &ids[dead]], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    member_add(&through, "l4", free_port(), true);
    assert_eq!(member_list(&members[leader].endpoint()).unwrap().len(), 3);
}

#[tokio::test]
async fn changes_sent_to_followers_while_another_is_in_flight_are_queued_by_the_leader() {
    use etcd_client::{Client, Error, MemberAddOptions};
    use support::braid_client::connect;

    let members = Server::start_cluster(BRAID, &["m1", "m2", "m3"]);
    let mut clients = Vec::new();
    for member in &members {
        clients.push(connect(member).await);
    }
    let mut roles = Vec::new();
    for client in &mut clients {
        let status = client.status().await.unwrap();
        roles.push((
            status.leader() == status.header().unwrap().member_id(),
            status.header().unwrap().member_id(),
        ));
    }
    let leader = roles.iter().position(|(is_leader, _)| *is_leader).expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let learner = || Some(MemberAddOptions::new().with_is_learner());

    // Wait (bounded) until the leader has been connected to every voter for
    // an election timeout: until then it refuses adds as `unhealthy cluster`.
    let started = Instant::now();
    loop {
        match clients[leader].member_add(["http://127.0.0.1:1"], learner()).await {
            Ok(added) => {
                let id = added.member().unwrap().id();
                clients[leader].member_remove(id).await.unwrap();
                break;
            }
            Err(error) => {
                assert!(error.to_string().contains(UNHEALTHY), "{error}");
                assert!(started.elapsed() < Duration::from_secs(10), "still {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Three changes at once, two through the same follower: Raft takes one
    // change at a time, so the leader queues the others and checks each again
    // against the table as it stands when its turn comes.
    let (mut first, mut second, mut third): (Client, Client, Client) = (
        clients[followers[0]].clone(),
        clients[followers[0]].clone(),
        clients[leader].clone(),
    );
    let started = Instant::now();
    let (removed, added_through_follower, added_through_leader) = tokio::join!(
        first.member_remove(roles[followers[1]].1),
        second.member_add(["http://127.0.0.1:3"], learner()),
        third.member_add(["http://127.0.0.1:3"], learner()),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the changes took {took:?}");
    removed.unwrap();
    let refusal = match (added_through_follower, added_through_leader) {
        (Ok(_), Err(error)) | (Err(error), Ok(_)) => error,
        other => panic!("expected one add to pass and one to be refused: {other:?}"),
    };
    let Error::GRpcStatus(status) = refusal else {
        panic!("not a gRPC status: {refusal:?}");
    };
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::FailedPrecondition, "etcdserver: Peer URLs already exists")
    );
    let listed = clients[followers[0]].member_list().await.unwrap();
    assert_eq!(listed.members().len(), 3, "{:?}", listed.members());
    assert_eq!(listed.members().iter().filter(|member| member.is_learner()).count(), 1);
    eprintln!("three concurrent changes answered in {took:?}");
}
