//! A simulated etcd store (global revision, per-key create/mod revision and version) driven by
//! concurrent clients with random timing. Its semantics are written here independently of
//! `EtcdModel`, so a clean simulated history that the checker rejects points at a bug in one
//! of the two.

use std::collections::BTreeMap;

use braid_jepsen::{History, Operation, Status};
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};

/// Shape of a simulated run.
#[derive(Clone, Debug)]
pub struct EtcdSimulation {
    pub processes: usize,
    pub operations: usize,
    pub keys: usize,
    pub info_probability: f64,
    pub max_gap_ns: u64,
    pub max_latency_ns: u64,
}

impl Default for EtcdSimulation {
    fn default() -> Self {
        EtcdSimulation {
            processes: 3,
            operations: 8,
            keys: 2,
            info_probability: 0.1,
            max_gap_ns: 20,
            max_latency_ns: 30,
        }
    }
}

#[derive(Clone, Debug)]
struct Stored {
    value: String,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
}

#[derive(Debug)]
struct Store {
    revision: i64,
    keys: BTreeMap<String, Stored>,
}

fn key_value(key: &str, stored: &Stored) -> Value {
    json!({
        "key": key,
        "value": stored.value,
        "create_revision": stored.create_revision,
        "mod_revision": stored.mod_revision,
        "version": stored.version,
    })
}

impl Store {
    /// Writes `value` at `key` in revision `revision` (the caller bumps the store's revision).
    fn put(&mut self, key: &str, value: &str, revision: i64) -> Value {
        let previous = self.keys.get(key).map(|stored| key_value(key, stored));
        let stored = self.keys.entry(key.to_owned()).or_insert(Stored {
            value: String::new(),
            create_revision: revision,
            mod_revision: revision,
            version: 0,
        });
        stored.value = value.to_owned();
        stored.mod_revision = revision;
        stored.version += 1;
        previous.unwrap_or(Value::Null)
    }

    fn range(&self, key: &str, all: bool) -> Vec<Value> {
        self.keys
            .iter()
            .filter(|(stored_key, _)| {
                if all {
                    stored_key.as_str() >= key
                } else {
                    stored_key.as_str() == key
                }
            })
            .map(|(stored_key, stored)| key_value(stored_key, stored))
            .collect()
    }
}

enum Request {
    Put {
        key: String,
        value: String,
        prev_kv: bool,
    },
    Get {
        key: String,
        all: bool,
    },
    Delete {
        key: String,
    },
    /// if key.mod_revision == expected then put(key, value) [and put(second_key, value)]
    /// else get(key). `expected: None` compares with the key's revision when the txn takes
    /// effect, so about half the txns succeed.
    Txn {
        key: String,
        expected: Option<i64>,
        value: String,
        second_key: Option<String>,
    },
}

struct Planned {
    process: u64,
    request: Request,
    call_ns: u64,
    effect_ns: u64,
    return_ns: u64,
    indeterminate: bool,
    applied: bool,
}

fn apply(store: &mut Store, request: &Request) -> (&'static str, Value, Value) {
    let next_revision = store.revision + 1;
    match request {
        Request::Put { key, value, prev_kv } => {
            let previous = store.put(key, value, next_revision);
            store.revision = next_revision;
            let mut output = json!({ "revision": next_revision });
            if *prev_kv {
                output["prev_kv"] = previous;
            }
            ("put", json!({ "key": key, "value": value, "prev_kv": prev_kv }), output)
        }
        Request::Get { key, all } => {
            let kvs = store.range(key, *all);
            let input = if *all {
                json!({ "key": key, "range_end": "\u{0}" })
            } else {
                json!({ "key": key })
            };
            let count = kvs.len();
            (
                "get",
                input,
                json!({ "revision": store.revision, "kvs": kvs, "count": count }),
            )
        }
        Request::Delete { key } => {
            let deleted = i64::from(store.keys.remove(key).is_some());
            if deleted > 0 {
                store.revision = next_revision;
            }
            (
                "delete",
                json!({ "key": key }),
                json!({ "revision": store.revision, "deleted": deleted }),
            )
        }
        Request::Txn {
            key,
            expected,
            value,
            second_key,
        } => {
            let current = store.keys.get(key).map_or(0, |stored| stored.mod_revision);
            let expected = expected.unwrap_or(current);
            let succeeded = current == expected;
            let mut success = vec![json!({ "put": { "key": key, "value": value } })];
            if let Some(second_key) = second_key {
                success.push(json!({ "put": { "key": second_key, "value": value } }));
            }
            let input = json!({
                "compare": [{ "key": key, "target": "mod_revision", "mod_revision": expected }],
                "success": success,
                "failure": [{ "get": { "key": key } }],
            });
            let responses = if succeeded {
                store.put(key, value, next_revision);
                let mut responses = vec![json!({ "put": {} })];
                if let Some(second_key) = second_key {
                    store.put(second_key, value, next_revision);
                    responses.push(json!({ "put": {} }));
                }
                store.revision = next_revision;
                responses
            } else {
                vec![json!({ "get": { "kvs": store.range(key, false) } })]
            };
            (
                "txn",
                input,
                json!({ "revision": store.revision, "succeeded": succeeded, "responses": responses }),
            )
        }
    }
}

