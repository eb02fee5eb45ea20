//! Appends, reads, rolls, indexes, timestamp lookups, retention, flush policy, truncation.

mod common;

use common::*;
use strata_log::batch::{self, BatchIter};
use strata_log::records::decode_all;
use strata_log::{ErrorKind, Log, LogConfig, LogError, ManualClock};

#[test]
fn append_then_read_returns_exactly_the_stamped_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));

    let mut first = batch(3, T0, 10, "a");
    let info = log.append(&mut first, 7).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert_eq!(
        (info.batches, info.records, info.max_timestamp),
        (1, 3, T0 + 2)
    );

    let mut two = batch(2, T0, 10, "b");
    two.extend(batch(4, T0 + 100, 10, "c"));
    let info = log.append(&mut two, 8).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (3, 8, 2)
    );
    assert_eq!(log.log_end_offset(), 9);

    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    let mut expected = first.clone();
    expected.extend_from_slice(&two);
    assert_eq!(&r.bytes[..], &expected[..]);
    assert_eq!((r.log_start_offset, r.log_end_offset), (0, 9));
    let headers: Vec<_> = BatchIter::new(&r.bytes).map(|b| b.unwrap().0).collect();
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 3, 5]
    );
    assert_eq!(headers[0].partition_leader_epoch, 7);
    assert_eq!(headers[2].partition_leader_epoch, 8);
    let records = decode_all(&r.bytes).unwrap();
    assert_eq!(records.len(), 9);
    assert_eq!(records[8].value.as_deref(), Some(&b"c-3......."[..]));
}

#[test]
fn offsets_are_dense_across_many_batches_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    let mut expected = 0i64;
    for i in 0..300usize {
        let n = 1 + i % 7;
        let mut b = batch(n, T0 + i as i64, 20 + i % 50, &format!("x{i}"));
        let info = log.append(&mut b, 1).unwrap();
        assert_eq!(info.base_offset, expected);
        expected += n as i64;
    }
    assert_eq!(log.log_end_offset(), expected);
    let segments = log.segments();
    assert!(segments.len() > 5, "{} segments", segments.len());
    for pair in segments.windows(2) {
        assert_eq!(pair[0].next_offset, pair[1].base_offset);
        assert!(pair[0].sealed);
        assert!(pair[0].size_bytes <= 4096);
    }
    assert!(!segments.last().unwrap().sealed);
    assert_eq!(
        log.size_bytes(),
        segments.iter().map(|s| s.size_bytes).sum::<u64>()
    );
    for max_bytes in [1, 500, 1 << 20] {
        let records = read_all(&log, 0, max_bytes);
        assert_eq!(records.len() as i64, expected);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
        }
    }
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    let batches = fill(&mut log, 3, 10, 5, T0); // offsets 0-9, 10-19, 20-29
    let r = log.read(15, 1, i64::MAX).unwrap();
    assert_eq!(r.bytes, batches[1]);
    let r = log.read(29, 1 << 20, i64::MAX).unwrap();
    assert_eq!(r.bytes, batches[2]);
}

#[test]
fn max_bytes_and_max_offset_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    let batches = fill(&mut log, 5, 4, 30, T0); // 0-3, 4-7, 8-11, 12-15, 16-19
    let len = batches[0].len();

    // Always at least one batch, even when it is larger than max_bytes.
    assert_eq!(log.read(0, 0, i64::MAX).unwrap().bytes, batches[0]);
    // Two and a half batches' worth: two batches.
    let r = log.read(0, len * 5 / 2, i64::MAX).unwrap();
    assert_eq!(r.bytes.len(), 2 * len);
    // Exactly three batches' worth: three.
    assert_eq!(log.read(0, len * 3, i64::MAX).unwrap().bytes.len(), 3 * len);

    // max_offset 9 (exclusive): batches starting at 0, 4, 8 are visible, not 12.
    let r = log.read(0, 1 << 20, 9).unwrap();
    assert_eq!(r.bytes.len(), 3 * len);
    let r = log.read(0, 1 << 20, 8).unwrap();
    assert_eq!(r.bytes.len(), 2 * len);
    // At or above max_offset: nothing.
    assert!(log.read(8, 1 << 20, 8).unwrap().bytes.is_empty());
    assert!(log.read(12, 1 << 20, 8).unwrap().bytes.is_empty());
    // At the log end: nothing.
    let r = log.read(20, 1 << 20, i64::MAX).unwrap();
    assert!(r.bytes.is_empty());
    assert_eq!(r.log_end_offset, 20);
}

