//! Watches (etcd's watchable store): a watcher receives the events of its key range in
//! revision order, then op order, from `start_revision` on — first from history, then live.
//!
//! Design (why it never blocks the writer):
//! - A *synced* watcher gets live events pushed into its own bounded queue by the writer,
//!   which only ever tries a push under short mutexes and never awaits.
//! - If the queue is full, the writer flips the watcher to *unsynced* and forgets it; the
//!   watcher's `next_revision` remembers the first revision it did not get.
//! - An unsynced watcher catches up *on its consumer's task*: `recv` scans the backend's key
//!   bucket from `next_revision` in bounded chunks, then re-joins the synced set under the
//!   registry lock once nothing newer has been delivered (`registry.delivered`), so no revision
//!   is skipped or repeated. If compaction passed it, it is canceled with the compact revision.
//! - The events of one revision always travel together (one queue item, one history chunk).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::mvcc::backend::{Backend, BackendError, BackendRead};
use crate::mvcc::encoding::{
    decode_entry, decode_entry_key, decode_revision_raw_key, revision_raw_key, RevisionKey, StoredEntry,
};
use crate::mvcc::error::MvccError;
use crate::mvcc::key_index::KeyRange;
use crate::mvcc::read::{SnapshotValues, ValueSource};
use crate::mvcc::store::MvccStore;
use crate::mvcc::types::{Event, EventKind, KeyValue, Revision};

/// etcd's WatchCreateRequest, as far as mvcc is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// Empty = `"\0"` (etcd's watch server does the same).
    pub key: Bytes,
    pub range_end: Bytes,
    /// 0 = changes after now; > 0 = replay from this revision, inclusive.
    pub start_revision: Revision,
    pub filters: WatchFilters,
    pub prev_kv: bool,
}

/// etcd's NOPUT / NODELETE filters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchFilters {
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchFilters {
    fn keeps(self, event: &Event) -> bool {
        match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }
}

/// Identifies a watcher within one store (unique for the store's life).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatcherId(pub u64);

/// What `Watcher::recv` yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchResponse {
    /// One or more whole revisions of events, in order. `revision` is the newest revision the
    /// watcher has now been brought up to (≥ the last event's; what etcd puts in the header).
    Events { events: Vec<Event>, revision: Revision },
    /// The watcher needed history older than the compact revision; it is gone (every later
    /// `recv` says the same).
    Canceled { compact_revision: Revision },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Synced,
    Unsynced,
    Canceled { compact_revision: i64 },
}

struct WatcherState {
    /// One item per revision. Invariant: every queued revision is < `next_revision`.
    queue: VecDeque<(i64, Vec<Event>)>,
    queued_events: usize,
    /// The first revision neither queued nor known to have no events for this watcher. For a
    /// synced watcher it is a lower bound (revisions without matching events do not advance it).
    next_revision: i64,
    mode: Mode,
}

pub(crate) struct WatcherShared {
    id: WatcherId,
    range: KeyRange,
    filters: WatchFilters,
    capacity_events: usize,
    state: Mutex<WatcherState>,
    /// Signalled (`notify_one`) whenever the writer queues events or flips the watcher to
    /// unsynced. Several watchers may share one (see `MvccStore::watch_notifying`).
    notify: Arc<Notify>,
}

impl WatcherShared {
    fn lock(&self) -> MutexGuard<'_, WatcherState> {
        self.state.lock().expect("watcher lock poisoned")
    }

    /// The writer offers one revision's matching events. Never blocks beyond the watcher's
    /// own mutex.
    fn offer(&self, revision: i64, events: &[Event]) {
        let mut state = self.lock();
        if state.mode != Mode::Synced || state.next_revision > revision {
            return;
        }
        let events: Vec<Event> = events
            .iter()
            .filter(|event| self.filters.keeps(event))
            .cloned()
            .collect();
        if events.is_empty() {
            state.next_revision = revision + 1;
            return;
        }
        if !state.queue.is_empty() && state.queued_events + events.len() > self.capacity_events {
            // Too slow: catch up from history later, starting with this revision.
            state.mode = Mode::Unsynced;
            state.next_revision = revision;
        } else {
            state.queued_events += events.len();
            state.queue.push_back((revision, events));
            state.next_revision = revision + 1;
        }
        drop(state);
        self.notify.notify_one();
    }
}

/// The watchers of one store. Guarded by `Shared::watches` (store.rs note 5).
pub(crate) struct WatchRegistry {
    /// The newest revision whose events have been offered; equals the published revision
    /// whenever this lock is free.
    delivered: i64,
    next_id: u64,
    watchers: BTreeMap<WatcherId, Arc<WatcherShared>>,
    single_key: BTreeMap<Bytes, BTreeSet<WatcherId>>,
    ranges: BTreeSet<WatcherId>,
}

