//! Helpers shared by the production devices: a dedicated thread for blocking
//! file-system calls, and group commit for fsync.
//!
//! Production-only: the simulation never builds these (it uses `mem`), which is
//! why `std::thread` is allowed here (DESIGN.md invariant 7).

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use tokio::sync::{oneshot, watch};

type Job = Box<dyn FnOnce() + Send>;

/// One OS thread that runs blocking calls in submission order. The thread ends
/// when the worker is dropped.
pub(crate) struct BlockingWorker {
    jobs: mpsc::Sender<Job>,
}

impl BlockingWorker {
    pub(crate) fn spawn(name: &str) -> io::Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        thread::Builder::new().name(name.to_string()).spawn(move || {
            while let Ok(job) = receiver.recv() {
                job();
            }
        })?;
        Ok(BlockingWorker { jobs })
    }

    /// Runs `job` on the worker thread and waits for its result without blocking the runtime.
    pub(crate) async fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (reply, result) = oneshot::channel();
        let sent = self.jobs.send(Box::new(move || {
            let _ = reply.send(job());
        }));
        assert!(sent.is_ok(), "blocking worker thread is gone (a job panicked)");
        result
            .await
            .expect("blocking worker thread dropped a job (it panicked)")
    }
}

/// How many syncs callers asked for, and how many fsyncs the device issued for
/// them. Group commit shows as `fsyncs < sync_requests`.
#[derive(Debug, Default)]
pub struct SyncCounters {
    sync_requests: AtomicU64,
    fsyncs: AtomicU64,
}

impl SyncCounters {
    pub fn sync_requests(&self) -> u64 {
        self.sync_requests.load(Ordering::Relaxed)
    }

    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self) {
        self.sync_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_fsync(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Group commit: one fsync serves every caller that arrived before it started.
///
/// A caller needs an fsync that *starts after* it called (its appends may have
/// landed after a running fsync began). Fsyncs are numbered; a caller arriving
/// while fsync `n` runs waits for `n + 1`, and whoever finds no fsync running
/// starts the next one on behalf of everyone waiting.
pub(crate) struct GroupSync {
    state: Mutex<GroupState>,
    /// The number of the last completed fsync.
    completed: watch::Sender<u64>,
}

struct GroupState {
    /// The number of the last fsync started.
    // Invariant: completed <= started (a cancelled round never completes).
    started: u64,
    in_flight: bool,
}

impl GroupSync {
    pub(crate) fn new() -> Self {
        GroupSync {
            state: Mutex::new(GroupState {
                started: 0,
                in_flight: false,
            }),
            completed: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once an fsync that started after this call has completed.
    /// `fsync` runs only if this caller ends up leading a round; it must end the
    /// process itself if the fsync fails (fail-stop).
    pub(crate) async fn sync<Fsync, Done>(&self, counters: &SyncCounters, fsync: Fsync)
    where
        Fsync: FnOnce() -> Done,
        Done: Future<Output = ()>,
    {
        counters.count_request();
        let mut completed = self.completed.subscribe();
        let target = self.lock().started + 1;
        let mut fsync = Some(fsync);
        loop {
            let lead = {
                let mut state = self.lock();
                if *completed.borrow_and_update() >= target {
                    return;
                }
                if state.in_flight {
                    false
                } else {
                    state.in_flight = true;
                    state.started += 1;
                    true
                }
            };
            if lead {
                let run = fsync
                    .take()
                    .expect("a caller leads at most one round: its round reaches its target");
                // If this future is dropped mid-fsync, let a waiter lead instead of hanging.
                let mut guard = RoundGuard {
                    group: self,
                    finished: false,
                };
                run().await;
                counters.count_fsync();
                guard.finish();
            } else {
                // Sent under the lock, and `borrow_and_update` ran under it too: no lost wake-up.
                let _ = completed.changed().await;
            }
        }
    }
}

struct RoundGuard<'a> {
    group: &'a GroupSync,
    finished: bool,
}

impl RoundGuard<'_> {
    fn finish(&mut self) {
        self.finished = true;
        let mut state = self.group.lock();
        state.in_flight = false;
        self.group.completed.send_replace(state.started);
    }
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.group.lock();
            // The abandoned round never completes; wake the waiters so one of
            // them starts the next round, which covers them all.
            state.in_flight = false;
            let completed = *self.group.completed.borrow();
            self.group.completed.send_replace(completed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn callers_arriving_during_an_fsync_share_the_next_one() {
        {
            let group = Arc::new(GroupSync::new());
            let counters = Arc::new(SyncCounters::default());
            let (release, released) = watch::channel(false);
            // The leader's fsync waits for `release`; meanwhile 10 callers queue up.
            let leader = {
                let (group, counters, mut released) = (group.clone(), counters.clone(), released.clone());
                tokio::spawn(async move {
                    group
                        .sync(&counters, || async move {
                            let _ = released.wait_for(|go| *go).await;
                        })
                        .await
                })
            };
            tokio::task::yield_now().await;
            let followers: Vec<_> = (0..10)
                .map(|_| {
                    let (group, counters) = (group.clone(), counters.clone());
                    tokio::spawn(async move { group.sync(&counters, || async {}).await })
                })
                .collect();
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert_eq!(counters.fsyncs(), 0);
            release.send_replace(true);
            leader.await.unwrap();
            for follower in followers {
                follower.await.unwrap();
            }
            assert_eq!(counters.sync_requests(), 11);
            assert_eq!(
                counters.fsyncs(),
                2,
                "one round for the leader, one shared by the ten that came during it"
            );
            drop(released);
        }
    }
}
