//! Proves the WAL's recovery decisions on hand-made damage: torn tails are cut
//! and reported, damaged committed data is refused with its file and offset,
//! and log semantics (overwrite, truncation, markers, compaction) survive reopen.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::record::{parse_at, Header, Parsed};
use super::*;
use crate::io::{CrashOptions, MemDir};

fn entry(index: u64, term: u64) -> WalEntry {
    WalEntry {
        index,
        term,
        data: Bytes::from(format!("entry-{index}-{term}")),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<WalEntry> {
    range.map(|index| entry(index, term)).collect()
}

fn options(segment_size_bytes: u64) -> WalOptions {
    WalOptions { segment_size_bytes }
}

/// Every valid record of a segment file, with its offset.
fn records(bytes: &[u8], segment: u64) -> Vec<(usize, Header)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Parsed::Record { header, next, .. } = parse_at(bytes, at, segment) {
        found.push((at, header));
        at = next;
    }
    found
}

/// Replaces the contents of `name` with `bytes`, durably.
async fn rewrite(dir: &MemDir, name: &str, bytes: Vec<u8>) {
    let log = dir.open_log(name).await.unwrap();
    log.truncate(0).await.unwrap();
    log.append(Bytes::from(bytes)).await.unwrap();
    log.sync().await.unwrap();
}

fn lose_unsynced() -> CrashOptions {
    CrashOptions {
        keep_weight: 0,
        drop_weight: 1,
        tear_weight: 0,
        bit_flip_probability: 0.0,
        new_length_probability: 0.0,
    }
}

#[tokio::test]
async fn a_reopened_wal_returns_what_was_written() {
    let dir = MemDir::new();
    let (wal, recovered) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    assert_eq!(recovered, Recovered::default());
    wal.append(
        &entries(1..=3, 1),
        Some(HardState {
            term: 1,
            vote: 2,
            commit: 2,
        }),
    )
    .await
    .unwrap();
    wal.append_entries(&entries(4..=5, 2)).await.unwrap();
    wal.append_snapshot_marker(SnapshotMarker {
        index: 2,
        term: 1,
        payload: Bytes::from_static(b"conf"),
    })
    .await
    .unwrap();
    wal.sync().await.unwrap();
    assert_eq!(wal.last_index(), 5);
    drop(wal);

    let (wal, recovered) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    assert_eq!(
        recovered.hard_state,
        Some(HardState {
            term: 1,
            vote: 2,
            commit: 2
        })
    );
    assert_eq!(
        recovered.snapshot_marker,
        Some(SnapshotMarker {
            index: 2,
            term: 1,
            payload: Bytes::from_static(b"conf")
        })
    );
    let mut expected = entries(3..=3, 1);
    expected.extend(entries(4..=5, 2));
    assert_eq!(recovered.entries, expected);
    assert!(recovered.repairs.is_empty());
    assert_eq!(wal.last_index(), 5);
    // Appending continues where it left off.
    wal.append_entries(&entries(6..=6, 2)).await.unwrap();
    wal.sync().await.unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir, options(4096)).await.unwrap();
    assert_eq!(recovered.entries.last(), Some(&entry(6, 2)));
}

#[tokio::test]
async fn overwrites_and_truncations_keep_the_last_writer() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    wal.append_entries(&entries(1..=10, 1)).await.unwrap();
    wal.append_entries(&entries(5..=7, 2)).await.unwrap();
    assert_eq!(wal.last_index(), 7);
    wal.truncate_suffix(7).await.unwrap();
    assert_eq!(wal.last_index(), 6);
    wal.sync().await.unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir, options(4096)).await.unwrap();
    let mut expected = entries(1..=4, 1);
    expected.extend(entries(5..=6, 2));
    assert_eq!(recovered.entries, expected);
}

#[tokio::test]
#[should_panic(expected = "WAL append breaks the log's rules: entry 5 leaves a gap after 2")]
async fn a_gap_in_appended_indexes_is_a_caller_bug() {
    let (wal, _) = Wal::open(MemDir::new(), options(4096)).await.unwrap();
    wal.append_entries(&entries(1..=2, 1)).await.unwrap();
    wal.append_entries(&entries(5..=5, 1)).await.unwrap();
}

