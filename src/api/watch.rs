//! `etcdserverpb.Watch/Watch` (COMPAT.md §2.3): one bidirectional stream carries many
//! watchers, each created, cancelled and answered like etcd 3.5's `serverWatchStream`.
//!
//! Design: one task per stream owns every watcher of that stream and is the only writer of
//! its responses, so the order a client sees is the order this task decided on:
//! - a `created` response goes out before any event of that watcher, a `canceled` one after
//!   its last event;
//! - a progress response (`WatchProgressRequest`, watch id −1) goes out only after a pass in
//!   which every watcher of the stream was caught up, so every event up to its revision has
//!   already been sent (Kubernetes' consistent reads rely on this).
//!
//! The watchers share one `Notify` that the store's writer signals; the task waits on it only
//! after a pass found every watcher idle, so no wake-up is lost and nothing polls. Each pass
//! takes at most one bounded step per watcher (one queue drain or one history chunk), so a
//! watcher replaying a long history does not starve the others. Responses go through a
//! bounded channel to gRPC: a client that stops reading stalls only this task, while the
//! store keeps its writes flowing by moving the stalled watchers to catch-up (mvcc/watch.rs).
//!
//! Events come from this member's applied store, so a watch served by a follower sees what
//! that follower has applied, as in etcd.
//!
//! Known differences from etcd 3.5: a progress request that arrives while a watcher is
//! catching up is answered once all are caught up (etcd drops it, and clients ask again); the
//! stream is not cancelled when the member loses its leader (`hasleader` is checked only
//! when the stream opens).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Notify};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::watch_request::RequestUnion;
use braid_proto::etcdserverpb::watch_server::Watch;
use braid_proto::mvccpb;

use crate::api::convert;
use crate::api::errors::ApiError;
use crate::api::{check_access, ApiLimits, LearnerAccess};
use crate::mvcc::{Backend, BackendError, Event, MvccError, Revision, WatchResponse, WatchStep, Watcher};
use crate::server::{Header, NodeHandle};

/// `--experimental-watch-progress-notify-interval` default: 10 minutes.
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// The `watch_id` of responses that belong to no watcher (etcd's `InvalidWatchID`), and a
/// create request's `watch_id` that asks the server to choose (`AutoWatchID`).
pub const INVALID_WATCH_ID: i64 = -1;
pub const AUTO_WATCH_ID: i64 = 0;

/// `cancel_reason` of a create request that reuses a live id (etcd's `ErrWatcherDuplicateID`).
pub const DUPLICATE_WATCH_ID_REASON: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Responses waiting for gRPC to take them; beyond this the stream's task waits.
const RESPONSE_BUFFER: usize = 16;
/// Client requests read ahead of the stream's task.
const REQUEST_BUFFER: usize = 16;

pub struct WatchService<B: Backend> {
    node: NodeHandle<B>,
    limits: ApiLimits,
    /// Streams opened so far: seeds each stream's progress jitter (no global RNG).
    streams_opened: Arc<AtomicU64>,
}

