//! Clients that use the real gRPC API through madsim-tonic and record every
//! operation as a history for the linearizability checker.
//!
//! Two workloads, chosen per seed:
//! - `Register` (Jepsen's `register`, checked per key): `write` puts a unique
//!   value, `read` is a linearizable Range, `cas` is a Txn comparing the value
//!   then putting a new one.
//! - `Store` (the whole-store etcd model, checked with revisions): `put`,
//!   linearizable `get`, `range` over every key, `delete`, and a `txn` that
//!   compares a key's value and puts or else reads.
//!
//! Both also issue serializable reads, which are not linearizable and so stay
//! out of the history; `check_serializable_reads` checks them apart.
//!
//! Timeouts and `Unavailable` after the send are indeterminate (`info`):
//! possibly applied; the process is then retired and a fresh one continues,
//! as in Jepsen. Each client keeps one channel per member, reconnecting after
//! an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_jepsen::{History, Operation, Status};
use braid_proto::etcdserverpb::kv_client::KvClient;
use braid_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use braid_proto::mvccpb;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub const KEYS: usize = 8;
/// The whole-store model cannot be split by key: keep its key space small.
pub const STORE_KEYS: usize = 3;
const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Which workload a seed runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Register,
    Store,
}

impl Workload {
    pub fn keys(self) -> usize {
        match self {
            Workload::Register => KEYS,
            Workload::Store => STORE_KEYS,
        }
    }
}

/// A serializable read: served from one member's applied state, so it may be
/// stale, but it must show a value some write wrote, with that write's revision.
#[derive(Clone, Debug)]
pub struct SerializableRead {
    pub key: String,
    pub value: Option<String>,
    pub mod_revision: i64,
}

/// What a client run contributed.
#[derive(Default)]
pub struct Recorder {
    pub history: History,
    pub serializable_reads: Vec<SerializableRead>,
}

fn now_ns(start: tokio::time::Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

enum Outcome {
    Ok(serde_json::Value),
    /// Known not to have happened (a CAS whose compare failed, or a refusal
    /// before the request was sent).
    Fail(serde_json::Value),
    Info,
}

fn classify(status: &tonic::Status) -> Outcome {
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("client error: {status:?}");
    }
    // A deterministic refusal (invalid request) is known not to have happened.
    // So is `no leader`: braid answers it only when Raft refused the proposal
    // (it never entered the log). Everything else may have been applied.
    let refused = status.code() == tonic::Code::Unavailable && status.message() == "etcdserver: no leader";
    match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange | tonic::Code::FailedPrecondition => {
            Outcome::Fail(json!({"error": status.message()}))
        }
        _ if refused => Outcome::Fail(json!({"error": status.message()})),
        _ => Outcome::Info,
    }
}

async fn connect(url: &str) -> Option<KvClient<tonic::transport::Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .timeout(OPERATION_TIMEOUT);
    let channel = match tokio::time::timeout(OPERATION_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            if std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!("connect to {url}: {error:?}");
            }
            return None;
        }
        Err(_) => return None,
    };
    Some(KvClient::new(channel))
}

/// One channel per member, made on first use and dropped after an error.
#[derive(Default)]
struct Channels {
    open: BTreeMap<String, KvClient<tonic::transport::Channel>>,
}

impl Channels {
    async fn get(&mut self, url: &str) -> Option<KvClient<tonic::transport::Channel>> {
        if let Some(client) = self.open.get(url) {
            return Some(client.clone());
        }
        let client = connect(url).await?;
        self.open.insert(url.to_string(), client.clone());
        Some(client)
    }

    fn forget(&mut self, url: &str) {
        self.open.remove(url);
    }
}

