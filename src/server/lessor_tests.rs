//! The lessor on a ManualClock: etcd's grant/revoke rules, expiry only on the
//! primary, promotion from checkpointed remaining TTLs, checkpoints, and the
//! lease table surviving a reopen of the backend.

use std::time::Duration;

use futures_util::FutureExt;

use super::*;
use crate::io::{Clock, ManualClock};
use crate::mvcc::{Backend, MemBackend, PutRequest};

const SECOND_NS: u64 = 1_000_000_000;

fn options() -> LessorOptions {
    LessorOptions {
        min_ttl_seconds: 2,
        checkpoint_interval: Duration::from_secs(300),
        revoke_retry: Duration::from_secs(7),
        revokes_per_tick: 100,
    }
}

fn grant(id: i64, ttl_seconds: i64) -> Command {
    Command::Lease(LeaseCommand::Grant {
        id: LeaseId(id),
        ttl_seconds,
    })
}

fn revoke(id: i64) -> Command {
    Command::Write(WriteRequest::RevokeLease(LeaseId(id)))
}

fn commit(backend: &MemBackend, batch: WriteBatch) {
    let committed = backend.apply(batch).now_or_never();
    committed.expect("the memory backend commits at once").unwrap();
}

/// Applies `command` and commits its extra writes to `backend`, as the node does.
fn apply(lessor: &mut Lessor, backend: &MemBackend, command: Command, clock: &ManualClock) -> Applied {
    let applied = lessor.apply(command, clock.monotonic_ns());
    commit(backend, applied.extra.clone());
    applied
}

#[test]
fn min_ttl_follows_etcds_formula() {
    // etcd defaults: 10 ticks of 100 ms -> 15 × 100 ms = 1.5 s -> 2 s.
    assert_eq!(min_ttl_seconds(10, Duration::from_millis(100)), 2);
    // The test flags (--heartbeat-interval=50 --election-timeout=500): 750 ms -> 1 s.
    assert_eq!(min_ttl_seconds(10, Duration::from_millis(50)), 1);
    // (3 × 5) / 2 = 7 ticks in integer arithmetic, as etcd computes it: 7 × 1 s.
    assert_eq!(min_ttl_seconds(5, Duration::from_secs(1)), 7);
    assert_eq!(min_ttl_seconds(20, Duration::from_millis(200)), 6);
}

#[test]
fn grant_and_revoke_follow_etcds_rules() {
    let clock = ManualClock::new(0, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(options());
    let granted = apply(&mut lessor, &backend, grant(5, 1), &clock);
    assert_eq!((granted.request, granted.error), (WriteRequest::Noop, None));
    assert_eq!(
        lessor.time_to_live(LeaseId(5), 0),
        Some((2, 2)),
        "raised to the minimum"
    );
    let again = apply(&mut lessor, &backend, grant(5, 60), &clock);
    assert_eq!(again.error, Some(LeaseError::Exists));
    assert!(again.extra.is_empty());
    let huge = apply(&mut lessor, &backend, grant(6, MAX_LEASE_TTL_SECONDS + 1), &clock);
    assert_eq!(huge.error, Some(LeaseError::TtlTooLarge));
    let largest = apply(&mut lessor, &backend, grant(6, MAX_LEASE_TTL_SECONDS), &clock);
    assert_eq!(largest.error, None);
    assert_eq!(lessor.ids(), vec![LeaseId(5), LeaseId(6)]);

    let revoked = apply(&mut lessor, &backend, revoke(5), &clock);
    assert_eq!(
        (revoked.request, revoked.error),
        (WriteRequest::RevokeLease(LeaseId(5)), None)
    );
    let unknown = apply(&mut lessor, &backend, revoke(5), &clock);
    assert_eq!(
        (unknown.request, unknown.error),
        (WriteRequest::Noop, Some(LeaseError::NotFound))
    );
    assert_eq!(lessor.ids(), vec![LeaseId(6)]);
    assert_eq!(backend.bucket_len(Bucket::Lease), 1);

    let put = WriteRequest::Put(PutRequest::new(Bytes::from_static(b"k"), Bytes::new()));
    let passed = apply(&mut lessor, &backend, Command::Write(put.clone()), &clock);
    assert_eq!((passed.request, passed.error), (put, None));
}

#[test]
fn only_the_primary_expires_leases_and_a_keepalive_restarts_the_ttl() {
    let clock = ManualClock::new(1_000, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(options());
    let _ = apply(&mut lessor, &backend, grant(1, 10), &clock);
    clock.advance(Duration::from_secs(60));
    assert!(
        lessor.take_expired(clock.monotonic_ns()).is_empty(),
        "a follower never expires leases"
    );
    assert_eq!(lessor.time_to_live(LeaseId(1), clock.monotonic_ns()), Some((10, 10)));

    lessor.promote(clock.monotonic_ns());
    clock.advance(Duration::from_secs(9));
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    assert_eq!(lessor.time_to_live(LeaseId(1), clock.monotonic_ns()), Some((1, 10)));
    assert_eq!(lessor.renew(LeaseId(1), clock.monotonic_ns()), Some(10));
    clock.advance(Duration::from_millis(9_999));
    assert!(
        lessor.take_expired(clock.monotonic_ns()).is_empty(),
        "renewed 9.999 s ago"
    );
    assert_eq!(lessor.time_to_live(LeaseId(1), clock.monotonic_ns()), Some((0, 10)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(1)]);
    // Being revoked: not proposed twice, and a keepalive no longer saves it.
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    assert_eq!(lessor.renew(LeaseId(1), clock.monotonic_ns()), None);
    // A revoke that never committed is proposed again after the retry interval.
    clock.advance(Duration::from_secs(7));
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(1)]);
    let _ = apply(&mut lessor, &backend, revoke(1), &clock);
    clock.advance(Duration::from_secs(60));
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    assert_eq!(lessor.renew(LeaseId(1), clock.monotonic_ns()), None);
}

