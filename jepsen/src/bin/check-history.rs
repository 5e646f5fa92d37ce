//! Checks a recorded history for linearizability.
//!
//! Usage: `check-history [--model register|register-revisions|etcd] [--budget-ms N]
//! [--threads N] [--format jsonl|jepsen-etcd-log] FILE`
//!
//! Exit codes: 0 linearizable; 1 not linearizable; 2 unknown (budget ran out: a failure too);
//! 3 bad arguments or unreadable history.

use std::process::ExitCode;
use std::time::Duration;

use braid_jepsen::jepsen_log::parse_jepsen_etcd_log;
use braid_jepsen::{check, CheckError, CheckOptions, CheckResult, EtcdModel, History, Model, RegisterModel, Verdict};

const USAGE: &str = "usage: check-history [--model register|register-revisions|etcd] \
[--budget-ms N] [--threads N] [--format jsonl|jepsen-etcd-log] FILE";

struct Arguments {
    model: String,
    budget_ms: Option<u64>,
    threads: usize,
    format: String,
    path: String,
}

fn parse_arguments(arguments: &[String]) -> Result<Arguments, String> {
    let mut parsed = Arguments {
        model: String::from("register"),
        budget_ms: None,
        threads: 1,
        format: String::from("jsonl"),
        path: String::new(),
    };
    let mut iterator = arguments.iter();
    while let Some(argument) = iterator.next() {
        let mut value = |name: &str| iterator.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match argument.as_str() {
            "--model" => parsed.model = value("--model")?,
            "--format" => parsed.format = value("--format")?,
            "--budget-ms" => {
                let text = value("--budget-ms")?;
                parsed.budget_ms = Some(text.parse().map_err(|_| format!("--budget-ms: not a number: {text}"))?);
            }
            "--threads" => {
                let text = value("--threads")?;
                parsed.threads = text.parse().map_err(|_| format!("--threads: not a number: {text}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with("--") => return Err(format!("unknown flag {other}")),
            other if parsed.path.is_empty() => parsed.path = other.to_owned(),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if parsed.path.is_empty() {
        return Err(String::from("no history file given"));
    }
    Ok(parsed)
}

fn run_model<M: Model>(model: &M, history: &History, options: &CheckOptions) -> Result<CheckResult, CheckError> {
    check(model, history, options)
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments = match parse_arguments(&arguments) {
        Ok(arguments) => arguments,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("check-history: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(3);
        }
    };
    let text = match std::fs::read_to_string(&arguments.path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("check-history: cannot read {}: {error}", arguments.path);
            return ExitCode::from(3);
        }
    };
    let history = match arguments.format.as_str() {
        "jsonl" => History::from_jsonl_str(&text).map_err(|error| error.to_string()),
        "jepsen-etcd-log" => parse_jepsen_etcd_log(&text).map_err(|error| error.to_string()),
        other => Err(format!("unknown format {other}")),
    };
    let history = match history.and_then(|history| {
        history.validate().map_err(|error| error.to_string())?;
        Ok(history)
    }) {
        Ok(history) => history,
        Err(message) => {
            eprintln!("check-history: {message}");
            return ExitCode::from(3);
        }
    };
    let mut options = CheckOptions::default().with_threads(arguments.threads);
    if let Some(budget_ms) = arguments.budget_ms {
        options = options.with_budget(Duration::from_millis(budget_ms));
    }
    let result = match arguments.model.as_str() {
        "register" => run_model(&RegisterModel::new(), &history, &options),
        "register-revisions" => run_model(&RegisterModel::revision_aware(), &history, &options),
        "etcd" => run_model(&EtcdModel::new(), &history, &options),
        other => {
            eprintln!("check-history: unknown model {other}\n{USAGE}");
            return ExitCode::from(3);
        }
    };
    let result = match result {
        Ok(result) => result,
        Err(error) => {
            eprintln!("check-history: {error}");
            return ExitCode::from(3);
        }
    };
    let (ok, fail, info) = history.status_counts();
    let statistics = &result.statistics;
    println!(
        "verdict: {} | model {} | operations {} (ok {ok}, fail {fail}, info {info}; {} dropped) | partitions {} (largest {}) | {:.3} ms",
        result.verdict.label(),
        arguments.model,
        history.len(),
        statistics.dropped,
        statistics.partitions,
        statistics.largest_partition,
        statistics.elapsed.as_secs_f64() * 1000.0
    );
    match &result.verdict {
        Verdict::Ok => ExitCode::SUCCESS,
        Verdict::Illegal(report) => {
            println!("{report}");
            ExitCode::from(1)
        }
        Verdict::Unknown(_) => {
            println!("{}", result.verdict);
            ExitCode::from(2)
        }
    }
}
