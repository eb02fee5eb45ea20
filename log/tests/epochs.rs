//! The leader-epoch cache: answers, assignment, truncation, retention, and the checkpoint file
//! across clean reopens, crashes, torn tails and deleted or garbage checkpoints.

mod common;

use std::fs::OpenOptions;
use std::path::Path;

use common::*;
use strata_log::epochs::CHECKPOINT_FILE;
use strata_log::{EpochEntry, Log, LogConfig, ManualClock};

fn e(epoch: i32, start_offset: i64) -> EpochEntry {
    EpochEntry {
        epoch,
        start_offset,
    }
}

/// Epochs 0, 0, 2, 5 with 3, 2, 4, 1 records: epoch 0 at 0, 2 at 5, 5 at 9; log end 10.
fn leader_log(dir: &Path, clock: &std::sync::Arc<ManualClock>) -> Log {
    let mut log = open(dir, LogConfig::default(), clock);
    for (i, (n, epoch)) in [(3, 0), (2, 0), (4, 2), (1, 5)].into_iter().enumerate() {
        let mut b = batch(n, T0 + i as i64, 10, "e");
        log.append(&mut b, epoch).unwrap();
    }
    assert_eq!(log.log_end_offset(), 10);
    log
}

fn assert_answers(log: &Log) {
    assert_eq!(log.epoch_entries(), vec![e(0, 0), e(2, 5), e(5, 9)]);
    assert_eq!(log.latest_epoch(), Some(5));
    let answers: Vec<_> = [0, 1, 2, 3, 5, 9, -1]
        .iter()
        .map(|&epoch| log.end_offset_for_epoch(epoch))
        .collect();
    assert_eq!(
        answers,
        vec![
            Some((0, 5)),
            Some((0, 5)),
            Some((2, 9)),
            Some((2, 9)),
            Some((5, 10)),
            Some((5, 10)),
            None
        ]
    );
}

fn checkpoint(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap()
}

#[test]
fn leader_appends_fill_the_cache_and_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = leader_log(dir.path(), &clock);
    assert_answers(&log);
    assert_eq!(checkpoint(dir.path()), "0\n3\n0 0\n2 5\n5 9\n");

    // An append under an older epoch (a stale caller) does not move the cache.
    log.append(&mut batch(1, T0, 10, "old"), 2).unwrap();
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 11)));

    log.assign_epoch_start(7).unwrap();
    assert_eq!(log.latest_epoch(), Some(7));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 11)));
    assert_eq!(log.end_offset_for_epoch(6), Some((5, 11)));
    assert_eq!(log.end_offset_for_epoch(7), Some((7, 11)));
    log.assign_epoch_start(6).unwrap(); // older than the latest: no-op
    log.assign_epoch_start(7).unwrap();
    assert_eq!(log.epoch_entries().last(), Some(&e(7, 11)));
    assert_eq!(log.epoch_entries().len(), 4);
    // The new leader's first batch carries epoch 7: no new entry.
    log.append(&mut batch(2, T0, 10, "new"), 7).unwrap();
    assert_eq!(log.end_offset_for_epoch(7), Some((7, 13)));
    assert_eq!(log.epoch_entries().len(), 4);
    assert_eq!(checkpoint(dir.path()), "0\n4\n0 0\n2 5\n5 9\n7 11\n");
}

#[test]
fn truncation_drops_later_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = leader_log(dir.path(), &clock);
    log.assign_epoch_start(7).unwrap();
    // Truncating at the log end is a no-op for the log but forgets the empty epoch 7.
    log.truncate_to(10).unwrap();
    assert_eq!(log.latest_epoch(), Some(5));
    log.truncate_to(9).unwrap();
    assert_eq!(log.epoch_entries(), vec![e(0, 0), e(2, 5)]);
    assert_eq!(log.end_offset_for_epoch(9), Some((2, 9)));
    // Inside a batch: the batch goes whole (the log end becomes 5), so does epoch 2.
    log.truncate_to(6).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.epoch_entries(), vec![e(0, 0)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((0, 5)));
    assert_eq!(checkpoint(dir.path()), "0\n1\n0 0\n");
    log.truncate_to(0).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(5), None);
}