#[test]
fn a_grant_on_the_primary_expires_from_its_apply_time_and_revokes_are_rate_limited() {
    let clock = ManualClock::new(0, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(LessorOptions {
        revokes_per_tick: 3,
        ..options()
    });
    lessor.promote(clock.monotonic_ns());
    for id in 1..=5 {
        let _ = apply(&mut lessor, &backend, grant(id, 5), &clock);
        clock.advance(Duration::from_millis(1));
    }
    clock.advance(Duration::from_millis(4_995));
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(1)]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        lessor.take_expired(clock.monotonic_ns()),
        vec![LeaseId(2), LeaseId(3), LeaseId(4)],
        "at most revokes_per_tick, oldest first"
    );
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(5)]);
}

#[test]
fn a_new_leader_extends_leases_by_their_remaining_ttl() {
    let clock = ManualClock::new(0, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(options());
    let _ = apply(&mut lessor, &backend, grant(1, 30), &clock);
    let _ = apply(&mut lessor, &backend, grant(2, 30), &clock);
    // A checkpoint from the old leader said lease 1 had 12 s left.
    let checkpoint = Command::Lease(LeaseCommand::Checkpoint(vec![LeaseCheckpoint {
        id: LeaseId(1),
        remaining_ttl_seconds: 12,
    }]));
    let applied = apply(&mut lessor, &backend, checkpoint, &clock);
    assert_eq!((applied.request, applied.error), (WriteRequest::Noop, None));

    // Leadership arrives much later: nothing expires early, and lease 1 keeps
    // only what its checkpoint said was left.
    clock.advance(Duration::from_secs(100));
    lessor.promote(clock.monotonic_ns());
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    clock.advance(Duration::from_secs(12));
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(1)]);
    let _ = apply(&mut lessor, &backend, revoke(1), &clock);
    clock.advance(Duration::from_secs(18) - Duration::from_nanos(1));
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(lessor.take_expired(clock.monotonic_ns()), vec![LeaseId(2)]);

    // Losing leadership forgets every expiry; winning it again starts over.
    lessor.demote();
    clock.advance(Duration::from_secs(1000));
    assert!(lessor.take_expired(clock.monotonic_ns()).is_empty());
    lessor.promote(clock.monotonic_ns());
    assert_eq!(lessor.time_to_live(LeaseId(2), clock.monotonic_ns()), Some((30, 30)));
}

