//! braid-bench: a load generator on etcd's v3 gRPC API, so one load runs
//! unchanged against braid and against etcd (benches/compare.sh runs both).
//! `braid-bench --help` lists the workloads and flags.
//!
//! This is a benchmark tool outside the server: it reads the real clock
//! (std::time::Instant) and runs on a plain tokio runtime.

mod connect;
mod load;
mod options;
mod summary;
mod watch;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::load::{run_clients, spawn_progress, Shared, Values};
use crate::options::{Options, Workload, USAGE};
use crate::summary::{Latencies, Summary};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments
        .iter()
        .any(|argument| argument == "--help" || argument == "-h")
    {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(arguments) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("braid-bench: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("braid-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = Arc::new(options);
    if options.workload == Workload::Status {
        return match runtime.block_on(connect::print_status(&options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(problem) => {
                eprintln!("braid-bench: {problem}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(&options)) {
        Ok(summary) => {
            if options.json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(problem) => {
            // Scripts still get one JSON object, naming why nothing was measured.
            if options.json {
                println!("{}", json!({ "workload": options.workload.name(), "fatal": problem }));
            }
            eprintln!("braid-bench: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Arc<Options>) -> Result<Summary, String> {
    let targets = connect::targets(options).await?;
    let channels = connect::channels(options, &targets).await?;
    let started = Instant::now();
    let shared = Arc::new(Shared::new(options, started));
    let progress = spawn_progress(options.workload.name(), Arc::clone(&shared), started);
    let measured = if options.workload == Workload::WatchLatency {
        watch::run(options, &channels, &shared, started).await.map(|outcome| {
            // The headline latency is put -> event delivery; the Puts' own goes alongside.
            let put_latency = Latencies::of(&outcome.puts);
            let extra = vec![
                ("watchers", json!(options.watchers)),
                ("events", json!(outcome.events)),
                ("expected_events", json!(outcome.expected_events)),
                ("put_p50_ms", json!(put_latency.p50_ms)),
                ("put_p99_ms", json!(put_latency.p99_ms)),
            ];
            (Latencies::of(&outcome.deliveries), outcome.writers_elapsed, extra)
        })
    } else {
        let latencies = run_clients(options, &channels, &shared, Values::fixed(options.value_size)).await;
        Ok((Latencies::of(&latencies), started.elapsed(), Vec::new()))
    };
    progress.abort();
    let (latency, elapsed, extra) = measured?;
    let first_error = shared
        .first_error
        .lock()
        .expect("no client panics while holding this lock")
        .clone();
    Ok(Summary {
        workload: options.workload.name(),
        endpoints: targets,
        connections: options.connections,
        clients: options.clients,
        elapsed,
        operations: shared.completed.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        latency,
        extra,
    })
}
