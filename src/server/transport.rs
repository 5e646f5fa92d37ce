//! Raft messages between members over tonic: one long-lived client stream of
//! checksummed frames per peer, reconnected with backoff.
//!
//! Raft tolerates lost messages, so the transport never blocks the node loop:
//! each peer has a bounded queue; when it is full, or the connection breaks,
//! messages are dropped — counted, logged, and reported to Raft as
//! "unreachable" so the leader stops streaming blindly and probes instead.
//! Nothing is dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_proto::braidpb;
use braid_proto::braidpb::peer_client::PeerClient;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::handle::ServerError;
use super::hooks::{Fate, MessageFaults};
use super::lessor::{LeaseQuery, LeaseResponse, LeaseStatus};
use super::membership::{Member, REMOVED_TEXT};
use super::peer_codec::{decode_frame, encode_frame};
use crate::mvcc::LeaseId;
use crate::raft::{Message, NodeId};

/// Per-peer queue of messages waiting for the connection.
const PEER_QUEUE_MESSAGES: usize = 4096;
/// Batches buffered inside one open stream. Kept small on purpose: while the
/// stream is busy, messages wait in the peer queue, and the next batch takes
/// all of them (backpressure turns into batching instead of queueing).
const STREAM_BUFFER_BATCHES: usize = 2;
/// Frames one batch carries at most (a batch holds what was queued when the
/// sender got to it).
const BATCH_FRAMES_MAX: u64 = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Raft messages travel inside one frame; allow them to be large.
pub const FRAME_BYTES_MAX: usize = 1 << 30;
/// Image bytes per `InstallSnapshot` chunk (gRPC's default message limit is 4 MiB).
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Chunks buffered ahead of the `InstallSnapshot` stream.
const SNAPSHOT_BUFFER_CHUNKS: usize = 4;

/// What the transport tells the node loop.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message arrived from a peer.
    Received(Box<Message>),
    /// Messages to this peer were lost (queue full or connection broken).
    Unreachable(NodeId),
    /// A peer refused our frames because this member was removed from the cluster.
    Removed,
    /// A snapshot stream to `to` ended: taken by the follower, or not.
    SnapshotSent { to: NodeId, delivered: bool },
    /// A follower forwarded a lease query to this member as the leader; answer
    /// once this member has applied `applied_index`.
    LeaseQuery {
        query: LeaseQuery,
        applied_index: u64,
        reply: oneshot::Sender<Result<LeaseResponse, ServerError>>,
        /// This member's leadership was confirmed (a ReadIndex round) after
        /// the query arrived; until then the query waits for one.
        confirmed: bool,
    },
}

/// What the peer service tells others about the cluster: the member table
/// (for joining members) and the removed members (whose frames it refuses).
#[derive(Default)]
struct PeerDirectory {
    members: Vec<Member>,
    removed: BTreeSet<NodeId>,
}

#[derive(Default, Debug)]
pub struct TransportCounters {
    pub sent_frames: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub received_frames: AtomicU64,
    pub rejected_frames: AtomicU64,
}

struct Peer {
    queue: mpsc::Sender<Message>,
    url: String,
}

/// The sending side, shared by the node loop.
#[derive(Clone)]
pub struct Transport {
    local: NodeId,
    cluster_id: u64,
    peers: Arc<Mutex<BTreeMap<NodeId, Peer>>>,
    events: mpsc::UnboundedSender<TransportEvent>,
    pub counters: Arc<TransportCounters>,
    /// The simulation's message faults; `None` in production.
    faults: Option<Arc<dyn MessageFaults>>,
    directory: Arc<Mutex<PeerDirectory>>,
}

impl Transport {
    pub fn new(
        local: NodeId,
        cluster_id: u64,
        events: mpsc::UnboundedSender<TransportEvent>,
        faults: Option<Arc<dyn MessageFaults>>,
    ) -> Transport {
        Transport {
            local,
            cluster_id,
            peers: Arc::new(Mutex::new(BTreeMap::new())),
            events,
            counters: Arc::new(TransportCounters::default()),
            faults,
            directory: Arc::default(),
        }
    }

