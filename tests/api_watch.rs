//! Proves the Watch service behaves like etcd 3.5's for the crates.io `etcd-client` crate and
//! raw gRPC: key, prefix and from-key watches, history replay, prev_kv, filters, ids, cancel,
//! compaction, progress, fragments, many watchers per stream, a stalled stream that blocks
//! neither writes nor other streams, and a watch served by a follower of a real cluster.
#![cfg(not(madsim))]

mod support;

use std::time::Duration;

use braid::api::ApiLimits;
use braid::mvcc::MvccConfig;
use braid_proto::etcdserverpb as pb;
use braid_proto::etcdserverpb::watch_client::WatchClient as RawWatchClient;
use braid_proto::etcdserverpb::watch_request::RequestUnion;
use bytes::Bytes;
use etcd_client::{
    Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use support::process::start_cluster;
use support::stand_in::{start_stand_in, start_stand_in_with, StandIn, CLUSTER_ID, MAX_REQUEST_BYTES, MEMBER_ID, TERM};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

/// Every wait for a response is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

async fn start(max_request_bytes: usize, limits: ApiLimits) -> (StandIn, Client) {
    let stand_in = start_stand_in(max_request_bytes, limits).await;
    let client = Client::connect([stand_in.endpoint()], None).await.unwrap();
    (stand_in, client)
}

async fn start_default() -> (StandIn, Client) {
    start(MAX_REQUEST_BYTES, ApiLimits::default()).await
}

async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no watch response within the wait")
        .unwrap()
        .expect("the watch stream ended")
}

/// (type, key, value, mod_revision, prev value) of each event.
type Seen = (EventType, String, String, i64, Option<String>);

fn seen(response: &WatchResponse) -> Vec<Seen> {
    response
        .events()
        .iter()
        .map(|event| {
            let kv = event.kv().unwrap();
            (
                event.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.mod_revision(),
                event.prev_kv().map(|prev| prev.value_str().unwrap().to_string()),
            )
        })
        .collect()
}

fn put(key: &str, value: &str, revision: i64) -> Seen {
    (EventType::Put, key.into(), value.into(), revision, None)
}

fn delete(key: &str, revision: i64) -> Seen {
    (EventType::Delete, key.into(), String::new(), revision, None)
}

fn with_prev(mut event: Seen, prev: &str) -> Seen {
    event.4 = Some(prev.into());
    event
}

/// Reads responses until `count` events arrived, checking each belongs to `watch_id`.
async fn events(stream: &mut WatchStream, watch_id: i64, count: usize) -> Vec<Seen> {
    let mut all = Vec::new();
    while all.len() < count {
        let response = next(stream).await;
        assert_eq!(response.watch_id(), watch_id, "{response:?}");
        all.extend(seen(&response));
    }
    assert_eq!(all.len(), count, "more events than expected: {all:?}");
    all
}

async fn created(stream: &mut WatchStream) -> WatchResponse {
    let response = next(stream).await;
    assert!(response.created() && !response.canceled(), "{response:?}");
    response
}