impl<B: Backend> WatchService<B> {
    pub fn new(node: NodeHandle<B>, limits: ApiLimits) -> Self {
        WatchService {
            node,
            limits,
            streams_opened: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Serves one Watch stream: requests from `incoming`, responses on the returned stream.
    /// The stream ends when the client goes away (or on a malformed message, with its status).
    pub fn open_stream(&self, mut incoming: Streaming<pb::WatchRequest>) -> BoxStream<pb::WatchResponse> {
        let (responses, outgoing) = mpsc::channel(RESPONSE_BUFFER);
        let (request_sender, requests) = mpsc::channel(REQUEST_BUFFER);
        // Reading in its own task keeps `Streaming::message` out of the `select!` below.
        tokio::spawn(async move {
            loop {
                let request = match incoming.message().await {
                    Ok(Some(request)) => Ok(request),
                    // The client half-closed: etcd keeps sending events until it goes away.
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = request.is_err();
                if request_sender.send(request).await.is_err() || failed {
                    return;
                }
            }
        });
        let stream_number = self.streams_opened.fetch_add(1, Ordering::Relaxed);
        let mut jitter = SmallRng::seed_from_u64(self.node.member_id() ^ stream_number);
        let interval = self.limits.watch_progress_notify_interval;
        let progress_interval = interval + jitter_of(interval, &mut jitter);
        let stream = ClientStream {
            node: self.node.clone(),
            responses,
            notify: Arc::new(Notify::new()),
            watches: BTreeMap::new(),
            next_auto_id: 0,
            progress_requested: false,
        };
        tokio::spawn(stream.run(requests, progress_interval));
        Box::pin(futures_util::stream::unfold(outgoing, |mut outgoing| async move {
            outgoing.recv().await.map(|response| (response, outgoing))
        }))
    }
}

/// etcd adds up to a tenth of the interval so streams opened together do not all report at once.
fn jitter_of(interval: Duration, random: &mut SmallRng) -> Duration {
    let tenth_ms = u64::try_from(interval.as_millis() / 10).unwrap_or(u64::MAX);
    if tenth_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(random.gen_range(0..tenth_ms))
}

#[tonic::async_trait]
impl<B: Backend> Watch for WatchService<B> {
    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        check_access(&self.node, request.metadata(), LearnerAccess::Refused)?;
        Ok(Response::new(self.open_stream(request.into_inner())))
    }
}

/// The client has gone away (or the stream failed): the stream's task stops.
struct StreamEnded;

/// One watcher of a stream, as the client created it.
struct ClientWatch<B: Backend> {
    /// `None` once compaction cancelled it: like etcd, the id stays taken (and a cancel for it
    /// is answered) until the client cancels it.
    watcher: Option<Watcher<B>>,
    start_revision: i64,
    progress_notify: bool,
    /// Events went out since the last progress tick: etcd skips the next notification.
    sent_since_tick: bool,
    fragment: bool,
}

struct ClientStream<B: Backend> {
    node: NodeHandle<B>,
    responses: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Shared by every watcher of the stream; the store's writer signals it.
    notify: Arc<Notify>,
    watches: BTreeMap<i64, ClientWatch<B>>,
    /// Invariant: never handed out before on this stream (etcd's `nextID` only grows).
    next_auto_id: i64,
    /// A `WatchProgressRequest` waits for a pass with every watcher caught up.
    progress_requested: bool,
}

impl<B: Backend> ClientStream<B> {
    async fn run(mut self, mut requests: mpsc::Receiver<Result<pb::WatchRequest, Status>>, interval: Duration) {
        let _ = self.serve(&mut requests, interval).await;
    }

    async fn serve(
        &mut self,
        requests: &mut mpsc::Receiver<Result<pb::WatchRequest, Status>>,
        interval: Duration,
    ) -> Result<(), StreamEnded> {
        let notify = Arc::clone(&self.notify);
        let client_gone = self.responses.clone();
        let mut requests_open = true;
        let mut progress_timer = Box::pin(tokio::time::sleep(interval));
        loop {
            let busy = self.pass().await?;
            if !busy && self.progress_requested {
                self.answer_progress_request().await?;
            }
            tokio::select! {
                biased;
                request = requests.recv(), if requests_open => match request {
                    Some(Ok(request)) => self.handle(request).await?,
                    Some(Err(status)) => {
                        let _ = self.responses.send(Err(status)).await;
                        return Err(StreamEnded);
                    }
                    None => requests_open = false,
                },
                () = &mut progress_timer => {
                    self.progress_tick().await?;
                    progress_timer = Box::pin(tokio::time::sleep(interval));
                }
                () = notify.notified(), if !busy => {}
                () = tokio::task::yield_now(), if busy => {}
                () = client_gone.closed() => return Err(StreamEnded),
            }
        }
    }

    async fn handle(&mut self, request: pb::WatchRequest) -> Result<(), StreamEnded> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => {
                // etcd answers nothing on a stream without watchers.
                self.progress_requested = self.watches.values().any(|watch| watch.watcher.is_some());
                Ok(())
            }
            // etcd ignores a request with nothing set.
            None => Ok(()),
        }
    }

