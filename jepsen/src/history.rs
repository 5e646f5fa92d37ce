//! The recorded history: one operation per JSON line, as written by the simulation and the
//! real-process harness and read back by the checker.
//!
//! A line looks like
//! `{"process":3,"op":"write","input":{"key":"x","value":"7"},"output":{},"call_ns":120,"return_ns":180,"status":"ok"}`.
//! Times come from one monotonic clock shared by all processes of a run.

use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// How an operation ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Completed and took effect; `output` holds the response.
    Ok,
    /// Completed with a known outcome that did not change the state. A failed read or a write
    /// rejected before it took effect is dropped by the models; a compare-and-set whose compare
    /// did not match stays in, because it observed the state.
    Fail,
    /// Indeterminate (timeout, `Unavailable` after the send, a broken stream): it may or may not
    /// have taken effect, at any time after its call. Its return is treated as +∞ whatever
    /// `return_ns` says, and its process never issues another operation (it is retired).
    Info,
}

/// One client operation: its call, its return and what it saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The client process (one operation in flight per process).
    pub process: u64,
    /// The function name, interpreted by the model (`read`, `write`, `cas`, `put`, `get`, ...).
    pub op: String,
    /// The request, shaped as the model expects.
    pub input: serde_json::Value,
    /// The response; `null` when there is none (`info`, or a `fail` without details).
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// When the request was sent.
    pub call_ns: u64,
    /// When the response arrived; `null` for an operation still open at the end of the run.
    #[serde(default)]
    pub return_ns: Option<u64>,
    /// How the operation ended.
    pub status: Status,
}

impl Operation {
    /// The return time the checker uses: `None` (+∞) for indeterminate operations and for
    /// operations without a recorded return.
    pub fn effective_return_ns(&self) -> Option<u64> {
        match self.status {
            Status::Info => None,
            Status::Ok | Status::Fail => self.return_ns,
        }
    }
}

/// A whole run's operations, in any order (the checker sorts by time).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The operations; an operation's position here is its id in reports.
    pub operations: Vec<Operation>,
}

/// Why a history could not be read or is malformed.
#[derive(Debug)]
pub enum HistoryError {
    /// Reading or writing the stream failed.
    Io(std::io::Error),
    /// A line is not a valid operation (line numbers start at 1).
    Json { line: usize, message: String },
    /// The operation at `index` breaks a rule of the format.
    Invalid { index: usize, reason: String },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io(error) => write!(formatter, "history i/o error: {error}"),
            HistoryError::Json { line, message } => {
                write!(formatter, "history line {line}: {message}")
            }
            HistoryError::Invalid { index, reason } => {
                write!(formatter, "history operation {index}: {reason}")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

impl From<std::io::Error> for HistoryError {
    fn from(error: std::io::Error) -> Self {
        HistoryError::Io(error)
    }
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Appends an operation and returns its id.
    pub fn push(&mut self, operation: Operation) -> usize {
        self.operations.push(operation);
        self.operations.len() - 1
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// True when there are no operations.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// How many operations ended with each status: (ok, fail, info).
    pub fn status_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for operation in &self.operations {
            match operation.status {
                Status::Ok => counts.0 += 1,
                Status::Fail => counts.1 += 1,
                Status::Info => counts.2 += 1,
            }
        }
        counts
    }

    /// Reads JSON lines; blank lines are skipped.
    pub fn read_jsonl(reader: impl BufRead) -> Result<History, HistoryError> {
        let mut history = History::new();
        for (line_index, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let operation: Operation = serde_json::from_str(&line).map_err(|error| HistoryError::Json {
                line: line_index + 1,
                message: error.to_string(),
            })?;
            history.push(operation);
        }
        Ok(history)
    }

    /// Parses JSON lines held in memory.
    pub fn from_jsonl_str(text: &str) -> Result<History, HistoryError> {
        History::read_jsonl(text.as_bytes())
    }

    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, mut writer: impl Write) -> Result<(), HistoryError> {
        for operation in &self.operations {
            let line = serde_json::to_string(operation).map_err(|error| HistoryError::Json {
                line: 0,
                message: error.to_string(),
            })?;
            writer.write_all(line.as_bytes())?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    /// The JSON-lines text of this history.
    pub fn to_jsonl_string(&self) -> String {
        let mut buffer = Vec::new();
        self.write_jsonl(&mut buffer)
            .expect("writing JSON to memory cannot fail");
        String::from_utf8(buffer).expect("serde_json writes UTF-8")
    }

    /// Checks the rules of the format: a completed operation has a return no earlier than its
    /// call; a process has one operation in flight at a time; a process issues nothing after an
    /// indeterminate operation or an operation left open.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut by_process: Vec<(u64, u64, usize)> = Vec::with_capacity(self.operations.len());
        for (index, operation) in self.operations.iter().enumerate() {
            if operation.status != Status::Info {
                match operation.return_ns {
                    None => {
                        return Err(HistoryError::Invalid {
                            index,
                            reason: format!(
                                "status {:?} needs a return_ns (only info operations are open-ended)",
                                operation.status
                            ),
                        })
                    }
                    Some(return_ns) if return_ns < operation.call_ns => {
                        return Err(HistoryError::Invalid {
                            index,
                            reason: format!("returns at {return_ns} before its call at {}", operation.call_ns),
                        })
                    }
                    Some(_) => {}
                }
            }
            by_process.push((operation.process, operation.call_ns, index));
        }
        by_process.sort_unstable();
        for pair in by_process.windows(2) {
            let (process, _, earlier_index) = pair[0];
            let (next_process, next_call_ns, later_index) = pair[1];
            if process != next_process {
                continue;
            }
            let earlier = &self.operations[earlier_index];
            match earlier.effective_return_ns() {
                None => {
                    return Err(HistoryError::Invalid {
                        index: later_index,
                        reason: format!(
                            "process {process} is retired after indeterminate operation {earlier_index}"
                        ),
                    })
                }
                Some(return_ns) if next_call_ns < return_ns => {
                    return Err(HistoryError::Invalid {
                        index: later_index,
                        reason: format!(
                            "process {process} calls at {next_call_ns} while operation {earlier_index} is in flight until {return_ns}"
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