#[test]
fn checkpoints_record_remaining_ttls_each_interval_and_keepalives_clear_them() {
    let clock = ManualClock::new(0, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(options());
    let _ = apply(&mut lessor, &backend, grant(1, 1000), &clock);
    let _ = apply(&mut lessor, &backend, grant(2, 100), &clock);
    assert!(lessor.take_checkpoints(clock.monotonic_ns()).is_empty(), "not primary");
    lessor.promote(clock.monotonic_ns());
    assert!(
        lessor.take_checkpoints(clock.monotonic_ns()).is_empty(),
        "interval not over"
    );
    clock.advance(Duration::from_millis(299_500));
    assert!(lessor.take_checkpoints(clock.monotonic_ns()).is_empty());
    clock.advance(Duration::from_millis(500));
    let checkpoints = lessor.take_checkpoints(clock.monotonic_ns());
    // Lease 2 expired at 100 s and is left to the revoke; lease 1 has 700 s left.
    let expected = vec![
        LeaseCheckpoint {
            id: LeaseId(1),
            remaining_ttl_seconds: 700,
        },
        LeaseCheckpoint {
            id: LeaseId(2),
            remaining_ttl_seconds: 1,
        },
    ];
    assert_eq!(checkpoints, expected, "rounded up, never below 1 s");
    assert!(
        lessor.take_checkpoints(clock.monotonic_ns()).is_empty(),
        "once per interval"
    );
    let _ = apply(&mut lessor, &backend, revoke(2), &clock);
    let _ = apply(
        &mut lessor,
        &backend,
        Command::Lease(LeaseCommand::Checkpoint(checkpoints)),
        &clock,
    );

    // A keepalive makes the checkpoint stale: it is cleared with a 0.
    clock.advance(Duration::from_millis(400));
    assert_eq!(lessor.renew(LeaseId(1), clock.monotonic_ns()), Some(1000));
    let cleared = lessor.take_checkpoints(clock.monotonic_ns());
    assert_eq!(
        cleared,
        vec![LeaseCheckpoint {
            id: LeaseId(1),
            remaining_ttl_seconds: 0
        }]
    );
    assert!(lessor.take_checkpoints(clock.monotonic_ns()).is_empty());

    let off = Lessor::new(LessorOptions {
        checkpoint_interval: Duration::ZERO,
        ..options()
    });
    let mut off = off;
    let _ = off.apply(grant(1, 1000), 0);
    off.promote(0);
    assert!(off.take_checkpoints(3_600 * SECOND_NS).is_empty(), "interval 0 = off");
}

#[test]
fn the_lease_table_survives_a_reopen_with_its_checkpoints() {
    let clock = ManualClock::new(0, 0);
    let backend = MemBackend::new();
    let mut lessor = Lessor::new(options());
    for id in [3, -4, i64::MAX] {
        let _ = apply(&mut lessor, &backend, grant(id, 40), &clock);
    }
    let _ = apply(&mut lessor, &backend, revoke(3), &clock);
    let checkpoint = Command::Lease(LeaseCommand::Checkpoint(vec![
        LeaseCheckpoint {
            id: LeaseId(-4),
            remaining_ttl_seconds: 9,
        },
        // Unknown leases are ignored.
        LeaseCheckpoint {
            id: LeaseId(3),
            remaining_ttl_seconds: 9,
        },
    ]));
    let _ = apply(&mut lessor, &backend, checkpoint, &clock);

    let mut reopened = Lessor::open(options(), &backend.read()).unwrap();
    assert_eq!(reopened.ids(), vec![LeaseId(-4), LeaseId(i64::MAX)]);
    assert_eq!(reopened.time_to_live(LeaseId(-4), 0), Some((9, 40)));
    reopened.promote(0);
    assert_eq!(reopened.time_to_live(LeaseId(-4), 0), Some((9, 40)));
    assert_eq!(reopened.time_to_live(LeaseId(i64::MAX), 0), Some((40, 40)));

    let corrupt = MemBackend::new();
    let mut batch = WriteBatch::new();
    batch.put(record_key(LeaseId(1)), Bytes::from_static(b"\x02short"));
    commit(&corrupt, batch);
    assert!(Lessor::open(options(), &corrupt.read()).is_err());
}

#[test]
fn puts_with_leases_are_what_consults_the_lessor() {
    use crate::mvcc::{RequestOp, TxnRequest};
    let plain = PutRequest::new(Bytes::from_static(b"k"), Bytes::new());
    let leased = PutRequest {
        lease: LeaseId(7),
        ..plain.clone()
    };
    assert!(!consults_leases(&WriteRequest::Put(plain.clone())));
    assert!(consults_leases(&WriteRequest::Put(leased.clone())));
    let nested = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(plain)],
        failure: vec![RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Put(leased)],
        })],
    };
    assert!(consults_leases(&WriteRequest::Txn(nested)));
    assert!(!consults_leases(&WriteRequest::RevokeLease(LeaseId(7))));
    assert!(Lessor::changes_lease_set(&revoke(7)));
    assert!(Lessor::changes_lease_set(&grant(7, 1)));
    assert!(!Lessor::changes_lease_set(&Command::Lease(LeaseCommand::Checkpoint(
        vec![]
    ))));
}