/// Runs one client until `deadline`, spreading requests over `urls`.
pub async fn run_client(
    id: u64,
    workload: Workload,
    urls: Vec<String>,
    seed: u64,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    recorder: Arc<Mutex<Recorder>>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut channels = Channels::default();
    let mut process = id * 1_000_000;
    let mut counter = 0u64;
    while tokio::time::Instant::now() < deadline {
        let url = &urls[rng.gen_range(0..urls.len())];
        counter += 1;
        let value = format!("c{id}-{counter}");
        let (op, input) = match workload {
            Workload::Register => register_operation(&mut rng, &value, counter),
            Workload::Store => store_operation(&mut rng, &value, counter),
        };
        let call_ns = now_ns(start);
        let outcome = match channels.get(url).await {
            // Never sent: known not to have happened.
            None => Outcome::Fail(json!({"error": "cannot connect"})),
            Some(mut kv) => {
                let request = perform(&mut kv, op, &input);
                match tokio::time::timeout(OPERATION_TIMEOUT, request).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Info,
                }
            }
        };
        let return_ns = now_ns(start);
        if !matches!(outcome, Outcome::Ok(_)) {
            channels.forget(url);
        }
        if op == "sread" {
            // Kept out of the history (see the module comment).
            if let Outcome::Ok(output) = &outcome {
                recorder.lock().unwrap().serializable_reads.push(SerializableRead {
                    key: input["key"].as_str().unwrap_or_default().to_string(),
                    value: output["value"].as_str().map(str::to_string),
                    mod_revision: output["mod_revision"].as_i64().unwrap_or(0),
                });
            }
            continue;
        }
        let (status, output, return_ns) = match outcome {
            Outcome::Ok(output) => (Status::Ok, Some(output), Some(return_ns)),
            Outcome::Fail(output) => (Status::Fail, Some(output), Some(return_ns)),
            Outcome::Info => (Status::Info, None, None),
        };
        // After an indeterminate outcome the process is retired (Jepsen's rule);
        // failed requests (known not applied) keep it, but back off a little.
        let retire = status == Status::Info;
        let back_off = status != Status::Ok;
        recorder.lock().unwrap().history.push(Operation {
            process,
            op: op.to_string(),
            input,
            output,
            call_ns,
            return_ns,
            status,
        });
        if retire {
            process += 1;
        }
        if back_off {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..100))).await;
        }
    }
}

fn register_operation(rng: &mut SmallRng, value: &str, counter: u64) -> (&'static str, Value) {
    let key = format!("k{}", rng.gen_range(0..KEYS));
    match rng.gen_range(0..100) {
        0..=29 => ("read", json!({"key": key})),
        30..=39 => ("sread", json!({"key": key})),
        40..=79 => ("write", json!({"key": key, "value": value})),
        _ => {
            let from = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..counter.max(2)));
            ("cas", json!({"key": key, "from": from, "to": value}))
        }
    }
}

fn store_operation(rng: &mut SmallRng, value: &str, counter: u64) -> (&'static str, Value) {
    let key = format!("k{}", rng.gen_range(0..STORE_KEYS));
    match rng.gen_range(0..100) {
        0..=19 => ("get", json!({"key": key})),
        20..=29 => ("sread", json!({"key": key})),
        30..=39 => ("range", json!({"key": "k", "range_end": "l"})),
        40..=69 => ("put", json!({"key": key, "value": value})),
        70..=79 => ("delete", json!({"key": key})),
        _ => {
            let from = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..counter.max(2)));
            (
                "txn",
                json!({
                    "compare": [{"key": key, "target": "value", "value": from}],
                    "success": [{"put": {"key": key, "value": value}}],
                    "failure": [{"get": {"key": key}}],
                }),
            )
        }
    }
}

fn text(value: &Value) -> Bytes {
    Bytes::from(value.as_str().unwrap_or_default().to_string())
}

fn key_value_json(kv: &mvccpb::KeyValue) -> Value {
    json!({
        "key": String::from_utf8_lossy(&kv.key),
        "value": String::from_utf8_lossy(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    })
}

fn range_request(input: &Value, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: text(&input["key"]),
        range_end: text(&input["range_end"]),
        serializable,
        ..RangeRequest::default()
    }
}

