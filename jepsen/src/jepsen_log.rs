//! Converts Jepsen's etcd register logs (the known-answer histories) into our [`History`].
//!
//! A line reads `INFO  jepsen.util - <process> <type> <f> <value>`, fields separated by a tab
//! or a run of spaces: `:invoke :read nil`, `:ok :read 3`, `:invoke :write 4`,
//! `:invoke :cas [2 4]`, `:fail :cas [2 4]`, `:info :write :timed-out`. A process runs one
//! operation at a time and its next non-invoke line completes it. The line number is the time.
//!
//! Mapping: `:ok` and `:fail` keep their status (a failed cas observed a different value); an
//! `:info` becomes an open-ended `info` operation and its process is retired (Jepsen gives the
//! client a new number; should an old number come back anyway, it gets a fresh process id). An
//! operation still open at the end of the log is `info` too.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};

use crate::history::{History, Operation, Status};

/// The register key the converted operations use (the logs have a single register).
pub const JEPSEN_REGISTER_KEY: &str = "jepsen";

/// First process id handed to a Jepsen process number that reappears after `:info`.
const FRESH_PROCESS_BASE: u64 = 1 << 32;

/// A line the converter could not understand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JepsenLogError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for JepsenLogError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "jepsen log line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for JepsenLogError {}

/// Splits off the first whitespace-separated token.
fn split_token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

struct ParsedLine<'a> {
    process: u64,
    kind: &'a str,
    function: &'a str,
    value: &'a str,
}

fn parse_line(line: &str) -> Result<ParsedLine<'_>, String> {
    let marker = "jepsen.util";
    let start = line.find(marker).ok_or_else(|| format!("no {marker:?} in {line:?}"))?;
    let rest = line[start + marker.len()..].trim_start();
    let rest = rest
        .strip_prefix('-')
        .ok_or_else(|| format!("expected '-' after {marker:?} in {line:?}"))?;
    let (process, rest) = split_token(rest);
    let (kind, rest) = split_token(rest);
    let (function, rest) = split_token(rest);
    let process = process
        .parse::<u64>()
        .map_err(|_| format!("bad process number {process:?}"))?;
    Ok(ParsedLine {
        process,
        kind,
        function,
        value: rest.trim(),
    })
}

fn parse_integer(text: &str) -> Result<String, String> {
    text.parse::<i64>()
        .map(|number| number.to_string())
        .map_err(|_| format!("expected an integer, found {text:?}"))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    let inner = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| format!("expected [from to], found {text:?}"))?;
    match inner.split_whitespace().collect::<Vec<_>>()[..] {
        [from, to] => Ok((parse_integer(from)?, parse_integer(to)?)),
        _ => Err(format!("expected [from to], found {text:?}")),
    }
}

fn invoke_input(function: &str, value: &str) -> Result<Value, String> {
    match function {
        ":read" => Ok(json!({ "key": JEPSEN_REGISTER_KEY })),
        ":write" => Ok(json!({ "key": JEPSEN_REGISTER_KEY, "value": parse_integer(value)? })),
        ":cas" => {
            let (from, to) = parse_pair(value)?;
            Ok(json!({ "key": JEPSEN_REGISTER_KEY, "from": from, "to": to }))
        }
        other => Err(format!("unknown function {other:?}")),
    }
}

/// Parses a whole log.
pub fn parse_jepsen_etcd_log(text: &str) -> Result<History, JepsenLogError> {
    let mut history = History::new();
    // Jepsen process number -> index of its open operation.
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    // Jepsen process number -> our process id, for live processes.
    let mut process_ids: BTreeMap<u64, u64> = BTreeMap::new();
    let mut retired: Vec<u64> = Vec::new();
    let mut next_fresh_process = FRESH_PROCESS_BASE;

    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| JepsenLogError {
            line: line_index + 1,
            message,
        };
        let parsed = parse_line(line).map_err(error)?;
        let time_ns = line_index as u64;
        if parsed.kind == ":invoke" {
            if open.contains_key(&parsed.process) {
                return Err(error(format!(
                    "process {} invokes while an operation is open",
                    parsed.process
                )));
            }
            let process = *process_ids.entry(parsed.process).or_insert_with(|| {
                if retired.contains(&parsed.process) {
                    next_fresh_process += 1;
                    next_fresh_process - 1
                } else {
                    parsed.process
                }
            });
            let input = invoke_input(parsed.function, parsed.value).map_err(error)?;
            let index = history.push(Operation {
                process,
                op: parsed.function.trim_start_matches(':').to_owned(),
                input,
                output: None,
                call_ns: time_ns,
                return_ns: None,
                // Until its completion line, the operation is open: indeterminate.
                status: Status::Info,
            });
            open.insert(parsed.process, index);
            continue;
        }

        let index = open
            .remove(&parsed.process)
            .ok_or_else(|| error(format!("process {} completes nothing", parsed.process)))?;
        let operation = &mut history.operations[index];
        let function = parsed.function.trim_start_matches(':');
        if operation.op != function {
            return Err(error(format!(
                "completion {function:?} for an invoked {:?}",
                operation.op
            )));
        }
        match parsed.kind {
            ":ok" => {
                operation.status = Status::Ok;
                operation.return_ns = Some(time_ns);
                operation.output = Some(if function == "read" {
                    let value = match parsed.value {
                        "nil" => Value::Null,
                        text => Value::String(parse_integer(text).map_err(error)?),
                    };
                    json!({ "value": value })
                } else {
                    json!({})
                });
            }
            ":fail" => {
                operation.status = Status::Fail;
                operation.return_ns = Some(time_ns);
            }
            ":info" => {
                // Outcome unknown: open-ended, and the client process is never reused.
                operation.status = Status::Info;
                operation.return_ns = None;
                process_ids.remove(&parsed.process);
                retired.push(parsed.process);
            }
            other => return Err(error(format!("unknown event type {other:?}"))),
        }
    }
    Ok(history)
}