#[tokio::test]
async fn rotation_and_compaction_keep_state_across_removed_segments() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(512)).await.unwrap();
    wal.append_hard_state(HardState {
        term: 3,
        vote: 1,
        commit: 0,
    })
    .await
    .unwrap();
    for index in 1..=40 {
        wal.append_entries(&[entry(index, 3)]).await.unwrap();
    }
    wal.sync().await.unwrap();
    let names = wal.segment_names().await;
    assert!(names.len() >= 4, "512-byte segments should rotate: {names:?}");
    let sequences: Vec<u64> = names.iter().map(|name| parse_segment_name(name).unwrap().0).collect();
    assert_eq!(sequences, (1..=names.len() as u64).collect::<Vec<_>>());

    wal.append_snapshot_marker(SnapshotMarker {
        index: 30,
        term: 3,
        payload: Bytes::new(),
    })
    .await
    .unwrap();
    let removed = wal.compact(30).await.unwrap();
    assert!(removed >= 2, "removed {removed} of {names:?}");
    let remaining = wal.segment_names().await;
    assert!(
        remaining.starts_with(&names[removed..]),
        "{remaining:?} after removing {removed} of {names:?}"
    );
    wal.sync().await.unwrap();
    drop(wal);

    let (_, recovered) = Wal::open(dir.clone(), options(512)).await.unwrap();
    assert_eq!(
        recovered.hard_state,
        Some(HardState {
            term: 3,
            vote: 1,
            commit: 0
        }),
        "carried in headers"
    );
    assert_eq!(
        recovered.snapshot_marker,
        Some(SnapshotMarker {
            index: 30,
            term: 3,
            payload: Bytes::new()
        })
    );
    assert_eq!(recovered.entries, entries(31..=40, 3));
    assert!(!dir.list().unwrap().contains(&names[0]));
}

#[tokio::test]
async fn bit_rot_in_a_committed_middle_record_is_refused_with_file_and_offset() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
    for index in 1..=4 {
        wal.append_entries(&[entry(index, 1)]).await.unwrap();
        wal.sync().await.unwrap();
    }
    let name = wal.segment_names().await.remove(0);
    drop(wal);
    let bytes = dir.file_bytes(&name).unwrap();
    let (offset, header) = records(&bytes, 1)[2];
    assert_eq!(header.index, 2);
    dir.corrupt_durable(&name, offset as u64 + 50, 3).unwrap();

    let Err(error) = Wal::open(dir.clone(), options(1 << 20)).await else {
        panic!("open must refuse")
    };
    match &error {
        WalError::Corrupt { file, offset: at, .. } => assert_eq!((file.as_str(), *at), (name.as_str(), offset as u64)),
        other => panic!("expected corruption, got {other}"),
    }
    assert!(error.to_string().contains(&name), "{error}");
    // Nothing was truncated: the damaged file is left for repair.
    assert_eq!(dir.file_bytes(&name).unwrap().len(), bytes.len());
}