    async fn create(&mut self, request: pb::WatchCreateRequest) -> Result<(), StreamEnded> {
        // etcd checks the start revision before the range, then the id.
        let created = if request.start_revision < 0 {
            Err(MvccError::Compacted.message())
        } else {
            let watch_request = convert::watch_request_from_proto(&request);
            match self
                .node
                .store()
                .watch_notifying(watch_request, Arc::clone(&self.notify))
            {
                Err(error) => Err(error.message()),
                Ok(_) if request.watch_id != AUTO_WATCH_ID && self.watches.contains_key(&request.watch_id) => {
                    Err(DUPLICATE_WATCH_ID_REASON)
                }
                Ok(watcher) => Ok(watcher),
            }
        };
        let watcher = match created {
            Ok(watcher) => watcher,
            Err(reason) => {
                let response = pb::WatchResponse {
                    header: Some(self.header(self.node.store().current_revision().0)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: reason.to_string(),
                    ..pb::WatchResponse::default()
                };
                return self.send(response).await;
            }
        };
        let id = if request.watch_id == AUTO_WATCH_ID {
            while self.watches.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        } else {
            request.watch_id
        };
        let created_revision = watcher.created_revision().0;
        self.watches.insert(
            id,
            ClientWatch {
                watcher: Some(watcher),
                start_revision: request.start_revision,
                progress_notify: request.progress_notify,
                sent_since_tick: false,
                fragment: request.fragment,
            },
        );
        let response = pb::WatchResponse {
            header: Some(self.header(created_revision)),
            watch_id: id,
            created: true,
            ..pb::WatchResponse::default()
        };
        self.send(response).await
    }

    /// An unknown id is ignored, as etcd does.
    async fn cancel(&mut self, id: i64) -> Result<(), StreamEnded> {
        if self.watches.remove(&id).is_none() {
            return Ok(());
        }
        let response = pb::WatchResponse {
            header: Some(self.header(self.node.store().current_revision().0)),
            watch_id: id,
            canceled: true,
            ..pb::WatchResponse::default()
        };
        self.send(response).await
    }

    /// One bounded step of every watcher, sending what they had. Returns whether any of them
    /// did something (and so may have more right away).
    async fn pass(&mut self) -> Result<bool, StreamEnded> {
        let mut busy = false;
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            let Some(watch) = self.watches.get_mut(&id) else {
                continue;
            };
            let Some(watcher) = watch.watcher.as_mut() else {
                continue;
            };
            let step = match watcher.step() {
                Ok(step) => step,
                Err(error) => return Err(self.fail(error).await),
            };
            match step {
                WatchStep::Idle => {}
                WatchStep::Progressed => busy = true,
                WatchStep::Response(WatchResponse::Events { events, revision }) => {
                    busy = true;
                    watch.sent_since_tick = true;
                    let fragment = watch.fragment;
                    self.send_events(id, events, revision, fragment).await?;
                }
                WatchStep::Response(WatchResponse::Canceled { compact_revision }) => {
                    watch.watcher = None;
                    let response = pb::WatchResponse {
                        header: Some(self.header(self.node.store().current_revision().0)),
                        watch_id: id,
                        canceled: true,
                        compact_revision: compact_revision.0,
                        ..pb::WatchResponse::default()
                    };
                    self.send(response).await?;
                }
            }
        }
        Ok(busy)
    }

    async fn send_events(
        &mut self,
        id: i64,
        events: Vec<Event>,
        revision: Revision,
        fragment: bool,
    ) -> Result<(), StreamEnded> {
        let response = pb::WatchResponse {
            header: Some(self.header(revision.0)),
            watch_id: id,
            events: events.into_iter().map(convert::event_to_proto).collect(),
            ..pb::WatchResponse::default()
        };
        if !fragment {
            return self.send(response).await;
        }
        for part in fragments(response, self.node.max_request_bytes()) {
            self.send(part).await?;
        }
        Ok(())
    }

    /// Answers a pending `WatchProgressRequest` if every live watcher is caught up; the
    /// revision is the lowest they report, so all events up to it have been sent.
    async fn answer_progress_request(&mut self) -> Result<(), StreamEnded> {
        let mut revision = None::<i64>;
        for watch in self.watches.values() {
            let Some(watcher) = &watch.watcher else {
                continue;
            };
            match watcher.progress_revision() {
                Some(Revision(caught_up)) if caught_up >= watch.start_revision => {
                    revision = Some(revision.map_or(caught_up, |lowest| lowest.min(caught_up)));
                }
                // Not caught up yet: try again after the next pass.
                _ => return Ok(()),
            }
        }
        self.progress_requested = false;
        let Some(revision) = revision else {
            return Ok(());
        };
        let response = pb::WatchResponse {
            header: Some(self.header(revision)),
            watch_id: INVALID_WATCH_ID,
            ..pb::WatchResponse::default()
        };
        self.send(response).await
    }

