//! Watchers under faults, and etcd's watch guarantees checked against the
//! history.
//!
//! Each watcher watches the workload's keys (`k` up to `l`) from revision 1
//! through the real gRPC Watch API. A session lasts a random 0.5–4 s (or until
//! its stream breaks or falls silent); the watcher then resumes on a random
//! member from the revision after the last event it got, as an etcd client
//! does. The checks, after the run (etcd's guarantees, as its robustness
//! tests state them):
//! - **ordered and unique**: revisions never go back, and a (revision, key)
//!   pair never comes twice, across every resume;
//! - **reliable** (no gaps): every write acknowledged in the history at a
//!   revision the watcher got past is among its events, with its value;
//! - **consistent**: an event for a value an acknowledged write wrote has that
//!   write's revision, and every watcher saw the same events (one's stream is a
//!   prefix of another's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_jepsen::{History, Status};
use braid_proto::etcdserverpb::watch_client::WatchClient;
use braid_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use braid_proto::mvccpb;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Longest wait for any message on a session before it is given up.
const SILENCE_LIMIT: Duration = Duration::from_secs(2);

/// One event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedEvent {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
}

/// What one watcher saw.
#[derive(Default, Debug)]
pub struct WatchLog {
    pub events: Vec<WatchedEvent>,
    /// Sessions opened (the first plus every resume).
    pub sessions: u64,
    /// The revision the watcher was brought up to: every revision at or below
    /// it was delivered (responses' header revisions, which cover revisions
    /// without events for this watcher).
    pub through_revision: i64,
    /// The history it needed was compacted away: it stopped there.
    pub compacted: bool,
}

/// Watches until `deadline`, resuming on random members; see the module docs.
pub async fn run_watcher(urls: Vec<String>, seed: u64, deadline: tokio::time::Instant, log: Arc<Mutex<WatchLog>>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while tokio::time::Instant::now() < deadline {
        let url = urls[rng.gen_range(0..urls.len())].clone();
        let session_end = (tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(500..4000))).min(deadline);
        log.lock().unwrap().sessions += 1;
        let next_revision = {
            let log = log.lock().unwrap();
            if log.compacted {
                return;
            }
            log.events.last().map_or(1, |event| event.revision + 1).max(1)
        };
        let length = session_end.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(length, session(&url, next_revision, &log)).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..200))).await;
    }
}

/// One Watch stream from `next_revision`, recording into `log` until the
/// stream ends, breaks or stays silent too long.
async fn session(url: &str, next_revision: i64, log: &Mutex<WatchLog>) {
    let Ok(Ok(mut client)) = tokio::time::timeout(SILENCE_LIMIT, WatchClient::connect(url.to_string())).await else {
        return;
    };
    let (requests, request_receiver) = tokio::sync::mpsc::channel::<WatchRequest>(4);
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from_static(b"k"),
            range_end: Bytes::from_static(b"l"),
            start_revision: next_revision,
            ..WatchCreateRequest::default()
        })),
    };
    if requests.send(create).await.is_err() {
        return;
    }
    let stream = futures_util::stream::unfold(request_receiver, |mut receiver| async move {
        receiver.recv().await.map(|request| (request, receiver))
    });
    let Ok(Ok(response)) = tokio::time::timeout(SILENCE_LIMIT, client.watch(stream)).await else {
        return;
    };
    let mut responses = response.into_inner();
    loop {
        let Ok(Ok(Some(response))) = tokio::time::timeout(SILENCE_LIMIT, responses.message()).await else {
            return;
        };
        let mut log = log.lock().unwrap();
        if response.canceled {
            log.compacted = response.compact_revision > 0;
            return;
        }
        for event in &response.events {
            let Some(kv) = &event.kv else { continue };
            let deleted = event.r#type == mvccpb::event::EventType::Delete as i32;
            log.events.push(WatchedEvent {
                revision: kv.mod_revision,
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                value: (!deleted).then(|| String::from_utf8_lossy(&kv.value).into_owned()),
            });
        }
        if let Some(header) = &response.header {
            if !response.created {
                log.through_revision = log.through_revision.max(header.revision);
            }
        }
    }
}

/// A write the history says took effect at `revision` (`value` `None`: a delete).
#[derive(Debug)]
struct AcknowledgedWrite {
    revision: i64,
    key: String,
    value: Option<String>,
}

fn acknowledged_writes(history: &History) -> Vec<AcknowledgedWrite> {
    let mut writes = Vec::new();
    for operation in history
        .operations
        .iter()
        .filter(|operation| operation.status == Status::Ok)
    {
        let (input, Some(output)) = (&operation.input, &operation.output) else {
            continue;
        };
        let text = |value: &serde_json::Value| value.as_str().map(str::to_string);
        let write = match operation.op.as_str() {
            "write" | "cas" => Some((
                output["mod_revision"].as_i64(),
                text(&input["key"]),
                text(if operation.op == "cas" {
                    &input["to"]
                } else {
                    &input["value"]
                }),
            )),
            "put" => Some((output["revision"].as_i64(), text(&input["key"]), text(&input["value"]))),
            "txn" if output["succeeded"] == true => {
                let put = &input["success"][0]["put"];
                Some((output["revision"].as_i64(), text(&put["key"]), text(&put["value"])))
            }
            "delete" if output["deleted"].as_i64().unwrap_or(0) > 0 => {
                Some((output["revision"].as_i64(), text(&input["key"]), None))
            }
            _ => None,
        };
        if let Some((Some(revision), Some(key), value)) = write {
            writes.push(AcknowledgedWrite { revision, key, value });
        }
    }
    writes
}

