//! Proves the in-memory disk behaves as its fault model says: written vs durable,
//! sync captures, crash outcomes, directory entries and each injectable fault.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;

fn lose_everything() -> CrashOptions {
    CrashOptions {
        keep_weight: 0,
        drop_weight: 1,
        tear_weight: 0,
        bit_flip_probability: 0.0,
        new_length_probability: 0.0,
    }
}

fn keep_everything() -> CrashOptions {
    CrashOptions {
        keep_weight: 1,
        drop_weight: 0,
        tear_weight: 0,
        bit_flip_probability: 0.0,
        new_length_probability: 1.0,
    }
}

#[tokio::test]
async fn reads_see_pending_data_and_only_synced_data_survives() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    dir.sync_dir().await.unwrap();
    assert_eq!(log.append(Bytes::from_static(b"hello ")).await.unwrap(), 0);
    log.sync().await.unwrap();
    assert_eq!(log.append(Bytes::from_static(b"world")).await.unwrap(), 6);
    assert_eq!(&log.read_at(0, 100).await.unwrap()[..], b"hello world");
    assert_eq!(dir.durable_bytes("a").unwrap(), b"hello ");

    dir.crash_with(&mut SmallRng::seed_from_u64(1), &lose_everything());
    assert!(
        log.append(Bytes::from_static(b"x")).await.is_err(),
        "stale handle must fail"
    );
    let log = dir.open_log("a").await.unwrap();
    assert_eq!(&log.read_at(0, 100).await.unwrap()[..], b"hello ");
    assert_eq!(dir.stats().crashes, 1);
}

#[tokio::test]
async fn sync_makes_durable_what_was_pending_when_it_was_called() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    log.append(Bytes::from(vec![1u8; 100])).await.unwrap();
    dir.stall_syncs();
    let mut sync = pin!(log.sync());
    let mut context = Context::from_waker(Waker::noop());
    assert!(sync.as_mut().poll(&mut context).is_pending(), "a stalled sync waits");
    // Written after the sync began: not covered by it.
    log.append(Bytes::from(vec![2u8; 100])).await.unwrap();
    dir.resume_syncs();
    sync.await.unwrap();
    assert_eq!(dir.durable_bytes("a").unwrap(), vec![1u8; 100]);
    log.sync().await.unwrap();
    let mut expected = vec![1u8; 100];
    expected.extend_from_slice(&[2u8; 100]);
    assert_eq!(dir.durable_bytes("a").unwrap(), expected);
}

#[tokio::test]
async fn an_older_sync_finishing_last_does_not_roll_back_a_newer_one() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    log.append(Bytes::from(vec![1u8; 10])).await.unwrap();
    dir.stall_syncs();
    let mut context = Context::from_waker(Waker::noop());
    let mut older = pin!(log.sync());
    assert!(older.as_mut().poll(&mut context).is_pending());
    log.truncate(0).await.unwrap();
    log.append(Bytes::from(vec![3u8; 5])).await.unwrap();
    let mut newer = pin!(log.sync());
    assert!(newer.as_mut().poll(&mut context).is_pending());
    dir.resume_syncs();
    newer.await.unwrap();
    older.await.unwrap();
    assert_eq!(dir.durable_bytes("a").unwrap(), vec![3u8; 5]);
}

#[tokio::test]
async fn a_crash_while_a_sync_is_in_flight_makes_nothing_durable() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    dir.sync_dir().await.unwrap();
    log.append(Bytes::from(vec![7u8; 10])).await.unwrap();
    dir.stall_syncs();
    let mut sync = pin!(log.sync());
    let mut context = Context::from_waker(Waker::noop());
    assert!(sync.as_mut().poll(&mut context).is_pending());
    dir.crash_with(&mut SmallRng::seed_from_u64(2), &lose_everything());
    dir.resume_syncs();
    assert!(
        sync.await.is_err(),
        "a sync interrupted by a crash must not report success"
    );
    assert_eq!(dir.durable_bytes("a").unwrap(), Vec::<u8>::new());
}

#[tokio::test]
async fn sync_latency_sleeps_on_the_runtime_timer() {
    let dir = MemDir::new();
    dir.set_sync_latency(Duration::from_millis(1));
    let log = dir.open_log("a").await.unwrap();
    log.append(Bytes::from_static(b"x")).await.unwrap();
    log.sync().await.unwrap();
    assert_eq!(dir.durable_bytes("a").unwrap(), b"x");
}

