//! [`Log`]: one partition's local log, a directory of segments ordered by base offset.
//!
//! ```text
//! <dir>/00000000000000000000.log        batches, offsets 0..
//!       00000000000000000000.index      sparse offset index
//!       00000000000000000000.timeindex  sparse time index
//!       00000000000000001234.log        ... the last segment is the active one
//!       .clean_shutdown                 written by close(), removed by open()
//!       leader-epoch-checkpoint         where each leader epoch starts (see [`crate::epochs`])
//!       recovery-point-checkpoint       below it everything is fsynced ([`crate::recovery_point`])
//! ```
//!
//! Invariants kept here:
//! - offsets are dense: every segment starts where the previous one ends, and the next
//!   append gets the log end offset; only the last (active) segment takes appends;
//! - an append is all or nothing: every batch is validated before any byte is written;
//! - a read returns only whole batches that passed their CRC check, and never an offset at or
//!   above the caller's `max_offset` (the high watermark) except inside the first batch;
//! - retention deletes whole sealed segments from the oldest, never the active one;
//! - after a crash (no `.clean_shutdown`), `open` re-validates every segment holding offsets
//!   at or above the recovery point and cuts at the first torn or invalid batch (dropping the
//!   segments after it), so the log end offset is always the end of the last whole, valid batch
//!   and no gap is ever left;
//! - the leader-epoch cache only holds entries inside the log: appends record an epoch before
//!   writing its first batch (and undo it if the write fails), truncation and retention trim
//!   it, and `open` drops entries at or past the recovered log end offset.
//!
//! Durability: an append is in the page cache when it returns; it is on disk after `flush`
//! (called by the `flush.messages` / `flush.ms` policies, or by the caller). A sealed segment is
//! fsynced soon after the roll ([`Log::take_unsynced_sealed`], done by the caller without the
//! log's lock), which moves the recovery point to its end. A crash of the process loses nothing
//! written; a crash of the machine loses what was not flushed. A failed fsync stops the log: no
//! append, truncation or reset is taken after it (a retry must not write again what may or may
//! not be on disk); the broker must restart, and recovery re-validates from the recovery point.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, BatchIter};
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::epochs::{EpochCache, EpochEntry};
use crate::error::{LogError, Result};
use crate::framing;
use crate::segment::{file_stem, OpenMode, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};

mod maintenance;
pub use maintenance::Chores;

/// The marker `close` leaves behind so that the next `open` can skip recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset given to the last record.
    pub last_offset: i64,
    /// Largest batch max timestamp among the appended batches.
    pub max_timestamp: i64,
    pub batches: usize,
    pub records: i64,
}

/// Batches read from the log, with the log's bounds at the time of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole, CRC-checked batches; empty at the end of the visible log.
    pub bytes: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    /// The log start offset after the pass.
    pub log_start_offset: i64,
}

/// A description of one segment (for admin tools and tiering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// Offset after the segment's last record.
    pub next_offset: i64,
    pub size_bytes: u64,
    /// -1 when no batch carries a timestamp.
    pub max_timestamp: i64,
    pub sealed: bool,
    /// The `.log` file.
    pub path: PathBuf,
}

/// One partition's local log. Appends and maintenance take `&mut self`; reads take `&self`.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    /// Never empty; the last one is the active segment.
    segments: BTreeMap<i64, Segment>,
    unflushed_records: u64,
    last_flush_ms: i64,
    /// A segment file was created or removed since the directory was last fsynced.
    dir_dirty: bool,
    epochs: EpochCache,
    /// Everything below it is fsynced (persisted in the recovery-point checkpoint).
    recovery_point: i64,
    /// Sealed segments not fsynced yet: (their end offset, their file).
    unsynced_sealed: Vec<(i64, Arc<File>)>,
    /// Why the log stopped taking writes (a failed fsync), once it has.
    stopped: Option<String>,
}