#[tokio::test]
async fn key_prefix_and_from_key_watchers_share_one_stream() {
    let (stand_in, mut client) = start_default().await;
    let mut stream = client.watch("k", None).await.unwrap();
    let first = created(&mut stream).await;
    assert_eq!(first.watch_id(), 0, "auto ids count from 0 on each stream");
    let header = first.header().unwrap();
    let fields = (
        header.cluster_id(),
        header.member_id(),
        header.revision(),
        header.raft_term(),
    );
    assert_eq!(fields, (CLUSTER_ID, MEMBER_ID, 1, TERM));
    stream
        .watch("p/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 1);
    stream
        .watch("j", Some(WatchOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 2);

    client.put("k", "1", None).await.unwrap(); // 2: key and from-key
    client.put("p/a", "2", None).await.unwrap(); // 3: prefix and from-key
    client.put("a", "3", None).await.unwrap(); // 4: nobody
    client.delete("k", None).await.unwrap(); // 5: key and from-key
    let mut by_id: [Vec<Seen>; 3] = Default::default();
    while by_id.iter().map(Vec::len).sum::<usize>() < 6 {
        let response = next(&mut stream).await;
        assert_eq!(response.header().unwrap().member_id(), MEMBER_ID);
        let last = response.events().last().unwrap().kv().unwrap().mod_revision();
        assert!(response.header().unwrap().revision() >= last);
        by_id[response.watch_id() as usize].extend(seen(&response));
    }
    assert_eq!(by_id[0], [put("k", "1", 2), delete("k", 5)]);
    assert_eq!(by_id[1], [put("p/a", "2", 3)]);
    assert_eq!(by_id[2], [put("k", "1", 2), put("p/a", "2", 3), delete("k", 5)]);
    assert_eq!(stand_in.node.store().watcher_count(), 3);
}

#[tokio::test]
async fn history_prev_kv_and_filters() {
    let (_stand_in, mut client) = start_default().await;
    client.put("a", "1", None).await.unwrap(); // 2
    client.put("a", "2", None).await.unwrap(); // 3
    client.delete("a", None).await.unwrap(); // 4
    let options = WatchOptions::new().with_start_revision(2).with_prev_key();
    let mut stream = client.watch("a", Some(options)).await.unwrap();
    created(&mut stream).await;
    let history = events(&mut stream, 0, 3).await;
    let expected = [
        put("a", "1", 2),
        with_prev(put("a", "2", 3), "1"),
        with_prev(delete("a", 4), "2"),
    ];
    assert_eq!(history, expected);
    client.put("a", "3", None).await.unwrap(); // 5: live, a create again (no prev_kv)
    assert_eq!(events(&mut stream, 0, 1).await, [put("a", "3", 5)]);

    let no_put = WatchOptions::new()
        .with_start_revision(2)
        .with_filters([WatchFilterType::NoPut]);
    let mut stream = client.watch("a", Some(no_put)).await.unwrap();
    created(&mut stream).await;
    assert_eq!(events(&mut stream, 0, 1).await, [delete("a", 4)]);
    let no_delete = WatchOptions::new()
        .with_start_revision(2)
        .with_filters([WatchFilterType::NoDelete]);
    let mut stream = client.watch("a", Some(no_delete)).await.unwrap();
    created(&mut stream).await;
    let puts = [put("a", "1", 2), put("a", "2", 3), put("a", "3", 5)];
    assert_eq!(events(&mut stream, 0, 3).await, puts);
}

#[tokio::test]
async fn ids_duplicates_cancel_and_rejected_creates() {
    let (stand_in, mut client) = start_default().await;
    let mut stream = client
        .watch("x", Some(WatchOptions::new().with_watch_id(1)))
        .await
        .unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 1);
    // An auto id skips the client's 1; the next auto id is 2 even after 0 is gone.
    stream.watch("x", None).await.unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 0);
    stream
        .watch("x", Some(WatchOptions::new().with_watch_id(1)))
        .await
        .unwrap();
    let duplicate = next(&mut stream).await;
    assert!(duplicate.created() && duplicate.canceled(), "{duplicate:?}");
    assert_eq!(duplicate.watch_id(), -1);
    assert_eq!(
        duplicate.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    stream.cancel(0).await.unwrap();
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled() && !canceled.created(), "{canceled:?}");
    assert_eq!((canceled.watch_id(), canceled.header().unwrap().revision()), (0, 1));
    stream.watch("x", None).await.unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 2);

    stream
        .watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    let empty = next(&mut stream).await;
    assert_eq!((empty.created(), empty.canceled(), empty.watch_id()), (true, true, -1));
    assert_eq!(empty.cancel_reason(), "mvcc: watcher range is empty");
    stream
        .watch("b", Some(WatchOptions::new().with_start_revision(-1)))
        .await
        .unwrap();
    let negative = next(&mut stream).await;
    assert_eq!(
        (negative.created(), negative.canceled(), negative.watch_id()),
        (true, true, -1)
    );
    assert_eq!(
        negative.cancel_reason(),
        "etcdserver: mvcc: required revision has been compacted"
    );

    // Cancelling an unknown id says nothing: the next response answers the cancel of 1.
    stream.cancel(99).await.unwrap();
    stream.cancel(1).await.unwrap();
    assert_eq!(
        (
            next(&mut stream).await.watch_id(),
            stand_in.node.store().watcher_count()
        ),
        (1, 1)
    );
    client.put("x", "1", None).await.unwrap(); // 2
    assert_eq!(events(&mut stream, 2, 1).await, [put("x", "1", 2)]);

    // Dropping the stream ends it on the server: its watchers go away.
    drop(stream);
    let mut waited = Duration::ZERO;
    while stand_in.node.store().watcher_count() != 0 {
        assert!(waited < WAIT, "the watcher outlived its stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
}

#[tokio::test]
async fn compacted_start_revision_cancels_with_the_compact_revision() {
    let (stand_in, mut client) = start_default().await;
    for value in ["1", "2", "3"] {
        client.put("c", value, None).await.unwrap(); // 2, 3, 4
    }
    client.compact(3, None).await.unwrap();
    let mut stream = client
        .watch("c", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 0);
    let canceled = next(&mut stream).await;
    assert_eq!(
        (canceled.watch_id(), canceled.canceled(), canceled.compact_revision()),
        (0, true, 3)
    );
    assert!(canceled.events().is_empty());
    // As in etcd, the id stays taken until the client cancels it.
    stream.watch("c", None).await.unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 1);
    stream.cancel(0).await.unwrap();
    assert_eq!(next(&mut stream).await.watch_id(), 0);
    // From the compact revision itself the history is still there.
    let mut stream = client
        .watch("c", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .unwrap();
    created(&mut stream).await;
    assert_eq!(events(&mut stream, 0, 2).await, [put("c", "2", 3), put("c", "3", 4)]);
    assert_eq!(stand_in.node.store().watcher_count(), 2);
}

#[tokio::test]
async fn progress_requests_and_periodic_progress_notifications() {
    let limits = ApiLimits {
        watch_progress_notify_interval: Duration::from_millis(100),
        ..ApiLimits::default()
    };
    let (_stand_in, mut client) = start(MAX_REQUEST_BYTES, limits).await;
    client.put("p", "1", None).await.unwrap(); // 2
    let mut stream = client
        .watch("p", Some(WatchOptions::new().with_start_revision(2)))
        .await
        .unwrap();
    created(&mut stream).await;
    client.put("p", "2", None).await.unwrap(); // 3
    client.put("other", "1", None).await.unwrap(); // 4
    stream.request_progress().await.unwrap();
    // The history comes first; the progress response follows every event up to its revision.
    assert_eq!(events(&mut stream, 0, 2).await, [put("p", "1", 2), put("p", "2", 3)]);
    let progress = next(&mut stream).await;
    let fields = (
        progress.watch_id(),
        progress.created(),
        progress.canceled(),
        progress.events().len(),
    );
    assert_eq!(fields, (-1, false, false, 0));
    assert_eq!(progress.header().unwrap().revision(), 4);

    // progress_notify: the idle watcher hears its id and the current revision every interval.
    stream
        .watch("q", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    assert_eq!(created(&mut stream).await.watch_id(), 1);
    let notification = next(&mut stream).await;
    let fields = (
        notification.watch_id(),
        notification.created(),
        notification.events().len(),
    );
    assert_eq!(fields, (1, false, 0));
    assert_eq!(notification.header().unwrap().revision(), 4);
}

/// A stream of raw requests, for what the crate does not send (an empty request, fragments)
/// or a connection with small HTTP/2 windows.
async fn raw_stream(endpoint: Endpoint) -> (mpsc::Sender<pb::WatchRequest>, tonic::Streaming<pb::WatchResponse>) {
    let mut raw = RawWatchClient::new(endpoint.connect().await.unwrap());
    let (requests, receiver) = mpsc::channel(16);
    let outgoing = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|request| (request, receiver))
    });
    let responses = raw.watch(outgoing).await.unwrap().into_inner();
    (requests, responses)
}

