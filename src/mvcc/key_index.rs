//! The in-memory key index (etcd's `keyIndex`/`treeIndex`): for every key, the revisions at
//! which it changed, grouped into generations. A generation starts with the put that created
//! the key and ends with the tombstone that deleted it; the last generation is open (empty if
//! the key is currently deleted). Values live in the backend, addressed by revision.
//!
//! The index may hold revisions newer than the store's published revision while the writer
//! is applying a batch; every lookup takes the revision to read at, so readers never see them.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::mvcc::encoding::RevisionKey;
use crate::mvcc::types::LeaseId;

/// A key range with etcd's `key`/`range_end` conventions (COMPAT §2.0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    start: Bytes,
    end: RangeEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeEnd {
    /// `range_end` empty: just `start`.
    Single,
    /// `[start, end)`; empty when `end <= start`.
    Before(Bytes),
    /// `range_end == "\0"`: every key ≥ `start`.
    Unbounded,
}

impl KeyRange {
    pub fn new(key: Bytes, range_end: Bytes) -> Self {
        let end = if range_end.is_empty() {
            RangeEnd::Single
        } else if range_end[..] == [0] {
            RangeEnd::Unbounded
        } else {
            RangeEnd::Before(range_end)
        };
        KeyRange { start: key, end }
    }

    pub fn single(key: Bytes) -> Self {
        KeyRange {
            start: key,
            end: RangeEnd::Single,
        }
    }

    pub fn start(&self) -> &Bytes {
        &self.start
    }

    pub fn end(&self) -> &RangeEnd {
        &self.end
    }

    pub fn is_empty(&self) -> bool {
        matches!(&self.end, RangeEnd::Before(end) if end <= &self.start)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == &self.start[..],
            RangeEnd::Before(end) => &self.start[..] <= key && key < &end[..],
            RangeEnd::Unbounded => &self.start[..] <= key,
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'_>> {
        let start = Bound::Included(&self.start[..]);
        match &self.end {
            RangeEnd::Single => Some((start, Bound::Included(&self.start[..]))),
            RangeEnd::Before(end) if end <= &self.start => None,
            RangeEnd::Before(end) => Some((start, Bound::Excluded(&end[..]))),
            RangeEnd::Unbounded => Some((start, Bound::Unbounded)),
        }
    }
}

type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// One life of a key: from its creating put to its tombstone (if any).
#[derive(Clone, Debug, Default)]
struct Generation {
    /// Main revision of the creating put (kept after compaction trims `revisions`).
    created: i64,
    /// Number of changes in this generation, tombstone included (etcd's `ver`); the version of
    /// `revisions[i]` is `version - (len - 1 - i)`, which survives compaction.
    version: i64,
    /// Invariant: strictly increasing.
    revisions: Vec<RevisionKey>,
}

/// What a put did to a key: its creation revision and version after the put,
/// and the lease its previous revision carried (`NONE` if it had none or was
/// deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub created: i64,
    pub version: i64,
    pub replaced_lease: LeaseId,
}

/// What a key looked like at some revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub modified: RevisionKey,
    pub created: i64,
    pub version: i64,
}

/// A key's history. Most keys are written once between compactions, so that case is
/// stored inline in the index's map slot; any other history moves to `Generations`.
/// At 1M keys the inline form saves the two small allocations per key (the generations
/// and the revisions vectors) that were about a third of a member's memory.
#[derive(Clone, Debug)]
enum History {
    /// One live generation with one revision.
    Once {
        modified: RevisionKey,
        created: i64,
        version: i64,
    },
    /// Invariant: non-empty; every generation but the last is non-empty and ends with a
    /// tombstone; never a single live generation of one revision (that is `Once`).
    Generations(Vec<Generation>),
}

#[derive(Clone, Debug)]
struct KeyHistory {
    history: History,
    /// The lease of the newest revision (`NONE` when deleted): the writer's attachment view.
    lease: LeaseId,
}

impl KeyHistory {
    fn once(modified: RevisionKey, created: i64, version: i64, lease: LeaseId) -> Self {
        KeyHistory {
            history: History::Once {
                modified,
                created,
                version,
            },
            lease,
        }
    }

    /// The history as generations, moving a `Once` out of line first with
    /// room for the revision about to follow and `new_generations` more
    /// generations, so the write that caused the move does not reallocate.
    fn generations_mut(&mut self, new_generations: usize) -> &mut Vec<Generation> {
        if let History::Once {
            modified,
            created,
            version,
        } = self.history
        {
            let mut revisions = Vec::with_capacity(2);
            revisions.push(modified);
            let mut generations = Vec::with_capacity(1 + new_generations);
            generations.push(Generation {
                created,
                version,
                revisions,
            });
            self.history = History::Generations(generations);
        }
        match &mut self.history {
            History::Generations(generations) => generations,
            History::Once { .. } => unreachable!("moved out of line above"),
        }
    }