impl WatchRegistry {
    pub(crate) fn new(delivered: i64) -> Self {
        WatchRegistry {
            delivered,
            next_id: 0,
            watchers: BTreeMap::new(),
            single_key: BTreeMap::new(),
            ranges: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.watchers.len()
    }

    fn register(&mut self, watcher: Arc<WatcherShared>) {
        let id = watcher.id;
        if matches!(watcher.range.end(), crate::mvcc::key_index::RangeEnd::Single) {
            self.single_key
                .entry(watcher.range.start().clone())
                .or_default()
                .insert(id);
        } else {
            self.ranges.insert(id);
        }
        self.watchers.insert(id, watcher);
    }

    fn unregister(&mut self, id: WatcherId) {
        let Some(watcher) = self.watchers.remove(&id) else {
            return;
        };
        let key = watcher.range.start();
        if let Some(ids) = self.single_key.get_mut(key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.single_key.remove(key);
            }
        }
        self.ranges.remove(&id);
    }

    /// The store's state was replaced by a snapshot at `revision`: revisions between what was
    /// delivered and it produced no live events, so every synced watcher catches up from
    /// history (from its own next revision) before it is live again.
    pub(crate) fn restored(&mut self, revision: i64) {
        for watcher in self.watchers.values() {
            let mut state = watcher.lock();
            if state.mode == Mode::Synced {
                state.mode = Mode::Unsynced;
                drop(state);
                watcher.notify.notify_one();
            }
        }
        self.delivered = self.delivered.max(revision);
    }

    /// Offers each new revision's events to the synced watchers whose range they touch.
    pub(crate) fn deliver(&mut self, events: Vec<(i64, Vec<Event>)>, revision: i64) {
        for (event_revision, revision_events) in events {
            let mut matched: BTreeMap<WatcherId, Vec<Event>> = BTreeMap::new();
            for event in &revision_events {
                let key = &event.kv.key;
                let single = self.single_key.get(key).into_iter().flatten();
                let ranged = self.ranges.iter().filter(|id| self.watchers[id].range.contains(key));
                for id in single.chain(ranged) {
                    matched.entry(*id).or_default().push(event.clone());
                }
            }
            for (id, watcher_events) in matched {
                self.watchers[&id].offer(event_revision, &watcher_events);
            }
        }
        assert!(
            revision >= self.delivered,
            "delivered {revision} after {}",
            self.delivered
        );
        self.delivered = revision;
    }
}

/// What one bounded look at a watcher found (`Watcher::step`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchStep {
    Response(WatchResponse),
    /// Caught up a chunk of history without events for this watcher: look again.
    Progressed,
    /// Synced and nothing queued: wait for the watcher's notify.
    Idle,
}

/// A watcher's receiving end. Dropping it cancels the watch.
pub struct Watcher<B: Backend> {
    store: MvccStore<B>,
    shared: Arc<WatcherShared>,
    prev_kv: bool,
    created_revision: i64,
}

impl<B: Backend> MvccStore<B> {
    /// Starts a watch. Errors: range_end ≤ key (`mvcc: watcher range is empty`); a negative
    /// start revision (`…required revision has been compacted`). A start revision below the
    /// compact revision yields a watcher whose first `recv` is `Canceled`.
    pub fn watch(&self, request: WatchRequest) -> Result<Watcher<B>, MvccError> {
        self.watch_notifying(request, Arc::new(Notify::new()))
    }

    /// `watch`, with the writer signalling `notify` (`notify_one`) whenever the watcher may
    /// have something new. One task serving many watchers gives them all one `Notify` and
    /// waits on it after `step` found every watcher `Idle`: the permit `notify_one` stores
    /// when nobody waits means no wake-up is lost. Watchers sharing a `Notify` must not be
    /// read with `recv` (one wake-up would reach only one of them).
    pub fn watch_notifying(&self, request: WatchRequest, notify: Arc<Notify>) -> Result<Watcher<B>, MvccError> {
        let key = if request.key.is_empty() {
            Bytes::from_static(&[0])
        } else {
            request.key
        };
        let range = KeyRange::new(key, request.range_end);
        if range.is_empty() {
            return Err(MvccError::WatcherRangeEmpty);
        }
        let start = request.start_revision.0;
        if start < 0 {
            return Err(MvccError::Compacted);
        }
        let mut registry = self.shared.watches();
        let delivered = registry.delivered;
        // As etcd: a watch from now or from the future is synced at once.
        let (mode, next_revision) = if start == 0 || start > delivered {
            (Mode::Synced, start.max(delivered + 1))
        } else {
            (Mode::Unsynced, start)
        };
        let id = WatcherId(registry.next_id);
        registry.next_id += 1;
        let shared = Arc::new(WatcherShared {
            id,
            range,
            filters: request.filters,
            capacity_events: self.shared.config.watcher_buffer_events_max.max(1),
            state: Mutex::new(WatcherState {
                queue: VecDeque::new(),
                queued_events: 0,
                next_revision,
                mode,
            }),
            notify,
        });
        registry.register(Arc::clone(&shared));
        Ok(Watcher {
            store: self.clone(),
            shared,
            prev_kv: request.prev_kv,
            created_revision: delivered,
        })
    }

