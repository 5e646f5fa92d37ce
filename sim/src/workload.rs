//! Clients that use the real gRPC API through madsim-tonic and record every
//! operation as a history for the linearizability checker.
//!
//! Workload: a per-key register over a few keys (Jepsen's `register`):
//! `write` puts a unique value, `read` is a linearizable Range, `cas` is a Txn
//! comparing the value then putting a new one. Timeouts and `Unavailable`
//! after the send are indeterminate (`info`): possibly applied; the process is
//! then retired and a fresh one continues, as in Jepsen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_jepsen::{History, Operation, Status};
use braid_proto::etcdserverpb::kv_client::KvClient;
use braid_proto::etcdserverpb::{compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

pub const KEYS: usize = 8;
const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client run contributed.
#[derive(Default)]
pub struct Recorder {
    pub history: History,
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

async fn client(url: &str) -> Option<KvClient<tonic::transport::Channel>> {
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

/// Runs one client until `deadline`, spreading requests over `urls`.
pub async fn run_client(
    id: u64,
    urls: Vec<String>,
    seed: u64,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    recorder: Arc<Mutex<Recorder>>,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut process = id * 1_000_000;
    let mut counter = 0u64;
    while tokio::time::Instant::now() < deadline {
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let url = &urls[rng.gen_range(0..urls.len())];
        counter += 1;
        let value = format!("c{id}-{counter}");
        let roll = rng.gen_range(0..100);
        let (op, input) = match roll {
            0..=39 => ("read", json!({"key": key})),
            40..=79 => ("write", json!({"key": key, "value": value})),
            _ => {
                let from = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..counter.max(2)));
                ("cas", json!({"key": key, "from": from, "to": value}))
            }
        };
        let call_ns = now_ns(start);
        let outcome = match client(url).await {
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

async fn perform(kv: &mut KvClient<tonic::transport::Channel>, op: &str, input: &serde_json::Value) -> Outcome {
    let key = Bytes::from(input["key"].as_str().unwrap_or_default().to_string());
    match op {
        "read" => {
            let request = RangeRequest {
                key,
                ..RangeRequest::default()
            };
            match kv.range(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let output = match response.kvs.first() {
                        Some(kv) => {
                            json!({"value": String::from_utf8_lossy(&kv.value), "mod_revision": kv.mod_revision})
                        }
                        None => json!({"value": null}),
                    };
                    Outcome::Ok(output)
                }
                Err(status) => classify(&status),
            }
        }
        "write" => {
            let request = PutRequest {
                key,
                value: Bytes::from(input["value"].as_str().unwrap_or_default().to_string()),
                ..PutRequest::default()
            };
            match kv.put(request).await {
                Ok(response) => {
                    let revision = response.into_inner().header.map_or(0, |header| header.revision);
                    Outcome::Ok(json!({"mod_revision": revision}))
                }
                Err(status) => classify(&status),
            }
        }
        _ => {
            let compare = Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::Value(Bytes::from(
                    input["from"].as_str().unwrap_or_default().to_string(),
                ))),
                ..Compare::default()
            };
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value: Bytes::from(input["to"].as_str().unwrap_or_default().to_string()),
                    ..PutRequest::default()
                })),
            };
            let request = TxnRequest {
                compare: vec![compare],
                success: vec![put],
                failure: vec![],
            };
            match kv.txn(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let revision = response.header.map_or(0, |header| header.revision);
                    if response.succeeded {
                        Outcome::Ok(json!({"mod_revision": revision}))
                    } else {
                        Outcome::Fail(json!({"succeeded": false}))
                    }
                }
                Err(status) => classify(&status),
            }
        }
    }
}

/// Reads every key once (retrying each until one attempt succeeds or
/// `deadline` passes), recording the reads: the durable-ack check at the end
/// of a run. Returns the keys that could not be read.
pub async fn read_every_key(
    id: u64,
    urls: Vec<String>,
    start: tokio::time::Instant,
    deadline: tokio::time::Instant,
    recorder: Arc<Mutex<Recorder>>,
) -> Vec<String> {
    let mut unread = Vec::new();
    let mut process = id * 1_000_000;
    for key in 0..KEYS {
        let key = format!("k{key}");
        let input = json!({"key": key});
        let mut done = false;
        let mut attempt = 0;
        while !done && tokio::time::Instant::now() < deadline {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let call_ns = now_ns(start);
            let outcome = match client(url).await {
                Some(mut kv) => tokio::time::timeout(OPERATION_TIMEOUT, perform(&mut kv, "read", &input))
                    .await
                    .unwrap_or(Outcome::Info),
                None => Outcome::Info,
            };
            if let Outcome::Ok(output) = outcome {
                recorder.lock().unwrap().history.push(Operation {
                    process,
                    op: "read".to_string(),
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