    /// Publishes the applied member table to the peer service.
    pub fn set_members(&self, members: Vec<Member>, removed: BTreeSet<NodeId>) {
        let mut directory = self.directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *directory = PeerDirectory { members, removed };
    }

    /// Hands `event` to this member's own node loop, as if it had arrived.
    pub fn loop_back(&self, event: TransportEvent) {
        let _ = self.events.send(event);
    }

    /// Starts (or restarts) the sender for `peer` at `url` (`http://host:port`).
    pub fn add_peer(&self, peer: NodeId, url: String) {
        if peer == self.local {
            return;
        }
        let (queue, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES);
        let sender = PeerSender {
            peer,
            url: url.clone(),
            cluster_id: self.cluster_id,
            events: self.events.clone(),
            counters: Arc::clone(&self.counters),
            faults: self.faults.clone(),
        };
        tokio::spawn(sender.run(receiver));
        self.lock_peers().insert(peer, Peer { queue, url });
    }

    /// Stops sending to `peer` (its sender task ends when its queue closes).
    pub fn remove_peer(&self, peer: NodeId) {
        self.lock_peers().remove(&peer);
    }

    /// Queues messages without waiting; what cannot be queued is dropped and
    /// reported.
    pub fn send(&self, messages: Vec<Message>) {
        // Most rounds have nothing in one of their message lists; skip the lock.
        if messages.is_empty() {
            return;
        }
        let mut unreachable = Vec::new();
        {
            let peers = self.lock_peers();
            for message in messages {
                let to = message.to;
                let queued = peers.get(&to).is_some_and(|peer| peer.queue.try_send(message).is_ok());
                if !queued {
                    self.counters.dropped_frames.fetch_add(1, Ordering::Relaxed);
                    unreachable.push(to);
                }
            }
        }
        unreachable.dedup();
        for peer in unreachable {
            let _ = self.events.send(TransportEvent::Unreachable(peer));
        }
    }

    /// Asks `leader` to answer a lease query (see `TransportEvent::LeaseQuery`),
    /// within `timeout`. A failure is `LeaderChanged` (Unavailable: clients retry)
    /// unless it ran out of time.
    pub fn forward_lease(
        &self,
        leader: NodeId,
        query: LeaseQuery,
        applied_index: u64,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<LeaseResponse, ServerError>> + Send + 'static {
        let url = self.lock_peers().get(&leader).map(|peer| peer.url.clone());
        let (kind, lease_id, keys) = match query {
            LeaseQuery::KeepAlive(id) => (braidpb::LeaseQueryKind::KeepAlive, id, false),
            LeaseQuery::TimeToLive { id, keys } => (braidpb::LeaseQueryKind::TimeToLive, id, keys),
        };
        let request = braidpb::LeaseQuery {
            from: self.local.0,
            to: leader.0,
            cluster_id: self.cluster_id,
            kind: kind as i32,
            lease_id: lease_id.0,
            keys,
            applied_index,
        };
        async move {
            let Some(url) = url else {
                return Err(ServerError::LeaderChanged);
            };
            let call = async {
                let mut client = PeerClient::connect(url.clone())
                    .await
                    .map_err(|error| error.to_string())?;
                client
                    .lease(request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|status| status.message().to_string())
            };
            let answer = match tokio::time::timeout(timeout, call).await {
                Err(_) => return Err(ServerError::Timeout),
                Ok(Err(error)) => {
                    eprintln!("braid: lease query to leader {:x} at {url} failed: {error}", leader.0);
                    return Err(ServerError::LeaderChanged);
                }
                Ok(Ok(answer)) => answer,
            };
            Ok(match kind {
                braidpb::LeaseQueryKind::KeepAlive => LeaseResponse::KeepAlive {
                    ttl_seconds: if answer.found { answer.ttl_seconds } else { 0 },
                },
                _ => LeaseResponse::TimeToLive(answer.found.then_some(LeaseStatus {
                    remaining_seconds: answer.ttl_seconds,
                    granted_ttl_seconds: answer.granted_ttl_seconds,
                    keys: answer.keys,
                })),
            })
        }
    }

