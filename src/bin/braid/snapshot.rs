//! `braid snapshot restore|status`: what `etcdutl snapshot restore|status` do for etcd, for
//! the files `etcdctl snapshot save` downloads from braid (whose payload is braid's B+tree,
//! not bbolt, so etcd's own tools cannot read them; see `server::snapshot_file`).
//!
//! ```text
//! braid snapshot restore <file> [--data-dir DIR] [--name NAME] [--initial-cluster CLUSTER]
//!       [--initial-cluster-token TOKEN] [--initial-advertise-peer-urls URLS] [--skip-hash-check]
//! braid snapshot status <file> [--write-out simple|table|json]
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;

use braid::config::{self, Command, Url};
use braid::io::{DevicePreference, OsDir};
use braid::server::cluster::{cluster_id, member_id};
use braid::server::snapshot_file::{describe_snapshot, restore_state_file, verify_snapshot_file, SnapshotSummary};

use crate::{PAGE_SIZE, STORAGE_DIR};

const USAGE: &str = "usage:
  braid snapshot restore <file> [--data-dir DIR] [--name NAME] [--initial-cluster CLUSTER]
        [--initial-cluster-token TOKEN] [--initial-advertise-peer-urls URLS] [--skip-hash-check]
  braid snapshot status <file> [--write-out simple|table|json]
";

/// The restore flags etcdutl takes and braid passes on to its server flag parser.
const RESTORE_FLAGS: [&str; 5] = [
    "data-dir",
    "name",
    "initial-cluster",
    "initial-cluster-token",
    "initial-advertise-peer-urls",
];

struct Arguments {
    command: String,
    file: String,
    flags: BTreeMap<String, String>,
    skip_hash_check: bool,
}

fn parse(args: &[String]) -> Result<Arguments, String> {
    let mut positional = Vec::new();
    let mut flags = BTreeMap::new();
    let mut skip_hash_check = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        let name = if name == "w" { "write-out" } else { name };
        if name == "skip-hash-check" {
            skip_hash_check = inline.as_deref().is_none_or(|value| value == "true");
            continue;
        }
        if !RESTORE_FLAGS.contains(&name) && name != "write-out" {
            return Err(format!("unknown flag: --{name}"));
        }
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .ok_or_else(|| format!("flag needs an argument: --{name}"))?
                .clone(),
        };
        flags.insert(name.to_string(), value);
    }
    let [command, file] = <[String; 2]>::try_from(positional)
        .map_err(|positional| format!("expected a command and one file, got {positional:?}"))?;
    Ok(Arguments {
        command,
        file,
        flags,
        skip_hash_check,
    })
}

/// Runs `braid snapshot …` with the arguments after `snapshot`.
pub fn main(args: &[String]) -> ExitCode {
    let arguments = match parse(args) {
        Ok(arguments) => arguments,
        Err(message) => {
            eprint!("Error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match arguments.command.as_str() {
        "restore" => runtime.block_on(restore(&arguments)),
        "status" => runtime.block_on(status(&arguments)),
        other => Err(format!("unknown snapshot command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn read_payload(arguments: &Arguments) -> Result<Vec<u8>, String> {
    let file = std::fs::read(&arguments.file).map_err(|error| format!("cannot read {}: {error}", arguments.file))?;
    Ok(verify_snapshot_file(&file, arguments.skip_hash_check)?.to_vec())
}

async fn restore(arguments: &Arguments) -> Result<(), String> {
    // The server's own flag parser gives the same defaults and the same membership checks.
    let server_args: Vec<String> = arguments
        .flags
        .iter()
        .filter(|(name, _)| RESTORE_FLAGS.contains(&name.as_str()))
        .flat_map(|(name, value)| [format!("--{name}"), value.clone()])
        .collect();
    let config = match config::parse_command(&server_args, &BTreeMap::new()) {
        Ok(Command::Run(config, _)) => config,
        Ok(_) => return Err("unexpected flags".to_string()),
        Err(error) => return Err(error.stderr_text().trim().to_string()),
    };
    let members = config.verify_initial_cluster().map_err(|error| error.message)?;
    let payload = read_payload(arguments)?;
    if config.data_dir.exists() {
        return Err(format!("data-dir {:?} exists", config.data_dir.display().to_string()));
    }
    let storage = config.data_dir.join(STORAGE_DIR);
    std::fs::create_dir_all(&storage).map_err(|error| format!("cannot create {}: {error}", storage.display()))?;
    let (dir, _) = OsDir::open(&storage, DevicePreference::Auto)
        .map_err(|error| format!("cannot open {}: {error}", storage.display()))?;
    let summary = restore_state_file(&dir, &payload, PAGE_SIZE).await?;

    let token = &config.initial_cluster_token;
    let mut ids = Vec::new();
    let mut own = 0;
    for (name, urls) in &members {
        let id = member_id(&urls.iter().map(Url::to_string).collect::<Vec<_>>(), token);
        ids.push(id);
        if *name == config.name {
            own = id.0;
        }
    }
    println!(
        "restored snapshot {} (revision {}, {} entries) into {}: member {own:x} of new cluster {:x}; \
         start braid with the same --name, --initial-cluster, --initial-cluster-token and \
         --initial-advertise-peer-urls",
        arguments.file,
        summary.revision,
        summary.total_keys,
        config.data_dir.display(),
        cluster_id(&ids, token),
    );
    Ok(())
}

async fn status(arguments: &Arguments) -> Result<(), String> {
    let payload = read_payload(arguments)?;
    let summary = describe_snapshot(&payload, PAGE_SIZE).await?;
    let format = arguments.flags.get("write-out").map_or("simple", String::as_str);
    print!("{}", format_status(&summary, format)?);
    Ok(())
}

/// etcdctl's `snapshot status` output formats.
fn format_status(summary: &SnapshotSummary, format: &str) -> Result<String, String> {
    let size = human_bytes(summary.total_bytes);
    Ok(match format {
        "simple" => format!(
            "{:x}, {}, {}, {size}\n",
            summary.hash, summary.revision, summary.total_keys
        ),
        "json" => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            summary.hash, summary.revision, summary.total_keys, summary.total_bytes
        ),
        "table" => {
            let cells = [
                format!("{:x}", summary.hash),
                summary.revision.to_string(),
                summary.total_keys.to_string(),
                size,
            ];
            let titles = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = titles
                .iter()
                .zip(&cells)
                .map(|(title, cell)| title.len().max(cell.len()))
                .collect();
            let rule: String = widths
                .iter()
                .map(|width| format!("+{}", "-".repeat(width + 2)))
                .collect();
            let row = |texts: Vec<String>| -> String {
                let padded: String = texts
                    .iter()
                    .zip(&widths)
                    .map(|(text, width)| format!("| {text:^width$} "))
                    .collect();
                format!("{padded}|\n")
            };
            format!(
                "{rule}+\n{}{rule}+\n{}{rule}+\n",
                row(titles.iter().map(|title| title.to_string()).collect()),
                row(cells.to_vec())
            )
        }
        other => return Err(format!("unsupported output format {other:?} (simple, table or json)")),
    })
}

/// go-humanize's `Bytes` (SI units), as etcdctl prints sizes.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).log10() / 3.0).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = bytes as f64 / 1000f64.powi(exponent as i32);
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}
