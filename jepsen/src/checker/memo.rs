//! Memory of the search: bitsets of linearized operations and the configurations known to
//! fail, with the hashing that indexes them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A bitset with a hash kept up to date on every change.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Bits {
    pub(super) words: Vec<u64>,
    /// XOR of `spread(2 * member + salt)` over the members.
    pub(super) hash: u64,
    salt: u64,
}

impl Bits {
    pub(super) fn new(count: usize, salt: u64) -> Bits {
        Bits {
            words: vec![0; count.div_ceil(64)],
            hash: 0,
            salt,
        }
    }

    pub(super) fn set(&mut self, member: usize) {
        let bit = 1u64 << (member % 64);
        let word = &mut self.words[member / 64];
        assert!(*word & bit == 0, "bit {member} set twice");
        *word |= bit;
        self.hash ^= spread(2 * member as u64 + self.salt);
    }

    pub(super) fn clear(&mut self, member: usize) {
        let bit = 1u64 << (member % 64);
        let word = &mut self.words[member / 64];
        assert!(*word & bit != 0, "bit {member} was not set");
        *word &= !bit;
        self.hash ^= spread(2 * member as u64 + self.salt);
    }

    pub(super) fn contains(&self, member: usize) -> bool {
        self.words[member / 64] & (1u64 << (member % 64)) != 0
    }

    fn is_subset_of(&self, words: &[u64]) -> bool {
        self.words.iter().zip(words).all(|(mine, theirs)| mine & !theirs == 0)
    }
}

/// The linearized operations, split by kind (see the module doc).
pub(super) struct Linearized {
    pub(super) fixed: Bits,
    pub(super) deferrable: Bits,
}

/// SplitMix64's finaliser: turns small integers into well-mixed 64-bit values.
fn spread(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Configurations explored in full without success, keyed by a 64-bit hash of (fixed
/// operations, state); each bucket confirms with `Eq`, so a collision costs time, never a
/// wrong answer. A bucket keeps only minimal deferrable sets.
pub(super) struct FailedConfigurations<State> {
    buckets: HashMap<u64, Vec<FailedConfiguration<State>>, BuildHasherDefault<PassThroughHasher>>,
}

struct FailedConfiguration<State> {
    fixed: Vec<u64>,
    state: State,
    deferrable: Bits,
}

impl<State> Default for FailedConfigurations<State> {
    fn default() -> Self {
        FailedConfigurations {
            buckets: HashMap::default(),
        }
    }
}

impl<State: Clone + Eq + Hash> FailedConfigurations<State> {
    fn key(linearized: &Linearized, state: &State) -> u64 {
        let mut hasher = MultiplyHasher::default();
        state.hash(&mut hasher);
        spread(linearized.fixed.hash ^ hasher.finish())
    }

    /// True when a failed configuration with these fixed operations and this state used a
    /// subset of these deferrable operations.
    pub(super) fn subsumes(&self, linearized: &Linearized, state: &State) -> bool {
        let Some(bucket) = self.buckets.get(&Self::key(linearized, state)) else {
            return false;
        };
        bucket.iter().any(|failed| {
            failed.fixed == linearized.fixed.words
                && failed.state == *state
                && failed.deferrable.is_subset_of(&linearized.deferrable.words)
        })
    }

    pub(super) fn insert(&mut self, linearized: &Linearized, state: &State) {
        let bucket = self.buckets.entry(Self::key(linearized, state)).or_default();
        // Entries this one subsumes are no longer needed.
        bucket.retain(|failed| {
            !(failed.fixed == linearized.fixed.words
                && failed.state == *state
                && linearized.deferrable.is_subset_of(&failed.deferrable.words))
        });
        bucket.push(FailedConfiguration {
            fixed: linearized.fixed.words.clone(),
            state: state.clone(),
            deferrable: linearized.deferrable.clone(),
        });
    }
}

/// A fast non-cryptographic hasher (rotate, xor, multiply per word) for model states.
#[derive(Default)]
struct MultiplyHasher {
    hash: u64,
}

impl MultiplyHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for MultiplyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word: [u8; 8] = chunk.try_into().expect("chunks_exact yields 8 bytes");
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let remainder = chunks.remainder();
        tail[..remainder.len()].copy_from_slice(remainder);
        self.add(u64::from_le_bytes(tail) ^ ((remainder.len() as u64) << 56));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// For maps whose keys are already hashes.
#[derive(Default)]
struct PassThroughHasher {
    hash: u64,
}

impl Hasher for PassThroughHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash = self.hash.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = value;
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}