fn create_request(key: &str, edit: impl FnOnce(&mut pb::WatchCreateRequest)) -> pb::WatchRequest {
    let mut create = pb::WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..pb::WatchCreateRequest::default()
    };
    edit(&mut create);
    pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    }
}

async fn raw_next(responses: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    let message = tokio::time::timeout(WAIT, responses.message()).await;
    message.expect("no watch response within the wait").unwrap().unwrap()
}

#[tokio::test]
async fn fragments_split_a_large_revision_only_when_asked() {
    let (stand_in, mut client) = start(16 * 1024, ApiLimits::default()).await;
    let value = "v".repeat(1000);
    for index in 0..10 {
        client.put(format!("f/{index}"), value.as_str(), None).await.unwrap(); // 2..=11
    }
    let (requests, mut responses) = raw_stream(Endpoint::from_shared(stand_in.endpoint()).unwrap()).await;
    requests.send(pb::WatchRequest { request_union: None }).await.unwrap();
    for fragment in [true, false] {
        let request = create_request("f/", |create| {
            create.range_end = Bytes::from_static(b"f0");
            create.prev_kv = true;
            create.fragment = fragment;
        });
        requests.send(request).await.unwrap();
        assert!(raw_next(&mut responses).await.created, "the empty request was ignored");
    }
    // One revision of 10 puts, each with a 1000-byte prev_kv: about 20 KiB of events.
    let puts: Vec<TxnOp> = (0..10)
        .map(|index| TxnOp::put(format!("f/{index}"), value.as_str(), Some(PutOptions::new())))
        .collect();
    client.txn(Txn::new().and_then(puts)).await.unwrap(); // 12
    let mut fragmented = Vec::new();
    let mut whole = Vec::new();
    while fragmented
        .iter()
        .map(|part: &pb::WatchResponse| part.events.len())
        .sum::<usize>()
        < 10
        || whole.is_empty()
    {
        let response = raw_next(&mut responses).await;
        assert_eq!(response.header.unwrap().revision, 12);
        match response.watch_id {
            0 => fragmented.push(response),
            1 => whole.push(response),
            other => panic!("unexpected watch id {other}"),
        }
    }
    assert!(fragmented.len() > 1, "{} parts", fragmented.len());
    let flags: Vec<bool> = fragmented.iter().map(|part| part.fragment).collect();
    let mut expected = vec![true; fragmented.len() - 1];
    expected.push(false);
    assert_eq!(flags, expected);
    assert!(fragmented
        .iter()
        .all(|part| prost::Message::encoded_len(part) < 16 * 1024));
    assert_eq!((whole.len(), whole[0].events.len(), whole[0].fragment), (1, 10, false));
    let keys = |parts: &[pb::WatchResponse]| -> Vec<Bytes> {
        parts
            .iter()
            .flat_map(|part| &part.events)
            .map(|event| event.kv.clone().unwrap().key)
            .collect()
    };
    assert_eq!(keys(&fragmented), keys(&whole));
}