    /// `progress_notify`: a watcher that got no events since the last tick and is caught up
    /// gets an empty response with its id and revision.
    async fn progress_tick(&mut self) -> Result<(), StreamEnded> {
        let mut due = Vec::new();
        for (id, watch) in &mut self.watches {
            if !watch.progress_notify {
                continue;
            }
            if std::mem::take(&mut watch.sent_since_tick) {
                continue;
            }
            let Some(watcher) = &watch.watcher else {
                continue;
            };
            if let Some(Revision(revision)) = watcher.progress_revision() {
                if revision >= watch.start_revision {
                    due.push((*id, revision));
                }
            }
        }
        for (id, revision) in due {
            let response = pb::WatchResponse {
                header: Some(self.header(revision)),
                watch_id: id,
                ..pb::WatchResponse::default()
            };
            self.send(response).await?;
        }
        Ok(())
    }

    /// The storage failed: the client gets `etcdserver: server stopped` and the stream ends.
    async fn fail(&self, error: BackendError) -> StreamEnded {
        let status = Status::from(ApiError::from(error));
        let _ = self.responses.send(Err(status)).await;
        StreamEnded
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), StreamEnded> {
        self.responses.send(Ok(response)).await.map_err(|_| StreamEnded)
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        convert::response_header(Header {
            revision,
            ..self.node.header()
        })
    }
}

/// etcd's `sendFragments` rule: a response of at least `max_bytes` with two or more events
/// is split into parts of whole events, each part growing while it stays under `max_bytes`
/// (a single event may exceed it); every part but the last has `fragment` set.
pub fn fragments(response: pb::WatchResponse, max_bytes: usize) -> Vec<pb::WatchResponse> {
    if response.encoded_len() < max_bytes || response.events.len() < 2 {
        return vec![response];
    }
    let template = pb::WatchResponse {
        events: Vec::new(),
        fragment: true,
        ..response.clone()
    };
    let empty_bytes = template.encoded_len();
    let mut parts = Vec::new();
    let mut part = template.clone();
    let mut part_bytes = empty_bytes;
    for event in response.events {
        let event_bytes = event_field_bytes(&event);
        if !part.events.is_empty() && part_bytes + event_bytes >= max_bytes {
            parts.push(std::mem::replace(&mut part, template.clone()));
            part_bytes = empty_bytes;
        }
        part_bytes += event_bytes;
        part.events.push(event);
    }
    part.fragment = false;
    parts.push(part);
    parts
}

/// What one event adds to an encoded `WatchResponse` (field 11: tag, length, body).
fn event_field_bytes(event: &mvccpb::Event) -> usize {
    prost::encoding::message::encoded_len(11, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(value_bytes: usize) -> mvccpb::Event {
        mvccpb::Event {
            kv: Some(mvccpb::KeyValue {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![b'v'; value_bytes]),
                ..mvccpb::KeyValue::default()
            }),
            ..mvccpb::Event::default()
        }
    }

    fn response(value_sizes: &[usize]) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 7,
                ..pb::ResponseHeader::default()
            }),
            watch_id: 3,
            events: value_sizes.iter().map(|bytes| event(*bytes)).collect(),
            ..pb::WatchResponse::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        assert_eq!(fragments(response(&[10, 10]), 1000), vec![response(&[10, 10])]);
        assert_eq!(fragments(response(&[5000]), 1000), vec![response(&[5000])]);
    }

    #[test]
    fn large_responses_split_into_whole_events_under_the_limit() {
        let original = response(&[400, 400, 400, 2000, 10]);
        let parts = fragments(original.clone(), 1000);
        let sizes: Vec<usize> = parts.iter().map(|part| part.events.len()).collect();
        // The 2000-byte event travels alone: a part never grows past the limit once it holds one.
        assert_eq!(sizes, [2, 1, 1, 1]);
        let flags: Vec<bool> = parts.iter().map(|part| part.fragment).collect();
        assert_eq!(flags, [true, true, true, false]);
        for part in &parts {
            assert!(
                part.events.len() == 1 || part.encoded_len() < 1000,
                "{}",
                part.encoded_len()
            );
            assert_eq!((part.watch_id, part.header), (3, original.header));
        }
        let events: Vec<mvccpb::Event> = parts.into_iter().flat_map(|part| part.events).collect();
        assert_eq!(events, original.events);
    }

    #[test]
    fn jitter_stays_under_a_tenth_of_the_interval() {
        let mut random = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            assert!(jitter_of(Duration::from_secs(600), &mut random) < Duration::from_secs(60));
        }
        assert_eq!(jitter_of(Duration::from_millis(5), &mut random), Duration::ZERO);
    }
}
