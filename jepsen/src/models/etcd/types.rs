//! Requests, responses and state of M-etcd, in the JSON shapes the history uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A key with its metadata, as a range response or `prev_kv` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// `put`: write `value` at `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: String,
    pub value: String,
    /// Ask for the previous key-value; only then is the response's `prev_kv` checked.
    #[serde(default)]
    pub prev_kv: bool,
}

/// `get`/`range`: read `key`, or `[key, range_end)`; `range_end` `"\u0000"` means every key
/// from `key` on, and an absent or empty `range_end` means `key` alone (etcd's conventions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub key: String,
    #[serde(default)]
    pub range_end: Option<String>,
}

/// `delete`: remove `key` or `[key, range_end)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub key: String,
    #[serde(default)]
    pub range_end: Option<String>,
    /// Ask for the deleted key-values; only then is the response's `prev_kvs` checked.
    #[serde(default)]
    pub prev_kv: bool,
}

/// What a compare looks at, with the operand. A missing key has version, create and mod
/// revision 0, and a value compare on a missing key is always false (as in etcd).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum CompareTarget {
    Value { value: String },
    Version { version: i64 },
    CreateRevision { create_revision: i64 },
    ModRevision { mod_revision: i64 },
}

/// How the key's field relates to the operand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareResult {
    #[default]
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One guard of a txn, e.g. `{"key":"a","target":"mod_revision","mod_revision":0}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    #[serde(flatten)]
    pub target: CompareTarget,
    #[serde(default)]
    pub result: CompareResult,
}

/// One request inside a txn branch: `{"put": {...}}`, `{"get": {...}}` or `{"delete": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOp {
    Put(PutRequest),
    #[serde(alias = "range")]
    Get(RangeRequest),
    Delete(DeleteRequest),
}

/// `txn`: if every compare holds run `success`, else `failure`, atomically at one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    #[serde(default)]
    pub compare: Vec<Compare>,
    #[serde(default)]
    pub success: Vec<RequestOp>,
    #[serde(default)]
    pub failure: Vec<RequestOp>,
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdInput {
    Put(PutRequest),
    Range(RangeRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
}

/// Response to a put. `revision` is the header revision (absent inside a txn).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    #[serde(default)]
    pub revision: Option<i64>,
    #[serde(default)]
    pub prev_kv: Option<KeyValue>,
}

/// Response to a range: the key-values in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub revision: Option<i64>,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    /// Checked when present.
    #[serde(default)]
    pub count: Option<i64>,
}

/// Response to a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    #[serde(default)]
    pub revision: Option<i64>,
    pub deleted: i64,
    #[serde(default)]
    pub prev_kvs: Vec<KeyValue>,
}

/// One response inside a txn, in the order of the branch's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseOp {
    Put(PutResponse),
    #[serde(alias = "range")]
    Get(RangeResponse),
    Delete(DeleteResponse),
}

/// Response to a txn. `responses`, when present, are checked one by one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    pub revision: i64,
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Option<Vec<ResponseOp>>,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdOutput {
    Put(PutResponse),
    Range(RangeResponse),
    Delete(DeleteResponse),
    Txn(TxnResponse),
    /// Indeterminate write: applied or not.
    Unknown,
}

/// A live key's value and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredValue {
    pub value: String,
    pub create_revision: i64,
    /// Invariant: create_revision <= mod_revision <= the store's revision.
    pub mod_revision: i64,
    /// Puts since the key was (re)created; 1 after the creating put.
    pub version: i64,
}

/// The whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EtcdState {
    /// The global revision of the last change (a fresh etcd store is at 1; see
    /// `EtcdModel::initial_revision`).
    pub revision: i64,
    pub keys: BTreeMap<String, StoredValue>,
}

impl EtcdState {
    /// The key-value at `key` with its key, as responses show it.
    pub fn key_value(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key).map(|stored| KeyValue {
            key: key.to_owned(),
            value: stored.value.clone(),
            create_revision: stored.create_revision,
            mod_revision: stored.mod_revision,
            version: stored.version,
        })
    }
}

impl fmt::Display for EtcdState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "revision {}:", self.revision)?;
        if self.keys.is_empty() {
            return formatter.write_str(" (empty)");
        }
        for (key, stored) in &self.keys {
            write!(
                formatter,
                " {key}={} (create {}, mod {}, version {})",
                stored.value, stored.create_revision, stored.mod_revision, stored.version
            )?;
        }
        Ok(())
    }
}
