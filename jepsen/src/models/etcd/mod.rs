//! M-etcd: etcd's whole key-value store with its single global revision.
//!
//! It cannot be partitioned: every write moves the revision every later response reports, so
//! a per-key split would lose exactly the anomalies it exists for (a stale read that returns an
//! old revision, a revision that goes backwards, a txn whose writes are seen in part). Keep the
//! traffic on a handful of keys.
//!
//! Semantics (etcd v3): a fresh store is at revision 1. A put always makes a new revision; a
//! delete makes one only when it removed something; a txn makes one when its branch changed
//! anything, and every write in it carries that one revision. A key's version counts puts since
//! its creation; deleting it forgets it. Responses must report exactly the model's revision, so
//! stale reads and regressions are caught.
//!
//! Status handling: `fail` operations are dropped (they did not take effect; a txn whose
//! compare failed is `ok` with `succeeded: false`). An `info` read is dropped; an `info` write
//! forks the state: applied or not.
//!
//! Not modelled yet: leases, compaction, historical reads (`revision` in a range request).
//!
//! JSON shapes (`op`: input → output when `ok`), see [`types`]:
//! - `put`: `{"key","value","prev_kv"?}` → `{"revision","prev_kv"?}`
//! - `get` (or `range`): `{"key","range_end"?}` → `{"revision","kvs":[KeyValue],"count"?}`
//! - `delete`: `{"key","range_end"?,"prev_kv"?}` → `{"revision","deleted","prev_kvs"?}`
//! - `txn`: `{"compare":[Compare],"success":[RequestOp],"failure":[RequestOp]}` →
//!   `{"revision","succeeded","responses"?:[ResponseOp]}`

pub mod types;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::history::{Operation, Status};
use crate::model::{DecodeError, Decoded, Model, Step};
pub use types::{
    Compare, CompareResult, CompareTarget, DeleteRequest, DeleteResponse, EtcdInput, EtcdOutput, EtcdState, KeyValue,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, StoredValue, TxnRequest, TxnResponse,
};

/// The whole-store model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtcdModel {
    /// The revision of the store before the first operation (1 for a fresh etcd cluster).
    pub initial_revision: i64,
}

impl Default for EtcdModel {
    fn default() -> Self {
        EtcdModel::new()
    }
}

impl EtcdModel {
    /// A model of a fresh, empty store.
    pub fn new() -> EtcdModel {
        EtcdModel { initial_revision: 1 }
    }
}

/// What applying a request computed, to compare with what the client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Effect {
    Put { previous: Option<KeyValue> },
    Range { kvs: Vec<KeyValue> },
    Delete { deleted: Vec<KeyValue> },
    Txn { succeeded: bool, effects: Vec<Effect> },
}

fn in_range(key: &str, start: &str, range_end: Option<&str>) -> bool {
    match range_end {
        None | Some("") => key == start,
        Some("\0") => key >= start,
        Some(end) => key >= start && key < end,
    }
}

fn key_value(key: &str, stored: &StoredValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: stored.value.clone(),
        create_revision: stored.create_revision,
        mod_revision: stored.mod_revision,
        version: stored.version,
    }
}

fn apply_put(keys: &mut BTreeMap<String, StoredValue>, request: &PutRequest, write_revision: i64) -> Option<KeyValue> {
    match keys.get_mut(&request.key) {
        Some(stored) => {
            let previous = key_value(&request.key, stored);
            stored.value = request.value.clone();
            stored.mod_revision = write_revision;
            stored.version += 1;
            Some(previous)
        }
        None => {
            keys.insert(
                request.key.clone(),
                StoredValue {
                    value: request.value.clone(),
                    create_revision: write_revision,
                    mod_revision: write_revision,
                    version: 1,
                },
            );
            None
        }
    }
}

fn apply_range(keys: &BTreeMap<String, StoredValue>, request: &RangeRequest) -> Vec<KeyValue> {
    keys.iter()
        .filter(|(key, _)| in_range(key, &request.key, request.range_end.as_deref()))
        .map(|(key, stored)| key_value(key, stored))
        .collect()
}

fn apply_delete(keys: &mut BTreeMap<String, StoredValue>, request: &DeleteRequest) -> Vec<KeyValue> {
    let deleted: Vec<KeyValue> = keys
        .iter()
        .filter(|(key, _)| in_range(key, &request.key, request.range_end.as_deref()))
        .map(|(key, stored)| key_value(key, stored))
        .collect();
    for key_value in &deleted {
        keys.remove(&key_value.key);
    }
    deleted
}

