//! The request loop every workload shares: clients spread round-robin over the
//! connections, each sending one request at a time until the shared count or
//! the deadline runs out, recording each answer's latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_proto::etcdserverpb::kv_client::KvClient;
use braid_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::options::{Consistency, KeyOrder, Options, Workload, TIMESTAMP_DIGITS};
use crate::summary::{new_histogram, record};

/// Counters all clients share; the progress line and the summary read them.
pub struct Shared {
    deadline: Instant,
    total: u64,
    issued: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(options: &Options, started: Instant) -> Shared {
        Shared {
            deadline: started + options.duration,
            total: options.total,
            issued: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// The sequence number of the next request, or None once the count or the time is up.
    fn next_request(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let sequence = self.issued.fetch_add(1, Ordering::Relaxed);
        (sequence < self.total).then_some(sequence)
    }

    pub fn record_error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .expect("no client panics while holding this lock");
        first.get_or_insert(error);
    }
}

/// What a value holds: fixed filler, or (watch-latency) the send time first.
#[derive(Clone)]
pub enum Values {
    Fixed(Bytes),
    /// Nanoseconds since `base`, zero-padded to TIMESTAMP_DIGITS, then filler to `size`.
    SendTime {
        base: Instant,
        size: usize,
    },
}

impl Values {
    pub fn fixed(size: usize) -> Values {
        Values::Fixed(Bytes::from(vec![b'v'; size]))
    }

    fn next(&self) -> Bytes {
        match self {
            Values::Fixed(bytes) => bytes.clone(),
            Values::SendTime { base, size } => {
                let mut value = format!("{:0width$}", base.elapsed().as_nanos(), width = TIMESTAMP_DIGITS).into_bytes();
                value.resize(*size, b'v');
                Bytes::from(value)
            }
        }
    }

    /// The time from the send time in `value` until now, when `value` carries one.
    pub fn latency_since_sent(base: Instant, value: &[u8]) -> Option<Duration> {
        let digits = std::str::from_utf8(value.get(..TIMESTAMP_DIGITS)?).ok()?;
        let sent = Duration::from_nanos(digits.parse().ok()?);
        Some(base.elapsed().saturating_sub(sent))
    }
}

enum Request {
    Put(Bytes),
    Range(Bytes),
    TxnPut(Bytes),
}

/// One client: requests one at a time until `shared` says stop; returns its latencies.
pub async fn run_client(
    index: usize,
    mut kv: KvClient<Channel>,
    options: Arc<Options>,
    shared: Arc<Shared>,
    values: Values,
) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut random = SmallRng::seed_from_u64(options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64);
    let mut pacer = pacer(&options, index);
    while let Some(sequence) = shared.next_request() {
        if let Some(interval) = pacer.as_mut() {
            interval.tick().await;
        }
        let number = match options.key_order {
            KeyOrder::Random => random.gen_range(0..options.key_space),
            KeyOrder::Sequential => sequence % options.key_space,
        };
        let key = Bytes::from(options.key(number));
        let request = match options.workload {
            Workload::Range => Request::Range(key),
            Workload::TxnPut => Request::TxnPut(key),
            Workload::Mixed if random.gen_bool(options.read_ratio) => Request::Range(key),
            _ => Request::Put(key),
        };
        let started = Instant::now();
        let call = send(&mut kv, request, &values, options.consistency);
        match tokio::time::timeout(options.request_timeout, call).await {
            Ok(Ok(())) => {
                record(&mut histogram, started.elapsed());
                shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(status)) => shared.record_error(format!("{}: {}", status.code(), status.message())),
            Err(_) => shared.record_error(format!("no answer within {:?}", options.request_timeout)),
        }
    }
    histogram
}

/// With --rate, each client sends at most rate/clients requests a second.
/// Client `index` starts `index / clients` of a period late, so the clients'
/// requests arrive spread over each period rather than all at its start (a
/// burst of every client at once every period is not a sustained rate).
fn pacer(options: &Options, index: usize) -> Option<tokio::time::Interval> {
    if options.rate_per_second == 0 {
        return None;
    }
    let period = Duration::from_secs_f64(options.clients as f64 / options.rate_per_second as f64);
    let offset = period.mul_f64(index as f64 / options.clients as f64);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(interval)
}

async fn send(
    kv: &mut KvClient<Channel>,
    request: Request,
    values: &Values,
    consistency: Consistency,
) -> Result<(), tonic::Status> {
    let put = |key| PutRequest {
        key,
        value: values.next(),
        ..PutRequest::default()
    };
    match request {
        Request::Put(key) => kv.put(put(key)).await.map(drop),
        Request::Range(key) => {
            let range = RangeRequest {
                key,
                serializable: consistency == Consistency::Serializable,
                ..RangeRequest::default()
            };
            kv.range(range).await.map(drop)
        }
        Request::TxnPut(key) => {
            let success = vec![RequestOp {
                request: Some(request_op::Request::RequestPut(put(key))),
            }];
            let txn = TxnRequest {
                success,
                ..TxnRequest::default()
            };
            kv.txn(txn).await.map(drop)
        }
    }
}

/// Runs `options.clients` clients over `channels` and merges their latencies.
pub async fn run_clients(
    options: &Arc<Options>,
    channels: &[Channel],
    shared: &Arc<Shared>,
    values: Values,
) -> Histogram<u64> {
    let tasks: Vec<_> = (0..options.clients)
        .map(|index| {
            let kv = KvClient::new(channels[index % channels.len()].clone());
            let client = run_client(index, kv, Arc::clone(options), Arc::clone(shared), values.clone());
            tokio::spawn(client)
        })
        .collect();
    let mut merged = new_histogram();
    for task in tasks {
        let histogram = task.await.expect("a client task does not panic");
        merged.add(histogram).expect("histograms share their bounds");
    }
    merged
}

/// Prints a progress line on stderr every second until aborted.
pub fn spawn_progress(workload: &'static str, shared: Arc<Shared>, started: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.tick().await;
        let mut previous = 0;
        loop {
            interval.tick().await;
            let completed = shared.completed.load(Ordering::Relaxed);
            eprintln!(
                "braid-bench {workload}: {:>4.0} s  {:>9} ops/s  {completed} ops  {} errors",
                started.elapsed().as_secs_f64(),
                completed - previous,
                shared.errors.load(Ordering::Relaxed)
            );
            previous = completed;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_values_round_trip() {
        let base = Instant::now();
        let values = Values::SendTime { base, size: 64 };
        let value = values.next();
        assert_eq!(value.len(), 64);
        let latency = Values::latency_since_sent(base, &value).expect("a send time");
        assert!(latency < Duration::from_secs(60), "{latency:?}");
        assert_eq!(Values::latency_since_sent(base, b"short"), None);
        assert_eq!(Values::latency_since_sent(base, &[b'v'; 32]), None);
    }
}
