//! Real server processes on loopback for end-to-end tests: braid (the binary
//! built with the tests) and, where installed, the real etcd to compare with.
//! Every process is killed when its handle drops; every wait is bounded.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(label: &str) -> PathBuf {
    let unique = format!("braid-{label}-{}-{}", std::process::id(), free_port());
    let path = std::env::temp_dir().join(unique);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// A command-line tool the test needs; missing tools fail the test unless the
/// environment says they may be skipped (the test command installs them).
pub fn require_tool(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var_os("BRAID_ALLOW_MISSING_TOOLS").is_some() {
        eprintln!("skipping: {path} is not installed");
        return false;
    }
    panic!("{path} is not installed (./test.sh installs it; set BRAID_ALLOW_MISSING_TOOLS=1 to skip)");
}

pub struct Server {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub program: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// Flags every etcd-compatible server understands for one member.
    pub fn member_args(name: &str, data_dir: &Path, client_port: u16, peer_port: u16, cluster: &str) -> Vec<String> {
        vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster={cluster}"),
            "--heartbeat-interval=50".to_string(),
            "--election-timeout=500".to_string(),
        ]
    }

    /// A one-member cluster named `default` (not yet known to be ready).
    pub fn start_single(program: &str, label: &str) -> Server {
        let (client, peer) = (free_port(), free_port());
        let data_dir = temp_dir(label);
        let cluster = format!("default=http://127.0.0.1:{peer}");
        let args = Server::member_args("default", &data_dir, client, peer, &cluster);
        Server::start(program, label, client, peer, args)
    }

    /// The members `names` of one cluster (not yet known to be ready).
    pub fn start_cluster(program: &str, names: &[&str]) -> Vec<Server> {
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        names
            .iter()
            .zip(&ports)
            .map(|(name, (client, peer))| {
                let data_dir = temp_dir(name);
                let args = Server::member_args(name, &data_dir, *client, *peer, &initial);
                Server::start(program, name, *client, *peer, args)
            })
            .collect()
    }

    pub fn start(program: &str, name: &str, client_port: u16, peer_port: u16, args: Vec<String>) -> Server {
        let data_dir = args
            .iter()
            .find_map(|arg| arg.strip_prefix("--data-dir=").map(PathBuf::from))
            .expect("--data-dir");
        let mut server = Server {
            name: name.to_string(),
            client_port,
            peer_port,
            log_path: data_dir.with_extension("log"),
            data_dir,
            args,
            program: program.to_string(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log_path).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.program));
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) for the process to exit on its own; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the member answers a linearizable read (bounded).
    pub fn wait_ready(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            let output = etcdctl(&self.endpoint(), &["get", "readiness-probe"], None);
            if output.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} did not become ready within {limit:?}; log:\n{}",
            self.name,
            self.log()
        );
    }
}

/// One member of `program` per name, on loopback, as one cluster; returns once every member
/// answers a linearizable read.
pub fn start_cluster(program: &str, names: &[&str]) -> Vec<Server> {
    let members = Server::start_cluster(program, names);
    for member in &members {
        member.wait_ready(Duration::from_secs(30));
    }
    members
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

pub const ETCDCTL: &str = "/usr/bin/etcdctl";
pub const ETCD: &str = "/usr/bin/etcd";
pub const BRAID: &str = env!("CARGO_BIN_EXE_braid");

/// An etcdctl command for `endpoint` with `args`, stdout and stderr piped.
pub fn etcdctl_command(endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(ETCDCTL);
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs etcdctl (bounded by its own --command-timeout) with optional stdin.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = etcdctl_command(endpoint, args);
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("etcdctl runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The steps of two etcdctl transcripts that differ, each as `--- etcd` /
/// `--- braid` text for an assertion message.
pub fn differing_steps(expected: &[String], actual: &[String]) -> Vec<String> {
    expected
        .iter()
        .zip(actual)
        .filter(|(expected, actual)| expected != actual)
        .map(|(expected, actual)| format!("--- etcd\n{expected}\n--- braid\n{actual}"))
        .collect()
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
