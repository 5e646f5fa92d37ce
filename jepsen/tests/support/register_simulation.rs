//! A simulated set of registers driven by concurrent clients with random timing. Every
//! operation takes effect at a random instant between its call and its return, so the
//! recorded history is linearizable by construction; corruption helpers then break it.

use std::collections::BTreeMap;

use braid_jepsen::{History, Operation, Status};
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};

/// Shape of a simulated run.
#[derive(Clone, Debug)]
pub struct RegisterSimulation {
    pub processes: usize,
    pub operations: usize,
    pub keys: usize,
    /// `None`: every written value is unique; `Some(n)`: values drawn from 0..n.
    pub value_domain: Option<u64>,
    /// Report `mod_revision`s from one global revision counter, as etcd does.
    pub with_revisions: bool,
    pub read_probability: f64,
    pub cas_probability: f64,
    /// Chance that a write or cas ends indeterminate (its process is then retired).
    pub info_probability: f64,
    pub max_gap_ns: u64,
    pub max_latency_ns: u64,
}

impl Default for RegisterSimulation {
    fn default() -> Self {
        RegisterSimulation {
            processes: 3,
            operations: 10,
            keys: 1,
            value_domain: Some(3),
            with_revisions: false,
            read_probability: 0.4,
            cas_probability: 0.3,
            info_probability: 0.1,
            max_gap_ns: 20,
            max_latency_ns: 30,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Cas,
}

struct Planned {
    process: u64,
    kind: Kind,
    key: String,
    value: String,
    from: String,
    call_ns: u64,
    effect_ns: u64,
    return_ns: u64,
    indeterminate: bool,
    /// For an indeterminate operation: whether it took effect at all.
    applied: bool,
}

/// The true registers, with etcd-style revisions from one global counter.
#[derive(Default)]
struct Registers {
    values: BTreeMap<String, String>,
    mod_revisions: BTreeMap<String, i64>,
    /// The last revision handed out (a fresh store is at 1).
    revision: i64,
}

impl Registers {
    fn write(&mut self, key: &str, value: &str) -> i64 {
        self.revision = self.revision.max(1) + 1;
        self.values.insert(key.to_owned(), value.to_owned());
        self.mod_revisions.insert(key.to_owned(), self.revision);
        self.revision
    }
}

/// Runs the simulation and records the history.
pub fn simulate_register(rng: &mut SmallRng, simulation: &RegisterSimulation) -> History {
    let mut cursors = vec![0u64; simulation.processes];
    let mut process_ids: Vec<u64> = (0..simulation.processes as u64).collect();
    let mut next_process_id = simulation.processes as u64;
    let mut next_unique_value = 1u64;
    let mut written_per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut planned = Vec::with_capacity(simulation.operations);

    for _ in 0..simulation.operations {
        let slot = rng.gen_range(0..simulation.processes);
        let call_ns = cursors[slot] + rng.gen_range(0..=simulation.max_gap_ns);
        let effect_ns = call_ns + rng.gen_range(0..=simulation.max_latency_ns);
        let return_ns = effect_ns + rng.gen_range(0..=simulation.max_latency_ns);
        cursors[slot] = return_ns + 1;
        let key = format!("k{}", rng.gen_range(0..simulation.keys));
        let roll: f64 = rng.gen();
        let kind = if roll < simulation.read_probability {
            Kind::Read
        } else if roll < simulation.read_probability + simulation.cas_probability {
            Kind::Cas
        } else {
            Kind::Write
        };
        let mut fresh_value = || match simulation.value_domain {
            Some(domain) => rng.gen_range(0..domain).to_string(),
            None => {
                next_unique_value += 1;
                (next_unique_value - 1).to_string()
            }
        };
        let value = fresh_value();
        let written = written_per_key.entry(key.clone()).or_default();
        let from = match simulation.value_domain {
            Some(domain) => rng.gen_range(0..domain).to_string(),
            None if written.is_empty() => String::from("0"),
            None => written[rng.gen_range(0..written.len())].clone(),
        };
        if kind != Kind::Read {
            written.push(value.clone());
        }
        let indeterminate = kind != Kind::Read && rng.gen_bool(simulation.info_probability);
        let applied = !indeterminate || rng.gen_bool(0.5);
        planned.push(Planned {
            process: process_ids[slot],
            kind,
            key,
            value,
            from,
            call_ns,
            effect_ns,
            return_ns,
            indeterminate,
            applied,
        });
        if indeterminate {
            // Jepsen retires a client whose outcome is unknown.
            process_ids[slot] = next_process_id;
            next_process_id += 1;
        }
    }

    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&index| (planned[index].effect_ns, index));
    let mut store = Registers::default();
    let with_revisions = simulation.with_revisions;
    let mut operations: Vec<Option<Operation>> = vec![None; planned.len()];
    for index in order {
        let plan = &planned[index];
        let current = store.values.get(&plan.key).cloned();
        let written = |revision: i64| {
            if with_revisions {
                json!({ "mod_revision": revision })
            } else {
                json!({})
            }
        };
        let (op, input, mut output, mut status) = match plan.kind {
            Kind::Read => {
                let mut output = json!({ "value": current });
                if let (true, Some(_)) = (with_revisions, &current) {
                    output["mod_revision"] = json!(store.mod_revisions[&plan.key]);
                }
                ("read", json!({ "key": plan.key }), Some(output), Status::Ok)
            }
            Kind::Write => {
                // An unapplied write is indeterminate: its output is dropped below.
                let revision = if plan.applied {
                    store.write(&plan.key, &plan.value)
                } else {
                    0
                };
                (
                    "write",
                    json!({ "key": plan.key, "value": plan.value }),
                    Some(written(revision)),
                    Status::Ok,
                )
            }
            Kind::Cas => {
                let matches = current.as_deref() == Some(plan.from.as_str());
                let revision = if matches && plan.applied {
                    store.write(&plan.key, &plan.value)
                } else {
                    0
                };
                let (output, status) = if matches {
                    (Some(written(revision)), Status::Ok)
                } else {
                    (None, Status::Fail)
                };
                (
                    "cas",
                    json!({ "key": plan.key, "from": plan.from, "to": plan.value }),
                    output,
                    status,
                )
            }
        };
        let mut return_ns = Some(plan.return_ns);
        if plan.indeterminate {
            output = None;
            status = Status::Info;
            return_ns = None;
        }
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

/// Randomly damages outputs and times (each completed operation with `probability`), so the
/// history may stop being linearizable.
pub fn corrupt_register_history(rng: &mut SmallRng, history: &mut History, probability: f64, value_domain: u64) {
    for operation in &mut history.operations {
        if operation.status == Status::Info || !rng.gen_bool(probability) {
            continue;
        }
        match (operation.op.as_str(), rng.gen_range(0..3)) {
            ("read", 0)
                if operation
                    .output
                    .as_ref()
                    .is_some_and(|output| output.get("mod_revision").is_some()) =>
            {
                let output = operation.output.as_mut().expect("checked above");
                let revision = output["mod_revision"].as_i64().expect("integer revision");
                output["mod_revision"] = json!(revision + if rng.gen_bool(0.5) { 1 } else { -1 });
            }
            ("read", 0 | 1) => {
                let value = if rng.gen_bool(0.2) {
                    Value::Null
                } else {
                    Value::String(rng.gen_range(0..value_domain).to_string())
                };
                let mut output = json!({ "value": value });
                if let (Some(previous), false) = (&operation.output, value.is_null()) {
                    if let Some(revision) = previous.get("mod_revision") {
                        output["mod_revision"] = revision.clone();
                    } else {
                        output["mod_revision"] = json!(rng.gen_range(1..6));
                    }
                }
                operation.output = Some(output);
            }
            ("cas", 0 | 1) => {
                if operation.status == Status::Ok {
                    operation.status = Status::Fail;
                    operation.output = None;
                } else {
                    operation.status = Status::Ok;
                    // A revision, for revision-aware checks; the value-only model ignores it.
                    operation.output = Some(json!({ "mod_revision": rng.gen_range(2..8) }));
                }
            }
            _ => {
                // Shrink the operation towards its call: a tighter real-time constraint.
                let return_ns = operation.return_ns.expect("completed operations have a return");
                operation.return_ns = Some(rng.gen_range(operation.call_ns..=return_ns));
            }
        }
    }
}