#[test]
fn reopen_clean_and_after_a_crash_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    leader_log(dir.path(), &clock).close().unwrap();
    let log = open(dir.path(), LogConfig::default(), &clock);
    assert_answers(&log);
    drop(log); // crash
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    assert_answers(&log);

    // A torn tail: epoch 9's only batch is cut by the crash, so its entry goes too.
    log.append(&mut batch(4, T0, 50, "torn"), 9).unwrap();
    assert_eq!(log.latest_epoch(), Some(9));
    drop(log);
    let path = dir.path().join(format!("{:020}.log", 0));
    let size = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size - 30).unwrap();
    drop(f);
    let log = open(dir.path(), LogConfig::default(), &clock);
    assert_eq!(log.log_end_offset(), 10);
    assert_answers(&log);
    assert_eq!(checkpoint(dir.path()), "0\n3\n0 0\n2 5\n5 9\n");
}

#[test]
fn a_missing_garbage_or_stale_checkpoint_is_rebuilt_from_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    leader_log(dir.path(), &clock).close().unwrap();
    let cp = dir.path().join(CHECKPOINT_FILE);
    for garbage in [
        None,
        Some("not a checkpoint"),
        Some("0\n3\n0 0\n5 9\n2 5\n"), // not monotonic
        Some("0\n2\n0 0\n2 5\n"),      // behind the last batch (epoch 5)
        Some("7\n0\n"),                // a version this build does not read
    ] {
        match garbage {
            None => std::fs::remove_file(&cp).unwrap(),
            Some(text) => std::fs::write(&cp, text).unwrap(),
        }
        let log = open(dir.path(), LogConfig::default(), &clock);
        assert_answers(&log);
        assert_eq!(
            checkpoint(dir.path()),
            "0\n3\n0 0\n2 5\n5 9\n",
            "{garbage:?}"
        );
        log.close().unwrap();
    }
    // A new, empty log writes an empty checkpoint.
    let empty = tempfile::tempdir().unwrap();
    let log = open(empty.path(), LogConfig::default(), &clock);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(checkpoint(empty.path()), "0\n0\n");
}

#[test]
fn retention_keeps_the_entry_covering_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    let mut starts = Vec::new();
    for epoch in [1, 2, 4] {
        starts.push(log.log_end_offset());
        for i in 0..40 {
            log.append(&mut batch(3, T0 + i, 60, "r"), epoch).unwrap();
        }
    }
    let (s2, s4) = (starts[1], starts[2]);
    assert_eq!(log.epoch_entries(), vec![e(1, 0), e(2, s2), e(4, s4)]);

    // Delete the first segment: the new start is still inside epoch 1.
    let segments = log.segments();
    assert!(segments[1].base_offset < s2);
    let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let mut config = small_config();
    config.retention_bytes = Some(total - segments[0].size_bytes);
    log.update_config(config.clone()).unwrap();
    let start = log.enforce_retention().unwrap().log_start_offset;
    assert_eq!(start, segments[1].base_offset);
    assert_eq!(log.epoch_entries(), vec![e(1, start), e(2, s2), e(4, s4)]);

    // Delete past the start of epoch 2: epoch 1 ends before the new start and goes.
    let segments = log.segments();
    let k = segments.iter().position(|s| s.base_offset > s2).unwrap();
    assert!(segments[k].base_offset < s4);
    config.retention_bytes = Some(segments[k..].iter().map(|s| s.size_bytes).sum());
    log.update_config(config.clone()).unwrap();
    let start = log.enforce_retention().unwrap().log_start_offset;
    assert_eq!(start, segments[k].base_offset);
    let expected = vec![e(2, start), e(4, s4)];
    assert_eq!(log.epoch_entries(), expected);
    assert_eq!(log.end_offset_for_epoch(1), None);
    assert_eq!(log.end_offset_for_epoch(3), Some((2, s4)));
    drop(log);
    assert_eq!(open(dir.path(), config, &clock).epoch_entries(), expected);
}
