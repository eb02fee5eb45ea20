//! `Log::chores` names exactly the first moment each timed chore acts: one millisecond before
//! it the chore does nothing, at it the chore runs. A chore that needs a change to the log
//! first is not scheduled.

mod common;

use common::*;
use strata_log::{Chores, LogConfig, ManualClock};

#[test]
fn a_new_or_idle_log_has_nothing_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_ms: Some(60_000),
        flush_ms: Some(1_000),
        retention_ms: Some(10_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    // A new log's directory is not fsynced yet: flush.ms after it was opened.
    assert_eq!(log.chores(None).due_ms, Some(T0 + 1_000));
    log.flush().unwrap();
    // Empty: no roll (an empty segment never rolls on time), nothing to flush, one segment.
    assert_eq!(log.chores(None), Chores::default());
}

#[test]
fn the_roll_is_due_segment_ms_after_the_segment_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_ms: Some(60_000),
        retention_ms: None,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    fill(&mut log, 1, 1, 10, T0);
    let due = log
        .chores(None)
        .due_ms
        .expect("a non-empty segment rolls on time");
    assert_eq!(due, T0 + 60_000);
    clock.advance_ms(due - T0 - 1);
    assert!(!log.roll_if_due().unwrap());
    clock.advance_ms(1);
    assert!(log.roll_if_due().unwrap());
    // The roll leaves a sealed segment to fsync: due at once, and only until it is done.
    assert_eq!(log.chores(None).due_ms, Some(due));
    for (end, file) in log.take_unsynced_sealed() {
        file.sync_data().unwrap();
        log.sealed_synced(end, Ok(())).unwrap();
    }
    assert_eq!(
        log.chores(None),
        Chores::default(),
        "the new segment is empty"
    );
}

#[test]
fn the_flush_is_due_flush_ms_after_the_last_one_and_only_with_something_to_flush() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        flush_ms: Some(1_000),
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    log.flush().unwrap();
    assert_eq!(log.chores(None).due_ms, None, "nothing unflushed");
    clock.advance_ms(300);
    fill(&mut log, 1, 1, 10, T0);
    let due = log.chores(None).due_ms.unwrap();
    assert_eq!(
        due,
        T0 + 1_000,
        "flush.ms after the last flush, not after the append"
    );
    clock.advance_ms(due - T0 - 300 - 1);
    assert!(!log.flush_if_due().unwrap());
    clock.advance_ms(1);
    assert!(log.flush_if_due().unwrap());
    assert_eq!(log.chores(None).due_ms, None);
}

#[test]
fn time_retention_is_due_when_the_oldest_segments_newest_record_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        retention_ms: Some(10_000),
        segment_ms: None,
        ..small_config()
    };
    let mut log = open(dir.path(), config, &clock);
    // Records stamped T0.. fill several 4 KiB segments.
    fill(&mut log, 40, 5, 100, T0);
    assert!(log.segments().len() > 2);
    for (end, file) in log.take_unsynced_sealed() {
        file.sync_data().unwrap();
        log.sealed_synced(end, Ok(())).unwrap();
    }
    let oldest_newest = log.segments()[0].max_timestamp;
    let due = log.chores(None).due_ms.unwrap();
    assert_eq!(due, oldest_newest + 10_000 + 1);
    clock.advance_ms(due - T0 - 1);
    assert_eq!(log.enforce_retention().unwrap().deleted_segments, 0);
    clock.advance_ms(1);
    assert!(log.enforce_retention().unwrap().deleted_segments >= 1);
}

#[test]
fn byte_retention_is_due_at_once_and_a_limit_holds_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        retention_bytes: Some(4096),
        segment_ms: None,
        ..small_config()
    };
    let mut log = open(dir.path(), config, &clock);
    fill(&mut log, 40, 5, 100, T0);
    for (end, file) in log.take_unsynced_sealed() {
        file.sync_data().unwrap();
        log.sealed_synced(end, Ok(())).unwrap();
    }
    assert!(log.size_bytes() - log.segments()[0].size_bytes >= 4096);
    // Held back by a limit below the oldest segment's end: not due, but held back.
    let held = log.chores(Some(0));
    assert_eq!(
        held,
        Chores {
            due_ms: None,
            held_back: true
        }
    );
    assert_eq!(
        log.enforce_retention_below(Some(0))
            .unwrap()
            .deleted_segments,
        0
    );
    // Without the limit: due now, and done by one pass.
    assert_eq!(log.chores(None).due_ms, Some(T0));
    assert!(log.enforce_retention().unwrap().deleted_segments >= 1);
    assert_eq!(log.chores(None), Chores::default());
}