/// Runs the simulation and records the history.
pub fn simulate_etcd(rng: &mut SmallRng, simulation: &EtcdSimulation) -> History {
    let mut cursors = vec![0u64; simulation.processes];
    let mut process_ids: Vec<u64> = (0..simulation.processes as u64).collect();
    let mut next_process_id = simulation.processes as u64;
    let mut planned = Vec::new();
    // Written values are unique: the operation's number.
    for value_number in 1..=simulation.operations {
        let slot = rng.gen_range(0..simulation.processes);
        let call_ns = cursors[slot] + rng.gen_range(0..=simulation.max_gap_ns);
        let effect_ns = call_ns + rng.gen_range(0..=simulation.max_latency_ns);
        let return_ns = effect_ns + rng.gen_range(0..=simulation.max_latency_ns);
        cursors[slot] = return_ns + 1;
        let key = format!("k{}", rng.gen_range(0..simulation.keys));
        let value = value_number.to_string();
        let request = match rng.gen_range(0..10) {
            0..=2 => Request::Put {
                key,
                value,
                prev_kv: rng.gen_bool(0.5),
            },
            3..=5 => Request::Get {
                key,
                all: rng.gen_bool(0.3),
            },
            6 => Request::Delete { key },
            _ => Request::Txn {
                key,
                expected: rng.gen_bool(0.5).then(|| rng.gen_range(0..4)),
                value,
                second_key: rng
                    .gen_bool(0.3)
                    .then(|| format!("k{}", rng.gen_range(0..simulation.keys))),
            },
        };
        let is_read = matches!(request, Request::Get { .. });
        let indeterminate = !is_read && rng.gen_bool(simulation.info_probability);
        let applied = !indeterminate || rng.gen_bool(0.5);
        planned.push(Planned {
            process: process_ids[slot],
            request,
            call_ns,
            effect_ns,
            return_ns,
            indeterminate,
            applied,
        });
        if indeterminate {
            process_ids[slot] = next_process_id;
            next_process_id += 1;
        }
    }
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&index| (planned[index].effect_ns, index));
    let mut store = Store {
        revision: 1,
        keys: BTreeMap::new(),
    };
    let mut operations: Vec<Option<Operation>> = vec![None; planned.len()];
    for index in order {
        let plan = &planned[index];
        let (op, input, output) = if plan.applied {
            apply(&mut store, &plan.request)
        } else {
            // Record the request as if applied to a scratch copy; the real store is untouched.
            let mut scratch = Store {
                revision: store.revision,
                keys: store.keys.clone(),
            };
            apply(&mut scratch, &plan.request)
        };
        let (output, return_ns, status) = if plan.indeterminate {
            (None, None, Status::Info)
        } else {
            (Some(output), Some(plan.return_ns), Status::Ok)
        };
        operations[index] = Some(Operation {
            process: plan.process,
            op: op.to_owned(),
            input,
            output,
            call_ns: plan.call_ns,
            return_ns,
            status,
        });
    }
    History {
        operations: operations
            .into_iter()
            .map(|operation| operation.expect("every planned operation was applied"))
            .collect(),
    }
}

/// Randomly damages responses and times (each completed operation with `probability`).
pub fn corrupt_etcd_history(rng: &mut SmallRng, history: &mut History, probability: f64) {
    for operation in &mut history.operations {
        if operation.status == Status::Info || !rng.gen_bool(probability) {
            continue;
        }
        let output = operation.output.as_mut().expect("completed operations have output");
        match rng.gen_range(0..4) {
            0 => {
                let revision = output["revision"].as_i64().expect("revision");
                output["revision"] = json!(revision + if rng.gen_bool(0.5) { 1 } else { -1 });
            }
            1 if operation.op == "get" => {
                let kvs = output["kvs"].as_array_mut().expect("kvs");
                if kvs.pop().is_none() {
                    kvs.push(json!({
                        "key": "k0", "value": "1", "create_revision": 2, "mod_revision": 2, "version": 1
                    }));
                }
                output["count"] = json!(kvs.len());
            }
            1 if operation.op == "txn" => {
                let succeeded = output["succeeded"].as_bool().expect("succeeded");
                output["succeeded"] = json!(!succeeded);
                output.as_object_mut().expect("object").remove("responses");
            }
            1 if operation.op == "delete" => {
                let deleted = output["deleted"].as_i64().expect("deleted");
                output["deleted"] = json!(1 - deleted);
            }
            _ => {
                let return_ns = operation.return_ns.expect("completed operations have a return");
                operation.return_ns = Some(rng.gen_range(operation.call_ns..=return_ns));
            }
        }
    }
}
