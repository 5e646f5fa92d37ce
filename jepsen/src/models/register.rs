//! M-reg: a register per key with read, write and compare-and-set.
//!
//! Semantics follow the Jepsen etcd `register` workload as porcupine models it: a read returns
//! the value or nil (never written); a write always succeeds; `cas(from, to)` with status `ok`
//! saw `from` and wrote `to`, with status `fail` saw something other than `from` and changed
//! nothing. Indeterminate operations may take effect at any point after their call (their
//! return is +∞); one that never took effect is the same as one linearized last.
//!
//! The revision-aware variant also checks `mod_revision`: each write gets a revision higher
//! than the key's previous one, and a read reports the revision of the write it saw.
//!
//! JSON shapes (`op`: `input` → `output` when `ok`):
//! - `read`: `{"key"}` → `{"value": string | null, "mod_revision"?}`
//! - `write`: `{"key", "value"}` → `{"mod_revision"?}` or `null`
//! - `cas`: `{"key", "from", "to"}` → `{"mod_revision"?}` or `null`; `fail` = compare failed
//!   (a `fail` whose output has an `"error"` field was rejected before running: dropped)

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::history::{Operation, Status};
use crate::model::{DecodeError, Decoded, Model, ModelOperation, Step};
use crate::models::{optional_integer_field, optional_string_field, string_field};

/// The register model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterModel {
    /// Check `mod_revision`s; successful writes and reads of a present value must carry one.
    pub revision_aware: bool,
}

impl RegisterModel {
    /// Values only (porcupine's etcd model); revisions in outputs are ignored.
    pub fn new() -> RegisterModel {
        RegisterModel { revision_aware: false }
    }

    /// Values and `mod_revision`s.
    pub fn revision_aware() -> RegisterModel {
        RegisterModel { revision_aware: true }
    }
}

/// A register request. Values are shared (`Arc`) because states copy them at every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read { key: String },
    Write { key: String, value: Arc<str> },
    Cas { key: String, from: Arc<str>, to: Arc<str> },
}

impl RegisterInput {
    /// The key the request touches.
    pub fn key(&self) -> &str {
        match self {
            RegisterInput::Read { key } | RegisterInput::Write { key, .. } | RegisterInput::Cas { key, .. } => key,
        }
    }
}

/// A register response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// A read saw `value` (`None` = never written), last written at `mod_revision`.
    Read {
        value: Option<Arc<str>>,
        mod_revision: Option<i64>,
    },
    /// A write or a successful cas, applied at `mod_revision`.
    Written { mod_revision: Option<i64> },
    /// A cas whose compare did not match.
    CasFailed,
    /// Indeterminate: may or may not have taken effect.
    Unknown,
}

/// One key's register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegisterState {
    /// `None` until the first write.
    pub value: Option<Arc<str>>,
    /// Revision of the last write (0 before any). Exact when `mod_revision_exact`, otherwise a
    /// lower bound: an indeterminate write got some revision above the previous one.
    /// Invariant: stays 0 and exact when the model is not revision-aware.
    pub mod_revision: i64,
    pub mod_revision_exact: bool,
}

impl RegisterModel {
    fn decode_output(&self, operation: &Operation, is_read: bool) -> Result<Option<RegisterOutput>, DecodeError> {
        let output = operation.output.as_ref().unwrap_or(&Value::Null);
        let mod_revision = if output.is_object() {
            optional_integer_field(output, "mod_revision")?
        } else {
            None
        };
        if is_read {
            let value = optional_string_field(output, "value")?.map(Arc::from);
            if self.revision_aware && value.is_some() && mod_revision.is_none() {
                return Err(DecodeError::new(
                    "a revision-aware read of a present value needs mod_revision",
                ));
            }
            return Ok(Some(RegisterOutput::Read { value, mod_revision }));
        }
        if self.revision_aware && mod_revision.is_none() {
            return Err(DecodeError::new("a revision-aware successful write needs mod_revision"));
        }
        Ok(Some(RegisterOutput::Written { mod_revision }))
    }

