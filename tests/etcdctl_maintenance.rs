//! Proves Debian's etcdctl (3.4.23) prints the same for braid's Maintenance service as for a
//! real etcd 3.4.23, on 3-member clusters of each: `alarm list`, `alarm disarm`, `defrag`
//! of every member, `snapshot save`, `endpoint hashkv` of every member (equal hashes within
//! each cluster). Endpoints, paths, hashes and log lines are normalised away; braid's NOSPACE
//! listing is checked against etcd's text format on its own (etcd's quota counts bbolt file
//! bytes, so the same writes do not trip both). `endpoint hashkv --cluster` needs
//! Cluster.MemberList, which braid does not serve yet, so the endpoints are given instead.

#![cfg(not(madsim))]

mod support;

use support::process::{differing_steps, etcdctl, require_tool, start_cluster, temp_dir, Server, ETCD, ETCDCTL};

fn all_endpoints(members: &[Server]) -> String {
    members.iter().map(Server::endpoint).collect::<Vec<_>>().join(",")
}

/// Runs the script against a cluster; one normalised transcript entry per step.
fn run_script(members: &[Server]) -> Vec<String> {
    let everyone = all_endpoints(members);
    let first = members[0].endpoint();
    let snapshot_dir = temp_dir("etcdctl-snapshot");
    let snapshot_path = snapshot_dir.join("saved.db");
    let snapshot_path = snapshot_path.to_str().unwrap().to_string();
    let steps: Vec<(String, Vec<String>)> = vec![
        (everyone.clone(), vec!["put".into(), "a".into(), "1".into()]),
        (everyone.clone(), vec!["put".into(), "b".into(), "2".into()]),
        (everyone.clone(), vec!["alarm".into(), "list".into()]),
        (everyone.clone(), vec!["alarm".into(), "disarm".into()]),
        (everyone.clone(), vec!["defrag".into()]),
        (
            first.clone(),
            vec!["snapshot".into(), "save".into(), snapshot_path.clone()],
        ),
        (everyone.clone(), vec!["endpoint".into(), "hashkv".into()]),
        (everyone.clone(), vec!["get".into(), "a".into()]),
    ];
    let mut transcript = Vec::new();
    for (endpoints, args) in steps {
        let arguments: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = etcdctl(&endpoints, &arguments, None);
        let mut stdout = String::from_utf8_lossy(&output.stdout).to_string();
        for (index, member) in members.iter().enumerate() {
            stdout = stdout.replace(&member.endpoint(), &format!("ENDPOINT{index}"));
        }
        stdout = stdout.replace(&snapshot_path, "PATH");
        let mut hashes = Vec::new();
        let lines: Vec<String> = stdout
            .lines()
            .map(|line| match line.split_once(", ") {
                // endpoint hashkv: "ENDPOINT, HASH"
                Some((endpoint, hash)) if args[0] == "endpoint" => {
                    hashes.push(hash.to_string());
                    format!("{endpoint}, HASH")
                }
                _ => line.to_string(),
            })
            .collect();
        if !hashes.is_empty() {
            assert!(
                hashes.iter().all(|hash| *hash == hashes[0]),
                "members of one cluster disagree on hashkv: {hashes:?}"
            );
        }
        transcript.push(format!(
            "$ etcdctl {}\nexit {}\n{}",
            args.join(" ").replace(&snapshot_path, "PATH"),
            output.status.code().unwrap_or(-1),
            lines.join("\n")
        ));
    }
    let saved = std::fs::metadata(&snapshot_path).map(|file| file.len()).unwrap_or(0);
    transcript.push(format!("snapshot size % 512 = {}", saved % 512));
    let _ = std::fs::remove_dir_all(snapshot_dir);
    transcript
}

#[test]
fn etcdctl_maintenance_output_matches_etcd_on_three_members() {
    if !require_tool(ETCDCTL) || !require_tool(ETCD) {
        return;
    }
    let expected = run_script(&start_cluster(ETCD, &["e1", "e2", "e3"]));
    let braid = start_cluster(env!("CARGO_BIN_EXE_braid"), &["b1", "b2", "b3"]);
    let actual = run_script(&braid);
    if std::env::var_os("BRAID_SHOW_TRANSCRIPT").is_some() {
        println!("{}", actual.join("\n"));
    }
    assert_eq!(expected.len(), actual.len());
    let differences = differing_steps(&expected, &actual);
    assert!(
        differences.is_empty(),
        "{} steps differ:\n{}\nbraid log:\n{}",
        differences.len(),
        differences.join("\n\n"),
        braid[0].log()
    );
}

#[test]
fn etcdctl_lists_and_disarms_braids_nospace_alarm_in_etcds_format() {
    if !require_tool(ETCDCTL) {
        return;
    }
    let braid = start_cluster(env!("CARGO_BIN_EXE_braid"), &["n1"]);
    let endpoint = braid[0].endpoint();
    let status = etcdctl(&endpoint, &["endpoint", "status", "-w", "fields"], None);
    let fields = String::from_utf8_lossy(&status.stdout).to_string();
    let member_id: u64 = fields
        .lines()
        .find_map(|line| line.strip_prefix("\"MemberID\" : "))
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemberID in {fields}"));
    // etcdctl has no command to raise an alarm; the etcd-client crate does what etcd's
    // quota check does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.clone()], None).await.unwrap();
        let mut options = etcd_client::AlarmOptions::new();
        options.with_member(member_id);
        client
            .alarm(
                etcd_client::AlarmAction::Activate,
                etcd_client::AlarmType::Nospace,
                Some(options),
            )
            .await
            .unwrap();
    });
    let expected = format!("memberID:{member_id} alarm:NOSPACE \n");
    let list = etcdctl(&endpoint, &["alarm", "list"], None);
    assert_eq!(String::from_utf8_lossy(&list.stdout), expected);
    let put = etcdctl(&endpoint, &["put", "k", "v"], None);
    assert!(
        String::from_utf8_lossy(&put.stderr).contains("Error: etcdserver: mvcc: database space exceeded"),
        "{put:?}"
    );
    let disarm = etcdctl(&endpoint, &["alarm", "disarm"], None);
    assert_eq!(String::from_utf8_lossy(&disarm.stdout), expected);
    let list = etcdctl(&endpoint, &["alarm", "list"], None);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "");
    assert!(etcdctl(&endpoint, &["put", "k", "v"], None).status.success());
}
