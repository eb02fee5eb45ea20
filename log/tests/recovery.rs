//! Reopening after clean closes and crashes, torn tails, damaged indexes and corrupt batches.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use strata_log::batch::{self, BatchIter};
use strata_log::log::CLEAN_SHUTDOWN_FILE;
use strata_log::{ErrorKind, LogConfig, ManualClock};

fn file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn clean_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 80, 3, 60, T0);
    let (end, segments, all) = (
        log.log_end_offset(),
        log.segments(),
        read_all(&log, 0, 1 << 20),
    );
    let active = segments.last().unwrap().base_offset;
    log.close().unwrap();
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    // Indexes are trimmed to whole used entries on close.
    assert_eq!(len(&file(dir.path(), active, "index")) % 8, 0);
    assert!(len(&file(dir.path(), active, "index")) < 1024);
    assert_eq!(len(&file(dir.path(), active, "timeindex")) % 12, 0);

    let mut log = open(dir.path(), small_config(), &clock);
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.segments(), segments);
    assert_eq!(read_all(&log, 0, 1 << 20), all);
    assert_eq!(
        log.offset_for_timestamp(T0 + 790).unwrap(),
        Some((237, T0 + 790))
    );
    let info = log.append(&mut batch(2, T0, 10, "more"), 1).unwrap();
    assert_eq!(info.base_offset, end);
    assert_eq!(read_all(&log, 0, 1 << 20).len() as i64, end + 2);
}

#[test]
fn crash_without_close_keeps_every_written_batch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 70, 2, 80, T0);
    let (end, all) = (log.log_end_offset(), read_all(&log, 0, 1 << 20));
    drop(log); // no close: indexes stay preallocated, no marker
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());

    let mut log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0, 1 << 20), all);
    assert_eq!(read_all(&log, 0, 1), all);
    log.append(&mut batch(1, T0, 10, "next"), 0).unwrap();
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn torn_last_batch_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), LogConfig::default(), &clock);
    let batches = fill(&mut log, 10, 4, 50, T0);
    drop(log);
    let path = file(dir.path(), 0, "log");
    let full = len(&path);
    // Cut in the middle of the last batch.
    let cut = full - batches[9].len() as u64 / 2;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let mut log = open(dir.path(), LogConfig::default(), &clock);
    assert_eq!(log.log_end_offset(), 36);
    assert_eq!(len(&path), full - batches[9].len() as u64);
    assert_eq!(read_all(&log, 0, 1 << 20).len(), 36);
    let info = log.append(&mut batch(2, T0, 10, "after"), 0).unwrap();
    assert_eq!(info.base_offset, 36);
    let r = log.read(36, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch::validate(&r.bytes).unwrap().base_offset, 36);
}

#[test]
fn garbage_after_the_last_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 30, 2, 100, T0);
    let end = log.log_end_offset();
    let active = log.segments().last().unwrap().base_offset;
    let size = log.segments().last().unwrap().size_bytes;
    drop(log);
    let path = file(dir.path(), active, "log");
    for garbage in [
        vec![0u8; 100],
        vec![0xAB; 5],
        batch(3, T0, 10, "x")[..70].to_vec(),
    ] {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&garbage).unwrap();
        drop(f);
        let log = open(dir.path(), small_config(), &clock);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(len(&path), size);
        drop(log);
    }
    // A whole valid batch with the wrong base offset is not this log's either.
    let mut stray = batch(1, T0, 10, "stray");
    batch::stamp_all(&mut stray, end + 100, 0);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&stray).unwrap();
    drop(f);
    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0, 1 << 20).len() as i64, end);
}

#[test]
fn crash_right_after_a_roll_revalidates_the_previous_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = LogConfig {
        segment_ms: Some(1000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone(), &clock);
    let batches = fill(&mut log, 5, 2, 10, T0);
    clock.advance_ms(1000);
    assert!(log.roll_if_due().unwrap());
    drop(log);
    // The machine lost the tail of the sealed segment.
    let path = file(dir.path(), 0, "log");
    let cut = len(&path) - 3;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let mut log = open(dir.path(), config, &clock);
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.log_end_offset(), 8);
    assert!(!file(dir.path(), 10, "log").exists());
    assert_eq!(
        log.read(0, 1 << 20, i64::MAX).unwrap().bytes,
        batches[..4].concat()
    );
    assert_eq!(
        log.append(&mut batch(1, T0, 5, "n"), 0)
            .unwrap()
            .base_offset,
        8
    );
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 120, 2, 70, T0);
    let segments = log.segments();
    let all = read_all(&log, 0, 1 << 20);
    log.close().unwrap();
    let (first, second, active) = (
        segments[0].base_offset,
        segments[1].base_offset,
        segments.last().unwrap().base_offset,
    );
    let index0 = file(dir.path(), first, "index");
    let good_index0 = std::fs::read(&index0).unwrap();
    assert!(good_index0.len() >= 16, "the test needs index entries");
    std::fs::remove_file(&index0).unwrap();
    std::fs::remove_file(file(dir.path(), second, "timeindex")).unwrap();
    // Entries out of order.
    let index2 = file(dir.path(), segments[2].base_offset, "index");
    let mut bytes = std::fs::read(&index2).unwrap();
    bytes.swap(3, 11);
    std::fs::write(&index2, &bytes).unwrap();
    // Not a whole number of entries, and pointing past the log.
    std::fs::write(
        file(dir.path(), segments[3].base_offset, "index"),
        [1u8; 13],
    )
    .unwrap();
    std::fs::write(
        file(dir.path(), active, "index"),
        [0, 0, 0, 1, 0x7f, 0, 0, 0],
    )
    .unwrap();

    let log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.segments(), segments);
    assert_eq!(read_all(&log, 0, 1 << 20), all);
    assert_eq!(read_all(&log, 0, 1), all);
    assert_eq!(std::fs::read(&index0).unwrap(), good_index0);
    assert!(file(dir.path(), second, "timeindex").exists());
    for i in (0..240).step_by(11) {
        let r = log.read(i, 1, i64::MAX).unwrap();
        let h = batch::validate(&r.bytes).unwrap();
        assert!(h.base_offset <= i && i <= h.last_offset());
    }
    assert_eq!(
        log.offset_for_timestamp(T0 + 505).unwrap(),
        Some((102, T0 + 510))
    );
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_a_corrupt_error_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    let batches = fill(&mut log, 60, 2, 100, T0);
    log.close().unwrap();
    // Flip a byte inside the value of the third batch (offsets 4-5) of the first segment.
    let path = file(dir.path(), 0, "log");
    let mut bytes = std::fs::read(&path).unwrap();
    let pos = batches[0].len() + batches[1].len() + batches[2].len() - 5;
    bytes[pos] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let log = open(dir.path(), small_config(), &clock);
    for offset in [4, 5] {
        let err = log.read(offset, 1 << 20, i64::MAX).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("CRC"), "{err}");
    }
    // Reads before it stop short of it; reads after it work.
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(r.bytes, batches[..2].concat());
    let r = log.read(6, 1 << 20, i64::MAX).unwrap();
    assert_eq!(
        BatchIter::new(&r.bytes)
            .next()
            .unwrap()
            .unwrap()
            .0
            .base_offset,
        6
    );
}

