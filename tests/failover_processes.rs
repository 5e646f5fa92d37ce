//! Proves a 3-member braid cluster of real processes keeps etcd's watch and
//! lease guarantees through `kill -9` of the leader, for the crates.io
//! etcd-client crate: watchers on a survivor, and watchers of the killed leader
//! that resume on a survivor from their last revision + 1, together see every
//! write of a known sequence exactly once, in revision order; a lease kept
//! alive through the failover survives, and a lease left alone expires no
//! earlier than its TTL and not much later.

#![cfg(not(madsim))]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use support::braid_client::{connect, roles};
use support::process::{Server, BRAID};

const PREFIX: &str = "w/";
/// Written last: a watcher stops once it has seen it.
const END_KEY: &str = "w/zz-end";
/// The whole test, from the first write on, stays within this.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How long one client call may take before it counts as failed.
const CALL_LIMIT: Duration = Duration::from_secs(3);
const KEPT_TTL_SECONDS: i64 = 5;
const EXPIRING_TTL_SECONDS: i64 = 3;
/// Keys acknowledged before the kill, and after it.
const WRITES_BEFORE: usize = 20;
const WRITES_AFTER: usize = 20;

/// (key, mod revision) of each put event, in arrival order.
type Events = Arc<Mutex<Vec<(String, i64)>>>;

/// A watcher of `PREFIX` from `from_revision` that, whenever its stream
/// breaks, reconnects to the next of `fallbacks` and resumes at the revision
/// after the last event it saw (counting each resume). Stops at `END_KEY`.
async fn watch_through_failures(
    first: String,
    fallbacks: Vec<String>,
    from_revision: i64,
    events: Events,
    resumes: Arc<AtomicUsize>,
    deadline: Instant,
) {
    let mut endpoint = first;
    let mut fallbacks = fallbacks.into_iter().cycle();
    let mut next_revision = from_revision;
    loop {
        assert!(
            Instant::now() < deadline,
            "the watcher did not see {END_KEY} in time (next revision {next_revision})"
        );
        if watch_once(&endpoint, &mut next_revision, &events).await {
            return;
        }
        resumes.fetch_add(1, Ordering::SeqCst);
        endpoint = fallbacks.next().expect("a fallback endpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One watch stream on `endpoint`; true once `END_KEY` was seen, false when
/// the stream broke, ended, was canceled or went silent.
async fn watch_once(endpoint: &str, next_revision: &mut i64, events: &Events) -> bool {
    let Ok(Ok(mut client)) = tokio::time::timeout(CALL_LIMIT, Client::connect([endpoint], None)).await else {
        return false;
    };
    let options = WatchOptions::new().with_prefix().with_start_revision(*next_revision);
    let Ok(Ok(mut stream)) = tokio::time::timeout(CALL_LIMIT, client.watch(PREFIX, Some(options))).await else {
        return false;
    };
    loop {
        // Writes never pause for long, so a silent stream is a broken one.
        let Ok(Ok(Some(response))) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await else {
            return false;
        };
        if response.canceled() {
            return false;
        }
        for event in response.events() {
            assert_eq!(
                event.event_type(),
                EventType::Put,
                "only puts are written under {PREFIX}"
            );
            let kv = event.kv().expect("a put event has its key");
            let key = kv.key_str().unwrap().to_string();
            *next_revision = kv.mod_revision() + 1;
            let done = key == END_KEY;
            events.lock().unwrap().push((key, kv.mod_revision()));
            if done {
                return true;
            }
        }
    }
}

/// Keeps lease `id` alive every 500 ms through `endpoint`, reopening the
/// keepalive stream whenever it breaks, until `stop`. Returns the longest
/// gap between two confirmed keepalives and whether the lease was ever
/// reported gone.
async fn keep_alive(endpoint: String, id: i64, stop: Arc<AtomicBool>) -> (Duration, bool) {
    let mut last_confirmed = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut confirm = |last: &mut Instant| {
        longest_gap = longest_gap.max(last.elapsed());
        *last = Instant::now();
    };
    while !stop.load(Ordering::SeqCst) {
        let opened = async {
            let mut client = Client::connect([endpoint.as_str()], None).await?;
            client.lease_keep_alive(id).await
        };
        let (mut keeper, mut stream) = match tokio::time::timeout(CALL_LIMIT, opened).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(message))) if message == "lease not found" => {
                return (longest_gap, true);
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        confirm(&mut last_confirmed);
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(CALL_LIMIT, stream.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => confirm(&mut last_confirmed),
                Ok(Ok(Some(_))) => return (longest_gap, true),
                _ => break,
            }
        }
    }
    confirm(&mut last_confirmed);
    (longest_gap, false)
}

/// Puts `w/NNNN` keys through `client` until `count` more are acknowledged;
/// a put that fails or times out is never retried under the same key (it
/// may or may not have happened). Returns the acknowledged (key, revision)s.
async fn write(client: &mut Client, first: usize, count: usize, deadline: Instant) -> (usize, Vec<(String, i64)>) {
    let mut acknowledged = Vec::new();
    let mut index = first;
    while acknowledged.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged in time",
            acknowledged.len()
        );
        let key = format!("{PREFIX}{index:04}");
        index += 1;
        if let Ok(Ok(answer)) = tokio::time::timeout(CALL_LIMIT, client.put(key.as_str(), "v", None)).await {
            acknowledged.push((key, answer.header().unwrap().revision()));
        }
    }
    (index, acknowledged)
}