fn compare_holds(keys: &BTreeMap<String, StoredValue>, compare: &Compare) -> bool {
    let stored = keys.get(&compare.key);
    let ordering = match (&compare.target, stored) {
        // etcd: comparing the value of a missing key always fails.
        (CompareTarget::Value { .. }, None) => return false,
        (CompareTarget::Value { value }, Some(stored)) => stored.value.as_bytes().cmp(value.as_bytes()),
        (CompareTarget::Version { version }, _) => stored.map_or(0, |stored| stored.version).cmp(version),
        (CompareTarget::CreateRevision { create_revision }, _) => {
            stored.map_or(0, |stored| stored.create_revision).cmp(create_revision)
        }
        (CompareTarget::ModRevision { mod_revision }, _) => {
            stored.map_or(0, |stored| stored.mod_revision).cmp(mod_revision)
        }
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// Runs one request of a txn branch on `keys`; returns its effect and whether it changed them.
fn apply_request_op(
    keys: &mut BTreeMap<String, StoredValue>,
    request: &RequestOp,
    write_revision: i64,
) -> (Effect, bool) {
    match request {
        RequestOp::Put(put) => (
            Effect::Put {
                previous: apply_put(keys, put, write_revision),
            },
            true,
        ),
        RequestOp::Get(range) => (
            Effect::Range {
                kvs: apply_range(keys, range),
            },
            false,
        ),
        RequestOp::Delete(delete) => {
            let deleted = apply_delete(keys, delete);
            let changed = !deleted.is_empty();
            (Effect::Delete { deleted }, changed)
        }
    }
}

/// Applies `input` to `state`: the next state (revision included) and what was computed.
fn apply(state: &EtcdState, input: &EtcdInput) -> (EtcdState, Effect) {
    let write_revision = state.revision + 1;
    let mut next = state.clone();
    let (effect, changed) = match input {
        EtcdInput::Put(put) => (
            Effect::Put {
                previous: apply_put(&mut next.keys, put, write_revision),
            },
            true,
        ),
        EtcdInput::Range(range) => (
            Effect::Range {
                kvs: apply_range(&next.keys, range),
            },
            false,
        ),
        EtcdInput::Delete(delete) => {
            let deleted = apply_delete(&mut next.keys, delete);
            let changed = !deleted.is_empty();
            (Effect::Delete { deleted }, changed)
        }
        EtcdInput::Txn(txn) => {
            let succeeded = txn.compare.iter().all(|compare| compare_holds(&state.keys, compare));
            let branch = if succeeded { &txn.success } else { &txn.failure };
            let mut changed = false;
            let effects = branch
                .iter()
                .map(|request| {
                    let (effect, request_changed) = apply_request_op(&mut next.keys, request, write_revision);
                    changed |= request_changed;
                    effect
                })
                .collect();
            (Effect::Txn { succeeded, effects }, changed)
        }
    };
    if changed {
        next.revision = write_revision;
    }
    (next, effect)
}

fn range_matches(kvs: &[KeyValue], response: &RangeResponse) -> bool {
    response.kvs == kvs
        && response
            .count
            .is_none_or(|count| usize::try_from(count) == Ok(kvs.len()))
}

fn delete_matches(deleted: &[KeyValue], request: &DeleteRequest, response: &DeleteResponse) -> bool {
    usize::try_from(response.deleted) == Ok(deleted.len()) && (!request.prev_kv || response.prev_kvs == deleted)
}

/// Whether a txn's inner response agrees with what its request computed.
fn request_op_matches(request: &RequestOp, effect: &Effect, response: &ResponseOp) -> bool {
    match (request, effect, response) {
        (RequestOp::Put(put), Effect::Put { previous }, ResponseOp::Put(response)) => {
            !put.prev_kv || response.prev_kv == *previous
        }
        (RequestOp::Get(_), Effect::Range { kvs }, ResponseOp::Get(response)) => range_matches(kvs, response),
        (RequestOp::Delete(delete), Effect::Delete { deleted }, ResponseOp::Delete(response)) => {
            delete_matches(deleted, delete, response)
        }
        _ => false,
    }
}

/// Whether the observed `output` is what `input` computes, ending at `revision`.
fn output_matches(input: &EtcdInput, effect: &Effect, revision: i64, output: &EtcdOutput) -> bool {
    match (input, effect, output) {
        (EtcdInput::Put(put), Effect::Put { previous }, EtcdOutput::Put(response)) => {
            response.revision == Some(revision) && (!put.prev_kv || response.prev_kv == *previous)
        }
        (EtcdInput::Range(_), Effect::Range { kvs }, EtcdOutput::Range(response)) => {
            response.revision == Some(revision) && range_matches(kvs, response)
        }
        (EtcdInput::Delete(delete), Effect::Delete { deleted }, EtcdOutput::Delete(response)) => {
            response.revision == Some(revision) && delete_matches(deleted, delete, response)
        }
        (EtcdInput::Txn(txn), Effect::Txn { succeeded, effects }, EtcdOutput::Txn(response)) => {
            if response.revision != revision || response.succeeded != *succeeded {
                return false;
            }
            let Some(responses) = &response.responses else {
                return true;
            };
            let branch = if *succeeded { &txn.success } else { &txn.failure };
            responses.len() == branch.len()
                && branch
                    .iter()
                    .zip(effects)
                    .zip(responses)
                    .all(|((request, effect), response)| request_op_matches(request, effect, response))
        }
        (input, effect, output) => {
            panic!("etcd input {input:?} computed {effect:?} but was paired with {output:?}")
        }
    }
}

fn decode_json<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, DecodeError> {
    serde_json::from_value(value.clone()).map_err(|error| DecodeError::new(format!("bad {what}: {error} in {value}")))
}

fn require_revision(revision: Option<i64>, op: &str) -> Result<(), DecodeError> {
    match revision {
        Some(_) => Ok(()),
        None => Err(DecodeError::new(format!(
            "a successful {op} must report the header revision"
        ))),
    }
}

fn describe_range(key: &str, range_end: Option<&str>) -> String {
    match range_end {
        None | Some("") => key.to_owned(),
        Some("\0") => format!("{key}.."),
        Some(end) => format!("{key}..{end}"),
    }
}

fn describe_kvs(kvs: &[KeyValue]) -> String {
    let items: Vec<String> = kvs
        .iter()
        .map(|kv| format!("{}={} m{} v{}", kv.key, kv.value, kv.mod_revision, kv.version))
        .collect();
    format!("[{}]", items.join(", "))
}

fn describe_request_op(request: &RequestOp) -> String {
    match request {
        RequestOp::Put(put) => format!("put({}, {})", put.key, put.value),
        RequestOp::Get(range) => format!("get({})", describe_range(&range.key, range.range_end.as_deref())),
        RequestOp::Delete(delete) => format!("delete({})", describe_range(&delete.key, delete.range_end.as_deref())),
    }
}

fn describe_compare(compare: &Compare) -> String {
    let relation = match compare.result {
        CompareResult::Equal => "==",
        CompareResult::NotEqual => "!=",
        CompareResult::Greater => ">",
        CompareResult::Less => "<",
    };
    let (field, operand) = match &compare.target {
        CompareTarget::Value { value } => ("value", value.clone()),
        CompareTarget::Version { version } => ("version", version.to_string()),
        CompareTarget::CreateRevision { create_revision } => ("create_revision", create_revision.to_string()),
        CompareTarget::ModRevision { mod_revision } => ("mod_revision", mod_revision.to_string()),
    };
    format!("{}.{field} {relation} {operand}", compare.key)
}

impl Model for EtcdModel {
    type Input = EtcdInput;
    type Output = EtcdOutput;
    type State = EtcdState;

    fn name(&self) -> &'static str {
        "etcd"
    }

    fn decode(&self, operation: &Operation) -> Result<Decoded<EtcdInput, EtcdOutput>, DecodeError> {
        let op = operation.op.as_str();
        let input = match op {
            "put" => EtcdInput::Put(decode_json(&operation.input, "put request")?),
            "get" | "range" => EtcdInput::Range(decode_json(&operation.input, "range request")?),
            "delete" => EtcdInput::Delete(decode_json(&operation.input, "delete request")?),
            "txn" => EtcdInput::Txn(decode_json(&operation.input, "txn request")?),
            other => return Err(DecodeError::new(format!("the etcd model has no operation {other:?}"))),
        };
        let is_read = matches!(input, EtcdInput::Range(_));
        let output = match operation.status {
            // Did not take effect: nothing to check.
            Status::Fail => return Ok(None),
            Status::Info if is_read => return Ok(None),
            Status::Info => EtcdOutput::Unknown,
            Status::Ok => {
                let response = operation.output.as_ref().unwrap_or(&Value::Null);
                match &input {
                    EtcdInput::Put(_) => {
                        let response: PutResponse = decode_json(response, "put response")?;
                        require_revision(response.revision, op)?;
                        EtcdOutput::Put(response)
                    }
                    EtcdInput::Range(_) => {
                        let response: RangeResponse = decode_json(response, "range response")?;
                        require_revision(response.revision, op)?;
                        EtcdOutput::Range(response)
                    }
                    EtcdInput::Delete(_) => {
                        let response: DeleteResponse = decode_json(response, "delete response")?;
                        require_revision(response.revision, op)?;
                        EtcdOutput::Delete(response)
                    }
                    EtcdInput::Txn(_) => EtcdOutput::Txn(decode_json(response, "txn response")?),
                }
            }
        };
        Ok(Some((input, output)))
    }

    fn init(&self) -> EtcdState {
        EtcdState {
            revision: self.initial_revision,
            keys: BTreeMap::new(),
        }
    }

    fn step(&self, state: &EtcdState, input: &EtcdInput, output: &EtcdOutput) -> Step<EtcdState> {
        let (next, effect) = apply(state, input);
        match output {
            EtcdOutput::Unknown => {
                if next == *state {
                    Step::Legal(next)
                } else {
                    Step::Forked(vec![next, state.clone()])
                }
            }
            output => {
                if output_matches(input, &effect, next.revision, output) {
                    Step::Legal(next)
                } else {
                    Step::Illegal
                }
            }
        }
    }

    fn is_always_legal(&self, _input: &EtcdInput, output: &EtcdOutput) -> bool {
        // An indeterminate write forks into "applied" and "not applied"; the latter always fits.
        *output == EtcdOutput::Unknown
    }

    fn cannot_become_legal(&self, state: &EtcdState, _input: &EtcdInput, output: &EtcdOutput) -> bool {
        // The revision never goes down, and a put always moves it up.
        match output {
            EtcdOutput::Unknown => false,
            EtcdOutput::Put(response) => response.revision.is_some_and(|revision| revision <= state.revision),
            EtcdOutput::Range(RangeResponse { revision, .. }) | EtcdOutput::Delete(DeleteResponse { revision, .. }) => {
                revision.is_some_and(|revision| revision < state.revision)
            }
            EtcdOutput::Txn(response) => response.revision < state.revision,
        }
    }

    fn describe_operation(&self, input: &EtcdInput, output: &EtcdOutput) -> String {
        let request = match input {
            EtcdInput::Put(put) => format!("put({}, {})", put.key, put.value),
            EtcdInput::Range(range) => format!("get({})", describe_range(&range.key, range.range_end.as_deref())),
            EtcdInput::Delete(delete) => {
                format!("delete({})", describe_range(&delete.key, delete.range_end.as_deref()))
            }
            EtcdInput::Txn(txn) => {
                let compares: Vec<String> = txn.compare.iter().map(describe_compare).collect();
                let success: Vec<String> = txn.success.iter().map(describe_request_op).collect();
                let failure: Vec<String> = txn.failure.iter().map(describe_request_op).collect();
                format!(
                    "txn(if {} then {} else {})",
                    compares.join(" && "),
                    success.join("; "),
                    failure.join("; ")
                )
            }
        };
        let response = match output {
            EtcdOutput::Unknown => String::from("?"),
            EtcdOutput::Put(response) => match &response.prev_kv {
                Some(previous) => format!(
                    "@{} prev {}",
                    response.revision.unwrap_or_default(),
                    describe_kvs(std::slice::from_ref(previous))
                ),
                None => format!("@{}", response.revision.unwrap_or_default()),
            },
            EtcdOutput::Range(response) => format!(
                "{} @{}",
                describe_kvs(&response.kvs),
                response.revision.unwrap_or_default()
            ),
            EtcdOutput::Delete(response) => format!(
                "deleted {} @{}",
                response.deleted,
                response.revision.unwrap_or_default()
            ),
            EtcdOutput::Txn(response) => format!(
                "{} @{}",
                if response.succeeded { "succeeded" } else { "failed" },
                response.revision
            ),
        };
        format!("{request} = {response}")
    }

    fn describe_state(&self, state: &EtcdState) -> String {
        state.to_string()
    }
}