#[tokio::test]
async fn directory_entries_need_sync_dir_to_survive() {
    let dir = MemDir::new();
    let log = dir.open_log("kept").await.unwrap();
    log.append(Bytes::from_static(b"k")).await.unwrap();
    log.sync().await.unwrap();
    dir.sync_dir().await.unwrap();

    // Synced data, but the entry never was: gone after a crash.
    let orphan = dir.open_log("orphan").await.unwrap();
    orphan.append(Bytes::from_static(b"o")).await.unwrap();
    orphan.sync().await.unwrap();
    dir.rename("kept", "renamed").await.unwrap();
    assert_eq!(dir.list().unwrap(), vec!["orphan".to_string(), "renamed".to_string()]);

    dir.crash_with(&mut SmallRng::seed_from_u64(3), &keep_everything());
    assert_eq!(dir.list().unwrap(), vec!["kept".to_string()]);
    assert_eq!(dir.file_bytes("kept").unwrap(), b"k");

    dir.remove("kept").await.unwrap();
    assert!(dir.list().unwrap().is_empty());
    dir.crash_with(&mut SmallRng::seed_from_u64(4), &keep_everything());
    assert_eq!(
        dir.list().unwrap(),
        vec!["kept".to_string()],
        "an unsynced remove is reverted"
    );
    dir.remove("kept").await.unwrap();
    dir.sync_dir().await.unwrap();
    dir.crash_with(&mut SmallRng::seed_from_u64(5), &keep_everything());
    assert!(dir.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_fsync_loses_the_pages_it_covered_even_if_retried() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    dir.sync_dir().await.unwrap();
    log.append(Bytes::from_static(b"lost")).await.unwrap();
    dir.fail_next_syncs(1);
    let error = log.sync().await.unwrap_err();
    assert_eq!(error.raw_os_error(), Some(EIO));
    // The retry "succeeds", as on Linux, but the data never got there.
    log.sync().await.unwrap();
    assert_eq!(
        &log.read_at(0, 10).await.unwrap()[..],
        b"lost",
        "the page cache still has it"
    );
    assert_eq!(
        dir.durable_bytes("a").unwrap(),
        vec![0u8; 4],
        "only the size was persisted"
    );
    assert_eq!(dir.stats().failed_syncs, 1);
}

#[tokio::test]
async fn capacity_short_writes_latent_errors_and_bit_rot() {
    let dir = MemDir::new();
    let log = dir.open_log("a").await.unwrap();
    dir.set_capacity_bytes(Some(10_000));
    log.preallocate(8_000).await.unwrap();
    let error = log.append(Bytes::from(vec![0u8; 11_000])).await.unwrap_err();
    assert_eq!(error.raw_os_error(), Some(ENOSPC));
    assert_eq!(log.len(), 0, "a write refused for space stores nothing");
    let other = dir.open_log("b").await.unwrap();
    assert_eq!(other.preallocate(4_000).await.unwrap_err().raw_os_error(), Some(ENOSPC));
    dir.set_capacity_bytes(None);

    dir.short_write_next();
    let error = log.append(Bytes::from(vec![9u8; 10])).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::WriteZero);
    assert_eq!(log.len(), 5);

    log.append(Bytes::from(vec![1u8; 5000])).await.unwrap();
    log.sync().await.unwrap();
    dir.inject_read_error("a", 4100).unwrap();
    assert_eq!(log.read_at(0, 100).await.unwrap().len(), 100, "other blocks still read");
    assert_eq!(log.read_at(4000, 200).await.unwrap_err().raw_os_error(), Some(EIO));
    log.truncate(4096).await.unwrap();
    log.append(Bytes::from(vec![2u8; 10])).await.unwrap();
    assert_eq!(
        log.read_at(4096, 10).await.unwrap().len(),
        10,
        "rewriting a block clears its error"
    );

    dir.corrupt_durable("a", 3, 0).unwrap();
    assert_eq!(log.read_at(3, 1).await.unwrap()[0], 9 ^ 1);
    assert_eq!(dir.durable_bytes("a").unwrap()[3], 9 ^ 1);
}

