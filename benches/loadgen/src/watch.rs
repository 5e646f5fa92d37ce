//! watch-latency: watchers on one prefix, each with its own Watch stream,
//! spread round-robin over the connections; writers Put keys under the prefix
//! with the send time in the value, and every delivered event records the time
//! from send to delivery. After the writers stop, watchers get a bounded grace
//! period to receive the events still in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_proto::etcdserverpb::watch_client::WatchClient;
use braid_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::load::{run_clients, Shared, Values};
use crate::options::Options;
use crate::summary::{new_histogram, record};

/// How long watchers may still receive events after the last Put was answered.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How often the drain checks whether every expected event has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);

pub struct WatchOutcome {
    pub puts: Histogram<u64>,
    pub deliveries: Histogram<u64>,
    pub events: u64,
    pub expected_events: u64,
    /// From the start until the last Put was answered: what throughput divides by.
    pub writers_elapsed: Duration,
}

/// Opens one watcher on the options' prefix and waits for its `created` answer.
async fn open_watcher(
    channel: Channel,
    options: &Options,
) -> Result<Streaming<braid_proto::etcdserverpb::WatchResponse>, String> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: options.prefix.clone().into_bytes().into(),
            range_end: options.prefix_range_end().into(),
            ..WatchCreateRequest::default()
        })),
    };
    // The request stream stays open (pending) so the server keeps the watch.
    let requests = futures_util::stream::iter([create]).chain(futures_util::stream::pending());
    let opening = async {
        let mut stream = WatchClient::new(channel)
            .watch(requests)
            .await
            .map_err(|status| format!("Watch: {}: {}", status.code(), status.message()))?
            .into_inner();
        match stream.message().await {
            Ok(Some(response)) if response.created => Ok(stream),
            Ok(Some(response)) => Err(format!("Watch answered without `created`: {response:?}")),
            Ok(None) => Err("Watch stream ended before `created`".to_string()),
            Err(status) => Err(format!("Watch: {}: {}", status.code(), status.message())),
        }
    };
    tokio::time::timeout(options.request_timeout, opening)
        .await
        .map_err(|_| format!("Watch not created within {:?}", options.request_timeout))?
}

/// One watcher: records every event's delivery latency until told to stop.
async fn run_watcher(
    mut stream: Streaming<braid_proto::etcdserverpb::WatchResponse>,
    base: Instant,
    events: Arc<AtomicU64>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut histogram = new_histogram();
    loop {
        let response = tokio::select! {
            response = stream.message() => response,
            _ = stop.changed() => break,
        };
        match response {
            Ok(Some(response)) => {
                for event in response.events {
                    let value = event.kv.map(|kv| kv.value).unwrap_or_default();
                    if let Some(latency) = Values::latency_since_sent(base, &value) {
                        record(&mut histogram, latency);
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if response.canceled {
                    shared.record_error(format!("watch canceled: {}", response.cancel_reason));
                    break;
                }
            }
            Ok(None) => {
                shared.record_error("watch stream ended".to_string());
                break;
            }
            Err(status) => {
                shared.record_error(format!("watch: {}: {}", status.code(), status.message()));
                break;
            }
        }
    }
    histogram
}

pub async fn run(
    options: &Arc<Options>,
    channels: &[Channel],
    shared: &Arc<Shared>,
    base: Instant,
) -> Result<WatchOutcome, String> {
    let events = Arc::new(AtomicU64::new(0));
    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::with_capacity(options.watchers);
    for index in 0..options.watchers {
        let stream = open_watcher(channels[index % channels.len()].clone(), options).await?;
        let watcher = run_watcher(
            stream,
            base,
            Arc::clone(&events),
            Arc::clone(shared),
            stop_receiver.clone(),
        );
        watchers.push(tokio::spawn(watcher));
    }

    let values = Values::SendTime {
        base,
        size: options.value_size,
    };
    let writers_started = Instant::now();
    let puts = run_clients(options, channels, shared, values).await;
    let writers_elapsed = writers_started.elapsed();

    let expected_events = shared.completed.load(Ordering::Relaxed) * options.watchers as u64;
    let drain_started = Instant::now();
    while events.load(Ordering::Relaxed) < expected_events && drain_started.elapsed() < DRAIN_GRACE {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    // Every watcher holds a receiver, so the send cannot fail while they run.
    let _ = stop_sender.send(true);
    let mut deliveries = new_histogram();
    for watcher in watchers {
        let histogram = watcher.await.expect("a watcher task does not panic");
        deliveries.add(histogram).expect("histograms share their bounds");
    }
    Ok(WatchOutcome {
        puts,
        deliveries,
        events: events.load(Ordering::Relaxed),
        expected_events,
        writers_elapsed,
    })
}