    /// Number of live watchers (for tests and metrics).
    pub fn watcher_count(&self) -> usize {
        self.shared.watches().len()
    }
}

impl<B: Backend> Watcher<B> {
    pub fn id(&self) -> WatcherId {
        self.shared.id
    }

    /// The store revision when the watch was created (the `created` response's header).
    pub fn created_revision(&self) -> Revision {
        Revision(self.created_revision)
    }

    /// `Some(revision)` when the watcher has received every event up to `revision` and is
    /// live (what a progress notification may announce); `None` while it is behind.
    pub fn progress_revision(&self) -> Option<Revision> {
        let registry = self.store.shared.watches();
        let state = self.shared.lock();
        (state.mode == Mode::Synced && state.queue.is_empty()).then_some(Revision(registry.delivered))
    }

    /// The next events (whole revisions, in order) or the cancellation. Waits for new events
    /// when caught up; yields between history chunks while catching up. Only a backend read
    /// failure is an error.
    pub async fn recv(&mut self) -> Result<WatchResponse, BackendError> {
        loop {
            match self.step()? {
                WatchStep::Response(response) => return Ok(response),
                WatchStep::Progressed => tokio::task::yield_now().await,
                // `notify_one` stores a permit when nobody waits, so an event that arrived
                // since `step` looked is not lost.
                WatchStep::Idle => self.shared.notify.notified().await,
            }
        }
    }

    /// Like `recv` but returns `None` instead of waiting (history catch-up runs to the end).
    pub fn try_recv(&mut self) -> Result<Option<WatchResponse>, BackendError> {
        loop {
            match self.step()? {
                WatchStep::Response(response) => return Ok(Some(response)),
                WatchStep::Progressed => {}
                WatchStep::Idle => return Ok(None),
            }
        }
    }

    /// One bounded step without waiting: queued events (whole revisions), the cancellation,
    /// one history chunk, or `Idle`. `recv` and `try_recv` are loops around it.
    pub fn step(&mut self) -> Result<WatchStep, BackendError> {
        let (queued, mode, next_revision) = {
            let mut state = self.shared.lock();
            let queued = self.drain_queue(&mut state);
            (queued, state.mode, state.next_revision)
        };
        if let Some((events, revision)) = queued {
            let events = self.with_prev_kv(events)?;
            let revision = Revision(revision);
            return Ok(WatchStep::Response(WatchResponse::Events { events, revision }));
        }
        match mode {
            Mode::Canceled { compact_revision } => {
                let compact_revision = Revision(compact_revision);
                Ok(WatchStep::Response(WatchResponse::Canceled { compact_revision }))
            }
            Mode::Synced => Ok(WatchStep::Idle),
            Mode::Unsynced => Ok(self
                .catch_up(next_revision)?
                .map_or(WatchStep::Progressed, WatchStep::Response)),
        }
    }

    /// Takes whole revisions off the queue, up to `watch_response_events_max` events (at least
    /// one revision); returns them with the newest revision taken.
    fn drain_queue(&self, state: &mut WatcherState) -> Option<(Vec<Event>, i64)> {
        let limit = self.store.shared.config.watch_response_events_max.max(1);
        let mut events = Vec::new();
        let mut newest = None;
        while let Some((_, front)) = state.queue.front() {
            if !events.is_empty() && events.len() + front.len() > limit {
                break;
            }
            let (revision, batch) = state.queue.pop_front().expect("front exists");
            state.queued_events -= batch.len();
            events.extend(batch);
            newest = Some(revision);
        }
        newest.map(|revision| (events, revision))
    }