#[test]
fn out_of_range_errors_name_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    fill(&mut log, 2, 5, 5, T0);
    for offset in [-1, 11, 1000] {
        let err = log.read(offset, 100, i64::MAX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfRange);
        let msg = err.to_string();
        assert!(
            msg.contains(&offset.to_string()) && msg.contains("0..10"),
            "{msg}"
        );
    }
}

#[test]
fn rolls_on_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    let batches = fill(&mut log, 10, 1, 400, T0);
    let per_segment = 2048 / batches[0].len();
    let segments = log.segments();
    assert_eq!(segments.len(), 10usize.div_ceil(per_segment));
    assert!(segments.iter().all(|s| s.size_bytes <= 2048));
    assert_eq!(segments[1].base_offset, per_segment as i64);
    assert!(segments[1]
        .path
        .ends_with(format!("{:020}.log", per_segment)));
    // A batch larger than segment.bytes still goes in (alone in its segment).
    let big_config = LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    };
    log.update_config(big_config).unwrap();
    let mut big = batch(1, T0, 3000, "big");
    let info = log.append(&mut big, 0).unwrap();
    assert_eq!(log.segments().last().unwrap().base_offset, info.base_offset);
}

#[test]
fn rolls_on_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_ms: Some(60_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    // Empty active segment: never rolled on time.
    clock.advance_ms(120_000);
    assert!(!log.roll_if_due().unwrap());
    fill(&mut log, 2, 1, 10, T0);
    assert_eq!(log.segments().len(), 1);
    clock.advance_ms(59_999);
    assert!(!log.roll_if_due().unwrap());
    clock.advance_ms(1);
    assert!(log.roll_if_due().unwrap());
    assert_eq!(log.segments().len(), 2);
    assert!(!log.roll_if_due().unwrap(), "the new segment is empty");
    // Append rolls by itself when the time has come.
    fill(&mut log, 1, 1, 10, T0);
    clock.advance_ms(60_000);
    fill(&mut log, 1, 1, 10, T0);
    let segments = log.segments();
    assert_eq!(segments.len(), 3);
    assert_eq!(segments[2].base_offset, 3);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 4);
}

#[test]
fn sparse_index_lookups_are_correct_over_thousands_of_batches() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_bytes: 256 * 1024,
        index_interval_bytes: 1000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    let mut bases = Vec::new();
    for i in 0..3000usize {
        let n = 1 + i % 3;
        let mut b = batch(n, T0 + i as i64, 10 + (i * 37) % 200, "s");
        bases.push((log.append(&mut b, 0).unwrap().base_offset, n as i64));
    }
    assert!(log.segments().len() >= 2);
    for &(base, n) in bases.iter().step_by(7) {
        for offset in [base, base + n - 1] {
            let r = log.read(offset, 1, i64::MAX).unwrap();
            let h = batch::validate(&r.bytes).unwrap();
            assert_eq!(h.base_offset, base, "read at {offset}");
        }
    }
}

#[test]
fn offset_for_timestamp_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    // Batch i holds 5 records with timestamps T0 + 100*i + 0..5, offsets 5i..5i+5.
    for i in 0..200i64 {
        let mut b = batch(5, T0 + 100 * i, 30, "t");
        log.append(&mut b, 0).unwrap();
    }
    assert!(log.segments().len() > 3);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, T0)));
    assert_eq!(log.offset_for_timestamp(T0).unwrap(), Some((0, T0)));
    for i in [1i64, 57, 120, 199] {
        let ts = T0 + 100 * i;
        assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some((5 * i, ts)));
        assert_eq!(
            log.offset_for_timestamp(ts + 3).unwrap(),
            Some((5 * i + 3, ts + 3))
        );
        // Between batches: the first record of the next batch.
        assert_eq!(
            log.offset_for_timestamp(ts - 50).unwrap(),
            Some((5 * i, ts))
        );
    }
    assert_eq!(
        log.offset_for_timestamp(T0 + 100 * 199 + 4).unwrap(),
        Some((999, T0 + 100 * 199 + 4))
    );
    assert_eq!(log.offset_for_timestamp(T0 + 100 * 199 + 5).unwrap(), None);
}

