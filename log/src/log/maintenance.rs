//! The log's timed chores: the roll by `segment.ms`, the flush by `flush.ms`, the fsync of
//! sealed segments, and retention; and [`Log::chores`], when the next of them is due, so the
//! broker visits a partition when it has something to do rather than scanning every partition
//! on every tick.
//!
//! Invariant: [`Log::chores`] never names a time later than the one at which a chore here would
//! act (the roll, flush and retention tests below read the same fields the same way); a chore
//! that can only become due through a change to the log (an append, a roll, a new config, a
//! new retention limit) is not scheduled, and the caller looks again after such a change.

use std::fs::File;
use std::sync::Arc;

use super::{sync_dir, Log, RetentionReport};
use crate::error::{LogError, Result};
use crate::segment::Segment;

/// When a log's chores are next due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chores {
    /// The earliest time (ms, as the log's clock counts) at which a roll, a flush, a sealed
    /// segment's fsync or a retention deletion is due; `None` when none will be until the log
    /// changes.
    pub due_ms: Option<i64>,
    /// Retention would delete the oldest segment now, but the caller's limit (the high
    /// watermark, the end of the remote tier) holds it back: it is due again when that moves.
    pub held_back: bool,
}

impl Log {
    pub(super) fn segment_ms_elapsed(&self, segment: &Segment, now: i64) -> bool {
        self.config
            .segment_ms
            .is_some_and(|ms| now - segment.created_ms() >= ms)
    }

    /// Sealed segments not fsynced yet, as (end offset, file): the caller fsyncs them without
    /// holding the log's lock, then reports with [`Log::sealed_synced`].
    pub fn take_unsynced_sealed(&mut self) -> Vec<(i64, Arc<File>)> {
        std::mem::take(&mut self.unsynced_sealed)
    }

    /// The sealed segments ending at or below `end` were fsynced (`Ok`) or not (`Err`: the log
    /// stops). Moves the recovery point to `end` when the log still reaches it.
    pub fn sealed_synced(&mut self, end: i64, synced: std::io::Result<()>) -> Result<()> {
        if let Err(e) = synced {
            let e = LogError::io(
                format!("fsyncing a sealed segment of {}", self.dir.display()),
                e,
            );
            return Err(self.stop(e));
        }
        if end > self.recovery_point && end <= self.log_end_offset() {
            if self.dir_dirty {
                sync_dir(&self.dir).map_err(|e| self.stop(e))?;
                self.dir_dirty = false;
            }
            self.recovery_point = end;
            crate::recovery_point::save(&self.dir, end).map_err(|e| self.stop(e))?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub(super) fn roll(&mut self, now: i64) -> Result<()> {
        let next = self.log_end_offset();
        self.active_mut().seal()?;
        let sealed = self.active().file_handle();
        self.unsynced_sealed.push((next, sealed));
        let segment = Segment::create(&self.dir, next, &self.config, now)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = next, "rolled a new segment");
        self.segments.insert(next, segment);
        self.dir_dirty = true;
        Ok(())
    }

    /// Rolls the active segment if it is non-empty and older than `segment.ms`.
    pub fn roll_if_due(&mut self) -> Result<bool> {
        let now = self.clock.now_ms();
        let active = self.active();
        if active.is_empty() || !self.segment_ms_elapsed(active, now) {
            return Ok(false);
        }
        self.roll(now)?;
        Ok(true)
    }

    /// Deletes sealed segments from the oldest while the log stays at least
    /// `retention.bytes` big without them, or while their newest record is older than
    /// `retention.ms`. The active segment is never deleted.
    pub fn enforce_retention(&mut self) -> Result<RetentionReport> {
        self.enforce_retention_below(None)
    }

    /// Like [`Log::enforce_retention`], but never deletes a segment holding an offset at or
    /// above `limit`: with tiered storage, `limit` is where the remote tier ends, so local
    /// retention never deletes what is not yet uploaded.
    pub fn enforce_retention_below(&mut self, limit: Option<i64>) -> Result<RetentionReport> {
        let now = self.clock.now_ms();
        let mut total = self.size_bytes();
        let mut report = RetentionReport::default();
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.values().next() else {
                break;
            };
            if limit.is_some_and(|limit| oldest.next_offset() > limit) {
                break;
            }
            let by_bytes = self
                .config
                .retention_bytes
                .is_some_and(|limit| total - oldest.size() >= limit);
            let newest = newest_ms(oldest);
            let by_time = self
                .config
                .retention_ms
                .is_some_and(|ms| newest < now.saturating_sub(ms));
            if !by_bytes && !by_time {
                break;
            }
            let Some((_, segment)) = self.segments.pop_first() else {
                break;
            };
            let size = segment.size();
            tracing::info!(segment = %segment.log_path().display(), size, by_bytes, by_time,
                "deleting a segment past retention");
            segment.delete()?;
            self.dir_dirty = true;
            total -= size;
            report.deleted_segments += 1;
            report.deleted_bytes += size;
        }
        report.log_start_offset = self.log_start_offset();
        if report.deleted_segments > 0 && self.epochs.truncate_from_start(report.log_start_offset) {
            self.epochs.save()?;
        }
        Ok(report)
    }

