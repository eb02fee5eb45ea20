//! Follower appends (`append_replica`), the divergence truncation a follower does after a
//! leader change, and `headers_from`.

mod common;

use bytes::Bytes;
use common::*;
use strata_log::batch::{self, BatchIter};
use strata_log::{BatchBuilder, Compression, ErrorKind, Log, LogConfig, LogError, ManualClock};

/// Batches as a leader wrote them: `(records, epoch)` each, stamped from `base`.
fn leader_batches(base: i64, specs: &[(usize, i32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = base;
    for (i, &(n, epoch)) in specs.iter().enumerate() {
        let mut b = batch(n, T0 + i as i64, 30, &format!("l{base}-{i}"));
        next = batch::stamp_all(&mut b, next, epoch);
        out.extend(b);
    }
    out
}

fn all_bytes(log: &Log) -> Bytes {
    log.read(log.log_start_offset(), usize::MAX >> 1, i64::MAX)
        .unwrap()
        .bytes
}

#[test]
fn replica_appends_keep_offsets_and_epochs_byte_for_byte() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = ManualClock::new(T0);
    let mut leader = open(ld.path(), small_config(), &clock);
    let mut follower = open(fd.path(), small_config(), &clock);
    // The leader writes under epochs 1, 1, 3, 3, 4, ... and crosses segment boundaries.
    for i in 0..100 {
        let epoch = [1, 1, 3, 3, 4][i % 5] + 4 * (i as i32 / 20);
        leader
            .append(&mut batch(1 + i % 4, T0, 60, "x"), epoch)
            .unwrap();
    }
    // The follower fetches in chunks of a few batches.
    let mut next = 0;
    while next < leader.log_end_offset() {
        let r = leader.read(next, 700, i64::MAX).unwrap();
        let info = follower.append_replica(&r.bytes).unwrap();
        assert_eq!(info.base_offset, next);
        next = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert!(follower.segments().len() > 3);
    let headers: Vec<_> = BatchIter::new(&all_bytes(&follower))
        .map(|b| b.unwrap().0.partition_leader_epoch)
        .collect();
    assert_eq!(&headers[..6], &[1, 1, 3, 3, 4, 1]);

    // Survives a crash like any append.
    drop(follower);
    let follower = open(fd.path(), small_config(), &clock);
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
}

#[test]
fn gaps_overlaps_and_bad_crcs_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    log.append_replica(&leader_batches(0, &[(3, 1), (2, 1)]))
        .unwrap();
    let before = (all_bytes(&log), log.epoch_entries(), log.size_bytes());
    let unchanged = |log: &Log| {
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(
            (all_bytes(log), log.epoch_entries(), log.size_bytes()),
            before
        );
    };

    let expect_invalid = |err: LogError, words: &[&str]| {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let msg = err.to_string();
        for w in words {
            assert!(msg.contains(w), "{msg:?} lacks {w:?}");
        }
    };
    // A gap before the first batch.
    let err = log
        .append_replica(&leader_batches(6, &[(2, 2)]))
        .unwrap_err();
    expect_invalid(err, &["6..8", "expects one starting at 5", "gap"]);
    unchanged(&log);
    // An overlap with the log.
    let err = log
        .append_replica(&leader_batches(4, &[(2, 2)]))
        .unwrap_err();
    expect_invalid(err, &["4..6", "at 5", "overlap"]);
    unchanged(&log);
    // A good first batch followed by a gap between batches: nothing of either is written.
    let mut two = leader_batches(5, &[(2, 2)]);
    two.extend(leader_batches(8, &[(1, 2)]));
    let err = log.append_replica(&two).unwrap_err();
    expect_invalid(err, &["batch 1", "8..9", "at 7", "gap"]);
    unchanged(&log);
    // Overlapping batches inside one request.
    let mut two = leader_batches(5, &[(2, 2)]);
    two.extend(leader_batches(6, &[(1, 2)]));
    let err = log.append_replica(&two).unwrap_err();
    expect_invalid(err, &["batch 1", "6..7", "at 7", "overlap"]);
    unchanged(&log);
    // A flipped byte inside the CRC's range.
    let mut bad = leader_batches(5, &[(2, 2)]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let err = log.append_replica(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");
    unchanged(&log);
    // Empty and truncated requests.
    assert!(log.append_replica(&[]).is_err());
    let good = leader_batches(5, &[(2, 2)]);
    assert!(log.append_replica(&good[..good.len() - 1]).is_err());
    unchanged(&log);

    // The right batch goes in, epoch 2 recorded at offset 5.
    log.append_replica(&good).unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 7)));
}

