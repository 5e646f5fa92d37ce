//! Proves the production devices (pwrite/fdatasync fallback and io_uring) store
//! and read back data on the real file system, and that concurrent syncs share
//! fdatasyncs (group commit) without losing any append.

// Real file system and OS threads: never part of the simulation build.
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::sync::Arc;

use braid::io::{
    uring, DeviceChoice, DevicePreference, Dir, FileDir, LogDevice, OsDir, PageId, PageStore, SyncCounters,
};
use braid::wal::{Wal, WalEntry, WalOptions};
use bytes::Bytes;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("braid-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(path: &std::path::Path, preference: DevicePreference) -> (OsDir, DeviceChoice) {
    OsDir::open(path, preference).expect("open data directory")
}

const PREFERENCES: [DevicePreference; 2] = [DevicePreference::Auto, DevicePreference::File];

#[test]
fn io_uring_is_chosen_exactly_when_it_works_here() {
    let temp = TempDir::new("choice");
    let (_, auto) = open(&temp.0, DevicePreference::Auto);
    let (_, file) = open(&temp.0, DevicePreference::File);
    eprintln!("device chosen on this machine: {auto}");
    match uring::probe() {
        Ok(()) => assert_eq!(auto, DeviceChoice::IoUring),
        Err(error) => assert_eq!(
            auto,
            DeviceChoice::File {
                reason: format!("io_uring unavailable: {error}")
            }
        ),
    }
    assert_eq!(
        file,
        DeviceChoice::File {
            reason: "requested".to_string()
        }
    );
}

#[test]
fn wal_logs_keep_zeros_ahead_of_their_end_until_cut() {
    for preference in PREFERENCES {
        let temp = TempDir::new(&format!("zeros-{preference:?}"));
        runtime().block_on(async {
            let (dir, choice) = open(&temp.0, preference);
            let path = temp.0.join("z.log");
            let log = dir.open_log("z.log").await.unwrap();
            log.append(Bytes::from_static(b"before")).await.unwrap();
            log.zero_ahead(8 << 20);
            log.append(Bytes::from_static(b" after")).await.unwrap();
            log.sync().await.unwrap();
            assert_eq!(log.len(), 12, "{choice}");
            let on_disk = std::fs::read(&path).unwrap();
            assert!(on_disk.len() >= 1 << 20, "{choice}: {} bytes on disk", on_disk.len());
            assert_eq!(&on_disk[..12], b"before after");
            assert!(on_disk[12..].iter().all(|&byte| byte == 0), "{choice}");
            assert_eq!(
                &log.read_at(0, 4096).await.unwrap()[..],
                b"before after",
                "{choice}: reads stop at len()"
            );

            // Appends inside the zeroed range overwrite them in place.
            let big = Bytes::from(vec![7u8; 1 << 20]);
            assert_eq!(log.append(big).await.unwrap(), 12);
            log.sync().await.unwrap();
            let on_disk = std::fs::read(&path).unwrap();
            assert!(on_disk.len() >= 12 + (1 << 20), "{choice}");
            assert!(on_disk[12..12 + (1 << 20)].iter().all(|&byte| byte == 7), "{choice}");

            log.truncate(log.len()).await.unwrap();
            log.sync().await.unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                12 + (1 << 20),
                "{choice}: cut to len()"
            );
        });
    }
}

#[test]
fn logs_append_read_truncate_and_survive_reopen() {
    for preference in PREFERENCES {
        let temp = TempDir::new(&format!("log-{preference:?}"));
        runtime().block_on(async {
            let (dir, choice) = open(&temp.0, preference);
            let log = dir.open_log("a.log").await.unwrap();
            assert_eq!(log.len(), 0);
            assert_eq!(log.append(Bytes::from_static(b"hello ")).await.unwrap(), 0);
            assert_eq!(log.append(Bytes::from_static(b"world")).await.unwrap(), 6);
            log.preallocate(1 << 20).await.unwrap();
            assert_eq!(log.len(), 11, "{choice}: preallocation keeps the length");
            if choice == DeviceChoice::IoUring {
                let allocated =
                    std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(temp.0.join("a.log")).unwrap());
                assert!(
                    allocated * 512 >= 1 << 20,
                    "fallocate(KEEP_SIZE) reserved only {allocated} sectors"
                );
            }
            log.sync().await.unwrap();
            assert_eq!(&log.read_at(0, 100).await.unwrap()[..], b"hello world", "{choice}");
            assert_eq!(&log.read_at(6, 3).await.unwrap()[..], b"wor");
            log.truncate(5).await.unwrap();
            log.sync().await.unwrap();
            assert_eq!(log.len(), 5);
            drop(log);
            assert_eq!(dir.list().unwrap(), vec!["a.log".to_string()]);

            let log = dir.open_log("a.log").await.unwrap();
            assert_eq!(&log.read_at(0, 100).await.unwrap()[..], b"hello", "{choice}");
            assert_eq!(std::fs::metadata(temp.0.join("a.log")).unwrap().len(), 5);
            dir.rename("a.log", "b.log").await.unwrap();
            dir.remove("b.log").await.unwrap();
            dir.sync_dir().await.unwrap();
            assert!(dir.list().unwrap().is_empty());
        });
    }
}

