//! Proves the Raft core's behaviour step by step with data-driven interaction
//! scripts (testdata/raft/*.txt): each command drives an in-memory cluster and
//! its output must match the recorded text. `REWRITE=1 cargo test --test
//! raft_scripts` records new outputs; `expect-*` commands assert regardless.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use braid::raft::{
    ConfChange, ConfChangeKind, ConfState, Config, Entry, EntryKind, Index, Message, MessageKind, NodeId, Role,
};
use bytes::Bytes;
use support::raft_cluster::{Cluster, Event};

struct Script {
    cluster: Cluster,
    defaults: BTreeMap<String, String>,
}

fn parse_nodes(text: &str) -> Vec<NodeId> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| NodeId(part.parse().expect("node id")))
        .collect()
}

fn entry_text(entry: &Entry) -> String {
    let body = match entry.kind {
        EntryKind::Normal if entry.data.is_empty() => "noop".to_string(),
        EntryKind::Normal => format!("{:?}", String::from_utf8_lossy(&entry.data)),
        EntryKind::ConfChange => match ConfChange::decode(&entry.data) {
            Some(change) => format!("conf:{:?}({})", change.kind, change.node),
            None => "conf:malformed".to_string(),
        },
    };
    format!("{}/{} {}", entry.term, entry.index, body)
}

fn message_text(message: &Message) -> String {
    let mut text = format!(
        "{}->{} {:?} term={}",
        message.from, message.to, message.kind, message.term
    );
    match message.kind {
        MessageKind::Append => {
            write!(
                text,
                " log={}/{} commit={}",
                message.log_term, message.index, message.commit
            )
            .unwrap();
            let entries: Vec<String> = message.entries.iter().map(entry_text).collect();
            if !entries.is_empty() {
                write!(text, " entries=[{}]", entries.join(", ")).unwrap();
            }
        }
        MessageKind::AppendResponse => {
            if message.reject {
                write!(
                    text,
                    " reject index={} hint={} hint_term={}",
                    message.index, message.reject_hint, message.reject_term
                )
                .unwrap();
            } else {
                write!(text, " index={}", message.index).unwrap();
            }
        }
        MessageKind::Vote | MessageKind::PreVote => {
            write!(text, " last={}/{}", message.log_term, message.index).unwrap();
        }
        MessageKind::VoteResponse | MessageKind::PreVoteResponse if message.reject => text.push_str(" reject"),
        MessageKind::Heartbeat => write!(text, " commit={}", message.commit).unwrap(),
        MessageKind::Snapshot => {
            let meta = &message
                .snapshot
                .as_ref()
                .expect("snapshot message without snapshot")
                .meta;
            write!(
                text,
                " snapshot={}/{} voters={:?}",
                meta.term, meta.index, meta.conf_state.voters
            )
            .unwrap();
        }
        MessageKind::ReadIndexResponse => write!(text, " index={}", message.index).unwrap(),
        MessageKind::Propose => {
            let entries: Vec<String> = message.entries.iter().map(entry_text).collect();
            write!(text, " entries=[{}]", entries.join(", ")).unwrap();
        }
        _ => {}
    }
    if !message.context.is_empty() && message.kind != MessageKind::Vote {
        write!(text, " ctx={:?}", String::from_utf8_lossy(&message.context)).unwrap();
    }
    text
}

impl Script {
    fn new() -> Script {
        Script {
            cluster: Cluster::new(),
            defaults: BTreeMap::new(),
        }
    }

    fn config(&self, id: NodeId, options: &BTreeMap<String, String>) -> Config {
        let get = |key: &str| options.get(key).or_else(|| self.defaults.get(key));
        let mut config = Config::new(id);
        config.pre_vote = get("prevote").is_none_or(|value| value == "true");
        config.check_quorum = get("checkquorum").is_none_or(|value| value == "true");
        config.election_ticks = get("election").map_or(10, |value| value.parse().unwrap());
        config.heartbeat_ticks = get("heartbeat").map_or(1, |value| value.parse().unwrap());
        config.max_inflight_messages = get("inflight").map_or(256, |value| value.parse().unwrap());
        config.max_message_bytes = get("maxmsg").map_or(1024 * 1024, |value| value.parse().unwrap());
        config
    }

