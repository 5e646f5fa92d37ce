//! Put and get throughput and latency of braid processes on loopback, driven
//! through the crates.io etcd-client crate (so the same load runs unchanged
//! against etcd). Starts a 1-member and a 3-member cluster itself, in a temp
//! dir on the same disk, runs a fixed number of operations per phase with a
//! fixed number of concurrent clients, and prints throughput and latency
//! percentiles. Bounded: `KV_LOAD_OPS` operations per phase (default 20000).
//!
//! `cargo bench --bench kv_load` (`KV_LOAD_CLIENTS`, `KV_LOAD_VALUE_BYTES` tune it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    children: Vec<Child>,
    endpoints: Vec<String>,
    root: PathBuf,
}

impl Cluster {
    fn start(size: usize) -> Cluster {
        let root = std::env::temp_dir().join(format!("braid-kv-load-{}-{size}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(index, (_, peer))| format!("m{index}=http://127.0.0.1:{peer}"))
            .collect();
        let mut children = Vec::new();
        let mut endpoints = Vec::new();
        for (index, (client, peer)) in ports.iter().enumerate() {
            let child = Command::new(env!("CARGO_BIN_EXE_braid"))
                .arg(format!("--name=m{index}"))
                .arg(format!("--data-dir={}", root.join(format!("m{index}")).display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("braid starts");
            children.push(child);
            endpoints.push(format!("127.0.0.1:{client}"));
        }
        Cluster {
            children,
            endpoints,
            root,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn connect(endpoints: &[String]) -> Client {
    for _ in 0..200 {
        if let Ok(mut client) = Client::connect(endpoints, None).await {
            if client.put("warmup", "1", None).await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cluster did not come up");
}

#[derive(Clone, Copy)]
enum Phase {
    Put,
    Get,
}

async fn run_phase(client: &Client, phase: Phase, clients: usize, ops: usize, value: &[u8]) -> (f64, Histogram<u64>) {
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()));
    let started = Instant::now();
    let per_client = ops / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|worker| {
            let mut client = client.clone();
            let histogram = Arc::clone(&histogram);
            let value = value.to_vec();
            tokio::spawn(async move {
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                for op in 0..per_client {
                    let key = format!("key-{:06}", (worker * per_client + op) % 10_000);
                    let began = Instant::now();
                    match phase {
                        Phase::Put => {
                            client.put(key, value.clone(), None).await.expect("put");
                        }
                        Phase::Get => {
                            client.get(key, None).await.expect("get");
                        }
                    }
                    local.record(began.elapsed().as_micros().max(1) as u64).unwrap();
                }
                histogram.lock().await.add(&local).unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let throughput = (per_client * clients) as f64 / started.elapsed().as_secs_f64();
    let histogram = Arc::try_unwrap(histogram).unwrap().into_inner();
    (throughput, histogram)
}

fn report(label: &str, throughput: f64, histogram: &Histogram<u64>) {
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{label:<34} {throughput:>9.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() {
    let ops = env_number("KV_LOAD_OPS", 20_000);
    let value = vec![b'v'; env_number("KV_LOAD_VALUE_BYTES", 256)];
    let client_counts = [1, env_number("KV_LOAD_CLIENTS", 64)];
    for size in [1, 3] {
        let cluster = Cluster::start(size);
        let client = connect(&cluster.endpoints).await;
        for clients in client_counts {
            let phase_ops = if clients == 1 { ops / 10 } else { ops };
            let (throughput, histogram) = run_phase(&client, Phase::Put, clients, phase_ops, &value).await;
            report(
                &format!("{size} member(s), put, {clients} client(s)"),
                throughput,
                &histogram,
            );
            let (throughput, histogram) = run_phase(&client, Phase::Get, clients, phase_ops, &value).await;
            report(
                &format!("{size} member(s), get, {clients} client(s)"),
                throughput,
                &histogram,
            );
        }
    }
}