#[tokio::test]
async fn a_latent_read_error_refuses_rather_than_truncates() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
    wal.append_entries(&entries(1..=3, 1)).await.unwrap();
    wal.sync().await.unwrap();
    let name = wal.segment_names().await.remove(0);
    drop(wal);
    dir.inject_read_error(&name, 0).unwrap();
    let Err(error) = Wal::open(dir.clone(), options(1 << 20)).await else {
        panic!("open must fail")
    };
    assert!(matches!(error, WalError::Io { .. }), "{error}");
    assert!(!dir.file_bytes(&name).unwrap().is_empty());
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_reported_unless_it_is_all_zeros() {
    for (flip_at, expected) in [(None, Damage::Zero), (Some(30), Damage::Checksum)] {
        let dir = MemDir::new();
        let (wal, _) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
        wal.append_entries(&entries(1..=2, 1)).await.unwrap();
        wal.sync().await.unwrap();
        let name = wal.segment_names().await.remove(0);
        let synced_len = dir.file_bytes(&name).unwrap().len();
        wal.append_entries(&entries(3..=3, 1)).await.unwrap();
        wal.flush().await.unwrap();
        drop(wal);
        let mut bytes = dir.file_bytes(&name).unwrap();
        match flip_at {
            // The size reached the disk, the data did not.
            None => bytes[synced_len..].fill(0),
            Some(at) => bytes[synced_len + at] ^= 0x10,
        }
        rewrite(&dir, &name, bytes.clone()).await;

        let (wal, recovered) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
        assert_eq!(recovered.entries, entries(1..=2, 1));
        let dropped_bytes = (bytes.len() - synced_len) as u64;
        if expected == Damage::Zero {
            // Indistinguishable from the zeros the production devices write
            // ahead: cut, but nothing was stored there, so no repair.
            assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
            assert_eq!(recovered.zero_tail_bytes, dropped_bytes);
        } else {
            let repair = Repair {
                file: name.clone(),
                offset: synced_len as u64,
                damage: expected,
                dropped_bytes,
                dropped_records: 0,
            };
            assert_eq!(recovered.repairs, vec![repair]);
            assert_eq!(recovered.zero_tail_bytes, 0);
        }
        assert_eq!(
            dir.durable_bytes(&name).unwrap().len(),
            synced_len,
            "the cut is durable"
        );
        wal.append_entries(&entries(3..=3, 2)).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        let (_, recovered) = Wal::open(dir, options(1 << 20)).await.unwrap();
        assert_eq!(recovered.entries.last(), Some(&entry(3, 2)));
        assert!(recovered.repairs.is_empty());
    }
}

#[tokio::test]
async fn valid_records_after_a_torn_spot_are_dropped_unless_they_prove_it_durable() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
    wal.append_entries(&entries(1..=1, 1)).await.unwrap();
    wal.sync().await.unwrap();
    // Entries 2 and 3 were written without a sync in between.
    wal.append_entries(&entries(2..=3, 1)).await.unwrap();
    wal.flush().await.unwrap();
    let name = wal.segment_names().await.remove(0);
    let unsynced = dir.file_bytes(&name).unwrap();
    // Entry 4 is written after a sync covering 2 and 3: it proves them durable.
    wal.sync().await.unwrap();
    wal.append_entries(&entries(4..=4, 1)).await.unwrap();
    wal.flush().await.unwrap();
    drop(wal);
    let proven = dir.file_bytes(&name).unwrap();
    let (entry_two_at, _) = records(&proven, 1)
        .into_iter()
        .find(|(_, header)| header.index == 2)
        .unwrap();

    // Out-of-order persistence: entry 2 lost, entry 3 on disk, no proof.
    let mut bytes = unsynced.clone();
    bytes[entry_two_at..entry_two_at + 8].fill(0);
    rewrite(&dir, &name, bytes).await;
    let (wal, recovered) = Wal::open(dir.clone(), options(1 << 20)).await.unwrap();
    assert_eq!(recovered.entries, entries(1..=1, 1));
    assert_eq!(recovered.repairs[0].dropped_records, 1);
    assert_eq!(recovered.repairs[0].offset, entry_two_at as u64);
    drop(wal);

    // The same damage with entry 4 present: entry 2 had been synced. Refuse.
    let mut bytes = proven.clone();
    bytes[entry_two_at + 50] ^= 1;
    rewrite(&dir, &name, bytes).await;
    let Err(WalError::Corrupt { file, offset, reason }) = Wal::open(dir.clone(), options(1 << 20)).await else {
        panic!("open must refuse")
    };
    assert_eq!((file, offset), (name, entry_two_at as u64));
    assert!(reason.contains("durable offset"), "{reason}");
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_refused_even_at_its_end() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(512)).await.unwrap();
    for index in 1..=20 {
        wal.append_entries(&[entry(index, 1)]).await.unwrap();
    }
    wal.sync().await.unwrap();
    let names = wal.segment_names().await;
    drop(wal);
    let sealed = &names[0];
    let mut bytes = dir.file_bytes(sealed).unwrap();
    let last_at = records(&bytes, 1).last().unwrap().0;
    bytes.truncate(last_at + 20);
    rewrite(&dir, sealed, bytes).await;
    let Err(WalError::Corrupt { file, offset, reason }) = Wal::open(dir, options(512)).await else {
        panic!("open must refuse")
    };
    assert_eq!((&file, offset), (sealed, last_at as u64));
    assert!(reason.contains("sealed"), "{reason}");
}