#[tokio::test]
async fn watchers_resume_without_gaps_and_leases_keep_their_ttls_when_the_leader_is_killed() {
    let mut members = Server::start_cluster(BRAID, &["m1", "m2", "m3"]);
    let mut clients = Vec::new();
    for member in &members {
        clients.push(connect(member).await);
    }
    let (leader, followers) = roles(&mut clients)
        .await
        .expect("a leader once every member took a write");
    let survivors: Vec<String> = followers.iter().map(|&index| members[index].endpoint()).collect();
    let started = Instant::now();
    let deadline = started + TEST_LIMIT;
    let mut survivor = Client::connect(survivors.clone(), None).await.unwrap();

    let kept = survivor.lease_grant(KEPT_TTL_SECONDS, None).await.unwrap().id();
    survivor
        .put("lease/kept", "1", Some(PutOptions::new().with_lease(kept)))
        .await
        .unwrap();
    let stop_keeping = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_alive(survivors[0].clone(), kept, Arc::clone(&stop_keeping)));

    // Two watchers from the same revision: one on a survivor, one on the leader.
    let from_revision = survivor.get("probe", None).await.unwrap().header().unwrap().revision() + 1;
    let watchers: Vec<(Events, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> =
        [members[followers[0]].endpoint(), members[leader].endpoint()]
            .into_iter()
            .map(|first| {
                let (events, resumes) = (Events::default(), Arc::new(AtomicUsize::new(0)));
                let task = tokio::spawn(watch_through_failures(
                    first,
                    survivors.clone(),
                    from_revision,
                    Arc::clone(&events),
                    Arc::clone(&resumes),
                    deadline,
                ));
                (events, resumes, task)
            })
            .collect();

    let (next_index, mut acknowledged) = write(&mut survivor, 0, WRITES_BEFORE, deadline).await;
    // Both watchers have events from before the kill.
    while watchers
        .iter()
        .any(|(events, ..)| events.lock().unwrap().len() < WRITES_BEFORE)
    {
        assert!(Instant::now() < deadline, "the watchers did not see the first writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let grant_sent = Instant::now();
    let expiring = survivor.lease_grant(EXPIRING_TTL_SECONDS, None).await.unwrap().id();
    survivor
        .put("lease/expiring", "1", Some(PutOptions::new().with_lease(expiring)))
        .await
        .unwrap();

    // Kill the leader while writes are in flight.
    let writer = {
        let mut client = Client::connect(survivors.clone(), None).await.unwrap();
        tokio::spawn(async move { write(&mut client, next_index, WRITES_AFTER, deadline).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    members[leader].kill();
    let killed = Instant::now();
    let (_, after) = writer.await.unwrap();
    acknowledged.extend(after);
    // Right after the failover a put can time out (its proposal died with the
    // old leader, as in etcd): create the end key at most once, retrying.
    loop {
        assert!(Instant::now() < deadline, "{END_KEY} could not be written");
        let create = Txn::new()
            .when([Compare::version(END_KEY, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(END_KEY, "v", None)]);
        if let Ok(Ok(_)) = tokio::time::timeout(CALL_LIMIT, survivor.txn(create)).await {
            break;
        }
    }

    // The lease left alone: gone no earlier than its TTL after the grant was
    // sent, and not much later than a full TTL after the failover.
    let expired_seen = loop {
        assert!(Instant::now() < deadline, "lease/expiring never expired");
        if let Ok(Ok(answer)) = tokio::time::timeout(CALL_LIMIT, survivor.get("lease/expiring", None)).await {
            if answer.kvs().is_empty() {
                break Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ttl = Duration::from_secs(EXPIRING_TTL_SECONDS as u64);
    let lived = expired_seen - grant_sent;
    assert!(
        lived >= ttl,
        "the lease expired after {lived:?}, before its TTL {ttl:?}"
    );
    let latest = killed - grant_sent + ttl + Duration::from_secs(5);
    assert!(
        lived <= latest,
        "the lease expired after {lived:?}, later than {latest:?}"
    );

    // The lease kept alive is still there with its key.
    stop_keeping.store(true, Ordering::SeqCst);
    let (longest_gap, lost) = keeper.await.unwrap();
    assert!(
        !lost,
        "the kept lease was reported gone (longest keepalive gap {longest_gap:?})"
    );
    let remaining = survivor.lease_time_to_live(kept, None).await.unwrap().ttl();
    assert!(remaining > 0, "the kept lease is gone: TTL {remaining}");
    assert_eq!(survivor.get("lease/kept", None).await.unwrap().kvs().len(), 1);

    // Every write that happened, acknowledged or not, in revision order.
    let stored = survivor
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut written: Vec<(String, i64)> = stored
        .kvs()
        .iter()
        .map(|kv| {
            assert_eq!(kv.version(), 1, "each key is written once");
            (kv.key_str().unwrap().to_string(), kv.mod_revision())
        })
        .collect();
    written.sort_by_key(|(_, revision)| *revision);
    for write in &acknowledged {
        assert!(
            written.contains(write),
            "acknowledged {write:?} is not stored as acknowledged"
        );
    }
    for (index, (events, resumes, task)) in watchers.into_iter().enumerate() {
        task.await.unwrap();
        let events = events.lock().unwrap().clone();
        assert_eq!(events, written, "watcher {index} saw a different sequence");
        let resumes = resumes.load(Ordering::SeqCst);
        if index == 1 {
            assert!(resumes >= 1, "the leader's watcher never had to resume");
        }
        eprintln!("watcher {index}: {} events, {resumes} resumes", events.len());
    }
    eprintln!(
        "{} writes ({} acknowledged), kept lease's longest keepalive gap {longest_gap:?}, \
         unattended lease lived {lived:?}, test body took {:?}",
        written.len(),
        acknowledged.len(),
        started.elapsed()
    );
}