    fn drain_events(&mut self, out: &mut String) {
        for event in std::mem::take(&mut self.cluster.events) {
            match event {
                Event::Sent(_) => {}
                Event::Applied(id, entry) => writeln!(out, "{id} applied {}", entry_text(&entry)).unwrap(),
                Event::Read(id, index, context) => writeln!(
                    out,
                    "{id} read ctx={:?} index={index}",
                    String::from_utf8_lossy(&context)
                )
                .unwrap(),
                Event::Snapshot(id, index) => writeln!(out, "{id} installed snapshot at {index}").unwrap(),
            }
        }
    }

    fn status_line(&self, id: NodeId) -> String {
        let node = self.cluster.node(id);
        let Some(raft) = node.raft.as_ref() else {
            return format!("{id}: down");
        };
        let status = raft.status();
        format!(
            "{id}: {:?} term={} leader={} commit={} applied={} log={}..{} voters={:?} learners={:?}",
            status.role,
            status.term,
            status.leader,
            status.committed,
            node.machine.applied,
            status.first_index,
            status.last_index,
            status.conf_state.voters.iter().map(|node| node.0).collect::<Vec<_>>(),
            status.conf_state.learners.iter().map(|node| node.0).collect::<Vec<_>>(),
        )
    }

    /// Runs one command and returns its output.
    fn run(&mut self, line: &str) -> String {
        let mut words = line.split_whitespace();
        let command = words.next().expect("empty command");
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    options.insert(key.to_string(), value.to_string());
                }
                None => positional.push(word.to_string()),
            }
        }
        let node_arg = |index: usize| NodeId(positional[index].parse().expect("node id argument"));
        let mut out = String::new();
        match command {
            "cluster" => {
                self.defaults = options.clone();
                let voters = parse_nodes(options.get("voters").expect("voters="));
                let learners = parse_nodes(options.get("learners").map_or("", String::as_str));
                let conf = ConfState::new(voters.clone(), learners.clone());
                for id in voters.iter().chain(learners.iter()) {
                    let config = self.config(*id, &options);
                    self.cluster.add_node(config, conf.clone());
                }
                out.push_str("ok\n");
            }
            "add-node" => {
                let id = node_arg(0);
                let config = self.config(id, &options);
                self.cluster.add_node(config, ConfState::default());
                out.push_str("ok\n");
            }
            "campaign" => {
                self.cluster.node_mut(node_arg(0)).raft_mut().campaign();
                out.push_str("ok\n");
            }
            "tick" => {
                let count: usize = options.get("count").map_or(1, |value| value.parse().unwrap());
                let targets = if positional.is_empty() {
                    self.cluster.ids()
                } else {
                    positional.iter().map(|id| NodeId(id.parse().unwrap())).collect()
                };
                for _ in 0..count {
                    for id in &targets {
                        if let Some(raft) = self.cluster.node_mut(*id).raft.as_mut() {
                            raft.tick();
                        }
                    }
                }
                out.push_str("ok\n");
            }
            "elapse" => {
                // Real time passing: every tick is followed by handling readies
                // and delivering messages. Heartbeat traffic is not printed.
                let count: usize = options.get("count").map_or(1, |value| value.parse().unwrap());
                let targets = if positional.is_empty() {
                    self.cluster.ids()
                } else {
                    positional.iter().map(|id| NodeId(id.parse().unwrap())).collect()
                };
                for _ in 0..count {
                    for id in &targets {
                        if let Some(raft) = self.cluster.node_mut(*id).raft.as_mut() {
                            raft.tick();
                        }
                    }
                    for message in self.cluster.stabilize(1000) {
                        if !matches!(message.kind, MessageKind::Heartbeat | MessageKind::HeartbeatResponse) {
                            writeln!(out, "{}", message_text(&message)).unwrap();
                        }
                    }
                }
                self.drain_events(&mut out);
                if out.is_empty() {
                    out.push_str("ok\n");
                }
            }
            "propose" => {
                let data = Bytes::from(positional[1].clone());
                match self.cluster.node_mut(node_arg(0)).raft_mut().propose(data) {
                    Ok(()) => out.push_str("ok\n"),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            "propose-conf-change" => {
                let kind = match positional[1].as_str() {
                    "add-voter" => ConfChangeKind::AddVoter,
                    "remove-voter" => ConfChangeKind::RemoveVoter,
                    "add-learner" => ConfChangeKind::AddLearner,
                    other => panic!("unknown change {other}"),
                };
                let change = ConfChange {
                    kind,
                    node: NodeId(positional[2].parse().unwrap()),
                    context: Bytes::new(),
                };
                match self
                    .cluster
                    .node_mut(node_arg(0))
                    .raft_mut()
                    .propose_conf_change(change)
                {
                    Ok(()) => out.push_str("ok\n"),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            "read-index" => {
                let context = Bytes::from(positional[1].clone());
                match self.cluster.node_mut(node_arg(0)).raft_mut().read_index(context) {
                    Ok(()) => out.push_str("ok\n"),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            "transfer-leader" => {
                let to = NodeId(positional[1].parse().unwrap());
                match self.cluster.node_mut(node_arg(0)).raft_mut().transfer_leader(to) {
                    Ok(()) => out.push_str("ok\n"),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            "compact" => {
                let id = node_arg(0);
                let applied = self.cluster.node(id).machine.applied;
                let index = options
                    .get("index")
                    .map_or(applied, |value| Index(value.parse().unwrap()));
                match self.cluster.compact(id, index) {
                    Ok(()) => writeln!(out, "compacted to {index}").unwrap(),
                    Err(error) => writeln!(out, "error: {error}").unwrap(),
                }
            }
            "stabilize" => {
                for message in self.cluster.stabilize(1000) {
                    writeln!(out, "{}", message_text(&message)).unwrap();
                }
                self.drain_events(&mut out);
            }
            "process-ready" => {
                // Handle readies (persist, apply) without delivering anything.
                let targets = if positional.is_empty() {
                    self.cluster.ids()
                } else {
                    positional.iter().map(|id| NodeId(id.parse().unwrap())).collect()
                };
                for id in targets {
                    self.cluster.handle_ready(id);
                }
                for event in &self.cluster.events {
                    if let Event::Sent(message) = event {
                        writeln!(out, "sent {}", message_text(message)).unwrap();
                    }
                }
                self.drain_events(&mut out);
            }
            "deliver" => {
                // Deliver the pending messages once, in order (no new readies).
                let mut delivered = Vec::new();
                while !self.cluster.network.is_empty() {
                    if let Some(message) = self.cluster.deliver_at(0) {
                        delivered.push(message);
                    }
                }
                for message in delivered {
                    writeln!(out, "{}", message_text(&message)).unwrap();
                }
            }
            "drop-messages" => {
                let count = self.cluster.network.len();
                self.cluster.network.clear();
                writeln!(out, "dropped {count}").unwrap();
            }
            "crash" => {
                self.cluster.crash(node_arg(0));
                out.push_str("ok\n");
            }
            "restart" => {
                self.cluster.restart(node_arg(0));
                out.push_str("ok\n");
            }
            "isolate" => {
                self.cluster.isolate(node_arg(0));
                out.push_str("ok\n");
            }
            "partition" => {
                let groups: Vec<Vec<NodeId>> = positional.iter().map(|group| parse_nodes(group)).collect();
                self.cluster.partition(&groups);
                out.push_str("ok\n");
            }
            "heal" => {
                self.cluster.heal();
                out.push_str("ok\n");
            }
            "status" => {
                for id in self.cluster.ids() {
                    writeln!(out, "{}", self.status_line(id)).unwrap();
                }
            }
            "log" => {
                let raft = self.cluster.node(node_arg(0)).raft();
                for entry in raft.log_entries() {
                    writeln!(out, "{}", entry_text(entry)).unwrap();
                }
                if out.is_empty() {
                    out.push_str("(empty)\n");
                }
            }
            "expect-leader" => {
                // The leader leads, and every running member of its configuration
                // that it can reach follows it.
                let expected = node_arg(0);
                let leader = self.cluster.node(expected).raft();
                assert_eq!(leader.role(), Role::Leader, "expected {expected} to lead");
                let members = leader.conf_state().clone();
                for (id, node) in &self.cluster.nodes {
                    let Some(raft) = node.raft.as_ref() else { continue };
                    if *id != expected && members.contains(*id) && !self.cluster.cut.contains(&(expected, *id)) {
                        assert_eq!(raft.leader(), expected, "node {id} does not follow {expected}");
                    }
                }
                out.push_str("ok\n");
            }
            "expect-role" => {
                let role = self.cluster.node(node_arg(0)).raft().role();
                assert_eq!(format!("{role:?}"), positional[1], "role of node {}", positional[0]);
                out.push_str("ok\n");
            }
            "expect-term" => {
                let term = self.cluster.node(node_arg(0)).raft().term();
                assert_eq!(term.0.to_string(), positional[1], "term of node {}", positional[0]);
                out.push_str("ok\n");
            }
            "expect-applied" => {
                let expected: u64 = positional[1].parse().unwrap();
                let applied = self.cluster.node(node_arg(0)).machine.applied;
                assert_eq!(applied, Index(expected), "applied index of node {}", positional[0]);
                out.push_str("ok\n");
            }
            "expect-same-state" => {
                // Every running member of the newest leader's configuration
                // (all running nodes if there is no leader) holds the same state.
                let newest_leader = self.cluster.leaders().into_iter().max_by_key(|(_, term)| *term);
                let members = newest_leader.map(|(leader, _)| self.cluster.node(leader).raft().conf_state().clone());
                let machines: Vec<_> = self
                    .cluster
                    .nodes
                    .iter()
                    .filter(|(id, node)| node.is_up() && members.as_ref().is_none_or(|conf| conf.contains(**id)))
                    .map(|(_, node)| node.machine)
                    .collect();
                assert!(
                    machines.windows(2).all(|pair| pair[0] == pair[1]),
                    "state machines differ: {machines:?}"
                );
                out.push_str("ok\n");
            }
            other => panic!("unknown command {other:?}"),
        }
        out
    }
}

/// Runs one script file; returns the rewritten text and whether it matched.
fn run_file(text: &str) -> (String, Vec<String>) {
    let mut script = Script::new();
    let mut rewritten = String::new();
    let mut mismatches = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut position = 0;
    while position < lines.len() {
        let line = lines[position];
        position += 1;
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        assert_eq!(
            lines.get(position).copied(),
            Some("----"),
            "command {line:?} must be followed by ----"
        );
        position += 1;
        let mut expected = String::new();
        while position < lines.len() && !lines[position].trim().is_empty() {
            expected.push_str(lines[position]);
            expected.push('\n');
            position += 1;
        }
        println!("> {line}");
        let actual = script.run(line);
        let actual = if actual.is_empty() {
            "(no output)\n".to_string()
        } else {
            actual
        };
        if actual != expected {
            mismatches.push(format!(
                "command {line:?}\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
        rewritten.push_str(line);
        rewritten.push_str("\n----\n");
        rewritten.push_str(&actual);
    }
    (rewritten, mismatches)
}

#[test]
fn interaction_scripts() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/raft");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("testdata/raft exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected at least 8 scripts, found {}", files.len());
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut failures = Vec::new();
    let mut commands = 0;
    for file in &files {
        println!("script {}", file.display());
        let text = std::fs::read_to_string(file).unwrap();
        commands += text.lines().filter(|line| *line == "----").count();
        let (rewritten, mismatches) = run_file(&text);
        if rewrite {
            std::fs::write(file, rewritten).unwrap();
        } else if !mismatches.is_empty() {
            failures.push(format!("{}:\n{}", file.display(), mismatches.join("\n")));
        }
    }
    println!("{} scripts, {commands} commands", files.len());
    assert!(failures.is_empty(), "script output differs:\n{}", failures.join("\n\n"));
}