    /// Streams `image` (the leader's state, in chunks of any size) after the
    /// Snapshot `message` to its recipient, on a connection of its own so
    /// appends and heartbeats to others are not held up; the node hears how it
    /// went as `SnapshotSent`. An image read error ends the stream early (the
    /// follower then refuses the incomplete image).
    pub fn send_snapshot<I>(&self, message: Message, image: I)
    where
        I: Iterator<Item = Result<Bytes, String>> + Send + 'static,
    {
        let to = message.to;
        let url = self.lock_peers().get(&to).map(|peer| peer.url.clone());
        let fate = self
            .faults
            .as_ref()
            .map_or(Fate::Deliver, |faults| faults.fate(&message));
        let header = encode_frame(self.cluster_id, &message);
        let events = self.events.clone();
        tokio::spawn(async move {
            let delivered = match url {
                Some(url) => stream_snapshot(to, &url, header, image, fate).await,
                None => false,
            };
            let _ = events.send(TransportEvent::SnapshotSent { to, delivered });
        });
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct PeerSender {
    peer: NodeId,
    url: String,
    cluster_id: u64,
    events: mpsc::UnboundedSender<TransportEvent>,
    counters: Arc<TransportCounters>,
    faults: Option<Arc<dyn MessageFaults>>,
}

impl PeerSender {
    fn report_loss(&self, frames: u64) {
        self.counters.dropped_frames.fetch_add(frames, Ordering::Relaxed);
        let _ = self.events.send(TransportEvent::Unreachable(self.peer));
    }

    async fn run(self, mut queue: mpsc::Receiver<Message>) {
        let mut backoff = BACKOFF_MIN;
        // Connect lazily: only when there is something to send.
        while let Some(first) = queue.recv().await {
            let client = match PeerClient::connect(self.url.clone()).await {
                Ok(client) => client,
                Err(error) => {
                    eprintln!("braid: cannot reach peer {:x} at {}: {error}", self.peer.0, self.url);
                    self.report_loss(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let mut client = client
                .max_decoding_message_size(FRAME_BYTES_MAX)
                .max_encoding_message_size(FRAME_BYTES_MAX);
            let (batches, batch_receiver) = mpsc::channel::<braidpb::FrameBatch>(STREAM_BUFFER_BATCHES);
            let stream = futures_util::stream::unfold(batch_receiver, |mut receiver| async move {
                receiver.recv().await.map(|batch| (batch, receiver))
            });
            let call = tokio::spawn(async move { client.send(stream).await });
            let mut next = Some(first);
            let mut broken = false;
            while let Some(message) = match next.take() {
                Some(message) => Some(message),
                None => queue.recv().await,
            } {
                // Everything already queued for this peer travels in one batch.
                let mut batch = braidpb::FrameBatch::default();
                let mut sent = 0u64;
                let mut pending = Some(message);
                while let Some(message) = pending.take() {
                    let frame = encode_frame(self.cluster_id, &message);
                    let fate = self
                        .faults
                        .as_ref()
                        .map_or(Fate::Deliver, |faults| faults.fate(&message));
                    add_with_fate(&mut batch, &batches, frame, fate);
                    sent += 1;
                    if sent < BATCH_FRAMES_MAX {
                        pending = queue.try_recv().ok();
                    }
                }
                if !batch.frames.is_empty() && batches.send(batch).await.is_err() {
                    broken = true;
                    break;
                }
                self.counters.sent_frames.fetch_add(sent, Ordering::Relaxed);
                backoff = BACKOFF_MIN;
            }
            drop(batches);
            if !broken {
                return; // the queue closed: the peer was removed or we are stopping
            }
            if let Ok(Err(status)) = call.await {
                if status.message() == REMOVED_TEXT {
                    eprintln!("braid: peer {:x} says: {REMOVED_TEXT}", self.peer.0);
                    let _ = self.events.send(TransportEvent::Removed);
                    return;
                }
                eprintln!(
                    "braid: stream to peer {:x} at {} broke: {}",
                    self.peer.0,
                    self.url,
                    status.message()
                );
            }
            self.report_loss(1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// One `InstallSnapshot` call; whether the follower took the image. `fate` is
/// the simulation's (always `Deliver` in production): a corrupted image has
/// one bit flipped in a chunk, which the receiver's checksum must catch.
async fn stream_snapshot<I>(to: NodeId, url: &str, header: braidpb::Frame, image: I, fate: Fate) -> bool
where
    I: Iterator<Item = Result<Bytes, String>> + Send + 'static,
{
    match fate {
        Fate::Drop => return false,
        Fate::Delay(delay) => tokio::time::sleep(delay).await,
        Fate::Deliver | Fate::Duplicate | Fate::Corrupt => {}
    }
    let client = match PeerClient::connect(url.to_string()).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("braid: cannot send a snapshot to peer {:x} at {url}: {error}", to.0);
            return false;
        }
    };
    let mut client = client
        .max_decoding_message_size(FRAME_BYTES_MAX)
        .max_encoding_message_size(FRAME_BYTES_MAX);
    let (chunks, chunk_receiver) = mpsc::channel::<braidpb::SnapshotChunk>(SNAPSHOT_BUFFER_CHUNKS);
    let corrupt = matches!(fate, Fate::Corrupt);
    let producer = tokio::spawn(async move {
        let mut header = Some(header);
        let mut image = image.peekable();
        let mut sent_bytes = 0u64;
        loop {
            let mut data = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
            while data.len() < SNAPSHOT_CHUNK_BYTES {
                match image.next() {
                    None => break,
                    Some(Ok(bytes)) => data.extend_from_slice(&bytes),
                    Some(Err(error)) => return Err(error),
                }
            }
            let last = image.peek().is_none();
            sent_bytes += data.len() as u64;
            let crc32 = crc32fast::hash(&data);
            if corrupt && last {
                // Damaged in transit: after the checksum was taken.
                let middle = data.len() / 2;
                if let Some(byte) = data.get_mut(middle) {
                    *byte ^= 0x10;
                }
            }
            let chunk = braidpb::SnapshotChunk {
                header: header.take(),
                data: Bytes::from(data),
                crc32,
            };
            if chunks.send(chunk).await.is_err() {
                return Err("the stream closed".to_string());
            }
            if last {
                return Ok(sent_bytes);
            }
        }
    });
    let stream = futures_util::stream::unfold(chunk_receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let answer = client.install_snapshot(stream).await;
    let produced = producer.await;
    match (answer, produced) {
        (Ok(_), Ok(Ok(bytes))) => {
            eprintln!("braid: sent a snapshot of {bytes} bytes to peer {:x}", to.0);
            true
        }
        (Err(status), _) => {
            eprintln!("braid: snapshot to peer {:x} failed: {}", to.0, status.message());
            false
        }
        (_, Ok(Err(error))) => {
            eprintln!("braid: snapshot to peer {:x} failed: {error}", to.0);
            false
        }
        (_, Err(error)) => panic!("the snapshot producer task failed: {error}"),
    }
}

/// Adds `frame` to `batch` as `fate` says (always `Deliver` in production); a
/// delayed frame travels later in a batch of its own.
fn add_with_fate(
    batch: &mut braidpb::FrameBatch,
    batches: &mpsc::Sender<braidpb::FrameBatch>,
    frame: braidpb::Frame,
    fate: Fate,
) {
    match fate {
        Fate::Deliver => batch.frames.push(frame),
        Fate::Drop => {}
        Fate::Duplicate => {
            batch.frames.push(frame.clone());
            batch.frames.push(frame);
        }
        Fate::Corrupt => {
            let mut payload = frame.payload.to_vec();
            if let Some(byte) = payload.get_mut(frame.payload.len() / 2) {
                *byte ^= 0x10;
            }
            batch.frames.push(braidpb::Frame {
                payload: Bytes::from(payload),
                ..frame
            });
        }
        Fate::Delay(delay) => {
            let batches = batches.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let late = braidpb::FrameBatch { frames: vec![frame] };
                let _ = batches.send(late).await;
            });
        }
    }
}

/// The receiving side: the `braidpb.Peer` gRPC service.
#[derive(Clone)]
pub struct PeerService {
    local: NodeId,
    cluster_id: u64,
    events: mpsc::UnboundedSender<TransportEvent>,
    counters: Arc<TransportCounters>,
    directory: Arc<Mutex<PeerDirectory>>,
}

impl PeerService {
    pub fn new(transport: &Transport) -> PeerService {
        PeerService {
            local: transport.local,
            cluster_id: transport.cluster_id,
            events: transport.events.clone(),
            counters: Arc::clone(&transport.counters),
            directory: Arc::clone(&transport.directory),
        }
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, PeerDirectory> {
        self.directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[tonic::async_trait]
impl braidpb::peer_server::Peer for PeerService {
    async fn send(
        &self,
        request: tonic::Request<tonic::Streaming<braidpb::FrameBatch>>,
    ) -> Result<tonic::Response<braidpb::SendAck>, tonic::Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0u64;
        while let Some(batch) = stream.message().await? {
            for frame in batch.frames {
                if self.directory().removed.contains(&NodeId(frame.from)) {
                    // etcd answers a removed member's messages with "410 Gone"; the
                    // sender stops when it reads this text.
                    return Err(tonic::Status::failed_precondition(REMOVED_TEXT));
                }
                match decode_frame(self.cluster_id, self.local, frame) {
                    Ok(message) => {
                        accepted += 1;
                        self.counters.received_frames.fetch_add(1, Ordering::Relaxed);
                        if self.events.send(TransportEvent::Received(Box::new(message))).is_err() {
                            return Err(tonic::Status::unavailable("etcdserver: server stopped"));
                        }
                    }
                    Err(error) => {
                        // A corrupt or misaddressed frame is dropped; Raft recovers
                        // from the loss. Keep the stream: one bad frame is not a
                        // reason to drop the good ones behind it.
                        self.counters.rejected_frames.fetch_add(1, Ordering::Relaxed);
                        eprintln!("braid: dropped a frame from a peer: {error}");
                    }
                }
            }
        }
        Ok(tonic::Response::new(braidpb::SendAck {
            accepted_frames: accepted,
        }))
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<tonic::Streaming<braidpb::SnapshotChunk>>,
    ) -> Result<tonic::Response<braidpb::SnapshotAck>, tonic::Status> {
        let mut stream = request.into_inner();
        let invalid = |reason: String| tonic::Status::invalid_argument(format!("snapshot refused: {reason}"));
        let mut chunk = stream.message().await?;
        let header = chunk
            .as_mut()
            .and_then(|first| first.header.take())
            .ok_or_else(|| invalid("the stream does not start with a header".to_string()))?;
        if self.directory().removed.contains(&NodeId(header.from)) {
            return Err(tonic::Status::failed_precondition(REMOVED_TEXT));
        }
        let mut message =
            decode_frame(self.cluster_id, self.local, header).map_err(|error| invalid(error.to_string()))?;
        if message.kind != crate::raft::MessageKind::Snapshot || message.snapshot.is_none() {
            return Err(invalid(format!("the header holds a {:?} message", message.kind)));
        }
        let mut image = bytes::BytesMut::new();
        while let Some(current) = chunk.take() {
            if crc32fast::hash(&current.data) != current.crc32 {
                self.counters.rejected_frames.fetch_add(1, Ordering::Relaxed);
                return Err(invalid(format!("checksum mismatch after {} bytes", image.len())));
            }
            image.extend_from_slice(&current.data);
            chunk = stream.message().await?;
        }
        let received_bytes = image.len() as u64;
        if let Some(snapshot) = message.snapshot.as_mut() {
            snapshot.data = image.freeze();
        }
        self.counters.received_frames.fetch_add(1, Ordering::Relaxed);
        if self.events.send(TransportEvent::Received(Box::new(message))).is_err() {
            return Err(tonic::Status::unavailable("etcdserver: server stopped"));
        }
        Ok(tonic::Response::new(braidpb::SnapshotAck { received_bytes }))
    }

    async fn probe(
        &self,
        request: tonic::Request<braidpb::ProbeRequest>,
    ) -> Result<tonic::Response<braidpb::ProbeResponse>, tonic::Status> {
        let request = request.into_inner();
        if request.cluster_id != self.cluster_id {
            return Err(tonic::Status::failed_precondition("etcdserver: cluster ID mismatch"));
        }
        Ok(tonic::Response::new(braidpb::ProbeResponse {
            member_id: self.local.0,
            cluster_id: self.cluster_id,
            removed: self.directory().removed.contains(&NodeId(request.from)),
        }))
    }

    async fn members(
        &self,
        _request: tonic::Request<braidpb::MembersRequest>,
    ) -> Result<tonic::Response<braidpb::MembersResponse>, tonic::Status> {
        let members = self
            .directory()
            .members
            .iter()
            .map(|member| braidpb::Member {
                id: member.id.0,
                name: member.name.clone(),
                peer_urls: member.peer_urls.clone(),
                client_urls: member.client_urls.clone(),
                is_learner: member.is_learner,
            })
            .collect();
        Ok(tonic::Response::new(braidpb::MembersResponse {
            cluster_id: self.cluster_id,
            members,
        }))
    }

    async fn lease(
        &self,
        request: tonic::Request<braidpb::LeaseQuery>,
    ) -> Result<tonic::Response<braidpb::LeaseAnswer>, tonic::Status> {
        let request = request.into_inner();
        if request.cluster_id != self.cluster_id {
            return Err(tonic::Status::failed_precondition("etcdserver: cluster ID mismatch"));
        }
        let id = LeaseId(request.lease_id);
        let query = match braidpb::LeaseQueryKind::try_from(request.kind) {
            Ok(braidpb::LeaseQueryKind::KeepAlive) => LeaseQuery::KeepAlive(id),
            Ok(braidpb::LeaseQueryKind::TimeToLive) => LeaseQuery::TimeToLive { id, keys: request.keys },
            _ => return Err(tonic::Status::invalid_argument("unknown lease query kind")),
        };
        let (reply, answer) = oneshot::channel();
        let event = TransportEvent::LeaseQuery {
            query,
            applied_index: request.applied_index,
            reply,
            confirmed: false,
        };
        let stopped = || tonic::Status::unavailable("etcdserver: server stopped");
        self.events.send(event).map_err(|_| stopped())?;
        let answer = match answer.await.map_err(|_| stopped())? {
            Ok(LeaseResponse::KeepAlive { ttl_seconds }) => braidpb::LeaseAnswer {
                found: ttl_seconds > 0,
                ttl_seconds,
                ..Default::default()
            },
            Ok(LeaseResponse::TimeToLive(Some(status))) => braidpb::LeaseAnswer {
                found: true,
                ttl_seconds: status.remaining_seconds,
                granted_ttl_seconds: status.granted_ttl_seconds,
                keys: status.keys,
            },
            Ok(LeaseResponse::TimeToLive(None)) => braidpb::LeaseAnswer::default(),
            Ok(other) => panic!("the node answered a forwarded lease query with {other:?}"),
            Err(error) => return Err(tonic::Status::unavailable(error.to_string())),
        };
        Ok(tonic::Response::new(answer))
    }
}