#[test]
fn retention_by_bytes_deletes_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 60, 2, 200, T0);
    let before = log.segments();
    assert!(before.len() > 4);
    let limit = 3 * 4096;
    log.update_config(LogConfig {
        retention_bytes: Some(limit),
        ..small_config()
    })
    .unwrap();
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments > 0);
    let after = log.segments();
    assert_eq!(before.len() - after.len(), report.deleted_segments);
    assert_eq!(report.log_start_offset, after[0].base_offset);
    assert_eq!(log.log_start_offset(), after[0].base_offset);
    // Kafka's rule: the log stays at least retention.bytes, and deleting one more would not.
    assert!(log.size_bytes() >= limit);
    assert!(log.size_bytes() - after[0].size_bytes < limit);
    let deleted: u64 = before[..report.deleted_segments]
        .iter()
        .map(|s| s.size_bytes)
        .sum();
    assert_eq!(report.deleted_bytes, deleted);
    assert!(!before[0].path.exists());
    // Reads below the start fail; from the start they work.
    let err = log.read(0, 100, i64::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    let records = read_all(&log, log.log_start_offset(), 1000);
    assert_eq!(
        records.len() as i64,
        log.log_end_offset() - log.log_start_offset()
    );
    // A second pass deletes nothing more.
    assert_eq!(log.enforce_retention().unwrap().deleted_segments, 0);
}

#[test]
fn retention_below_a_limit_keeps_segments_not_yet_tiered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 60, 2, 200, T0 - 10_000);
    let segments = log.segments();
    assert!(segments.len() > 4);
    log.update_config(LogConfig {
        retention_ms: Some(1000),
        ..small_config()
    })
    .unwrap();
    // Only what lies wholly below the limit (say, the remote tier's end) may go.
    let limit = segments[2].next_offset;
    let report = log.enforce_retention_below(Some(limit)).unwrap();
    assert_eq!(report.deleted_segments, 3);
    assert_eq!(log.log_start_offset(), limit);
    // A limit inside a segment keeps that segment.
    let inside = log.segments()[0].next_offset - 1;
    assert_eq!(
        log.enforce_retention_below(Some(inside))
            .unwrap()
            .deleted_segments,
        0
    );
    // Without a limit, retention goes as far as it would.
    assert!(log.enforce_retention().unwrap().deleted_segments > 0);
}

