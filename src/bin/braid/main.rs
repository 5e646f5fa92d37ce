//! `braid`: the server binary. etcd's flags in, a running member out.
//!
//! flags/env/YAML -> `config::ServerConfig` -> member identity and storage ->
//! `server::node::start` -> gRPC + HTTP on the client URLs, the peer protocol
//! on the peer URLs.

mod http;
mod snapshot;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use braid::config::{self, AutoCompaction, ClusterState, Command, ServerConfig, Url};
use braid::io::{DevicePreference, OsDir, SystemClock};
use braid::raft::{ConfState, NodeId};
use braid::server::cluster::{cluster_id, member_id};
use braid::server::identity::{self, Identity};
use braid::server::join;
use braid::server::membership::{Member, REMOVED_TEXT};
use braid::server::node::{self, MembershipOptions, NodeError, NodeOptions};
use braid::server::{AutoCompactionPolicy, MaintenanceOptions};
use braid::wal::WalOptions;
use braid_proto::braidpb::peer_server::PeerServer;

/// The state file's page size.
const PAGE_SIZE: usize = 4096;
/// braid's files live in this directory inside `--data-dir`.
const STORAGE_DIR: &str = "braid";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|command| command == "snapshot") {
        return snapshot::main(&args[1..]);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (config, warnings) = match config::parse_command(&args, &env) {
        Ok(Command::Run(config, warnings)) => (config, warnings),
        Ok(Command::Version(text)) | Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprint!("{}", error.stderr_text());
            return ExitCode::from(error.exit_code.clamp(1, 255) as u8);
        }
    };
    for warning in warnings {
        eprintln!("braid: warning: {}", warning.message);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("braid: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("braid: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that identifies this member in its cluster.
struct Membership {
    id: NodeId,
    cluster_id: u64,
    initial_conf: ConfState,
    peer_urls: BTreeMap<NodeId, String>,
    names: BTreeMap<NodeId, String>,
    /// The founding members (written into the bootstrap entries).
    initial_members: Vec<Member>,
}

/// The member's identity and peers: from its data directory after the first
/// start, else from `--initial-cluster` (new cluster) or from the running
/// cluster (joining one), and then stored.
async fn identify(config: &ServerConfig, fresh: bool, dir: &OsDir) -> Result<Membership, String> {
    let stored = identity::load(dir)
        .await
        .map_err(|error| format!("cannot read the member identity: {error}"))?;
    let mut membership = membership(config, fresh)?;
    if let Some(stored) = stored {
        membership.id = NodeId(stored.member_id);
        membership.cluster_id = stored.cluster_id;
        membership.peer_urls.remove(&membership.id);
        return Ok(membership);
    }
    if fresh && config.initial_cluster_state == ClusterState::Existing {
        let others: Vec<String> = membership.peer_urls.values().cloned().collect();
        let cluster = join::fetch_cluster(&others).await?;
        let own_urls: Vec<String> = config.initial_advertise_peer_urls.iter().map(Url::to_string).collect();
        let own = cluster.find_self(&own_urls)?;
        eprintln!(
            "braid: joining cluster {:x} as member {:x} (added by MemberAdd)",
            cluster.cluster_id, own.id.0
        );
        membership.id = own.id;
        membership.cluster_id = cluster.cluster_id;
        membership.peer_urls = cluster
            .members
            .iter()
            .filter(|member| member.id != own.id)
            .filter_map(|member| Some((member.id, member.peer_urls.first()?.clone())))
            .collect();
        membership.names = cluster
            .members
            .iter()
            .map(|member| (member.id, member.name.clone()))
            .collect();
    }
    let identity = Identity {
        member_id: membership.id.0,
        cluster_id: membership.cluster_id,
    };
    identity::store(dir, identity)
        .await
        .map_err(|error| format!("cannot store the member identity: {error}"))?;
    Ok(membership)
}

fn membership(config: &ServerConfig, fresh: bool) -> Result<Membership, String> {
    let cluster = if fresh && config.initial_cluster_state == ClusterState::New {
        config.verify_initial_cluster()
    } else {
        config.initial_cluster()
    }
    .map_err(|error| error.message)?;
    let token = &config.initial_cluster_token;
    let mut ids = Vec::new();
    let mut peer_urls = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut own = None;
    let mut initial_members = Vec::new();
    for (name, urls) in &cluster {
        let texts: Vec<String> = urls.iter().map(Url::to_string).collect();
        let id = member_id(&texts, token);
        ids.push(id);
        names.insert(id, name.clone());
        peer_urls.insert(id, texts[0].clone());
        initial_members.push(Member {
            id,
            name: name.clone(),
            peer_urls: texts,
            ..Member::default()
        });
        if *name == config.name {
            own = Some(id);
        }
    }
    let id = own.ok_or_else(|| {
        format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            config.name
        )
    })?;
    peer_urls.remove(&id);
    let initial_conf = match config.initial_cluster_state {
        ClusterState::New => ConfState::new(ids.iter().copied(), []),
        // A joining member learns the configuration from the leader.
        ClusterState::Existing => ConfState::default(),
    };
    Ok(Membership {
        id,
        cluster_id: cluster_id(&ids, token),
        initial_conf,
        peer_urls,
        names,
        initial_members,
    })
}

/// Refuses a data directory that holds etcd's files: braid's on-disk format
/// differs, and silently starting empty next to them would lose the data.
fn check_not_etcd_data_dir(data_dir: &Path) -> Result<(), String> {
    let member = data_dir.join("member");
    if member.join("wal").exists() || member.join("snap").exists() {
        return Err(format!(
            "{} is an etcd data directory; braid stores data in its own format and cannot use it \
             (restore an etcd snapshot into a new braid cluster instead)",
            data_dir.display()
        ));
    }
    Ok(())
}

fn resolve(url: &Url) -> Result<SocketAddr, String> {
    if url.scheme.is_tls() {
        return Err(format!("{url}: TLS listeners are not supported by this braid version"));
    }
    if url.scheme.is_unix() {
        return Err(format!(
            "{url}: unix socket listeners are not supported by this braid version"
        ));
    }
    url.address()
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {url}: {error}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {url}"))
}

async fn run(config: ServerConfig) -> Result<(), String> {
    for setting in config.unsupported_settings() {
        eprintln!("braid: warning: {setting} is accepted for compatibility but not supported; ignoring it");
    }
    check_not_etcd_data_dir(&config.data_dir)?;
    let storage_path = config.data_dir.join(STORAGE_DIR);
    let fresh = !storage_path.exists();
    std::fs::create_dir_all(&storage_path)
        .map_err(|error| format!("cannot create data dir {}: {error}", storage_path.display()))?;
    let (dir, choice) = OsDir::open(&storage_path, DevicePreference::Auto)
        .map_err(|error| format!("cannot open data dir {}: {error}", storage_path.display()))?;
    if identity::was_removed(&dir)
        .await
        .map_err(|error| format!("cannot read the data dir: {error}"))?
    {
        return Err(REMOVED_TEXT.to_string());
    }
    let membership = match identify(&config, fresh, &dir).await {
        Ok(membership) => membership,
        Err(error) => {
            if fresh {
                // Leave no half-made data dir behind: the next start must be fresh again.
                let _ = std::fs::remove_dir_all(&storage_path);
            }
            return Err(error);
        }
    };
    eprintln!("braid: storage path: {choice}");
    eprintln!(
        "braid: starting member {:x} ({}) in cluster {:x}, data dir {}",
        membership.id.0,
        config.name,
        membership.cluster_id,
        config.data_dir.display()
    );
    for (id, name) in &membership.names {
        let url = membership.peer_urls.get(id).map_or("(this member)", String::as_str);
        eprintln!("braid: member {:x} = {name} {url}", id.0);
    }

    let election_ticks = config.election_ticks().clamp(2, u64::from(u32::MAX)) as u32;
    let options = NodeOptions {
        id: membership.id,
        cluster_id: membership.cluster_id,
        initial_conf: membership.initial_conf,
        peer_urls: membership.peer_urls,
        tick: config.heartbeat_interval,
        election_ticks,
        pre_vote: config.pre_vote,
        max_request_bytes: config.max_request_bytes as usize,
        request_timeout: Duration::from_secs(5) + 2 * config.election_timeout,
        wal: WalOptions::default(),
        page_size: PAGE_SIZE,
        seed: membership.id.0 ^ std::process::id() as u64,
        membership: MembershipOptions {
            name: config.name.clone(),
            client_urls: config.advertise_client_urls.iter().map(Url::to_string).collect(),
            initial_members: membership.initial_members,
            cluster_token: config.initial_cluster_token.clone(),
            strict_reconfig_check: config.strict_reconfig_check,
        },
        maintenance: MaintenanceOptions {
            quota_backend_bytes: config.quota_backend_bytes_effective(),
            auto_compaction: match config.auto_compaction().map_err(|error| error.message)? {
                AutoCompaction::Disabled => AutoCompactionPolicy::Disabled,
                AutoCompaction::Periodic(window) => AutoCompactionPolicy::Periodic(window),
                AutoCompaction::Revision(count) => AutoCompactionPolicy::Revision(count),
            },
        },
        lease_checkpoint_interval: braid::server::lessor::DEFAULT_CHECKPOINT_INTERVAL,
        state_sync_interval: config.backend_batch_interval_effective(),
        state_sync_entries: config.backend_batch_limit_effective(),
        snapshot_count: config.snapshot_count_effective(),
        snapshot_catchup_entries: config.snapshot_catchup_entries_effective(),
    };
    let started = match node::start(options, dir.clone(), Arc::new(SystemClock::new())).await {
        Ok(started) => started,
        Err(NodeError::Removed) => return Err(REMOVED_TEXT.to_string()),
        Err(error) => return Err(format!("cannot start: {error}")),
    };
    eprintln!(
        "braid: recovered {} log entries; state applied through index {}",
        started.recovered_entries, started.recovered_applied
    );

    for url in &config.listen_peer_urls {
        let address = resolve(url)?;
        let service = PeerServer::new(started.peer_service.clone())
            .max_decoding_message_size(braid::server::transport::FRAME_BYTES_MAX)
            .max_encoding_message_size(braid::server::transport::FRAME_BYTES_MAX);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| format!("cannot listen for peers on {url}: {error}"))?;
        eprintln!("braid: serving peer traffic on {url}");
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            if let Err(error) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("braid: peer listener failed: {error}");
            }
        });
    }
    let limits = http::ClientLimits {
        max_txn_ops: config.max_txn_ops as usize,
        watch_progress_notify_interval: config.watch_progress_notify_interval_effective(),
    };
    for url in &config.listen_client_urls {
        let address = resolve(url)?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| format!("cannot listen for clients on {url}: {error}"))?;
        let router = http::client_router(started.handle.clone(), limits);
        eprintln!("braid: serving client requests (gRPC and HTTP) on {url}");
        // Without TCP_NODELAY a response split over two segments waits for the
        // client's delayed ACK: ~40 ms per linearizable read.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
            let _ = stream.set_nodelay(true);
        });
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("braid: client listener failed: {error}");
            }
        });
    }
    match started.task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(NodeError::Removed)) => {
            identity::mark_removed(&dir)
                .await
                .map_err(|error| format!("{REMOVED_TEXT}; cannot record it in the data dir: {error}"))?;
            eprintln!("braid: {REMOVED_TEXT}; exiting");
            Ok(())
        }
        Ok(Err(error)) => Err(format!("stopping after a fatal error: {error}")),
        Err(error) => Err(format!("the node loop panicked: {error}")),
    }
}