#[test]
fn leftover_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 5, 1, 10, T0);
    log.close().unwrap();
    let strays = [
        file(dir.path(), 500, "index"),
        file(dir.path(), 500, "timeindex"),
        dir.path().join(format!("{:020}.log.deleted", 77)),
        dir.path().join(format!("{:020}.index.tmp", 0)),
    ];
    for s in &strays {
        std::fs::write(s, b"junk").unwrap();
    }
    std::fs::write(dir.path().join("README"), b"not ours").unwrap();
    let log = open(dir.path(), small_config(), &clock);
    for s in &strays {
        assert!(!s.exists(), "{} should be gone", s.display());
    }
    assert!(dir.path().join("README").exists());
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn open_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let err = strata_log::Log::open(
        dir.path(),
        LogConfig {
            segment_bytes: 0,
            ..LogConfig::default()
        },
        clock,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("segment.bytes"), "{err}");
}

/// The window: after an unclean stop only the last segment was re-validated, so a torn or
/// damaged batch in a sealed segment that was never fsynced stayed in the log (and failed every
/// read of it). Now every segment above the recovery point is re-validated: the log ends
/// before the damaged batch and the segments after it go, leaving no gap.
#[test]
fn a_damaged_sealed_segment_above_the_recovery_point_is_cut_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 80, 3, 60, T0);
    let segments = log.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    assert_eq!(log.recovery_point(), 0, "nothing synced yet");
    let victim = &segments[1];
    drop(log); // a crash: no close
               // Damage a byte in the middle of the second segment's records.
    let f = OpenOptions::new().write(true).open(&victim.path).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"X", victim.size_bytes / 2).unwrap();
    drop(f);
    let log = open(dir.path(), small_config(), &clock);
    let end = log.log_end_offset();
    assert!(
        end > victim.base_offset && end < victim.next_offset,
        "cut inside the damaged segment: end {end}, segment {victim:?}"
    );
    assert_eq!(log.segments().len(), 2, "the segments after it are gone");
    // Every record left reads back (no CRC failure, no gap).
    assert_eq!(read_all(&log, 0, 1 << 20).len() as i64, end);
}

#[test]
fn the_recovery_point_follows_synced_seals_and_flushes_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 40, 3, 60, T0);
    let unsynced = log.take_unsynced_sealed();
    assert!(unsynced.len() >= 2);
    let (end, file) = unsynced.last().cloned().unwrap();
    log.sealed_synced(end, file.sync_data()).unwrap();
    assert_eq!(log.recovery_point(), end);
    assert_eq!(end, log.segments().last().unwrap().base_offset);
    drop(log);
    // Reopened after a crash: the active segment is re-validated, not the ones below.
    let mut log = open(dir.path(), small_config(), &clock);
    assert_eq!(log.recovery_point(), end);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());
}

/// A failed fsync stops the log: a retried append must not write again what may or may not
/// be on disk, and nothing else writes either.
#[test]
fn a_failed_fsync_stops_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), small_config(), &clock);
    fill(&mut log, 40, 3, 60, T0);
    let (end, _) = log.take_unsynced_sealed().pop().unwrap();
    let err = log
        .sealed_synced(end, Err(std::io::Error::other("EIO (injected)")))
        .unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
    assert!(log.stopped().unwrap().contains("EIO"));
    let before = log.log_end_offset();
    let refused = log.append(&mut batch(1, T0, 10, "retry"), 3).unwrap_err();
    assert!(
        refused.to_string().contains("takes no more writes"),
        "{refused}"
    );
    assert!(log.truncate_to(0).is_err());
    assert!(log.flush().is_err());
    assert_eq!(log.log_end_offset(), before);
    // Reads still work.
    assert_eq!(read_all(&log, 0, 1 << 20).len() as i64, before);
}