    /// Applies a write of `value` that got `mod_revision` (`None` = not known).
    fn write(&self, state: &RegisterState, value: &Arc<str>, mod_revision: Option<i64>) -> Step<RegisterState> {
        if !self.revision_aware {
            return Step::Legal(RegisterState {
                value: Some(Arc::clone(value)),
                mod_revision: 0,
                mod_revision_exact: true,
            });
        }
        match mod_revision {
            // Exact or a lower bound, the new revision must exceed the old one.
            Some(revision) if revision > state.mod_revision => Step::Legal(RegisterState {
                value: Some(Arc::clone(value)),
                mod_revision: revision,
                mod_revision_exact: true,
            }),
            Some(_) => Step::Illegal,
            None => Step::Legal(RegisterState {
                value: Some(Arc::clone(value)),
                mod_revision: state.mod_revision + 1,
                mod_revision_exact: false,
            }),
        }
    }
}

fn describe_revision(mod_revision: Option<i64>) -> String {
    match mod_revision {
        Some(revision) => format!(" @{revision}"),
        None => String::new(),
    }
}

impl Model for RegisterModel {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = RegisterState;

    fn name(&self) -> &'static str {
        if self.revision_aware {
            "register-revisions"
        } else {
            "register"
        }
    }

    fn decode(&self, operation: &Operation) -> Result<Decoded<RegisterInput, RegisterOutput>, DecodeError> {
        let input = &operation.input;
        let key = string_field(input, "key")?;
        let is_read = operation.op == "read";
        let request = match operation.op.as_str() {
            "read" => RegisterInput::Read { key },
            "write" => RegisterInput::Write {
                key,
                value: Arc::from(string_field(input, "value")?),
            },
            "cas" => RegisterInput::Cas {
                key,
                from: Arc::from(string_field(input, "from")?),
                to: Arc::from(string_field(input, "to")?),
            },
            other => {
                return Err(DecodeError::new(format!(
                    "the register model has no operation {other:?}"
                )))
            }
        };
        let response = match operation.status {
            Status::Ok => self.decode_output(operation, is_read)?,
            Status::Fail => {
                let rejected = operation
                    .output
                    .as_ref()
                    .is_some_and(|output| output.get("error").is_some());
                match request {
                    RegisterInput::Cas { .. } if !rejected => Some(RegisterOutput::CasFailed),
                    _ => None,
                }
            }
            // An unanswered read tells nothing and changes nothing.
            Status::Info if is_read => None,
            Status::Info => Some(RegisterOutput::Unknown),
        };
        Ok(response.map(|response| (request, response)))
    }

    fn partition(&self, operations: &[ModelOperation<RegisterInput, RegisterOutput>]) -> Vec<Vec<usize>> {
        // A BTreeMap rather than a HashMap: no OS-seeded hasher (determinism rule), and the
        // partitions come out in order of each key's first operation either way.
        let mut partition_of_key: BTreeMap<&str, usize> = BTreeMap::new();
        let mut partitions: Vec<Vec<usize>> = Vec::new();
        for (position, operation) in operations.iter().enumerate() {
            let next_partition = partitions.len();
            let partition = *partition_of_key.entry(operation.input.key()).or_insert(next_partition);
            if partition == next_partition {
                partitions.push(Vec::new());
            }
            partitions[partition].push(position);
        }
        partitions
    }

    fn init(&self) -> RegisterState {
        RegisterState {
            value: None,
            mod_revision: 0,
            mod_revision_exact: true,
        }
    }

    fn step(&self, state: &RegisterState, input: &RegisterInput, output: &RegisterOutput) -> Step<RegisterState> {
        match (input, output) {
            (RegisterInput::Read { .. }, RegisterOutput::Read { value, mod_revision }) => {
                if *value != state.value {
                    return Step::Illegal;
                }
                match (self.revision_aware && value.is_some(), *mod_revision) {
                    (true, Some(revision)) => {
                        let consistent = if state.mod_revision_exact {
                            revision == state.mod_revision
                        } else {
                            revision >= state.mod_revision
                        };
                        if !consistent {
                            return Step::Illegal;
                        }
                        Step::Legal(RegisterState {
                            value: state.value.clone(),
                            mod_revision: revision,
                            mod_revision_exact: true,
                        })
                    }
                    _ => Step::Legal(state.clone()),
                }
            }
            (RegisterInput::Write { value, .. }, RegisterOutput::Written { mod_revision }) => {
                self.write(state, value, *mod_revision)
            }
            (RegisterInput::Write { value, .. }, RegisterOutput::Unknown) => self.write(state, value, None),
            (RegisterInput::Cas { from, to, .. }, RegisterOutput::Written { mod_revision }) => {
                if state.value.as_deref() == Some(&**from) {
                    self.write(state, to, *mod_revision)
                } else {
                    Step::Illegal
                }
            }
            (RegisterInput::Cas { from, .. }, RegisterOutput::CasFailed) => {
                if state.value.as_deref() == Some(&**from) {
                    Step::Illegal
                } else {
                    Step::Legal(state.clone())
                }
            }
            (RegisterInput::Cas { from, to, .. }, RegisterOutput::Unknown) => {
                if state.value.as_deref() == Some(&**from) {
                    self.write(state, to, None)
                } else {
                    Step::Legal(state.clone())
                }
            }
            (input, output) => panic!("register input {input:?} paired with output {output:?}"),
        }
    }

    fn is_always_legal(&self, _input: &RegisterInput, output: &RegisterOutput) -> bool {
        // An indeterminate write or cas: a write always applies, a cas applies or not.
        *output == RegisterOutput::Unknown
    }

    fn cannot_become_legal(&self, state: &RegisterState, _input: &RegisterInput, output: &RegisterOutput) -> bool {
        // Only revisions are monotonic: any value can come back with a later write.
        if !self.revision_aware {
            return false;
        }
        match output {
            RegisterOutput::Read {
                value: Some(_),
                mod_revision: Some(revision),
            } => *revision < state.mod_revision,
            RegisterOutput::Written {
                mod_revision: Some(revision),
            } => *revision <= state.mod_revision,
            _ => false,
        }
    }

    fn describe_operation(&self, input: &RegisterInput, output: &RegisterOutput) -> String {
        match (input, output) {
            (RegisterInput::Read { key }, RegisterOutput::Read { value, mod_revision }) => format!(
                "read({key}) = {}{}",
                value.as_deref().unwrap_or("nil"),
                describe_revision(*mod_revision)
            ),
            (RegisterInput::Write { key, value }, output) => {
                let result = match output {
                    RegisterOutput::Written { mod_revision } => {
                        format!("ok{}", describe_revision(*mod_revision))
                    }
                    _ => String::from("?"),
                };
                format!("write({key}, {value}) = {result}")
            }
            (RegisterInput::Cas { key, from, to }, output) => {
                let result = match output {
                    RegisterOutput::Written { mod_revision } => {
                        format!("ok{}", describe_revision(*mod_revision))
                    }
                    RegisterOutput::CasFailed => String::from("fail"),
                    _ => String::from("?"),
                };
                format!("cas({key}, {from} -> {to}) = {result}")
            }
            (input, output) => format!("{input:?} = {output:?}"),
        }
    }

    fn describe_state(&self, state: &RegisterState) -> String {
        let value = state.value.as_deref().unwrap_or("nil");
        if !self.revision_aware {
            return value.to_owned();
        }
        let relation = if state.mod_revision_exact { "" } else { ">=" };
        format!("{value} (mod_revision {relation}{})", state.mod_revision)
    }

    fn describe_partition(&self, first: &RegisterInput) -> String {
        format!("key {:?}", first.key())
    }
}