#[test]
fn a_follower_with_a_divergent_tail_truncates_to_the_leaders_epoch_end() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let clock = ManualClock::new(T0);
    // A leads epoch 1 and writes 0..10; B replicates them, then B alone gets 10..14 (it was
    // the leader of epoch 1 whose tail was never replicated; A won the election).
    let mut a = open(dirs[0].path(), small_config(), &clock);
    let mut b = open(dirs[1].path(), small_config(), &clock);
    for n in [4, 3, 3] {
        a.append(&mut batch(n, T0, 20, "common"), 1).unwrap();
    }
    b.append_replica(&all_bytes(&a)).unwrap();
    b.append_replica(&leader_batches(10, &[(2, 1), (2, 1)]))
        .unwrap();
    assert_eq!((a.log_end_offset(), b.log_end_offset()), (10, 14));

    // A becomes leader of epoch 2 and writes 10..12.
    a.assign_epoch_start(2).unwrap();
    a.append(&mut batch(2, T0 + 5, 20, "epoch2"), 2).unwrap();
    assert_eq!(a.log_end_offset(), 12);

    // B, now a follower, asks where its latest epoch ends on A and truncates there.
    let latest = b.latest_epoch().unwrap();
    assert_eq!(latest, 1);
    let (epoch, end) = a.end_offset_for_epoch(latest).unwrap();
    assert_eq!((epoch, end), (1, 10));
    b.truncate_to(end.min(b.log_end_offset())).unwrap();
    assert_eq!(b.log_end_offset(), 10);
    let r = a.read(b.log_end_offset(), 1 << 20, i64::MAX).unwrap();
    b.append_replica(&r.bytes).unwrap();

    assert_eq!(all_bytes(&b), all_bytes(&a));
    assert_eq!(b.epoch_entries(), a.epoch_entries());
    assert_eq!(b.end_offset_for_epoch(1), Some((1, 10)));
    assert_eq!(b.end_offset_for_epoch(2), Some((2, 12)));
}

#[test]
fn headers_from_covers_the_batch_holding_the_offset_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    let mut expected = Vec::new();
    for i in 0..50i64 {
        let mut b = BatchBuilder::new(Compression::None).producer(7, 1, i as i32 * 3);
        for _ in 0..3 {
            b.append(T0 + i, None, Some(&[b'v'; 100]), &[]);
        }
        let mut b = b.build().unwrap().to_vec();
        log.append(&mut b, 2).unwrap();
        expected.push(batch::validate(&b).unwrap());
    }
    let segments = log.segments();
    assert!(segments.len() > 3);
    assert_eq!(
        log.active_segment_base(),
        segments.last().unwrap().base_offset
    );

    assert_eq!(log.headers_from(0).unwrap(), expected);
    // Offset 31 is inside the batch 30..33.
    let from_31 = log.headers_from(31).unwrap();
    assert_eq!(from_31, expected[10..]);
    assert_eq!((from_31[0].base_offset, from_31[0].base_sequence), (30, 30));
    assert_eq!(from_31[0].producer_id, 7);
    // From a segment boundary, and from the last record.
    let second = segments[1].base_offset;
    assert_eq!(log.headers_from(second).unwrap()[0].base_offset, second);
    let end = log.log_end_offset();
    assert_eq!(log.headers_from(end - 1).unwrap(), expected[49..]);
    assert!(log.headers_from(end).unwrap().is_empty());
    assert_eq!(
        log.headers_from(end + 1).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

/// A follower whose log ends below its leader's log start drops everything and restarts empty
/// there; it then takes the leader's batches at the leader's offsets, and survives a crash.
#[test]
fn reset_to_restarts_the_log_empty_at_an_offset() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = ManualClock::new(T0);
    let mut follower = open(fd.path(), small_config(), &clock);
    for _ in 0..30 {
        follower.append(&mut batch(3, T0, 60, "old"), 1).unwrap();
    }
    assert!(follower.segments().len() > 1);
    follower.reset_to(5_000).unwrap();
    assert_eq!(follower.log_start_offset(), 5_000);
    assert_eq!(follower.log_end_offset(), 5_000);
    assert_eq!(follower.segments().len(), 1);
    assert!(follower.epoch_entries().is_empty());
    // The leader's batches from 5,000 on.
    let mut leader = open(ld.path(), small_config(), &clock);
    leader.reset_to(5_000).unwrap();
    leader.append(&mut batch(4, T0, 60, "new"), 7).unwrap();
    let r = leader.read(5_000, 1 << 20, i64::MAX).unwrap();
    follower.append_replica(&r.bytes).unwrap();
    assert_eq!(follower.log_end_offset(), 5_004);
    assert_eq!(follower.end_offset_for_epoch(7), Some((7, 5_004)));
    drop(follower);
    let follower = open(fd.path(), small_config(), &clock);
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (5_000, 5_004)
    );
    assert_eq!(all_bytes(&follower), r.bytes);
    let mut f = follower;
    let err = f.reset_to(-1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
}
