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

use support::process::{etcdctl, free_port, require_tool, start_cluster, temp_dir, Server, ETCDCTL};

const BRAID: &str = env!("CARGO_BIN_EXE_braid");
const REMOVED: &str = "the member has been permanently removed from the cluster";

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

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `etcdctl member add`, returning the new member's hex ID and the
/// `ETCD_INITIAL_CLUSTER` value it prints.
fn member_add(endpoint: &str, name: &str, peer_port: u16, learner: bool) -> (String, String) {
    let peer_urls = format!("--peer-urls=http://127.0.0.1:{peer_port}");
    let mut args = vec!["member", "add", name, &peer_urls];
    if learner {
        args.push("--learner");
    }
    let output = etcdctl(endpoint, &args, None);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "member add: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