#[test]
fn concurrent_syncs_share_fdatasyncs_and_lose_nothing() {
    const TASKS: usize = 64;
    const ROUNDS: usize = 8;
    for preference in PREFERENCES {
        let temp = TempDir::new(&format!("group-{preference:?}"));
        runtime().block_on(async {
            let (dir, choice) = open(&temp.0, preference);
            let log = Arc::new(dir.open_log("group.log").await.unwrap());
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut offsets = Vec::new();
                        for round in 0..ROUNDS {
                            let record = format!("[{task:02}:{round}]");
                            offsets.push((log.append(Bytes::from(record)).await.unwrap(), task, round));
                            log.sync().await.unwrap();
                        }
                        offsets
                    })
                })
                .collect();
            let mut written = Vec::new();
            for task in tasks {
                written.extend(task.await.unwrap());
            }
            let counters: Arc<SyncCounters> = dir.counters();
            eprintln!(
                "{choice}: {} sync requests, {} fdatasyncs",
                counters.sync_requests(),
                counters.fsyncs()
            );
            assert_eq!(counters.sync_requests(), (TASKS * ROUNDS) as u64);
            assert!(
                counters.fsyncs() < counters.sync_requests(),
                "{choice}: no group commit"
            );
            drop(log);

            let bytes = std::fs::read(temp.0.join("group.log")).unwrap();
            assert_eq!(bytes.len(), TASKS * ROUNDS * 6);
            for (offset, task, round) in written {
                let expected = format!("[{task:02}:{round}]");
                assert_eq!(
                    &bytes[offset as usize..offset as usize + 6],
                    expected.as_bytes(),
                    "{choice}"
                );
            }
        });
    }
}

#[test]
fn wal_with_concurrent_appenders_recovers_every_entry() {
    const TASKS: u64 = 64;
    const ROUNDS: u64 = 10;
    for preference in PREFERENCES {
        let temp = TempDir::new(&format!("wal-{preference:?}"));
        runtime().block_on(async {
            let (dir, choice) = open(&temp.0, preference);
            let counters = dir.counters();
            let options = WalOptions {
                segment_size_bytes: 16 << 10,
            };
            let (wal, _) = Wal::open(dir, options.clone()).await.unwrap();
            let wal = Arc::new(wal);
            // Indexes are handed out in append order, as a Raft leader would.
            let next_index = Arc::new(tokio::sync::Mutex::new(1u64));
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let (wal, next_index) = (wal.clone(), next_index.clone());
                    tokio::spawn(async move {
                        for round in 0..ROUNDS {
                            let mut index = next_index.lock().await;
                            let data = Bytes::from(format!("task {task} round {round}"));
                            wal.append_entries(&[WalEntry {
                                index: *index,
                                term: 1,
                                data,
                            }])
                            .await
                            .unwrap();
                            *index += 1;
                            drop(index);
                            wal.sync().await.unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let segments = wal.segment_names().await.len();
            eprintln!(
                "{choice}: {} WAL syncs -> {} device sync requests, {} fdatasyncs, {segments} segments",
                TASKS * ROUNDS,
                counters.sync_requests(),
                counters.fsyncs()
            );
            assert!(segments > 1, "16 KiB segments should rotate");
            assert!(counters.fsyncs() < TASKS * ROUNDS, "{choice}: no group commit");
            drop(wal);

            let (dir, _) = open(&temp.0, preference);
            let (_, recovered) = Wal::open(dir, options).await.unwrap();
            assert!(recovered.repairs.is_empty(), "{:?}", recovered.repairs);
            // Sealed segments were cut to their last record (open refuses a
            // sealed segment with a zero tail); the last one keeps the zeros
            // written ahead of its end, which open cuts without a repair.
            assert!(recovered.zero_tail_bytes > 0, "{choice}: no zeros written ahead");
            let indexes: Vec<u64> = recovered.entries.iter().map(|entry| entry.index).collect();
            assert_eq!(indexes, (1..=TASKS * ROUNDS).collect::<Vec<_>>(), "{choice}");
            let mut payloads: Vec<String> = recovered
                .entries
                .iter()
                .map(|entry| String::from_utf8(entry.data.to_vec()).unwrap())
                .collect();
            payloads.sort();
            let mut expected: Vec<String> = (0..TASKS)
                .flat_map(|task| (0..ROUNDS).map(move |round| format!("task {task} round {round}")))
                .collect();
            expected.sort();
            assert_eq!(payloads, expected);
        });
    }
}

#[test]
fn page_files_read_through_the_map_and_grow() {
    let temp = TempDir::new("pages");
    runtime().block_on(async {
        let dir = FileDir::open(&temp.0).unwrap();
        let pages = dir.open_pages("db", 4096).await.unwrap();
        assert_eq!(pages.page_count(), 0);
        assert!(pages.read_page(PageId(0)).is_err());
        pages
            .write_pages(vec![(PageId(0), Bytes::from(vec![1u8; 4096]))])
            .await
            .unwrap();
        assert_eq!(&pages.read_page(PageId(0)).unwrap()[..], &[1u8; 4096][..]);
        // Growing past the mapped length remaps; rewriting shows through the map.
        pages
            .write_pages(vec![
                (PageId(5), Bytes::from(vec![5u8; 4096])),
                (PageId(0), Bytes::from(vec![9u8; 4096])),
            ])
            .await
            .unwrap();
        pages.sync().await.unwrap();
        assert_eq!(pages.page_count(), 6);
        assert_eq!(&pages.read_page(PageId(5)).unwrap()[..], &[5u8; 4096][..]);
        assert_eq!(&pages.read_page(PageId(3)).unwrap()[..], &[0u8; 4096][..]);
        assert_eq!(&pages.read_page(PageId(0)).unwrap()[..], &[9u8; 4096][..]);
        drop(pages);
        let pages = dir.open_pages("db", 4096).await.unwrap();
        assert_eq!(pages.page_count(), 6);
        assert_eq!(&pages.read_page(PageId(5)).unwrap()[..], &[5u8; 4096][..]);
    });
}
