//! The client port: etcd's gRPC services and the plain HTTP endpoints
//! (`/health`, `/livez`, `/readyz`, `/version`, `/metrics`) on one listener, as
//! etcd serves them. gRPC requests (HTTP/2, `content-type: application/grpc`)
//! go to the tonic services; everything else to the routes below.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use braid::mvcc::RangeRequest;
use braid::server::node::Backend;
use braid::server::NodeHandle;
use bytes::Bytes;

pub type Handle = NodeHandle<Backend<braid::io::OsDir>>;

#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    pub max_txn_ops: usize,
    pub watch_progress_notify_interval: std::time::Duration,
}

/// The router for one client URL: gRPC services plus HTTP endpoints.
pub fn client_router(handle: Handle, limits: ClientLimits) -> axum::Router {
    let api_limits = braid::api::ApiLimits {
        max_txn_ops: limits.max_txn_ops,
        watch_progress_notify_interval: limits.watch_progress_notify_interval,
        ..braid::api::ApiLimits::default()
    };
    let grpc = braid::add_api_services!(tonic::service::Routes::default(), handle.clone(), api_limits);
    let plain_http = axum::Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(handle);
    grpc.into_axum_router().merge(plain_http)
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A minimal linearizable read, as etcd's health check does (keys-only, limit 1).
async fn linearizable_probe(handle: &Handle) -> Result<(), String> {
    handle.linearizable_barrier().await.map_err(|error| error.to_string())?;
    let mut request = RangeRequest::new(Bytes::from_static(b"health"), Bytes::new());
    request.keys_only = true;
    request.limit = 1;
    handle
        .store()
        .range(&request)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

async fn health(State(handle): State<Handle>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let serializable = query.get("serializable").is_some_and(|value| value == "true");
    let unhealthy = |reason: &str| {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"health\":\"false\",\"reason\":\"{}\"}}", reason.replace('"', "'")),
        )
    };
    if !serializable && !handle.has_leader() {
        return unhealthy("RAFT NO LEADER");
    }
    if !serializable {
        if let Err(error) = linearizable_probe(&handle).await {
            return unhealthy(&format!("RANGE ERROR:{error}"));
        }
    }
    json(StatusCode::OK, "{\"health\":\"true\",\"reason\":\"\"}".to_string())
}

/// `/livez` and `/readyz`: etcd 3.5's probe format (`ok`, or `[-]check failed`).
async fn probe(handle: &Handle, checks: &[&str], verbose: bool) -> Response {
    let mut lines = String::new();
    let mut healthy = true;
    for check in checks {
        let result = match *check {
            "serializable_read" => {
                let request = RangeRequest::new(Bytes::from_static(b"health"), Bytes::new());
                handle
                    .store()
                    .range(&request)
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
            "linearizable_read" => linearizable_probe(handle).await,
            "non_learner" if handle.status().is_learner => Err("this member is a learner".to_string()),
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                let _ = writeln!(lines, "[+]{check} ok");
            }
            Err(reason) => {
                healthy = false;
                let _ = writeln!(lines, "[-]{check} failed: {reason}");
            }
        }
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if healthy && !verbose {
        "ok\n".to_string()
    } else {
        let verdict = if healthy { "ok" } else { "failed" };
        format!(
            "{lines}{} check {verdict}\n",
            if checks.len() == 1 { "livez" } else { "readyz" }
        )
    };
    (status, body).into_response()
}

async fn livez(State(handle): State<Handle>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    probe(&handle, &["serializable_read"], query.contains_key("verbose")).await
}

async fn readyz(State(handle): State<Handle>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let checks = [
        "data_corruption",
        "serializable_read",
        "linearizable_read",
        "non_learner",
    ];
    probe(&handle, &checks, query.contains_key("verbose")).await
}

async fn version() -> Response {
    json(
        StatusCode::OK,
        format!(
            "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"{}\"}}",
            braid::api::version::SERVER_VERSION,
            braid::api::version::CLUSTER_VERSION
        ),
    )
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

async fn metrics(State(handle): State<Handle>) -> Response {
    let status = handle.status();
    let metrics = handle.metrics();
    let mut out = String::new();
    gauge(
        &mut out,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        u8::from(status.leader != 0),
    );
    gauge(
        &mut out,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        u8::from(status.is_leader),
    );
    gauge(
        &mut out,
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        u8::from(status.is_learner),
    );
    counter(
        &mut out,
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        status.leader_changes_seen,
    );
    gauge(
        &mut out,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        status.raft_index,
    );
    gauge(
        &mut out,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        status.raft_applied_index,
    );
    gauge(
        &mut out,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        metrics.proposals_pending.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        metrics.proposals_failed.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        status.db_size_bytes,
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        status.db_size_in_use_bytes,
    );
    let _ = writeln!(
        out,
        "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n# TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{}\"}} 1",
        braid::api::version::SERVER_VERSION
    );
    let _ = writeln!(
        out,
        "# HELP etcd_server_id Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.\n# TYPE etcd_server_id gauge\netcd_server_id{{server_id=\"{:x}\"}} 1",
        status.member_id
    );
    metrics.wal_fsync.render(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &mut out,
    );
    metrics.backend_commit.render(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        &mut out,
    );
    counter(
        &mut out,
        "braid_slow_fsyncs_total",
        "fdatasync calls slower than one second.",
        metrics.slow_fsyncs.load(Ordering::Relaxed),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}