    /// One bounded step of history replay from `next_revision`. Returns the events found (if
    /// any) or the cancellation; `None` means "progressed, look again".
    fn catch_up(&mut self, next_revision: i64) -> Result<Option<WatchResponse>, BackendError> {
        let shared = &self.store.shared;
        let chunk_entries = shared.config.watch_history_chunk_entries.max(1);
        let response_events = shared.config.watch_response_events_max.max(1);
        let mut events = Vec::new();
        let scanned_through;
        {
            let state = shared.read_state();
            if next_revision < state.compact_revision {
                let compact_revision = state.compact_revision;
                drop(state);
                self.cancel(compact_revision);
                return Ok(Some(WatchResponse::Canceled {
                    compact_revision: Revision(compact_revision),
                }));
            }
            let current = state.revision;
            if next_revision > current {
                scanned_through = next_revision - 1;
            } else {
                let snapshot = shared.backend.read();
                let start = revision_raw_key(RevisionKey::new(next_revision, 0));
                let end = revision_raw_key(RevisionKey::new(current + 1, 0));
                let mut last_main = next_revision - 1;
                let mut examined = 0;
                let mut complete = true;
                let mut failure = None;
                snapshot.scan(&start, &end, &mut |raw_key, value| {
                    let decoded = decode_revision_raw_key(raw_key)
                        .and_then(|revision| Ok((revision, decode_entry_key(revision, value)?)));
                    let (revision, key) = match decoded {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            failure = Some(error);
                            return ControlFlow::Break(());
                        }
                    };
                    let full = examined >= chunk_entries || events.len() >= response_events;
                    if full && revision.main != last_main {
                        complete = false;
                        return ControlFlow::Break(());
                    }
                    examined += 1;
                    last_main = revision.main;
                    // At the compact revision the backend may still hold entries compaction
                    // dropped (physical deletion lags); skip them so replay is deterministic.
                    if revision.main <= state.compact_revision && !state.index.contains(key, revision) {
                        return ControlFlow::Continue(());
                    }
                    if !self.shared.range.contains(key) {
                        return ControlFlow::Continue(());
                    }
                    let entry = match decode_entry(revision, &Bytes::copy_from_slice(value)) {
                        Ok(entry) => entry,
                        Err(error) => {
                            failure = Some(error);
                            return ControlFlow::Break(());
                        }
                    };
                    let event = match entry {
                        StoredEntry::Put(kv) => Event {
                            kind: EventKind::Put,
                            kv,
                            prev_kv: None,
                        },
                        StoredEntry::Tombstone(key) => Event {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key,
                                mod_revision: Revision(revision.main),
                                ..KeyValue::default()
                            },
                            prev_kv: None,
                        },
                    };
                    if self.shared.filters.keeps(&event) {
                        events.push(event);
                    }
                    ControlFlow::Continue(())
                })?;
                if let Some(error) = failure {
                    return Err(error);
                }
                scanned_through = if complete { current } else { last_main };
            }
        }
        {
            let registry = shared.watches();
            let mut state = self.shared.lock();
            state.next_revision = scanned_through + 1;
            if state.next_revision > registry.delivered {
                state.mode = Mode::Synced;
            }
        }
        if events.is_empty() {
            return Ok(None);
        }
        let events = self.with_prev_kv(events)?;
        Ok(Some(WatchResponse::Events {
            events,
            revision: Revision(scanned_through),
        }))
    }

    fn cancel(&self, compact_revision: i64) {
        let mut registry = self.store.shared.watches();
        registry.unregister(self.shared.id);
        let mut state = self.shared.lock();
        state.queue.clear();
        state.queued_events = 0;
        state.mode = Mode::Canceled { compact_revision };
    }

    /// etcd's watch server fills `prev_kv` with the key at `mod_revision - 1` for every event
    /// but a create, and leaves it out when that revision is compacted.
    fn with_prev_kv(&self, mut events: Vec<Event>) -> Result<Vec<Event>, BackendError> {
        if !self.prev_kv {
            return Ok(events);
        }
        let shared = &self.store.shared;
        let (snapshot, lookups) = {
            let state = shared.read_state();
            let lookups: Vec<Option<RevisionKey>> = events
                .iter()
                .map(|event| {
                    let is_create = event.kind == EventKind::Put && event.kv.create_revision == event.kv.mod_revision;
                    let at = event.kv.mod_revision.0 - 1;
                    if is_create || at < state.compact_revision || at > state.revision {
                        return None;
                    }
                    state.index.get(&event.kv.key, at).map(|found| found.modified)
                })
                .collect();
            (shared.backend.read(), lookups)
        };
        let values = SnapshotValues(&snapshot);
        for (event, lookup) in events.iter_mut().zip(lookups) {
            if let Some(revision) = lookup {
                event.prev_kv = Some(values.key_value(revision)?);
            }
        }
        Ok(events)
    }
}

impl<B: Backend> Drop for Watcher<B> {
    fn drop(&mut self) {
        self.store.shared.watches().unregister(self.shared.id);
    }
}