#[tokio::test]
async fn a_stalled_stream_blocks_neither_writes_nor_other_streams() {
    // Small watcher queues and HTTP/2 windows, so the stalled watcher soon falls back to
    // catching up from history.
    let config = MvccConfig {
        watcher_buffer_events_max: 16,
        watch_response_events_max: 8,
        watch_history_chunk_entries: 32,
        ..MvccConfig::default()
    };
    let stand_in = start_stand_in_with(MAX_REQUEST_BYTES, ApiLimits::default(), config).await;
    let mut client = Client::connect([stand_in.endpoint()], None).await.unwrap();
    let small_windows = Endpoint::from_shared(stand_in.endpoint())
        .unwrap()
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024));
    let (stalled_requests, mut stalled) = raw_stream(small_windows).await;
    let prefix = |create: &mut pb::WatchCreateRequest| create.range_end = Bytes::from_static(b"s0");
    stalled_requests.send(create_request("s/", prefix)).await.unwrap();
    assert!(raw_next(&mut stalled).await.created);
    let mut reading = client
        .watch("s/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    created(&mut reading).await;

    let value = "v".repeat(2048);
    let writes = 400;
    let mut seen_live = Vec::new();
    for index in 0..writes {
        let written = client.put(format!("s/{index:04}"), value.as_str(), None);
        tokio::time::timeout(WAIT, written)
            .await
            .expect("a write waited on a watcher")
            .unwrap();
        while let Ok(response) = tokio::time::timeout(Duration::ZERO, reading.message()).await {
            seen_live.extend(seen(&response.unwrap().unwrap()).into_iter().map(|event| event.3));
        }
    }
    while seen_live.len() < writes {
        seen_live.extend(seen(&next(&mut reading).await).into_iter().map(|event| event.3));
    }
    let mut seen_late = Vec::new();
    while seen_late.len() < writes {
        let response = raw_next(&mut stalled).await;
        seen_late.extend(
            response
                .events
                .iter()
                .map(|event| event.kv.as_ref().unwrap().mod_revision),
        );
    }
    let expected: Vec<i64> = (2..2 + writes as i64).collect();
    assert_eq!(seen_live, expected, "the reading stream");
    assert_eq!(seen_late, expected, "the stalled stream, after catching up");
    let count = client
        .get("s/", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert_eq!(count.count(), writes as i64);
}

#[tokio::test]
async fn a_follower_serves_watches_from_its_applied_state() {
    let members = tokio::task::spawn_blocking(|| start_cluster(env!("CARGO_BIN_EXE_braid"), &["w1", "w2", "w3"]));
    let members = members.await.unwrap();
    let mut follower = None;
    for member in &members {
        let mut client = Client::connect([format!("http://{}", member.endpoint())], None)
            .await
            .unwrap();
        let status = client.status().await.unwrap();
        if status.leader() != status.header().unwrap().member_id() {
            follower = Some(client);
            break;
        }
    }
    let mut follower = follower.expect("two of three members follow");
    let endpoints: Vec<String> = members
        .iter()
        .map(|member| format!("http://{}", member.endpoint()))
        .collect();
    let mut writer = Client::connect(endpoints, None).await.unwrap();
    let first = writer.put("f/1", "a", None).await.unwrap().header().unwrap().revision();
    let mut stream = follower
        .watch("f/", Some(WatchOptions::new().with_prefix().with_start_revision(first)))
        .await
        .unwrap();
    created(&mut stream).await;
    writer.put("f/2", "b", None).await.unwrap();
    writer.delete("f/1", None).await.unwrap();
    let expected = [
        put("f/1", "a", first),
        put("f/2", "b", first + 1),
        delete("f/1", first + 2),
    ];
    assert_eq!(events(&mut stream, 0, 3).await, expected);
    drop(members);
}