#[tokio::test]
async fn crash_outcomes_are_old_new_or_sector_torn() {
    for seed in 0..200u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let outcome = async {
            let dir = MemDir::new();
            let log = dir.open_log("a").await.unwrap();
            dir.sync_dir().await.unwrap();
            log.append(Bytes::from(vec![0xAAu8; 3 * BLOCK_BYTES])).await.unwrap();
            log.sync().await.unwrap();
            log.truncate(BLOCK_BYTES as u64 + 1000).await.unwrap();
            log.append(Bytes::from(vec![0xBBu8; 3 * BLOCK_BYTES])).await.unwrap();
            let written = dir.file_bytes("a").unwrap();
            let old = dir.durable_bytes("a").unwrap();
            let options = CrashOptions {
                bit_flip_probability: 0.0,
                ..CrashOptions::default()
            };
            dir.crash_with(&mut rng, &options);
            (old, written, dir.file_bytes("a").unwrap())
        }
        .await;
        let (old, written, after) = outcome;
        assert!(
            after.len() == old.len() || after.len() == written.len(),
            "seed {seed}: length {}",
            after.len()
        );
        for (sector_index, sector) in after.chunks(SECTOR_BYTES).enumerate() {
            let start = sector_index * SECTOR_BYTES;
            let end = start + sector.len();
            let old_sector: Vec<u8> = (start..end).map(|at| old.get(at).copied().unwrap_or(0)).collect();
            let new_sector: Vec<u8> = (start..end).map(|at| written.get(at).copied().unwrap_or(0)).collect();
            assert!(
                sector == old_sector.as_slice() || sector == new_sector.as_slice(),
                "seed {seed}: sector at {start} is neither old nor new"
            );
        }
    }
}

#[tokio::test]
async fn pages_are_read_back_and_bounded() {
    let dir = MemDir::new();
    let pages = dir.open_pages("db", 512).await.unwrap();
    assert_eq!(pages.page_count(), 0);
    pages
        .write_pages(vec![
            (PageId(2), Bytes::from(vec![2u8; 512])),
            (PageId(0), Bytes::from(vec![1u8; 512])),
        ])
        .await
        .unwrap();
    assert_eq!(pages.page_count(), 3);
    assert_eq!(&pages.read_page(PageId(1)).unwrap()[..], &[0u8; 512][..]);
    assert_eq!(&pages.read_page(PageId(2)).unwrap()[..], &[2u8; 512][..]);
    assert_eq!(
        pages.read_page(PageId(3)).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    pages.sync().await.unwrap();
    assert_eq!(dir.stats().page_writes, 2);
}

#[tokio::test]
#[should_panic(expected = "page 0 has 3 bytes, the page size is 512")]
async fn a_page_of_the_wrong_size_is_a_bug() {
    let dir = MemDir::new();
    let pages = dir.open_pages("db", 512).await.unwrap();
    let _ = pages.write_pages(vec![(PageId(0), Bytes::from_static(b"abc"))]).await;
}

#[tokio::test]
async fn bit_flips_at_a_crash_never_touch_bytes_an_earlier_sync_made_durable() {
    for seed in 0..100u64 {
        let dir = MemDir::new();
        let log = dir.open_log("a").await.unwrap();
        dir.sync_dir().await.unwrap();
        // Synced bytes share a block with the unsynced append after them.
        log.append(Bytes::from(vec![0x11u8; 1000])).await.unwrap();
        log.sync().await.unwrap();
        log.append(Bytes::from(vec![0x22u8; 1000])).await.unwrap();
        let options = CrashOptions {
            tear_weight: 0,
            drop_weight: 0,
            bit_flip_probability: 1.0,
            ..CrashOptions::default()
        };
        dir.crash_with(&mut SmallRng::seed_from_u64(seed), &options);
        let after = dir.file_bytes("a").unwrap();
        assert_eq!(&after[..1000], &[0x11u8; 1000][..], "seed {seed}: synced bytes changed");
        if after.len() == 2000 {
            let flipped = after[1000..].iter().filter(|&&byte| byte != 0x22).count();
            assert_eq!(flipped, 1, "seed {seed}: exactly one byte of the new write rots");
        }
    }
}