/// Checks every watcher's log against the history and each other.
pub fn check_watches(history: &History, logs: &[WatchLog]) -> Result<(), String> {
    let writes = acknowledged_writes(history);
    let revision_of_value: BTreeMap<(&str, &str), i64> = writes
        .iter()
        .filter_map(|write| Some(((write.key.as_str(), write.value.as_deref()?), write.revision)))
        .collect();
    for (number, log) in logs.iter().enumerate() {
        let mut seen = BTreeSet::new();
        let mut last = 0;
        for event in &log.events {
            if event.revision < last {
                return Err(format!(
                    "watcher {number} got revision {} after {last}: out of order",
                    event.revision
                ));
            }
            last = event.revision;
            if !seen.insert((event.revision, event.key.clone())) {
                return Err(format!(
                    "watcher {number} got {} at revision {} twice",
                    event.key, event.revision
                ));
            }
            if let Some(value) = &event.value {
                if let Some(&revision) = revision_of_value.get(&(event.key.as_str(), value.as_str())) {
                    if revision != event.revision {
                        return Err(format!(
                            "watcher {number} saw {}={value} at revision {}, but the write was acknowledged at {revision}",
                            event.key, event.revision
                        ));
                    }
                }
            }
        }
        let through = log.through_revision.max(last);
        let by_position: BTreeMap<(i64, &str), &WatchedEvent> = log
            .events
            .iter()
            .map(|event| ((event.revision, event.key.as_str()), event))
            .collect();
        for write in writes.iter().filter(|write| write.revision <= through) {
            match by_position.get(&(write.revision, write.key.as_str())) {
                Some(event) if event.value == write.value => {}
                Some(event) => {
                    return Err(format!(
                        "watcher {number} saw {} as {:?} at revision {}, but the acknowledged write there was {:?}",
                        write.key, event.value, write.revision, write.value
                    ))
                }
                None if log.compacted => {}
                None => {
                    return Err(format!(
                        "watcher {number} (through revision {through}) missed the acknowledged write of {}={:?} \
                         at revision {}",
                        write.key, write.value, write.revision
                    ))
                }
            }
        }
    }
    for (number, log) in logs.iter().enumerate().skip(1) {
        let first = &logs[0].events;
        let common = first.len().min(log.events.len());
        if let Some(position) = (0..common).find(|&position| first[position] != log.events[position]) {
            return Err(format!(
                "watchers 0 and {number} disagree at their event {position}: {:?} vs {:?}",
                first[position], log.events[position]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_jepsen::Operation;
    use serde_json::json;

    fn write(key: &str, value: &str, revision: i64) -> Operation {
        Operation {
            process: 0,
            op: "write".to_string(),
            input: json!({"key": key, "value": value}),
            output: Some(json!({"mod_revision": revision})),
            call_ns: 0,
            return_ns: Some(1),
            status: Status::Ok,
        }
    }

    fn event(key: &str, value: &str, revision: i64) -> WatchedEvent {
        WatchedEvent {
            revision,
            key: key.to_string(),
            value: Some(value.to_string()),
        }
    }

    fn log(events: Vec<WatchedEvent>, through_revision: i64) -> WatchLog {
        WatchLog {
            events,
            sessions: 1,
            through_revision,
            compacted: false,
        }
    }

    #[test]
    fn complete_ordered_streams_pass_and_each_guarantee_is_checked() {
        let history = History {
            operations: vec![write("k1", "a", 2), write("k2", "b", 3), write("k1", "c", 5)],
        };
        let good = vec![event("k1", "a", 2), event("k2", "b", 3), event("k1", "c", 5)];
        assert_eq!(
            check_watches(&history, &[log(good.clone(), 5), log(good[..2].to_vec(), 3)]),
            Ok(())
        );

        let gap = vec![event("k1", "a", 2), event("k1", "c", 5)];
        assert!(check_watches(&history, &[log(gap, 5)]).unwrap_err().contains("missed"));

        let duplicate = vec![event("k1", "a", 2), event("k1", "a", 2)];
        assert!(check_watches(&history, &[log(duplicate, 2)])
            .unwrap_err()
            .contains("twice"));

        let reordered = vec![event("k2", "b", 3), event("k1", "a", 2)];
        assert!(check_watches(&history, &[log(reordered, 3)])
            .unwrap_err()
            .contains("out of order"));

        let wrong_revision = vec![event("k1", "a", 4)];
        assert!(check_watches(&history, &[log(wrong_revision, 1)])
            .unwrap_err()
            .contains("acknowledged at 2"));

        let other = vec![event("k1", "a", 2), event("k2", "x", 3)];
        assert!(check_watches(&history, &[log(good, 5), log(other, 1)]).is_err());
    }
}