async fn perform(kv: &mut KvClient<tonic::transport::Channel>, op: &str, input: &Value) -> Outcome {
    let result = match op {
        "read" | "sread" => kv.range(range_request(input, op == "sread")).await.map(|response| {
            let response = response.into_inner();
            match response.kvs.first() {
                Some(kv) => json!({"value": String::from_utf8_lossy(&kv.value), "mod_revision": kv.mod_revision}),
                None => json!({"value": null}),
            }
        }),
        "get" | "range" => kv.range(range_request(input, false)).await.map(|response| {
            let response = response.into_inner();
            let kvs: Vec<Value> = response.kvs.iter().map(key_value_json).collect();
            json!({"revision": response.header.map_or(0, |header| header.revision), "kvs": kvs, "count": response.count})
        }),
        "write" | "put" => {
            let request = PutRequest {
                key: text(&input["key"]),
                value: text(&input["value"]),
                ..PutRequest::default()
            };
            // The register model reads the write's revision as `mod_revision`,
            // the whole-store model as the header `revision`.
            let field = if op == "write" { "mod_revision" } else { "revision" };
            kv.put(request).await.map(|response| {
                let revision = response.into_inner().header.map_or(0, |header| header.revision);
                json!({ field: revision })
            })
        }
        "delete" => {
            let request = DeleteRangeRequest {
                key: text(&input["key"]),
                ..DeleteRangeRequest::default()
            };
            kv.delete_range(request).await.map(|response| {
                let response = response.into_inner();
                json!({"revision": response.header.map_or(0, |header| header.revision), "deleted": response.deleted})
            })
        }
        "cas" => return compare_and_put(kv, &input["key"], &input["from"], &input["to"], false).await,
        _ => {
            let compare = &input["compare"][0];
            let put = &input["success"][0]["put"];
            return compare_and_put(kv, &compare["key"], &compare["value"], &put["value"], true).await;
        }
    };
    match result {
        Ok(output) => Outcome::Ok(output),
        Err(status) => classify(&status),
    }
}

/// A txn: if `key`'s value is `from`, put `to`, else get `key`. The register
/// workload's `cas` reports a failed compare as `fail`; the store workload's
/// `txn` reports it as `ok` with `succeeded: false` and the read.
async fn compare_and_put(
    kv: &mut KvClient<tonic::transport::Channel>,
    key: &Value,
    from: &Value,
    to: &Value,
    store: bool,
) -> Outcome {
    let compare = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key: text(key),
        target_union: Some(compare::TargetUnion::Value(text(from))),
        ..Compare::default()
    };
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: text(key),
            value: text(to),
            ..PutRequest::default()
        })),
    };
    let get = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: text(key),
            ..RangeRequest::default()
        })),
    };
    let request = TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: if store { vec![get] } else { vec![] },
    };
    let response = match kv.txn(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return classify(&status),
    };
    let revision = response.header.map_or(0, |header| header.revision);
    if !store {
        return if response.succeeded {
            Outcome::Ok(json!({"mod_revision": revision}))
        } else {
            Outcome::Fail(json!({"succeeded": false}))
        };
    }
    let responses: Vec<Value> = response
        .responses
        .iter()
        .filter_map(|op| match &op.response {
            Some(response_op::Response::ResponsePut(_)) => Some(json!({"put": {}})),
            Some(response_op::Response::ResponseRange(range)) => {
                let kvs: Vec<Value> = range.kvs.iter().map(key_value_json).collect();
                Some(json!({"get": {"kvs": kvs, "count": range.count}}))
            }
            _ => None,
        })
        .collect();
    Outcome::Ok(json!({"revision": revision, "succeeded": response.succeeded, "responses": responses}))
}