#[tokio::test]
async fn a_missing_middle_segment_is_refused() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(512)).await.unwrap();
    for index in 1..=20 {
        wal.append_entries(&[entry(index, 1)]).await.unwrap();
    }
    wal.sync().await.unwrap();
    let names = wal.segment_names().await;
    drop(wal);
    dir.remove(&names[1]).await.unwrap();
    let Err(WalError::Corrupt { file, .. }) = Wal::open(dir, options(512)).await else {
        panic!("must refuse")
    };
    assert_eq!(file, names[2]);
}

#[tokio::test]
async fn a_last_segment_whose_creation_never_became_durable_is_started_again() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(512)).await.unwrap();
    for index in 1..=20 {
        wal.append_entries(&[entry(index, 1)]).await.unwrap();
    }
    wal.sync().await.unwrap();
    let names = wal.segment_names().await;
    drop(wal);
    let last = names.last().unwrap();
    rewrite(&dir, last, vec![0u8; 300]).await;
    let (wal, recovered) = Wal::open(dir.clone(), options(512)).await.unwrap();
    let last_recovered = recovered.entries.last().unwrap().index;
    assert!(last_recovered < 20 && recovered.entries.len() as u64 == last_recovered);
    // All zeros: cut and started again, without a repair (nothing was stored).
    assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
    assert_eq!(recovered.zero_tail_bytes, 300);
    assert_eq!(
        wal.segment_names().await.len(),
        names.len(),
        "the lost segment is recreated"
    );
    wal.append_entries(&[entry(last_recovered + 1, 2)]).await.unwrap();
    wal.sync().await.unwrap();
    drop(wal);
    let (_, recovered) = Wal::open(dir, options(512)).await.unwrap();
    assert_eq!(recovered.entries.last(), Some(&entry(last_recovered + 1, 2)));
}

#[tokio::test]
async fn io_errors_stop_the_wal_and_reopening_recovers() {
    let dir = MemDir::new();
    let (wal, _) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    wal.append_entries(&entries(1..=2, 1)).await.unwrap();
    wal.sync().await.unwrap();
    dir.short_write_next();
    wal.append_entries(&entries(3..=3, 1)).await.unwrap();
    assert!(
        matches!(wal.sync().await, Err(WalError::Io { .. })),
        "the short write surfaces at sync"
    );
    assert!(matches!(
        wal.append_entries(&entries(4..=4, 1)).await,
        Err(WalError::Failed(_))
    ));
    assert!(matches!(wal.sync().await, Err(WalError::Failed(_))));
    drop(wal);
    dir.crash_with(&mut SmallRng::seed_from_u64(7), &lose_unsynced());

    let (wal, recovered) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    assert_eq!(recovered.entries, entries(1..=2, 1));
    wal.append_entries(&entries(3..=3, 1)).await.unwrap();
    dir.fail_next_syncs(1);
    let Err(WalError::Io { source, .. }) = wal.sync().await else {
        panic!("sync must fail")
    };
    assert_eq!(source.raw_os_error(), Some(crate::io::EIO));
    assert!(
        matches!(wal.sync().await, Err(WalError::Failed(_))),
        "never retry an fsync"
    );
    drop(wal);
    dir.crash_with(&mut SmallRng::seed_from_u64(8), &lose_unsynced());

    // The existing segment's reservation fits; a new segment's does not.
    dir.set_capacity_bytes(Some(4096));
    let (wal, recovered) = Wal::open(dir.clone(), options(4096)).await.unwrap();
    assert_eq!(recovered.entries, entries(1..=2, 1), "entry 3 was never synced");
    let big = WalEntry {
        index: 3,
        term: 1,
        data: Bytes::from(vec![0u8; 5000]),
    };
    wal.append_entries(&[big]).await.unwrap();
    let Err(WalError::Io { source, .. }) = wal.sync().await else {
        panic!("a rotation past capacity must fail")
    };
    assert_eq!(source.raw_os_error(), Some(crate::io::ENOSPC));
}