    /// Back inline when compaction leaves one live generation of one revision.
    fn settle(&mut self) {
        if let History::Generations(generations) = &self.history {
            if let [generation] = &generations[..] {
                if let [modified] = generation.revisions[..] {
                    self.history = History::Once {
                        modified,
                        created: generation.created,
                        version: generation.version,
                    };
                }
            }
        }
    }

    /// Creation revision and version of the newest generation.
    fn newest_generation(&self) -> (i64, i64) {
        match &self.history {
            History::Once { created, version, .. } => (*created, *version),
            History::Generations(generations) => {
                let generation = generations.last().expect("non-empty");
                (generation.created, generation.version)
            }
        }
    }

    fn last_revision(&self) -> Option<RevisionKey> {
        match &self.history {
            History::Once { modified, .. } => Some(*modified),
            History::Generations(generations) => generations
                .iter()
                .rev()
                .find_map(|generation| generation.revisions.last().copied()),
        }
    }

    fn is_alive(&self) -> bool {
        match &self.history {
            History::Once { .. } => true,
            History::Generations(generations) => !generations.last().expect("non-empty").revisions.is_empty(),
        }
    }

    fn is_empty(&self) -> bool {
        match &self.history {
            History::Once { .. } => false,
            History::Generations(generations) => generations.len() == 1 && generations[0].revisions.is_empty(),
        }
    }

    fn put(&mut self, revision: RevisionKey) {
        if let Some(last) = self.last_revision() {
            assert!(revision > last, "put at {revision:?} not after {last:?}");
        }
        let generations = self.generations_mut(0);
        let generation = generations.last_mut().expect("non-empty");
        if generation.revisions.is_empty() {
            generation.created = revision.main;
        }
        generation.revisions.push(revision);
        generation.version += 1;
    }

    fn tombstone(&mut self, revision: RevisionKey) {
        assert!(self.is_alive(), "tombstone at {revision:?} of a deleted key");
        self.generations_mut(1);
        self.put(revision);
        self.generations_mut(0).push(Generation::default());
        self.lease = LeaseId::NONE;
    }

    fn get(&self, at: i64) -> Option<Found> {
        match &self.history {
            &History::Once {
                modified,
                created,
                version,
            } => (modified.main <= at).then_some(Found {
                modified,
                created,
                version,
            }),
            History::Generations(generations) => {
                let generation = generation_at(generations, at)?;
                let count = generation.revisions.partition_point(|revision| revision.main <= at);
                let position = count.checked_sub(1)?;
                let newer = (generation.revisions.len() - 1 - position) as i64;
                Some(Found {
                    modified: generation.revisions[position],
                    created: generation.created,
                    version: generation.version - newer,
                })
            }
        }
    }

    /// Every revision of the history, oldest first.
    fn revisions(&self) -> impl Iterator<Item = RevisionKey> + '_ {
        let (once, generations) = match &self.history {
            History::Once { modified, .. } => (Some(*modified), &[][..]),
            History::Generations(generations) => (None, &generations[..]),
        };
        once.into_iter().chain(
            generations
                .iter()
                .flat_map(|generation| generation.revisions.iter().copied()),
        )
    }

    fn contains(&self, revision: RevisionKey) -> bool {
        match &self.history {
            History::Once { modified, .. } => *modified == revision,
            History::Generations(generations) => generations
                .iter()
                .any(|generation| generation.revisions.binary_search(&revision).is_ok()),
        }
    }

    /// etcd 3.5.33 `keyIndex.compact`: drop the generations that ended before `at` (one whose
    /// tombstone is exactly `at` is kept, so a watch from the compact revision still sees that
    /// delete), and in the first remaining generation keep only the newest revision ≤ `at`
    /// and what follows it. A `Once` history has nothing to drop.
    fn compact(&mut self, at: i64) {
        let History::Generations(generations) = &mut self.history else {
            return;
        };
        let last = generations.len() - 1;
        let mut first_kept = 0;
        while first_kept < last {
            let tombstone = generations[first_kept]
                .revisions
                .last()
                .expect("closed generation")
                .main;
            if tombstone >= at {
                break;
            }
            first_kept += 1;
        }
        let generation = &mut generations[first_kept];
        let count = generation.revisions.partition_point(|revision| revision.main <= at);
        if count > 1 {
            generation.revisions.drain(..count - 1);
        }
        generations.drain(..first_kept);
        self.settle();
    }
}

