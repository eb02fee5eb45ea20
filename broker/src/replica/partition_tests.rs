//! Tests of the partition shell's own rules, on a real log in a temporary directory: a resync
//! never re-applies an older state, and an append of a leadership that has changed is refused.

use std::sync::Arc;

use strata_log::{BatchBuilder, Compression, Log, LogConfig, ManualClock};

use super::Partition;
use crate::metadata::PartitionState;

const ME: i32 = 1;
const INCARNATION: i64 = 7;

fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        replicas: vec![1, 2, 3],
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        leader_incarnation: if leader == ME { INCARNATION } else { 99 },
        emptied: Vec::new(),
        reassigning: None,
    }
}

fn partition(dir: &std::path::Path, state: PartitionState, revision: i64) -> Arc<Partition> {
    let clock = ManualClock::new(0);
    let log = Log::open(dir, LogConfig::default(), clock.clone()).unwrap();
    Partition::new(
        Arc::from("t"),
        0,
        (ME, INCARNATION),
        log,
        (state, revision),
        clock,
        Arc::default(),
    )
}

/// `n` records as a leader at `epoch` would have stored them (offsets from 0).
fn leader_batch(epoch: i32, n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), ManualClock::new(0)).unwrap();
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.append(0, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    let mut bytes = b.build().unwrap().to_vec();
    log.append(&mut bytes, epoch).unwrap();
    bytes
}

/// The window: the leader writes ISR [1, 2] (revision 12) while a metadata resync that read
/// revision 11 ([1, 2, 3]) is on its way; applied after the write, the resync must not bring the
/// old ISR back (the removed member would count again, or be electable, without the records).
#[test]
fn a_resync_older_than_the_applied_state_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), state(ME, 3, &[1, 2, 3]), 10);
    assert!(p.is_leader());
    assert!(p.set_state(state(ME, 3, &[1, 2]), 12));
    assert!(
        !p.set_state(state(ME, 3, &[1, 2, 3]), 11),
        "older revision applied"
    );
    assert_eq!(p.state().isr, vec![1, 2]);
    assert_eq!(p.state_revision(), 12);
    // The same revision again (a resync of what was written) is harmless.
    assert!(p.set_state(state(ME, 3, &[1, 2]), 12));
    assert_eq!(p.state().isr, vec![1, 2]);
}

/// The window: a fetcher of leader 2 at epoch 3 has a response in hand when the leadership
/// moves (leader 3, epoch 4). Its append must be refused under the log's lock, not land in a
/// log that now follows someone else.
#[test]
fn a_fetcher_of_a_changed_leadership_cannot_append() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), state(2, 3, &[1, 2, 3]), 10);
    let batch = leader_batch(3, 5);
    assert!(p.set_state(state(3, 4, &[1, 3]), 11));
    let err = p.append_replica(2, 3, &batch, 5).unwrap_err();
    assert!(err.to_string().contains("leader"), "{err}");
    assert_eq!(p.log_end_offset(), 0, "nothing appended");
    assert_eq!(p.high_watermark(), 0, "the stale high watermark not taken");
    // The current leadership's fetcher appends.
    p.append_replica(3, 4, &leader_batch(4, 5), 5).unwrap();
    assert_eq!(p.log_end_offset(), 5);
    assert_eq!(p.high_watermark(), 5);
}

/// A replica that becomes leader stops following: its old fetcher's appends are refused too.
#[test]
fn a_fetcher_cannot_append_once_this_replica_leads() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), state(2, 3, &[1, 2, 3]), 10);
    assert!(p.set_state(state(ME, 4, &[1, 3]), 11));
    assert!(p.is_leader());
    assert!(p.append_replica(2, 3, &leader_batch(3, 2), 2).is_err());
    assert_eq!(p.log_end_offset(), 0);
}

fn one_record(value: &str) -> bytes::Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.append(0, None, Some(value.as_bytes()), &[]);
    b.build().unwrap()
}

/// A long poll that wakes on every new batch reads only what came since its last read, and
/// answers every batch once, in order, as one contiguous run from the offset asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_reads_each_new_batch_once_and_answers_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), state(ME, 0, &[ME]), 1);
    let size = one_record("v0").len();
    p.append(one_record("v0"), None, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let writer = {
        let p = p.clone();
        tokio::spawn(async move {
            for i in 1..6 {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                p.append(
                    one_record(&format!("v{i}")),
                    None,
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap();
            }
        })
    };
    let got = p
        .fetch(0, std::time::Duration::from_secs(20), 6 * size, 1024 * 1024)
        .await
        .unwrap();
    writer.await.unwrap();
    let records = strata_log::records::decode_all(&got.records).unwrap();
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["v0", "v1", "v2", "v3", "v4", "v5"]);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<i64>>());
    assert_eq!(got.records.len(), 6 * size, "each batch once");
    assert_eq!(got.high_watermark, 6);
}

/// The window (issue 17 review): this replica followed leader 2 at epoch 3 and became leader
/// at epoch 4 before its fetch stream heard of it; as leader it appends. The stream's next
/// round to broker 2 must not report that log end as its fetch offset (broker 2, not yet
/// knowing epoch 4, would count records it never wrote as replicated). Reading the log end
/// directly, as the first stream did, reports it.
#[tokio::test]
async fn a_follower_fetch_offset_is_refused_once_the_role_changed() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path(), state(2, 3, &[1, 2, 3]), 10);
    p.append_replica(2, 3, &leader_batch(3, 2), 2).unwrap();
    assert_eq!(p.follower_fetch_offset(2, 3), Some(2));
    assert!(p.set_state(state(ME, 4, &[ME]), 11));
    p.append(one_record("mine"), None, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(p.log_end_offset(), 3, "what the first stream reported");
    assert_eq!(p.follower_fetch_offset(2, 3), None);
    // Following another leader is refused the same way.
    assert!(p.set_state(state(3, 5, &[1, 3]), 12));
    assert_eq!(p.follower_fetch_offset(2, 3), None);
    assert_eq!(p.follower_fetch_offset(3, 5), Some(3));
}
