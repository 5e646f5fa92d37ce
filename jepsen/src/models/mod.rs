//! The models histories are checked against.
//!
//! - [`register`]: M-reg, a read/write/compare-and-set register per key (the Jepsen `register`
//!   workload), optionally revision-aware. Partitioned by key.
//! - [`etcd`]: M-etcd, etcd's whole key-value store with its global revision. Unpartitioned.

pub mod etcd;
pub mod register;

use serde_json::Value;

use crate::model::DecodeError;

/// Reads a string field; numbers are accepted and turned into their decimal text, so values
/// from Jepsen logs (integers) and from braid (strings) look alike.
pub(crate) fn string_field(object: &Value, name: &str) -> Result<String, DecodeError> {
    match object.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(DecodeError::new(format!(
            "field {name:?} must be a string, found {other}"
        ))),
        None => Err(DecodeError::new(format!("missing field {name:?} in {object}"))),
    }
}

/// Reads an optional string field (`null` or absent is `None`).
pub(crate) fn optional_string_field(object: &Value, name: &str) -> Result<Option<String>, DecodeError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string_field(object, name).map(Some),
    }
}

/// Reads an optional integer field (`null` or absent is `None`).
pub(crate) fn optional_integer_field(object: &Value, name: &str) -> Result<Option<i64>, DecodeError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| DecodeError::new(format!("field {name:?} must be an integer, found {value}"))),
    }
}
