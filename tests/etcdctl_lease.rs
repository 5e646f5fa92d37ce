//! Proves braid answers Debian's etcdctl lease commands exactly as etcd does:
//! one script (grant, put --lease, timetolive with keys, keep-alive --once,
//! list, revoke, and their errors) runs against a real etcd (3.4.23) and a
//! braid node, and the outputs must be identical once the server-chosen lease
//! id and the seconds that tick away while the script runs are normalised.

#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use support::process::{differing_steps, etcdctl, require_tool, Server, BRAID, ETCD, ETCDCTL};

/// Steps of the script; `LEASE` stands for the id the first grant returned.
const SCRIPT: &[&str] = &[
    "lease grant 60",
    "put foo bar --lease=LEASE",
    "lease timetolive LEASE",
    // One attached key while listing keys: etcd lists them in Go map order.
    "lease timetolive LEASE --keys",
    "lease timetolive LEASE --keys -w json",
    "put foo2 baz --lease=LEASE",
    "lease keep-alive --once LEASE",
    "lease list",
    "put other x --lease=1234abcd",
    "lease timetolive 1234abcd",
    "lease keep-alive --once 1234abcd",
    "lease revoke 1234abcd",
    "lease grant 9000000001",
    "lease revoke LEASE",
    "get foo --prefix",
    "lease revoke LEASE",
    "lease timetolive LEASE",
    "lease keep-alive --once LEASE",
    "lease list",
];

/// Replaces `id` (hex and decimal), the remaining seconds (they depend on
/// timing, not on the server) and the member and cluster ids.
fn normalise(text: &str, id: Option<i64>) -> String {
    let mut text = text.to_string();
    if let Some(id) = id {
        // etcdctl prints ids as %016x, so some have leading zeros.
        for form in [format!("{id:016x}"), format!("{id:x}"), id.to_string()] {
            text = text.replace(&form, "LEASE");
        }
    }
    for marker in ["remaining(", "\"ttl\":", "\"cluster_id\":", "\"member_id\":"] {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(position) = rest.find(marker) {
            out.push_str(&rest[..position + marker.len()]);
            rest = rest[position + marker.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
            out.push('N');
        }
        out.push_str(rest);
        text = out;
    }
    // etcdctl's retry warnings: keep only the gRPC code and message.
    text.lines()
        .map(|line| match line.find("\"error\":\"") {
            Some(position) if line.starts_with("{\"level\":\"warn\"") => {
                format!("warn {}", line[position + 9..].trim_end_matches("\"}"))
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_script(server: &Server) -> Vec<String> {
    let mut id: Option<i64> = None;
    let mut transcript = Vec::new();
    for step in SCRIPT {
        let lease = id.map(|id| format!("{id:x}")).unwrap_or_default();
        let command = step.replace("LEASE", &lease);
        let args: Vec<&str> = command.split_whitespace().collect();
        let output = etcdctl(&server.endpoint(), &args, None);
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        if id.is_none() {
            // "lease 694d81b6f7d9a20b granted with TTL(60s)"
            let hex = stdout.split_whitespace().nth(1).unwrap_or_default();
            id = Some(i64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("no lease id in {stdout:?}")));
        }
        let text = format!(
            "$ etcdctl {step}\nexit {}\n{stdout}\n{}",
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr)
        );
        transcript.push(normalise(&text, id));
    }
    transcript
}

fn start(program: &str, label: &str) -> Server {
    let server = Server::start_single(program, label);
    server.wait_ready(Duration::from_secs(20));
    server
}

#[test]
fn etcdctl_lease_commands_match_etcd() {
    if !require_tool(ETCDCTL) || !require_tool(ETCD) {
        return;
    }
    let etcd = start(ETCD, "etcd-lease");
    let expected = run_script(&etcd);
    drop(etcd);
    let braid = start(BRAID, "braid-lease");
    let actual = run_script(&braid);
    if std::env::var_os("BRAID_SHOW_TRANSCRIPT").is_some() {
        println!("{}", actual.join("\n"));
    }
    let differences = differing_steps(&expected, &actual);
    assert!(
        differences.is_empty(),
        "{} of {} etcdctl lease steps differ:\n{}\nbraid log:\n{}",
        differences.len(),
        expected.len(),
        differences.join("\n\n"),
        braid.log()
    );
}