/// Reads every key once (retrying each until one attempt succeeds or
/// `deadline` passes), recording the reads: the durable-ack check at the end
/// of a run. Returns the keys that could not be read.
pub async fn read_every_key(
    id: u64,
    workload: Workload,
    urls: Vec<String>,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> Vec<String> {
    let mut unread = Vec::new();
    let mut process = id * 1_000_000;
    let op = match workload {
        Workload::Register => "read",
        Workload::Store => "get",
    };
    for key in 0..workload.keys() {
        let key = format!("k{key}");
        let input = json!({"key": key});
        let mut done = false;
        let mut attempt = 0;
        while !done && tokio::time::Instant::now() < deadline {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let call_ns = now_ns(start);
            let outcome = match connect(url).await {
                Some(mut kv) => tokio::time::timeout(OPERATION_TIMEOUT, perform(&mut kv, op, &input))
                    .await
                    .unwrap_or(Outcome::Info),
                None => Outcome::Info,
            };
            if let Outcome::Ok(output) = outcome {
                recorder.lock().unwrap().history.push(Operation {
                    process,
                    op: op.to_string(),
                    input: input.clone(),
                    output: Some(output),
                    call_ns,
                    return_ns: Some(now_ns(start)),
                    status: Status::Ok,
                });
                process += 1;
                done = true;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !done {
            unread.push(key);
        }
    }
    unread
}

/// Checks serializable reads against the history's writes: each must show
/// nothing, or a value some write to that key carried; when that write was
/// acknowledged, with its revision. Returns the first problem found.
pub fn check_serializable_reads(history: &History, reads: &[SerializableRead]) -> Result<(), String> {
    // value -> (key, acknowledged revision)
    let mut written: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
    for op in &history.operations {
        let (key, value) = match op.op.as_str() {
            "write" | "put" => (&op.input["key"], &op.input["value"]),
            "cas" => (&op.input["key"], &op.input["to"]),
            "txn" => (&op.input["compare"][0]["key"], &op.input["success"][0]["put"]["value"]),
            _ => continue,
        };
        let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
            continue;
        };
        let output = op.output.as_ref();
        let revision = if op.status == Status::Ok && op.op != "txn" {
            output.and_then(|output| output["mod_revision"].as_i64().or(output["revision"].as_i64()))
        } else {
            None
        };
        written.insert((key.to_string(), value.to_string()), revision);
    }
    for read in reads {
        let Some(value) = &read.value else { continue };
        match written.get(&(read.key.clone(), value.clone())) {
            None => {
                return Err(format!(
                    "a serializable read of {} returned {value:?}, which no write to that key carried",
                    read.key
                ))
            }
            Some(Some(revision)) if *revision != read.mod_revision => {
                return Err(format!(
                    "a serializable read of {} returned {value:?} at mod_revision {}, but that write was acknowledged at revision {revision}",
                    read.key, read.mod_revision
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Keys written by the load writers (outside the checked history's keys).
pub const LOAD_PREFIX: &str = "load/";

/// A load writer: puts fresh keys as fast as the cluster takes them until
/// `deadline`, recording each acknowledged key. Together the writers bring
/// the cluster to the design's load (about 10k writes per simulated second);
/// the final check reads every acknowledged key back after a power failure.
pub async fn run_load_writer(
    id: u64,
    urls: Vec<String>,
    seed: u64,
    deadline: tokio::time::Instant,
    acknowledged: Arc<Mutex<Vec<String>>>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut channels = Channels::default();
    let mut counter = 0u64;
    while tokio::time::Instant::now() < deadline {
        let url = &urls[rng.gen_range(0..urls.len())];
        counter += 1;
        let key = format!("{LOAD_PREFIX}{id:03}/{counter:08}");
        let Some(mut kv) = channels.get(url).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = PutRequest {
            key: Bytes::from(key.clone()),
            value: Bytes::from(key.clone()),
            ..PutRequest::default()
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, kv.put(request)).await {
            Ok(Ok(_)) => acknowledged.lock().unwrap().push(key),
            _ => {
                channels.forget(url);
                tokio::time::sleep(Duration::from_millis(rng.gen_range(10..100))).await;
            }
        }
    }
}

/// Reads back every key under `LOAD_PREFIX` (in pages) and returns the
/// acknowledged keys that are missing or hold the wrong value, or an error
/// when no member answered before `deadline`.
pub async fn missing_load_writes(
    urls: Vec<String>,
    acknowledged: Vec<String>,
    deadline: tokio::time::Instant,
) -> Result<Vec<String>, String> {
    const PAGE_KEYS: i64 = 5000;
    let mut present = std::collections::BTreeSet::new();
    let mut from = Bytes::from(LOAD_PREFIX);
    let end = Bytes::from("load0");
    let mut attempt = 0usize;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err("could not read the load writers' keys back before the deadline".to_string());
        }
        let url = &urls[attempt % urls.len()];
        let request = RangeRequest {
            key: from.clone(),
            range_end: end.clone(),
            limit: PAGE_KEYS,
            ..RangeRequest::default()
        };
        let response = match connect(url).await {
            Some(mut kv) => tokio::time::timeout(OPERATION_TIMEOUT * 5, kv.range(request)).await,
            None => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(Ok(response)) = response else {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let response = response.into_inner();
        for kv in &response.kvs {
            if kv.key == kv.value {
                present.insert(String::from_utf8_lossy(&kv.key).into_owned());
            }
        }
        match response.kvs.last() {
            Some(last) if response.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                from = Bytes::from(next);
            }
            _ => break,
        }
    }
    Ok(acknowledged.into_iter().filter(|key| !present.contains(key)).collect())
}