/// etcd's `findGeneration`: the generation alive at `at`, if any.
fn generation_at(generations: &[Generation], at: i64) -> Option<&Generation> {
    let last = generations.len() - 1;
    for (position, generation) in generations.iter().enumerate().rev() {
        let Some(first) = generation.revisions.first() else {
            continue;
        };
        if position != last && generation.revisions.last().expect("non-empty").main <= at {
            return None;
        }
        if first.main <= at {
            return Some(generation);
        }
    }
    None
}

/// A key to keep for as long as the key lives: its own allocation. The `Bytes`
/// a request or a page read hands in is usually a slice of a larger buffer (the
/// whole Raft entry, a 4 KiB page), which a clone would pin for the key's whole
/// life; at 1M keys that was most of a member's memory.
pub(crate) fn owned_key(key: &[u8]) -> Bytes {
    Bytes::copy_from_slice(key)
}

/// All keys' histories, ordered by key. A key is a boxed slice (16 bytes in the map
/// slot, half a `Bytes`), allocated when the key first enters the index.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    keys: BTreeMap<Box<[u8]>, KeyHistory>,
}

impl KeyIndex {
    pub fn new() -> Self {
        KeyIndex::default()
    }

    /// Number of keys with any retained history.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key)?.get(at)
    }

    /// Visits the keys of `range` alive at `at`, in key order.
    pub fn visit_alive(&self, range: &KeyRange, at: i64, mut visit: impl FnMut(&[u8], Found)) {
        let Some(bounds) = range.bounds() else { return };
        for (key, history) in self.keys.range::<[u8], _>(bounds) {
            if let Some(found) = history.get(at) {
                visit(key, found);
            }
        }
    }

    /// Visits every key whose newest revision carries a lease (`NONE` once deleted), with it.
    pub fn visit_leased(&self, mut visit: impl FnMut(&[u8], LeaseId)) {
        for (key, history) in &self.keys {
            if !history.lease.is_none() {
                visit(key, history.lease);
            }
        }
    }

    /// Visits every referenced revision at or below `at`.
    pub fn visit_revisions_at_or_below(&self, at: i64, mut visit: impl FnMut(RevisionKey)) {
        for history in self.keys.values() {
            for revision in history.revisions().take_while(|revision| revision.main <= at) {
                visit(revision);
            }
        }
    }

    /// The keys of `range` alive at `at` (up to `limit`, 0 = all) and how many there are in all.
    pub fn revisions(&self, range: &KeyRange, at: i64, limit: usize) -> (Vec<RevisionKey>, usize) {
        let mut revisions = Vec::new();
        let mut total = 0;
        self.visit_alive(range, at, |_, found| {
            if limit == 0 || revisions.len() < limit {
                revisions.push(found.modified);
            }
            total += 1;
        });
        (revisions, total)
    }

    pub fn alive_keys(&self, range: &KeyRange, at: i64) -> Vec<Bytes> {
        let mut keys = Vec::new();
        self.visit_alive(range, at, |key, _| keys.push(Bytes::copy_from_slice(key)));
        keys
    }

    /// The lease attached to `key`'s newest revision (the writer's view).
    #[cfg(test)]
    pub fn latest_lease(&self, key: &[u8]) -> LeaseId {
        self.keys.get(key).map_or(LeaseId::NONE, |history| history.lease)
    }

    /// Records a put of `key` at `revision` (newer than any of the key's) in
    /// one lookup, and says what it did (the writer needs it for the stored
    /// value and the lease attachments).
    pub fn put(&mut self, key: &[u8], revision: RevisionKey, lease: LeaseId) -> Written {
        if let Some(history) = self.keys.get_mut(key) {
            history.put(revision);
            let (created, version) = history.newest_generation();
            let replaced_lease = std::mem::replace(&mut history.lease, lease);
            return Written {
                created,
                version,
                replaced_lease,
            };
        }
        self.keys
            .insert(key.into(), KeyHistory::once(revision, revision.main, 1, lease));
        Written {
            created: revision.main,
            version: 1,
            replaced_lease: LeaseId::NONE,
        }
    }

    /// Records the deletion of `key` at `revision`; returns the lease its last
    /// revision carried. Panics unless `key` is alive (the writer only deletes
    /// keys it found alive).
    pub fn tombstone(&mut self, key: &[u8], revision: RevisionKey) -> LeaseId {
        match self.keys.get_mut(key) {
            Some(history) => {
                let lease = history.lease;
                history.tombstone(revision);
                lease
            }
            None => panic!("tombstone at {revision:?} of unknown key {key:?}"),
        }
    }

    /// Rebuild: a put read from the backend. The first revision seen of a key may have lost its
    /// predecessors to compaction, so its creation and version come from the stored value.
    pub fn restore_put(&mut self, key: &[u8], created: i64, revision: RevisionKey, version: i64, lease: LeaseId) {
        match self.keys.get_mut(key) {
            Some(history) => {
                history.put(revision);
                history.lease = lease;
            }
            None => {
                self.keys
                    .insert(key.into(), KeyHistory::once(revision, created, version, lease));
            }
        }
    }

    /// Rebuild: a tombstone read from the backend. A tombstone kept at the compact revision may
    /// have lost its whole generation (etcd's `restoreTombstone`).
    pub fn restore_tombstone(&mut self, key: &[u8], revision: RevisionKey) {
        match self.keys.get_mut(key) {
            Some(history) if history.is_alive() => history.tombstone(revision),
            // etcd logs and ignores a tombstone on a deleted key; compaction never leaves one.
            Some(history) => {
                panic!("restored tombstone at {revision:?} of deleted key {key:?}: {history:?}")
            }
            None => {
                let generation = Generation {
                    created: 0,
                    version: 1,
                    revisions: vec![revision],
                };
                let history = KeyHistory {
                    history: History::Generations(vec![generation, Generation::default()]),
                    lease: LeaseId::NONE,
                };
                self.keys.insert(key.into(), history);
            }
        }
    }

    /// Drops history that no read at a revision ≥ `at` needs.
    pub fn compact(&mut self, at: i64) {
        self.keys.retain(|_, history| {
            history.compact(at);
            !history.is_empty()
        });
    }

    /// Whether `revision` of `key` is still part of the index (physical compaction deletes the
    /// backend entries that are not).
    pub fn contains(&self, key: &[u8], revision: RevisionKey) -> bool {
        self.keys.get(key).is_some_and(|history| history.contains(revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn revision(main: i64) -> RevisionKey {
        RevisionKey::new(main, 0)
    }

    #[test]
    fn key_range_conventions() {
        assert!(KeyRange::new(key("a"), Bytes::new()).contains(b"a"));
        assert!(!KeyRange::new(key("a"), Bytes::new()).contains(b"ab"));
        let prefix = KeyRange::new(key("a"), key("b"));
        assert!(prefix.contains(b"a") && prefix.contains(b"a\xff") && !prefix.contains(b"b"));
        let from_key = KeyRange::new(key("m"), Bytes::from_static(&[0]));
        assert!(from_key.contains(b"m") && from_key.contains(b"\xff\xff") && !from_key.contains(b"l"));
        assert!(KeyRange::new(key("b"), key("a")).is_empty());
        assert!(KeyRange::new(key("b"), key("b")).is_empty());
        assert!(KeyRange::new(Bytes::from_static(&[0]), Bytes::from_static(&[0])).contains(b"\x00"));
    }

    #[test]
    fn versions_and_generations() {
        let mut index = KeyIndex::new();
        index.put(&key("k"), revision(2), LeaseId::NONE);
        index.put(&key("k"), revision(3), LeaseId::NONE);
        index.tombstone(b"k", revision(4));
        index.put(&key("k"), revision(5), LeaseId::NONE);
        assert_eq!(index.get(b"k", 1), None);
        assert_eq!(
            index.get(b"k", 2),
            Some(Found {
                modified: revision(2),
                created: 2,
                version: 1
            })
        );
        assert_eq!(
            index.get(b"k", 3),
            Some(Found {
                modified: revision(3),
                created: 2,
                version: 2
            })
        );
        assert_eq!(index.get(b"k", 4), None);
        assert_eq!(
            index.get(b"k", 5),
            Some(Found {
                modified: revision(5),
                created: 5,
                version: 1
            })
        );
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        let mut index = KeyIndex::new();
        // k: put 2, put 3, delete 4, put 5. j: put 6, delete 7.
        index.put(&key("k"), revision(2), LeaseId::NONE);
        index.put(&key("k"), revision(3), LeaseId::NONE);
        index.tombstone(b"k", revision(4));
        index.put(&key("k"), revision(5), LeaseId::NONE);
        index.put(&key("j"), revision(6), LeaseId::NONE);
        index.tombstone(b"j", revision(7));

        index.compact(3);
        assert!(!index.contains(b"k", revision(2)));
        assert!(index.contains(b"k", revision(3)) && index.contains(b"k", revision(4)));
        assert_eq!(
            index.get(b"k", 3),
            Some(Found {
                modified: revision(3),
                created: 2,
                version: 2
            })
        );

        // The tombstone at the compact revision itself stays (etcd ≥ 3.5.16).
        index.compact(7);
        assert!(!index.contains(b"k", revision(3)) && !index.contains(b"k", revision(4)));
        assert!(index.contains(b"j", revision(7)));
        assert_eq!(index.get(b"j", 7), None);
        assert_eq!(
            index.get(b"k", 7),
            Some(Found {
                modified: revision(5),
                created: 5,
                version: 1
            })
        );

        index.compact(8);
        assert_eq!(index.len(), 1, "j's dead history is gone");
    }

    fn is_inline(index: &KeyIndex, name: &str) -> bool {
        matches!(index.keys[name.as_bytes()].history, History::Once { .. })
    }

    #[test]
    fn a_key_written_once_stays_inline_and_returns_there_after_compaction() {
        let mut index = KeyIndex::new();
        let written = index.put(&key("k"), revision(2), LeaseId(7));
        let expected = Written {
            created: 2,
            version: 1,
            replaced_lease: LeaseId::NONE,
        };
        assert_eq!(written, expected);
        assert!(is_inline(&index, "k"));
        assert_eq!(index.latest_lease(b"k"), LeaseId(7));

        let written = index.put(&key("k"), revision(3), LeaseId::NONE);
        let expected = Written {
            created: 2,
            version: 2,
            replaced_lease: LeaseId(7),
        };
        assert_eq!(written, expected);
        assert!(!is_inline(&index, "k"));
        assert_eq!(index.get(b"k", 2).map(|found| found.version), Some(1));

        // Compacting at 3 keeps only revision 3: back inline, created and version intact.
        index.compact(3);
        assert!(is_inline(&index, "k"));
        let expected = Found {
            modified: revision(3),
            created: 2,
            version: 2,
        };
        assert_eq!(index.get(b"k", 3), Some(expected));
        assert_eq!(index.get(b"k", 2), None);
        assert!(index.contains(b"k", revision(3)) && !index.contains(b"k", revision(2)));

        // A tombstone moves it out of line again and ends the generation.
        assert_eq!(index.tombstone(b"k", revision(4)), LeaseId::NONE);
        assert!(!is_inline(&index, "k"));
        assert_eq!(index.get(b"k", 4), None);
        assert_eq!(index.get(b"k", 3), Some(expected));
        assert_eq!(index.latest_lease(b"k"), LeaseId::NONE);
        let mut seen = Vec::new();
        index.visit_revisions_at_or_below(4, |revision| seen.push(revision.main));
        assert_eq!(seen, [3, 4]);
    }

    #[test]
    fn restored_keys_keep_their_stored_creation_and_version() {
        let mut index = KeyIndex::new();
        // A key whose earlier revisions were compacted away: created 5, version 3.
        index.restore_put(&key("a"), 5, revision(9), 3, LeaseId(1));
        index.restore_put(&key("b"), 6, revision(6), 1, LeaseId::NONE);
        index.restore_put(&key("b"), 6, revision(10), 2, LeaseId(2));
        index.restore_tombstone(&key("c"), revision(11));
        assert!(is_inline(&index, "a"));
        assert_eq!(
            index.get(b"a", 9),
            Some(Found {
                modified: revision(9),
                created: 5,
                version: 3
            })
        );
        assert_eq!(
            index.get(b"b", 10).map(|found| (found.created, found.version)),
            Some((6, 2))
        );
        assert_eq!(index.get(b"c", 11), None);
        assert!(index.contains(b"c", revision(11)));

        let mut leased = Vec::new();
        index.visit_leased(|key, lease| leased.push((key.to_vec(), lease)));
        assert_eq!(leased, [(b"a".to_vec(), LeaseId(1)), (b"b".to_vec(), LeaseId(2))]);
    }

    #[test]
    fn a_put_after_a_delete_starts_a_new_generation() {
        let mut index = KeyIndex::new();
        index.put(&key("k"), revision(2), LeaseId(3));
        assert_eq!(index.tombstone(b"k", revision(4)), LeaseId(3));
        let written = index.put(&key("k"), revision(6), LeaseId::NONE);
        let expected = Written {
            created: 6,
            version: 1,
            replaced_lease: LeaseId::NONE,
        };
        assert_eq!(written, expected);
        assert_eq!(index.put(&key("k"), revision(7), LeaseId(9)).version, 2);
    }
}