    /// fsyncs the log files and indexes of every segment written since the last flush.
    pub fn flush(&mut self) -> Result<()> {
        self.check_running()?;
        let mut failed = None;
        for segment in self.segments.values_mut() {
            if segment.is_dirty() {
                if let Err(e) = segment.flush() {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() && self.dir_dirty {
            match sync_dir(&self.dir) {
                Ok(()) => self.dir_dirty = false,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(self.stop(e));
        }
        self.unflushed_records = 0;
        self.last_flush_ms = self.clock.now_ms();
        self.unsynced_sealed.clear();
        let end = self.log_end_offset();
        if end != self.recovery_point {
            self.recovery_point = end;
            crate::recovery_point::save(&self.dir, end).map_err(|e| self.stop(e))?;
        }
        Ok(())
    }

    /// Flushes if `flush.ms` has passed since the last flush and something is unflushed.
    pub fn flush_if_due(&mut self) -> Result<bool> {
        let now = self.clock.now_ms();
        let due = self
            .config
            .flush_ms
            .is_some_and(|ms| now - self.last_flush_ms >= ms);
        let dirty = self.dir_dirty || self.segments.values().any(Segment::is_dirty);
        if !due || !dirty {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// When the chores of this log are next due, with retention bounded by `limit` as
    /// [`Log::enforce_retention_below`] bounds it.
    pub fn chores(&self, limit: Option<i64>) -> Chores {
        if self.stopped.is_some() {
            return Chores::default(); // no chore runs on a stopped log
        }
        let now = self.clock.now_ms();
        let mut due: Option<i64> = None;
        let mut at = |t: i64| due = Some(due.map_or(t, |d| d.min(t)));
        let active = self.active();
        if let Some(ms) = self.config.segment_ms {
            if !active.is_empty() {
                at(active.created_ms().saturating_add(ms));
            }
        }
        if let Some(ms) = self.config.flush_ms {
            if self.dir_dirty || self.segments.values().any(Segment::is_dirty) {
                at(self.last_flush_ms.saturating_add(ms));
            }
        }
        if !self.unsynced_sealed.is_empty() {
            at(now);
        }
        let mut held_back = false;
        if let (true, Some(oldest)) = (self.segments.len() > 1, self.segments.values().next()) {
            let by_bytes = self
                .config
                .retention_bytes
                .is_some_and(|bytes| self.size_bytes() - oldest.size() >= bytes);
            let newest = newest_ms(oldest);
            // Deleted once `newest < now - retention.ms`, that is from `newest + ms + 1`.
            let by_time = self
                .config
                .retention_ms
                .map(|ms| newest.saturating_add(ms).saturating_add(1));
            let retention = if by_bytes { Some(now) } else { by_time };
            if let Some(t) = retention {
                if t <= now && limit.is_some_and(|limit| oldest.next_offset() > limit) {
                    held_back = true;
                } else {
                    at(t);
                }
            }
        }
        Chores {
            due_ms: due,
            held_back,
        }
    }
}

/// The time retention ages `segment` by: its newest record's timestamp, or, for a segment
/// without timestamps, when this process first saw it.
fn newest_ms(segment: &Segment) -> i64 {
    if segment.max_timestamp() >= 0 {
        segment.max_timestamp()
    } else {
        segment.created_ms()
    }
}
