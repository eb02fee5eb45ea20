//! One segment of a partition's log: `<base_offset:020>.log` holding whole, stamped batches
//! back to back, with its sparse offset index (`.index`) and time index (`.timeindex`).
//!
//! Invariants kept here:
//! - the `.log` file only ever holds whole batches with dense offsets from the base offset;
//!   an append is one positional write, and a failed write is cut back to the old size;
//! - a sealed segment is never written again (only deleted, or reopened by `truncate_to`);
//! - index entries are added only for bytes that were written, so the indexes never point
//!   past the log, and an index found damaged on open is rebuilt from the log;
//! - reads take `&self` (positional reads on an `Arc<File>`) and look at batch headers only,
//!   except for the one batch `offset_for_timestamp` walks (`framing::find_timestamp`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, BatchIter, HEADER_LEN};
use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};
use crate::scan::scan;

/// Extension of a segment's log file.
pub const LOG_EXT: &str = "log";
/// Extension of a segment's offset index.
pub const INDEX_EXT: &str = "index";
/// Extension of a segment's time index.
pub const TIME_INDEX_EXT: &str = "timeindex";

/// The file name stem of the segment starting at `base_offset`.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// How an existing segment is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Not the last segment: it ends where the next one starts.
    Sealed { next_base: i64 },
    /// The last segment after a clean shutdown: indexes are trusted if they pass the check.
    ActiveClean,
    /// The last segment after a crash: every batch is re-validated and a torn tail cut off.
    ActiveRecover,
}

/// What the indexes and in-memory summary know about the batches written so far.
#[derive(Debug)]
struct Tracker {
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    max_timestamp: i64,
    next_offset: i64,
    last_batch_base: i64,
}

impl Tracker {
    /// Accounts for one batch written at `pos`, adding index entries at index points.
    fn track(&mut self, pos: u64, h: &BatchHeader, base: i64, interval: u32) {
        let rel = h.base_offset - base;
        if self.bytes_since_index >= interval as u64 {
            self.bytes_since_index = 0;
            if let (Ok(rel), Ok(pos)) = (u32::try_from(rel), u32::try_from(pos)) {
                self.offset_index.append(rel, pos);
                let max = self.max_timestamp.max(h.max_timestamp);
                if self.time_index.last().is_none_or(|(t, _)| max > t) {
                    self.time_index.append(max, rel);
                }
            }
        }
        self.bytes_since_index += h.total_len() as u64;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.next_offset = h.next_offset();
        self.last_batch_base = h.base_offset;
    }

    /// Adds the time-index entry for the segment's max timestamp if the index lacks it.
    fn final_time_entry(&mut self, base: i64) {
        if self.next_offset == base {
            return;
        }
        if self
            .time_index
            .last()
            .is_none_or(|(t, _)| self.max_timestamp > t)
        {
            if let Ok(rel) = u32::try_from(self.last_batch_base - base) {
                self.time_index.append(self.max_timestamp, rel);
            }
        }
    }
}

/// One segment: its files, its indexes and what is known about its batches.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: Arc<File>,
    size: u64,
    tracker: Tracker,
    /// Clock time of the segment's first append (for segment.ms).
    created_ms: i64,
    sealed: bool,
    /// Written since the last fsync.
    dirty: bool,
    index_interval: u32,
    index_max_bytes: u32,
}