impl Log {
    /// Opens the log in `dir` (created if missing), running recovery when the last close was
    /// not clean. An empty directory is a new log starting at offset 0.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        let dir = dir.into();
        config.validate()?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| LogError::io(format!("creating log directory {}", dir.display()), e))?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        let mut bases = list_segments(&dir)?;
        let now = clock.now_ms();
        if !clean && bases.len() > 1 {
            // A crash right after a roll: the tail to re-validate is the previous segment's.
            let last = bases[bases.len() - 1];
            let path = dir.join(format!("{}.{LOG_EXT}", file_stem(last)));
            let len = std::fs::metadata(&path)
                .map_err(|e| LogError::io(format!("reading the size of {}", path.display()), e))?
                .len();
            if len == 0 {
                remove_segment_files(&dir, last)?;
                bases.pop();
            }
        }
        // After a crash, every segment reaching the recovery point is re-validated.
        let recovery_point = if clean {
            i64::MAX
        } else {
            crate::recovery_point::load(&dir)
        };
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            let mode = match next {
                Some(next_base) if next_base <= recovery_point => OpenMode::Sealed { next_base },
                Some(_) => OpenMode::ActiveRecover,
                None if clean => OpenMode::ActiveClean,
                None => OpenMode::ActiveRecover,
            };
            let mut segment = Segment::open(&dir, base, &config, mode, now)?;
            if let (Some(next_base), OpenMode::ActiveRecover) = (next, mode) {
                if segment.next_offset() != next_base {
                    // Torn before its end: what follows cannot be kept without a gap.
                    tracing::warn!(dir = %dir.display(), segment = base, ends = segment.next_offset(),
                        next_segment = next_base, dropped_segments = bases.len() - i - 1,
                        "a segment above the recovery point is torn; dropping the segments after it");
                    for &later in &bases[i + 1..] {
                        remove_segment_files(&dir, later)?;
                    }
                    segments.insert(base, segment);
                    break;
                }
                segment.seal()?;
            }
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(&dir, 0, &config, now)?);
        }
        if clean {
            std::fs::remove_file(&marker)
                .map_err(|e| LogError::io(format!("removing {}", marker.display()), e))?;
        }
        sync_dir(&dir)?;
        let mut log = Log {
            epochs: EpochCache::new(&dir),
            dir,
            config,
            clock,
            segments,
            unflushed_records: 0,
            last_flush_ms: now,
            dir_dirty: false,
            recovery_point: 0,
            unsynced_sealed: Vec::new(),
            stopped: None,
        };
        log.load_epochs()?;
        // A clean close flushed everything. After a crash, what recovery validated above the
        // old recovery point may be in the page cache only (the process died, not the
        // machine): those sealed segments are fsynced like freshly sealed ones before the
        // recovery point passes them.
        let end = log.log_end_offset();
        log.recovery_point = recovery_point.min(end);
        if !clean {
            let rp = log.recovery_point;
            let active = log.active_segment_base();
            log.unsynced_sealed = log
                .segments
                .values()
                .filter(|s| s.base_offset() < active && s.next_offset() > rp)
                .map(|s| (s.next_offset(), s.file_handle()))
                .collect();
        }
        crate::recovery_point::save(&log.dir, log.recovery_point)?;
        tracing::debug!(dir = %log.dir.display(), clean, start = log.log_start_offset(),
            end = log.log_end_offset(), segments = log.segments.len(), "opened log");
        Ok(log)
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Validates, stamps (offsets from the log end offset, `leader_epoch`) and appends a
    /// buffer of batches. On any error nothing is written.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo> {
        self.check_running()?;
        let summary = batch::validate_all(batches)?;
        let now = self.clock.now_ms();
        let earliest = self
            .config
            .message_timestamp_before_max_ms
            .map(|ms| now.saturating_sub(ms));
        let latest = self
            .config
            .message_timestamp_after_max_ms
            .map(|ms| now.saturating_add(ms));
        let max_decompressed = self
            .config
            .max_message_bytes
            .saturating_mul(framing::MAX_DECOMPRESSION_RATIO);
        for item in BatchIter::new(batches) {
            let (header, bytes) = item?;
            if header.total_len() > self.config.max_message_bytes {
                return Err(LogError::BatchTooLarge {
                    size: header.total_len(),
                    max: self.config.max_message_bytes,
                });
            }
            framing::check_records(&header, bytes, max_decompressed, earliest, latest)?;
        }
        let base_offset = self.log_end_offset();
        batch::stamp_all(batches, base_offset, leader_epoch);
        self.write(batches, &summary, &[(leader_epoch, base_offset)])
    }

    /// Appends batches exactly as the leader wrote them: base offsets and leader epochs are
    /// kept, not stamped. Checks framing and CRC of every batch, that the first batch starts at
    /// the log end offset and each next one right after the previous (else `InvalidBatch`,
    /// nothing written). Same roll rules, single write, flush policy and all-or-nothing
    /// behaviour as [`Log::append`], except `max.message.bytes`: the leader already accepted
    /// these batches, and a follower refusing one would stall replication for good. Records in
    /// the epoch cache every batch whose epoch is greater than the latest cached one.
    pub fn append_replica(&mut self, batches: &[u8]) -> Result<AppendInfo> {
        self.check_running()?;
        let summary = batch::validate_all(batches)?;
        let mut expect = self.log_end_offset();
        // Only the batches that raise the epoch: usually none.
        let mut starts: Vec<(i32, i64)> = Vec::new();
        for (i, item) in BatchIter::new(batches).enumerate() {
            let (header, _) = item?;
            if header.base_offset != expect {
                let what = if header.base_offset > expect {
                    "would leave a gap"
                } else {
                    "would overlap offsets before it"
                };
                return Err(LogError::InvalidBatch(format!(
                    "replicated batch {} holds offsets {}..{} but the log expects one starting \
                     at {expect}: it {what}",
                    i,
                    header.base_offset,
                    header.next_offset()
                )));
            }
            expect = header.next_offset();
            let epoch = header.partition_leader_epoch;
            if self.epochs.is_new(epoch) && starts.last().is_none_or(|&(e, _)| epoch > e) {
                starts.push((epoch, header.base_offset));
            }
        }
        self.write(batches, &summary, &starts)
    }

    /// Rolls if due, records new epochs (`(epoch, base offset)` of the batches), and appends
    /// validated, stamped batches starting at the log end offset in one write.
    fn write(
        &mut self,
        batches: &[u8],
        summary: &batch::BatchesSummary,
        epoch_starts: &[(i32, i64)],
    ) -> Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let last_offset = base_offset + summary.records - 1;
        let now = self.clock.now_ms();
        let active = self.active();
        if !active.is_empty()
            && (active.size() + batches.len() as u64 > self.config.segment_bytes
                || self.segment_ms_elapsed(active, now)
                || active.index_full()
                || !active.offset_fits(last_offset))
        {
            self.roll(now)?;
        }
        // The epoch goes to the checkpoint before its first batch goes to the log.
        let changed = epoch_starts.iter().any(|&(e, _)| self.epochs.is_new(e));
        let before = if changed {
            self.epochs.entries().to_vec()
        } else {
            Vec::new()
        };
        if changed {
            for &(epoch, start) in epoch_starts {
                self.epochs.assign(epoch, start);
            }
            if let Err(e) = self.epochs.save() {
                self.epochs.replace(before);
                return Err(e);
            }
        }
        if let Err(e) = self.active_mut().append(batches, now) {
            if changed {
                self.epochs.replace(before);
                if let Err(undo) = self.epochs.save() {
                    // Harmless: open() drops entries at or past the log end offset.
                    tracing::warn!(dir = %self.dir.display(), error = %undo,
                        "could not undo the epoch checkpoint after a failed append");
                }
            }
            return Err(e);
        }
        self.unflushed_records += summary.records as u64;
        if let Some(n) = self.config.flush_messages {
            if self.unflushed_records >= n {
                self.flush()?;
            }
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: summary.max_timestamp,
            batches: summary.batches,
            records: summary.records,
        })
    }

    /// Refuses writes once an fsync failed.
    fn check_running(&self) -> Result<()> {
        match &self.stopped {
            Some(reason) => Err(LogError::Stopped {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a failed fsync: the log takes no more writes.
    fn stop(&mut self, e: LogError) -> LogError {
        let reason = e.to_string();
        tracing::error!(dir = %self.dir.display(), %reason, "an fsync failed; the log takes no more writes");
        self.stopped.get_or_insert(reason);
        e
    }

    /// Why the log stopped taking writes, if it has.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// The offset below which everything is known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Reads whole batches starting with the one that holds `offset`: at most `max_bytes`
    /// (but always one batch), none starting at or above `max_offset` (exclusive, the high
    /// watermark). Empty at the log end or at/above `max_offset`.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let mut bytes = Bytes::new();
        if offset < end && offset < max_offset {
            // A segment yields nothing only if it ends before `offset`; then try the next.
            let first = self
                .segments
                .range(..=offset)
                .next_back()
                .map_or(start, |(&base, _)| base);
            for segment in self.segments.range(first..).map(|(_, s)| s) {
                bytes = segment.read(offset, max_bytes, max_offset)?;
                if !bytes.is_empty() {
                    break;
                }
            }
        }
        Ok(ReadResult {
            bytes,
            log_start_offset: start,
            log_end_offset: end,
        })
    }

    /// The (offset, timestamp) of the first record whose timestamp is >= `timestamp_ms`;
    /// `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        for segment in self.segments.values() {
            if segment.max_timestamp() >= timestamp_ms {
                if let Some(found) = segment.find_by_timestamp(timestamp_ms)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The first offset still in the local log.
    pub fn log_start_offset(&self) -> i64 {
        self.segments.keys().next().copied().unwrap_or(0)
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Total bytes of all segments' log files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size_bytes: s.size(),
                max_timestamp: s.max_timestamp(),
                sealed: s.is_sealed(),
                path: s.log_path().to_path_buf(),
            })
            .collect()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; it applies to the next append, roll and retention pass
    /// (index sizes to segments created from now on).
    pub fn update_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Drops every record at and after `offset`. Truncation happens at batch boundaries: the
    /// batch holding `offset` goes whole, so the log end offset becomes its base offset.
    /// Offsets below the log start offset are out of range. The result is flushed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.check_running()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset >= end {
            // Epochs announced at the log end without a batch since (assign_epoch_start).
            if self.epochs.truncate_from_end(offset) {
                self.epochs.save()?;
            }
            return Ok(());
        }
        if offset < start {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        while self.segments.len() > 1 {
            match self.segments.last_key_value() {
                Some((&base, _)) if base >= offset => {
                    if let Some((_, segment)) = self.segments.pop_last() {
                        segment.delete()?;
                        self.dir_dirty = true;
                    }
                }
                _ => break,
            }
        }
        let active = self.active_mut();
        active.truncate_to(offset)?;
        if active.is_sealed() {
            active.unseal()?;
        }
        if self.epochs.truncate_from_end(self.log_end_offset()) {
            self.epochs.save()?;
        }
        let new_end = self.log_end_offset();
        self.unsynced_sealed.retain(|(end, _)| *end <= new_end);
        tracing::info!(dir = %self.dir.display(), offset, log_end_offset = new_end,
            "truncated the log");
        self.flush()
    }

    /// Drops every record and restarts the log empty at `offset`: a follower whose log ends
    /// below its leader's log start (a long outage, a replaced disk) starts over there. The
    /// epoch cache is emptied (the next batches bring their epochs). Old segments are deleted
    /// before the new one is created, so a crash half-way leaves a shorter log (or an empty one
    /// at offset 0), never a gap; the follower then resets again.
    pub fn reset_to(&mut self, offset: i64) -> Result<()> {
        self.check_running()?;
        if offset < 0 {
            let (start, end) = (self.log_start_offset(), self.log_end_offset());
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let before = (self.log_start_offset(), self.log_end_offset());
        while let Some((_, segment)) = self.segments.pop_first() {
            segment.delete()?;
        }
        self.dir_dirty = true;
        let now = self.clock.now_ms();
        self.segments.insert(
            offset,
            Segment::create(&self.dir, offset, &self.config, now)?,
        );
        self.epochs.replace(Vec::new());
        self.epochs.save()?;
        self.unflushed_records = 0;
        self.unsynced_sealed.clear();
        self.recovery_point = 0;
        tracing::warn!(dir = %self.dir.display(), from_start = before.0, from_end = before.1, offset,
            "dropped the whole log; it restarts empty");
        self.flush()
    }

    /// Flushes everything, trims the indexes and leaves the clean-shutdown marker.
    pub fn close(mut self) -> Result<()> {
        self.active_mut().trim_for_close()?;
        self.flush()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = File::create(&marker)
            .map_err(|e| LogError::io(format!("creating {}", marker.display()), e))?;
        file.sync_all()
            .map_err(|e| LogError::io(format!("fsyncing {}", marker.display()), e))?;
        sync_dir(&self.dir)
    }

    /// Removes the log's directory and everything in it.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| LogError::io(format!("removing log directory {}", dir.display()), e))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Base offset of the active (last) segment.
    pub fn active_segment_base(&self) -> i64 {
        self.active().base_offset()
    }

    /// Headers of every batch from the one holding `offset` to the end of the log, in offset
    /// order (header reads only, no CRC pass): for rebuilding idempotent-producer state.
    /// Empty at the log end; out of range below the log start or past the end.
    pub fn headers_from(&self, offset: i64) -> Result<Vec<BatchHeader>> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let mut out = Vec::new();
        self.visit_headers(offset, |h| out.push(*h))?;
        Ok(out)
    }

    fn visit_headers(&self, offset: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.log_start_offset(), |(&base, _)| base);
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            segment.visit_headers(offset, &mut f)?;
        }
        Ok(())
    }

    /// Records that `epoch` starts at the current log end offset, as a new leader does when it
    /// takes over. No-op when the latest cached epoch is >= `epoch`.
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<()> {
        let before = self.epochs.entries().to_vec();
        if self.epochs.assign(epoch, self.log_end_offset()) {
            if let Err(e) = self.epochs.save() {
                self.epochs.replace(before);
                return Err(e);
            }
            tracing::info!(dir = %self.dir.display(), epoch, start = self.log_end_offset(),
                "leader epoch starts");
        }
        Ok(())
    }

    /// The largest cached epoch <= `epoch`, with the offset where it ends: the start offset of
    /// the next cached epoch, or the log end offset if it is the latest. `None` when no cached
    /// epoch is <= `epoch` (or the cache is empty).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The latest cached epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|e| e.epoch)
    }

    /// The cached epochs and where each starts, oldest first (for admin tools and tests).
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    /// Loads the epoch checkpoint (after segment recovery), rebuilding it from the batch
    /// headers when it is missing, does not parse, or disagrees with the last batch; then
    /// fits it inside the log's bounds. Saves it if anything changed.
    fn load_epochs(&mut self) -> Result<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let loaded = match EpochCache::load(&self.dir) {
            Ok(Some(cache)) => Some(cache),
            Ok(None) if end == 0 => None, // a new log: nothing to rebuild
            Ok(None) => {
                tracing::warn!(dir = %self.dir.display(),
                    "leader-epoch checkpoint is missing; rebuilding it from the batch headers");
                None
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "leader-epoch checkpoint is unreadable; rebuilding it from the batch headers");
                None
            }
        };
        let mut changed = loaded.is_none();
        self.epochs = match loaded {
            Some(cache) => cache,
            None => self.rebuild_epochs(),
        };
        changed |= self.epochs.truncate_from_end(end);
        changed |= self.epochs.truncate_from_start(start);
        if let Some(last) = self.last_batch_header()? {
            let latest = self.epochs.latest().map(|e| e.epoch);
            if last.partition_leader_epoch >= 0 && latest < Some(last.partition_leader_epoch) {
                tracing::warn!(dir = %self.dir.display(), ?latest,
                    last_batch_epoch = last.partition_leader_epoch,
                    "leader-epoch checkpoint is behind the log; rebuilding it from the batch headers");
                self.epochs = self.rebuild_epochs();
                self.epochs.truncate_from_start(start);
                changed = true;
            }
        }
        if changed {
            self.epochs.save()?;
        }
        Ok(())
    }

    /// A cache holding each new epoch's first batch, from every segment's headers. A damaged
    /// sealed segment contributes the batches before the damage.
    fn rebuild_epochs(&self) -> EpochCache {
        let mut cache = EpochCache::new(&self.dir);
        for segment in self.segments.values() {
            let visited = segment.visit_headers(segment.base_offset(), |h| {
                cache.assign(h.partition_leader_epoch, h.base_offset);
            });
            if let Err(e) = visited {
                tracing::warn!(segment = %segment.log_path().display(), error = %e,
                    "rebuilding leader epochs from the batches before the damage");
            }
        }
        cache
    }

    /// The header of the log's last batch, if the log holds one.
    fn last_batch_header(&self) -> Result<Option<BatchHeader>> {
        let end = self.log_end_offset();
        let Some(segment) = self.segments.values().rev().find(|s| !s.is_empty()) else {
            return Ok(None);
        };
        Ok(segment.find_batch(end - 1)?.map(|(_, h)| h))
    }
}

/// Lists the base offsets of the directory's segments, removing leftovers: `*.deleted` and
/// `*.tmp` files, and indexes whose `.log` is gone.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LogError::io(format!("listing log directory {}", dir.display()), e))?;
    let mut logs = std::collections::BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| LogError::io(format!("listing log directory {}", dir.display()), e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".deleted") || name.ends_with(".tmp") {
            tracing::info!(file = %path.display(), "removing a leftover file");
            remove_file(&path)?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let base = match stem.parse::<i64>() {
            Ok(b) if b >= 0 && stem.len() == 20 => b,
            _ => continue,
        };
        match ext {
            LOG_EXT => {
                logs.insert(base);
            }
            INDEX_EXT | TIME_INDEX_EXT => indexes.push((base, path.clone())),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            tracing::info!(file = %path.display(), "removing an index without its log");
            remove_file(&path)?;
        }
    }
    Ok(logs.into_iter().collect())
}

fn remove_segment_files(dir: &Path, base: i64) -> Result<()> {
    let stem = file_stem(base);
    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
        remove_file(&dir.join(format!("{stem}.{ext}")))?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("removing {}", path.display()), e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(format!("fsyncing log directory {}", dir.display()), e))
}
