//! What a power loss leaves of each pending block (see the fault model in `mem`).

use rand::{Rng, RngCore};

use super::{MemFile, BLOCK_BYTES, SECTOR_BYTES};

/// How a crash treats each pending block. Weights are relative.
#[derive(Clone, Debug)]
pub struct CrashOptions {
    pub keep_weight: u32,
    pub drop_weight: u32,
    pub tear_weight: u32,
    /// Chance that a block that (partly) reached the disk also gets one bit flipped.
    pub bit_flip_probability: f64,
    /// Chance that a file whose length changed keeps its new length.
    pub new_length_probability: f64,
}

impl Default for CrashOptions {
    fn default() -> Self {
        CrashOptions {
            keep_weight: 1,
            drop_weight: 1,
            tear_weight: 1,
            bit_flip_probability: 0.05,
            new_length_probability: 0.5,
        }
    }
}

enum BlockFate {
    Keep,
    Drop,
    Tear,
}

fn choose_fate(rng: &mut impl RngCore, options: &CrashOptions) -> BlockFate {
    let total = options.keep_weight + options.drop_weight + options.tear_weight;
    assert!(
        total > 0,
        "crash options give every block fate a zero weight: {options:?}"
    );
    let pick = rng.gen_range(0..total);
    if pick < options.keep_weight {
        BlockFate::Keep
    } else if pick < options.keep_weight + options.drop_weight {
        BlockFate::Drop
    } else {
        BlockFate::Tear
    }
}

/// Decides what of `file`'s pending state reached the disk at a crash.
pub(super) fn resolve_crash(file: &mut MemFile, rng: &mut impl RngCore, options: &CrashOptions) {
    let written_len = file.data.len();
    let crash_len = if written_len == file.durable.len() || !rng.gen_bool(options.new_length_probability) {
        file.durable.len()
    } else {
        written_len
    };
    let durable_len = file.durable.len();
    let mut image = std::mem::take(&mut file.durable);
    // Growing zero-fills: a new size may persist before the data that filled it.
    image.resize(crash_len, 0);
    for &block in file.pending.keys() {
        let start = block as usize * BLOCK_BYTES;
        let end = (start + BLOCK_BYTES).min(written_len).min(crash_len);
        if start >= end {
            continue;
        }
        let (from, to) = match choose_fate(rng, options) {
            BlockFate::Keep => (start, end),
            BlockFate::Drop => continue,
            BlockFate::Tear => {
                let sectors = (end - start).div_ceil(SECTOR_BYTES);
                if sectors < 2 {
                    // A single sector is written atomically: all or nothing.
                    if rng.gen_bool(0.5) {
                        (start, end)
                    } else {
                        continue;
                    }
                } else {
                    let boundary = start + rng.gen_range(1..sectors) * SECTOR_BYTES;
                    // Either half may be the one that made it.
                    if rng.gen_bool(0.5) {
                        (start, boundary)
                    } else {
                        (boundary, end)
                    }
                }
            }
        };
        // Only bytes this write changed may rot: a sector rewrite is atomic, so
        // bytes an earlier sync made durable survive in either version of it.
        let changed = |at: &usize| image[*at] != file.data[*at] || *at >= durable_len;
        let first_changed = (from..to).find(changed);
        let last_changed = (from..to).rev().find(changed);
        image[from..to].copy_from_slice(&file.data[from..to]);
        if let (Some(first), Some(last)) = (first_changed, last_changed) {
            if rng.gen_bool(options.bit_flip_probability) {
                let at = rng.gen_range(first..=last);
                image[at] ^= 1 << rng.gen_range(0..8u32);
            }
        }
    }
    file.data = image.clone();
    file.durable = image;
    file.pending.clear();
}
