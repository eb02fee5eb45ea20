//! Housekeeping visits, on real partitions (real logs in a temporary directory) and an injected
//! clock: a partition is visited when it changes or when a chore of its is due, and never
//! otherwise; a change made while it is being visited is not lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_log::{BatchBuilder, Compression, Log, LogConfig, ManualClock};

use super::{visit, Housekeeper, Inbox};
use crate::metadata::PartitionState;
use crate::replica::Partition;

const ME: i32 = 1;
const T0: i64 = 1_700_000_000_000;
const SEGMENT_MS: i64 = 60_000;
const EXPIRY_MS: i64 = 3_600_000;
const RECHECK_MS: i64 = 30_000;

fn leader_alone() -> PartitionState {
    PartitionState {
        replicas: vec![ME],
        leader: ME,
        leader_epoch: 1,
        isr: vec![ME],
        leader_incarnation: 7,
        emptied: Vec::new(),
        reassigning: None,
    }
}

fn partition(
    dir: &std::path::Path,
    index: u32,
    clock: &Arc<ManualClock>,
    inbox: &Arc<Inbox>,
) -> Arc<Partition> {
    let config = LogConfig {
        segment_ms: Some(SEGMENT_MS),
        retention_ms: None,
        ..LogConfig::default()
    };
    let log = Log::open(dir.join(index.to_string()), config, clock.clone()).unwrap();
    Partition::new(
        Arc::from("t"),
        index,
        (ME, 7),
        log,
        (leader_alone(), 1),
        clock.clone(),
        inbox.clone(),
    )
}

fn records(n: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.append(T0, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    b.build().unwrap()
}

async fn append(p: &Arc<Partition>) {
    p.append(records(3), None, Duration::from_secs(1))
        .await
        .unwrap();
}

fn visit_now(keeper: &mut Housekeeper, inbox: &Inbox, clock: &ManualClock) -> usize {
    let now = clock.now_ms();
    let parts = keeper.to_visit(inbox, now);
    let n = parts.len();
    keeper.visited(visit(parts, now, EXPIRY_MS, RECHECK_MS, 1_000));
    n
}

use strata_log::Clock;

#[tokio::test]
async fn idle_partitions_are_not_visited_and_a_due_roll_is() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let inbox = Arc::new(Inbox::default());
    let parts: Vec<_> = (0..1000)
        .map(|i| partition(dir.path(), i, &clock, &inbox))
        .collect();
    let mut keeper = Housekeeper::default();
    // Opened partitions are visited once; empty logs have nothing due.
    assert_eq!(visit_now(&mut keeper, &inbox, &clock), 1000);
    assert_eq!(keeper.scheduled(), 0);
    for _ in 0..10 {
        clock.advance_ms(1_000);
        assert_eq!(
            visit_now(&mut keeper, &inbox, &clock),
            0,
            "idle partitions were visited"
        );
    }
    // One partition takes records: visited at the next tick, then scheduled for its roll.
    let p = &parts[7];
    append(p).await;
    append(p).await; // touched twice, queued once
    assert_eq!(visit_now(&mut keeper, &inbox, &clock), 1);
    let created = T0 + 10_000;
    assert_eq!(keeper.due_of(p), Some(created + SEGMENT_MS));
    clock.advance_ms(SEGMENT_MS - 1);
    assert_eq!(
        visit_now(&mut keeper, &inbox, &clock),
        0,
        "visited before its roll was due"
    );
    assert_eq!(p.with_log(|l| Ok(l.segments().len())).unwrap(), 1);
    clock.advance_ms(1);
    assert_eq!(visit_now(&mut keeper, &inbox, &clock), 1);
    assert_eq!(
        p.with_log(|l| Ok(l.segments().len())).unwrap(),
        2,
        "not rolled when due"
    );
    // The new segment is empty and the sealed one was fsynced: nothing due any more.
    assert_eq!(keeper.due_of(p), None);
    assert_eq!(p.with_log(|l| Ok(l.recovery_point())).unwrap(), 6);
}

#[tokio::test]
async fn a_change_during_a_visit_queues_the_partition_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let inbox = Arc::new(Inbox::default());
    let p = partition(dir.path(), 0, &clock, &inbox);
    let mut keeper = Housekeeper::default();
    let now = clock.now_ms();
    let taken = keeper.to_visit(&inbox, now);
    assert_eq!(taken.len(), 1);
    // The visit starts (it clears the partition's flag first)...
    let outcome = visit(taken, now, EXPIRY_MS, RECHECK_MS, 1_000);
    // ...and an append lands after it read the log: the partition must be queued again.
    append(&p).await;
    keeper.visited(outcome);
    assert_eq!(keeper.due_of(&p), None, "the visit saw an empty log");
    assert_eq!(
        visit_now(&mut keeper, &inbox, &clock),
        1,
        "the append was lost"
    );
    assert_eq!(keeper.due_of(&p), Some(T0 + SEGMENT_MS));
}

#[tokio::test]
async fn producer_ids_are_forgotten_when_due_and_deleted_partitions_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let inbox = Arc::new(Inbox::default());
    let p = partition(dir.path(), 0, &clock, &inbox);
    let mut b = BatchBuilder::new(Compression::None).producer(42, 0, 0);
    b.append(T0, None, Some(b"v"), &[]);
    p.append(b.build().unwrap(), None, Duration::from_secs(1))
        .await
        .unwrap();
    let mut keeper = Housekeeper::default();
    visit_now(&mut keeper, &inbox, &clock);
    // The roll (segment.ms) comes before the producer's expiry.
    assert_eq!(keeper.due_of(&p), Some(T0 + SEGMENT_MS));
    clock.advance_ms(SEGMENT_MS);
    visit_now(&mut keeper, &inbox, &clock);
    assert_eq!(keeper.due_of(&p), Some(T0 + EXPIRY_MS + 1));
    // Gone before it is due: dropped, not kept for an hour.
    drop(p);
    keeper.prune();
    assert_eq!(keeper.scheduled(), 0);
}