impl Segment {
    /// Creates a new, empty, active segment starting at `base_offset`.
    pub fn create(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64) -> Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.{LOG_EXT}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map_err(|e| LogError::io(format!("creating segment {}", log_path.display()), e))?;
        let mut seg = Segment {
            base_offset,
            file: Arc::new(file),
            size: 0,
            tracker: Tracker {
                offset_index: OffsetIndex::create(&dir.join(format!("{stem}.{INDEX_EXT}")))?,
                time_index: TimeIndex::create(&dir.join(format!("{stem}.{TIME_INDEX_EXT}")))?,
                bytes_since_index: 0,
                max_timestamp: -1,
                next_offset: base_offset,
                last_batch_base: base_offset,
            },
            log_path,
            created_ms: now_ms,
            sealed: false,
            dirty: true,
            index_interval: config.index_interval_bytes,
            index_max_bytes: config.segment_index_bytes,
        };
        seg.preallocate()?;
        Ok(seg)
    }

    /// Opens an existing segment whose log file is `<dir>/<base:020>.log`.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        mode: OpenMode,
        now_ms: i64,
    ) -> Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.{LOG_EXT}"));
        let index_path = dir.join(format!("{stem}.{INDEX_EXT}"));
        let time_path = dir.join(format!("{stem}.{TIME_INDEX_EXT}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| LogError::io(format!("opening segment {}", log_path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io(format!("reading the size of {}", log_path.display()), e))?
            .len();
        let sealed = matches!(mode, OpenMode::Sealed { .. });
        let rel_end = match mode {
            OpenMode::Sealed { next_base } => Some((next_base - base_offset).max(0) as u64),
            _ => None,
        };
        // Trust the indexes only if they exist, pass the check, and (sealed) hold the final
        // max-timestamp entry.
        let loaded =
            if mode == OpenMode::ActiveRecover || !index_path.exists() || !time_path.exists() {
                None
            } else {
                match Self::load_indexes(&index_path, &time_path, size, rel_end, sealed) {
                    Ok(pair) => Some(pair),
                    Err(e) => {
                        tracing::warn!(segment = %log_path.display(), error = %e,
                        "index damaged or missing entries; rebuilding it from the log");
                        None
                    }
                }
            };
        let rebuild = loaded.is_none();
        let (offset_index, time_index) = match loaded {
            Some(pair) => pair,
            None => (
                OffsetIndex::create(&index_path)?,
                TimeIndex::create(&time_path)?,
            ),
        };
        let mut seg = Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            tracker: Tracker {
                offset_index,
                time_index,
                bytes_since_index: 0,
                max_timestamp: -1,
                next_offset: base_offset,
                last_batch_base: base_offset,
            },
            created_ms: now_ms,
            sealed,
            dirty: false,
            index_interval: config.index_interval_bytes,
            index_max_bytes: config.segment_index_bytes,
        };
        if !sealed || rebuild {
            seg.preallocate()?;
        }
        match mode {
            OpenMode::ActiveRecover => seg.recover()?,
            _ if rebuild => seg.rebuild(mode)?,
            OpenMode::Sealed { next_base } => {
                let (t, rel) = seg.tracker.time_index.last().unwrap_or((-1, 0));
                seg.tracker.max_timestamp = t;
                seg.tracker.last_batch_base = base_offset + rel as i64;
                seg.tracker.next_offset = next_base;
            }
            OpenMode::ActiveClean => seg.load_tail()?,
        }
        if sealed {
            seg.tracker.offset_index.trim()?;
            seg.tracker.time_index.trim()?;
        } else if seg.size >= HEADER_LEN as u64 {
            // segment.ms counts from the first batch's timestamp, as Kafka does, so that a
            // restart does not postpone the roll; never from the future.
            if let Ok(h) = seg.read_header(0) {
                if h.max_timestamp >= 0 {
                    seg.created_ms = h.max_timestamp.min(now_ms);
                }
            }
        }
        Ok(seg)
    }

    fn load_indexes(
        index_path: &Path,
        time_path: &Path,
        size: u64,
        rel_end: Option<u64>,
        sealed: bool,
    ) -> Result<(OffsetIndex, TimeIndex)> {
        let offset_index = OffsetIndex::open(index_path)?;
        let time_index = TimeIndex::open(time_path)?;
        offset_index.sanity_check(size, rel_end)?;
        time_index.sanity_check(rel_end)?;
        if sealed && size > 0 && time_index.is_empty() {
            return Err(LogError::CorruptFile {
                path: time_path.display().to_string(),
                reason: "a sealed segment's time index has no entry".to_string(),
            });
        }
        Ok((offset_index, time_index))
    }

    /// Rebuilds both indexes from the log (framing only, no CRC).
    fn rebuild(&mut self, mode: OpenMode) -> Result<()> {
        let (base, interval) = (self.base_offset, self.index_interval);
        let tracker = &mut self.tracker;
        let stop = scan(
            &self.file,
            &self.log_path,
            (0, self.size),
            false,
            base,
            |p, h| tracker.track(p, h, base, interval),
        )?;
        match (stop.problem, mode) {
            (None, _) => {}
            (Some(_), OpenMode::ActiveClean | OpenMode::ActiveRecover) => return self.recover(),
            (Some(problem), OpenMode::Sealed { next_base }) => {
                // Keep the segment: reads that reach the damage fail as corrupt.
                tracing::warn!(segment = %self.log_path.display(), position = stop.pos, %problem,
                    "sealed segment is damaged; reads past this position will fail");
                self.tracker.next_offset = next_base;
            }
        }
        if self.sealed {
            self.tracker.final_time_entry(base);
        }
        Ok(())
    }

    /// Re-validates every batch (CRC included), cuts the file at the first torn or invalid
    /// one, and rebuilds the indexes.
    fn recover(&mut self) -> Result<()> {
        let base = self.base_offset;
        self.tracker.offset_index.truncate_to_position(0);
        self.tracker.time_index.truncate_to_offset(0);
        self.tracker.bytes_since_index = 0;
        self.tracker.max_timestamp = -1;
        self.tracker.next_offset = base;
        self.tracker.last_batch_base = base;
        let interval = self.index_interval;
        let tracker = &mut self.tracker;
        let stop = scan(
            &self.file,
            &self.log_path,
            (0, self.size),
            true,
            base,
            |p, h| tracker.track(p, h, base, interval),
        )?;
        if let Some(problem) = stop.problem {
            tracing::warn!(segment = %self.log_path.display(), position = stop.pos,
                dropped_bytes = self.size - stop.pos, %problem,
                "truncating a torn or invalid tail of the log");
            self.set_file_len(stop.pos)?;
            self.file
                .sync_all()
                .map_err(|e| LogError::io(format!("fsyncing {}", self.log_path.display()), e))?;
        }
        Ok(())
    }

    /// After a clean shutdown: learns the next offset and max timestamp by reading the headers
    /// after the last offset-index entry. Falls back to recovery if the framing is broken.
    fn load_tail(&mut self) -> Result<()> {
        let (rel, pos) = self.tracker.offset_index.last().unwrap_or((0, 0));
        let base = self.base_offset;
        self.tracker.bytes_since_index = 0;
        self.tracker.max_timestamp = self.tracker.time_index.last().map_or(-1, |(t, _)| t);
        let interval = self.index_interval;
        let tracker = &mut self.tracker;
        let start = base + rel as i64;
        let stop = scan(
            &self.file,
            &self.log_path,
            (pos as u64, self.size),
            false,
            start,
            |p, h| tracker.track(p, h, base, interval),
        )?;
        if stop.problem.is_some() {
            return self.recover();
        }
        Ok(())
    }

    fn set_file_len(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| LogError::io(format!("truncating {}", self.log_path.display()), e))?;
        self.size = len;
        Ok(())
    }

    fn preallocate(&mut self) -> Result<()> {
        self.tracker
            .offset_index
            .preallocate(self.index_max_bytes)?;
        self.tracker.time_index.preallocate(self.index_max_bytes)
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The `.log` file, shared: for an fsync done without the log's lock.
    pub fn file_handle(&self) -> Arc<File> {
        self.file.clone()
    }

    pub fn next_offset(&self) -> i64 {
        self.tracker.next_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.tracker.max_timestamp
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn offset_index(&self) -> &OffsetIndex {
        &self.tracker.offset_index
    }

    pub fn time_index(&self) -> &TimeIndex {
        &self.tracker.time_index
    }

    /// True when either index cannot take another entry.
    pub fn index_full(&self) -> bool {
        self.tracker.offset_index.is_full() || self.tracker.time_index.is_full()
    }

    /// True when `last_offset` is still addressable relative to the base offset.
    pub fn offset_fits(&self, last_offset: i64) -> bool {
        last_offset - self.base_offset <= u32::MAX as i64
    }

    /// Appends already validated and stamped batches whose first offset is `next_offset()`,
    /// with one write. On failure the file is cut back to its old size. segment.ms counts
    /// from the first append into an empty segment (`now_ms`).
    pub fn append(&mut self, batches: &[u8], now_ms: i64) -> Result<()> {
        let start = self.size;
        if let Err(e) = self.file.write_all_at(batches, start) {
            let undo = self.file.set_len(start);
            return Err(LogError::io(
                format!(
                    "appending {} bytes to {} (cut back to {start} bytes: {})",
                    batches.len(),
                    self.log_path.display(),
                    if undo.is_ok() { "done" } else { "failed" }
                ),
                e,
            ));
        }
        if start == 0 {
            self.created_ms = now_ms;
        }
        self.size += batches.len() as u64;
        self.dirty = true;
        let (base, interval) = (self.base_offset, self.index_interval);
        let mut pos = start;
        for item in BatchIter::new(batches) {
            let (header, bytes) = item?;
            self.tracker.track(pos, &header, base, interval);
            pos += bytes.len() as u64;
        }
        Ok(())
    }

    /// Reads the header of the batch at `pos`.
    pub fn read_header(&self, pos: u64) -> Result<BatchHeader> {
        if pos + HEADER_LEN as u64 > self.size {
            return Err(self.damaged(pos, "a batch header runs past the end of the file".into()));
        }
        let mut buf = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut buf, pos).map_err(|e| {
            LogError::io(format!("reading {} at {pos}", self.log_path.display()), e)
        })?;
        BatchHeader::parse(&buf).map_err(|e| self.damaged(pos, e.to_string()))
    }

    fn damaged(&self, pos: u64, reason: String) -> LogError {
        LogError::CorruptFile {
            path: self.log_path.display().to_string(),
            reason: format!("at position {pos}: {reason}"),
        }
    }

    /// Position and header of the first batch whose last offset is >= `offset`.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let mut pos = self
            .tracker
            .offset_index
            .lookup(rel)
            .map_or(0, |(_, p)| p as u64);
        while pos < self.size {
            let h = self.read_header(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Calls `f` with the header of every batch from the one holding `offset` (or the first,
    /// when `offset` is below the base) to the end of the segment, in order. Header reads
    /// only, no CRC pass; broken framing is a `CorruptFile` error after the good headers.
    pub fn visit_headers(&self, offset: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let Some((pos, first)) = self.find_batch(offset)? else {
            return Ok(());
        };
        let stop = scan(
            &self.file,
            &self.log_path,
            (pos, self.size),
            false,
            first.base_offset,
            |_, h| f(h),
        )?;
        match stop.problem {
            Some(problem) => Err(self.damaged(stop.pos, problem)),
            None => Ok(()),
        }
    }

    /// Whole batches from the one holding `offset`: at least one, then more while the total
    /// stays within `max_bytes` and their base offset is below `max_offset`. Every batch
    /// returned passed its CRC check.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<Bytes> {
        let Some((start, first)) = self.find_batch(offset)? else {
            return Ok(Bytes::new());
        };
        // Batches from `max_offset` on are not returned (but the first one): read no further
        // than where they start, so a read that the high watermark cuts short does not copy
        // bytes only to drop them.
        let mut limit = self.size;
        if max_offset > first.base_offset && max_offset < self.next_offset() {
            if let Some((pos, h)) = self.find_batch(max_offset)? {
                limit = if h.base_offset < max_offset {
                    pos + h.total_len() as u64
                } else {
                    pos
                };
            }
        }
        let first_end = start + first.total_len() as u64;
        let want = (max_bytes as u64)
            .max(first.total_len() as u64)
            .min(limit.max(first_end) - start);
        let mut buf = vec![0u8; want as usize];
        self.file.read_exact_at(&mut buf, start).map_err(|e| {
            LogError::io(format!("reading {} at {start}", self.log_path.display()), e)
        })?;
        let mut end = 0usize;
        for item in BatchIter::new(&buf) {
            let Ok((h, bytes)) = item else { break };
            if end > 0 && h.base_offset >= max_offset {
                break;
            }
            if let Err(e) = batch::validate(bytes) {
                if end == 0 {
                    return Err(match e {
                        LogError::CorruptBatch(m) => LogError::CorruptBatch(format!(
                            "{m} (in {} at position {start})",
                            self.log_path.display()
                        )),
                        other => self.damaged(start, other.to_string()),
                    });
                }
                break; // serve the good batches before it; the next read reports it
            }
            end += bytes.len();
        }
        if end == 0 {
            return Err(self.damaged(start, "the batch is cut short".to_string()));
        }
        buf.truncate(end);
        if end < want as usize / 2 {
            buf.shrink_to_fit();
        }
        Ok(Bytes::from(buf))
    }

    /// The (offset, timestamp) of the first record with timestamp >= `timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        if self.tracker.max_timestamp < timestamp {
            return Ok(None);
        }
        let rel = self
            .tracker
            .time_index
            .lookup_before(timestamp)
            .map_or(0, |(_, r)| r);
        let Some((mut pos, _)) = self.find_batch(self.base_offset + rel as i64)? else {
            return Ok(None);
        };
        while pos < self.size {
            let h = self.read_header(pos)?;
            if h.max_timestamp >= timestamp {
                let mut buf = vec![0u8; h.total_len()];
                self.file.read_exact_at(&mut buf, pos).map_err(|e| {
                    LogError::io(format!("reading {} at {pos}", self.log_path.display()), e)
                })?;
                if let Some(found) = crate::framing::find_timestamp(&buf, timestamp, i64::MIN)? {
                    return Ok(Some(found));
                }
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Drops every batch holding `offset` or later (the batch holding `offset` goes whole).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.tracker.next_offset {
            return Ok(());
        }
        let (pos, new_next) = match self.find_batch(offset)? {
            Some((pos, h)) => (pos, h.base_offset),
            None => return Ok(()),
        };
        self.set_file_len(pos)?;
        self.dirty = true;
        let base = self.base_offset;
        let t = &mut self.tracker;
        t.offset_index.truncate_to_position(pos);
        t.time_index.truncate_to_offset((new_next - base) as u64);
        let (rel, from) = t.offset_index.last().unwrap_or((0, 0));
        t.bytes_since_index = 0;
        t.max_timestamp = t.time_index.last().map_or(-1, |(ts, _)| ts);
        t.next_offset = base;
        t.last_batch_base = base;
        let interval = self.index_interval;
        let stop = scan(
            &self.file,
            &self.log_path,
            (from as u64, pos),
            false,
            base + rel as i64,
            |p, h| t.track(p, h, base, interval),
        )?;
        if let Some(problem) = stop.problem {
            return Err(self.damaged(stop.pos, problem));
        }
        Ok(())
    }

    /// Seals the segment: adds the final time-index entry and trims both indexes.
    pub fn seal(&mut self) -> Result<()> {
        self.trim_for_close()?;
        self.sealed = true;
        Ok(())
    }

    /// Makes a sealed segment the active one again (after a truncation).
    pub fn unseal(&mut self) -> Result<()> {
        self.sealed = false;
        self.preallocate()
    }

    /// Adds the final time-index entry and trims both indexes (clean close or seal).
    pub fn trim_for_close(&mut self) -> Result<()> {
        self.tracker.final_time_entry(self.base_offset);
        self.tracker.offset_index.trim()?;
        self.tracker.time_index.trim()?;
        self.dirty = true;
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// fsyncs the log and both indexes.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io(format!("fsyncing {}", self.log_path.display()), e))?;
        self.tracker.offset_index.flush()?;
        self.tracker.time_index.flush()?;
        self.dirty = false;
        Ok(())
    }

    /// Deletes the segment's files: renamed to `*.deleted` first, then removed, so a crash
    /// in between leaves files that open() recognises as leftovers.
    pub fn delete(self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.tracker.offset_index.path().to_path_buf(),
            self.tracker.time_index.path().to_path_buf(),
        ];
        drop(self);
        let mut renamed = Vec::new();
        for path in paths {
            let mut name = path.clone().into_os_string();
            name.push(".deleted");
            let target = PathBuf::from(name);
            match std::fs::rename(&path, &target) {
                Ok(()) => renamed.push(target),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(format!("renaming {}", path.display()), e)),
            }
        }
        for path in renamed {
            std::fs::remove_file(&path)
                .map_err(|e| LogError::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }
}