#[test]
fn retention_by_time_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        retention_ms: Some(1000),
        ..small_config()
    };
    let mut log = open(dir.path(), config, &clock);
    // Old records, then new ones.
    fill(&mut log, 30, 2, 200, T0 - 10_000);
    let old_end = log.log_end_offset();
    let mut roll_marker = batch(1, T0, 4000, "new");
    log.append(&mut roll_marker, 0).unwrap();
    fill(&mut log, 10, 2, 200, T0);
    let report = log.enforce_retention().unwrap();
    assert!(report.deleted_segments > 0);
    assert_eq!(log.log_start_offset(), old_end);
    assert!(matches!(
        log.read(0, 10, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Everything expires: the active segment stays, so the log end is untouched.
    clock.advance_ms(1_000_000);
    let end = log.log_end_offset();
    log.enforce_retention().unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.log_end_offset(), end);
    assert!(log.segments()[0].size_bytes > 0);
}

#[test]
fn rejected_batches_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        max_message_bytes: 2000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    fill(&mut log, 3, 2, 10, T0);
    let snapshot = |log: &Log| {
        (
            log.log_end_offset(),
            log.size_bytes(),
            log.read(0, 1 << 20, i64::MAX).unwrap().bytes,
        )
    };
    let before = snapshot(&log);

    let mut bad_crc = batch(2, T0, 10, "x");
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let err = log.append(&mut bad_crc, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);

    // A good batch followed by a bad one: neither is written.
    let mut mixed = batch(2, T0, 10, "ok");
    mixed.extend(&bad_crc);
    assert!(log.append(&mut mixed, 0).is_err());

    let mut too_big = batch(1, T0, 3000, "big");
    let err = log.append(&mut too_big, 0).unwrap_err();
    assert!(
        matches!(err, LogError::BatchTooLarge { max: 2000, .. }),
        "{err}"
    );

    let mut garbage =
        b"definitely not a record batch, just some bytes......................".to_vec();
    assert_eq!(
        log.append(&mut garbage, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut torn = batch(2, T0, 10, "torn");
    torn.truncate(torn.len() - 3);
    assert!(log.append(&mut torn, 0).is_err());
    assert!(log.append(&mut [], 0).is_err());

    assert_eq!(snapshot(&log), before);
    let info = log.append(&mut batch(1, T0, 10, "after"), 0).unwrap();
    assert_eq!(info.base_offset, before.0);
}

#[test]
fn flush_policies() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        flush_ms: Some(1000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    fill(&mut log, 1, 1, 10, T0);
    assert!(!log.flush_if_due().unwrap());
    clock.advance_ms(1000);
    assert!(log.flush_if_due().unwrap());
    clock.advance_ms(5000);
    assert!(!log.flush_if_due().unwrap(), "nothing new to flush");
    log.flush().unwrap();

    let mut config = log.config().clone();
    config.flush_messages = Some(3);
    log.update_config(config).unwrap();
    fill(&mut log, 1, 3, 10, T0); // flushed by flush.messages
    clock.advance_ms(5000);
    assert!(!log.flush_if_due().unwrap());
    assert!(log
        .update_config(LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        })
        .is_err());
    assert_eq!(log.config().flush_messages, Some(3));
}

#[test]
fn truncate_to_drops_everything_at_and_after_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    let batches = fill(&mut log, 100, 3, 100, T0); // batch i: offsets 3i..3i+3
    let segments = log.segments().len();
    assert!(segments > 3);

    // Inside the active segment, at a batch boundary.
    log.truncate_to(297).unwrap();
    assert_eq!(log.log_end_offset(), 297);
    // Mid-batch: the whole batch holding the offset goes.
    log.truncate_to(250).unwrap();
    assert_eq!(log.log_end_offset(), 249);
    // Far back, across segments.
    log.truncate_to(30).unwrap();
    assert_eq!(log.log_end_offset(), 30);
    assert!(log.segments().len() < segments);
    let last = log.segments().last().unwrap().clone();
    assert!(!last.sealed);
    assert_eq!(last.next_offset, 30);
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(&r.bytes[..], &batches[..10].concat()[..r.bytes.len()]);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 30);
    assert_eq!(log.offset_for_timestamp(T0 + 95).unwrap(), None);
    assert_eq!(
        log.offset_for_timestamp(T0 + 90).unwrap(),
        Some((27, T0 + 90))
    );

    // Appends continue from the new end, and survive a reopen.
    let info = log.append(&mut batch(2, T0 + 5000, 10, "z"), 9).unwrap();
    assert_eq!(info.base_offset, 30);
    log.close().unwrap();
    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), 32);
    assert_eq!(read_all(&log, 0, 300).len(), 32);
    assert_eq!(
        log.offset_for_timestamp(T0 + 5000).unwrap(),
        Some((30, T0 + 5000))
    );

    let mut log = log;
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segments().len(), 1);
    log.append(&mut batch(1, T0, 10, "again"), 1).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let path = dir.path().join("topic-0");
    let mut log = open(&path, small_config(), &clock);
    fill(&mut log, 50, 2, 100, T0);
    assert_eq!(log.dir(), path.as_path());
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_full_index_rolls_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        index_interval_bytes: 1,
        segment_index_bytes: 24, // 3 offset entries, 2 time entries
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, &clock);
    fill(&mut log, 20, 1, 10, T0);
    let segments = log.segments();
    assert!(segments.len() >= 5, "{} segments", segments.len());
    for s in &segments {
        assert!(s.next_offset - s.base_offset <= 4, "{s:?}");
    }
    assert_eq!(read_all(&log, 0, 1).len(), 20);
    assert_eq!(
        log.offset_for_timestamp(T0 + 130).unwrap(),
        Some((13, T0 + 130))
    );
}

#[test]
fn log_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}
