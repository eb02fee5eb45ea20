//! Sparse, memory-mapped indexes beside each segment: the offset index (`.index`) and the time
//! index (`.timeindex`).
//!
//! ```text
//! .index      entry = relative offset u32 BE | file position u32 BE            (8 bytes)
//! .timeindex  entry = timestamp i64 BE       | relative offset u32 BE          (12 bytes)
//! ```
//!
//! Offsets are relative to the segment's base offset. The files have no header: their size is
//! a whole number of entries once trimmed. While a segment is active its index files are
//! preallocated to `segment.index.bytes` (rounded down to the entry size) and the number of
//! used entries lives in memory; sealing or closing the segment trims them to that number.
//!
//! The file is not kept open: it is mapped and closed (as Kafka's indexes are), so a replica
//! holds one file handle (its segment) and two mappings, and the few operations that need the
//! file (a resize, an fsync) open it for the moment.
//!
//! Invariant kept here: entries are strictly increasing in both fields, so a lookup is one
//! binary search, and an index is only trusted after [`OffsetIndex::sanity_check`] /
//! [`TimeIndex::sanity_check`] passed; an index that fails it is rebuilt from the log, which
//! is always the truth. Indexes are hints: an entry `(offset, position)` says that the batch
//! holding `offset` starts at `position`; an entry `(timestamp, offset)` says that no record up
//! to the batch holding `offset` has a timestamp above `timestamp`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{LogError, Result};

/// Size of one offset-index entry.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Size of one time-index entry.
pub const TIME_ENTRY_LEN: usize = 12;

/// One index file: a mapping of fixed-size entries, the first `entries` of which are in use.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    /// `None` when the file is empty (an empty mapping is not portable).
    mmap: Option<MmapMut>,
    entry_len: usize,
    entries: usize,
    /// Entries the current mapping can hold.
    capacity: usize,
}

impl IndexFile {
    /// Opens (or creates, empty) the file; every whole entry in it counts as used.
    fn open(path: &Path, entry_len: usize, create_empty: bool) -> Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(create_empty)
            .open(path)
            .map_err(|e| LogError::io(format!("opening index {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io(format!("reading the size of {}", path.display()), e))?
            .len();
        let mut index = IndexFile {
            path: path.to_path_buf(),
            mmap: None,
            entry_len,
            entries: (len / entry_len as u64) as usize,
            capacity: 0,
        };
        if len % entry_len as u64 != 0 {
            return Err(index.damaged(format!(
                "its size {len} is not a multiple of the entry size {entry_len}"
            )));
        }
        index.remap(&file, len)?;
        Ok(index)
    }

    /// The file, opened for a resize or an fsync (closed again when dropped).
    fn file(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| LogError::io(format!("opening index {}", self.path.display()), e))
    }

    fn damaged(&self, reason: String) -> LogError {
        LogError::CorruptFile {
            path: self.path.display().to_string(),
            reason,
        }
    }

    /// Maps the first `len` bytes of `file` (which must be that long).
    fn remap(&mut self, file: &File, len: u64) -> Result<()> {
        self.mmap = None;
        self.capacity = (len / self.entry_len as u64) as usize;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the file is ours (one Log per directory) and is only resized by this type,
        // which drops the mapping first; nothing else truncates it while mapped.
        let map = unsafe { MmapMut::map_mut(file) }
            .map_err(|e| LogError::io(format!("mapping index {}", self.path.display()), e))?;
        self.mmap = Some(map);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        self.flush_map()?;
        self.mmap = None;
        let file = self.file()?;
        file.set_len(len)
            .map_err(|e| LogError::io(format!("resizing index {}", self.path.display()), e))?;
        self.remap(&file, len)
    }

    /// Grows the file to `max_bytes` (rounded down to whole entries) so appends go to the
    /// mapping. Never shrinks below the entries in use.
    pub fn preallocate(&mut self, max_bytes: u32) -> Result<()> {
        let cap = (max_bytes as usize / self.entry_len).max(self.entries);
        if cap == self.capacity {
            return Ok(());
        }
        self.set_len((cap * self.entry_len) as u64)
    }

    /// Shrinks the file to the entries in use.
    pub fn trim(&mut self) -> Result<()> {
        if self.capacity == self.entries {
            return Ok(());
        }
        self.set_len((self.entries * self.entry_len) as u64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn entry(&self, i: usize) -> &[u8] {
        match &self.mmap {
            Some(m) if i < self.entries => &m[i * self.entry_len..(i + 1) * self.entry_len],
            _ => &[],
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    /// Appends one entry; false (and nothing written) when the file is full.
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.is_full() {
            return false;
        }
        let Some(map) = self.mmap.as_mut() else {
            return false;
        };
        let at = self.entries * self.entry_len;
        map[at..at + self.entry_len].copy_from_slice(bytes);
        self.entries += 1;
        true
    }

    /// Keeps the first `n` entries and zeroes the rest of the used area.
    fn truncate_entries(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        if let Some(map) = self.mmap.as_mut() {
            map[n * self.entry_len..self.entries * self.entry_len].fill(0);
        }
        self.entries = n;
    }

    /// Index of the last entry for which `le(entry)` holds, given that `le` is true for a
    /// prefix of the entries.
    fn last_where(&self, le: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    fn flush_map(&self) -> Result<()> {
        if let Some(map) = &self.mmap {
            map.flush()
                .map_err(|e| LogError::io(format!("flushing index {}", self.path.display()), e))?;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.flush_map()?;
        self.file()?
            .sync_all()
            .map_err(|e| LogError::io(format!("fsyncing index {}", self.path.display()), e))
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

macro_rules! index_deref {
    ($ty:ident) => {
        impl std::ops::Deref for $ty {
            type Target = IndexFile;
            fn deref(&self) -> &IndexFile {
                &self.0
            }
        }

        impl std::ops::DerefMut for $ty {
            fn deref_mut(&mut self) -> &mut IndexFile {
                &mut self.0
            }
        }
    };
}

index_deref!(OffsetIndex);
index_deref!(TimeIndex);

/// The offset index: relative offset -> file position of the batch holding it.
#[derive(Debug)]
pub struct OffsetIndex(IndexFile);

impl OffsetIndex {
    /// Opens an existing index (or an empty new one when the file is missing).
    pub fn open(path: &Path) -> Result<OffsetIndex> {
        Ok(OffsetIndex(IndexFile::open(path, OFFSET_ENTRY_LEN, false)?))
    }

    /// Creates an empty index, replacing any file at `path`.
    pub fn create(path: &Path) -> Result<OffsetIndex> {
        Ok(OffsetIndex(IndexFile::open(path, OFFSET_ENTRY_LEN, true)?))
    }

    /// Entry `i` as (relative offset, position).
    pub fn get(&self, i: usize) -> Option<(u32, u32)> {
        let e = self.0.entry(i);
        (e.len() == OFFSET_ENTRY_LEN).then(|| (be_u32(e, 0), be_u32(e, 4)))
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.0.entries.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The entry with the largest relative offset <= `rel`, if any.
    pub fn lookup(&self, rel: u32) -> Option<(u32, u32)> {
        self.0
            .last_where(|e| be_u32(e, 0) <= rel)
            .and_then(|i| self.get(i))
    }

    /// Appends an entry; false when the index is full.
    pub fn append(&mut self, rel: u32, position: u32) -> bool {
        let mut e = [0u8; OFFSET_ENTRY_LEN];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.0.push(&e)
    }

    /// Drops every entry pointing at `position` or later.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .0
            .last_where(|e| (be_u32(e, 4) as u64) < position)
            .map_or(0, |i| i + 1);
        self.0.truncate_entries(keep);
    }

    /// Checks entries are strictly increasing, positions lie inside the log file (of
    /// `log_size` bytes) and relative offsets below `rel_end` (the segment's next offset minus
    /// its base, when known).
    pub fn sanity_check(&self, log_size: u64, rel_end: Option<u64>) -> Result<()> {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.len() {
            let Some((rel, pos)) = self.get(i) else {
                break;
            };
            if pos as u64 >= log_size {
                return Err(self.0.damaged(format!(
                    "entry {i} points at position {pos}, past the log's {log_size} bytes"
                )));
            }
            if rel_end.is_some_and(|end| rel as u64 >= end) {
                return Err(self.0.damaged(format!(
                    "entry {i} holds relative offset {rel}, past the segment's end"
                )));
            }
            if let Some((prel, ppos)) = prev {
                if rel <= prel || pos <= ppos {
                    return Err(self.0.damaged(format!(
                        "entry {i} ({rel}, {pos}) does not follow ({prel}, {ppos})"
                    )));
                }
            }
            prev = Some((rel, pos));
        }
        Ok(())
    }
}

/// The time index: timestamp -> relative offset of a batch up to which no record is newer.
#[derive(Debug)]
pub struct TimeIndex(IndexFile);

impl TimeIndex {
    /// Opens an existing index (or an empty new one when the file is missing).
    pub fn open(path: &Path) -> Result<TimeIndex> {
        Ok(TimeIndex(IndexFile::open(path, TIME_ENTRY_LEN, false)?))
    }

    /// Creates an empty index, replacing any file at `path`.
    pub fn create(path: &Path) -> Result<TimeIndex> {
        Ok(TimeIndex(IndexFile::open(path, TIME_ENTRY_LEN, true)?))
    }

    /// Entry `i` as (timestamp, relative offset).
    pub fn get(&self, i: usize) -> Option<(i64, u32)> {
        let e = self.0.entry(i);
        (e.len() == TIME_ENTRY_LEN).then(|| (be_i64(e, 0), be_u32(e, 8)))
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.0.entries.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The entry with the largest timestamp strictly below `timestamp`: every batch up to the
    /// one holding its offset is older than `timestamp`, so a search may start there.
    pub fn lookup_before(&self, timestamp: i64) -> Option<(i64, u32)> {
        self.0
            .last_where(|e| be_i64(e, 0) < timestamp)
            .and_then(|i| self.get(i))
    }

    /// Appends an entry; false when the index is full.
    pub fn append(&mut self, timestamp: i64, rel: u32) -> bool {
        let mut e = [0u8; TIME_ENTRY_LEN];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&rel.to_be_bytes());
        self.0.push(&e)
    }

    /// Drops every entry for relative offset `rel` or later.
    pub fn truncate_to_offset(&mut self, rel: u64) {
        let keep = self
            .0
            .last_where(|e| (be_u32(e, 8) as u64) < rel)
            .map_or(0, |i| i + 1);
        self.0.truncate_entries(keep);
    }

    /// Checks entries are strictly increasing in both fields and relative offsets lie below
    /// `rel_end` (when known).
    pub fn sanity_check(&self, rel_end: Option<u64>) -> Result<()> {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let Some((ts, rel)) = self.get(i) else {
                break;
            };
            if rel_end.is_some_and(|end| rel as u64 >= end) {
                return Err(self.0.damaged(format!(
                    "entry {i} holds relative offset {rel}, past the segment's end"
                )));
            }
            if let Some((pts, prel)) = prev {
                if ts <= pts || rel <= prel {
                    return Err(self.0.damaged(format!(
                        "entry {i} ({ts}, {rel}) does not follow ({pts}, {prel})"
                    )));
                }
            }
            prev = Some((ts, rel));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_finds_largest_entry_at_or_below() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&path).unwrap();
        idx.preallocate(8 * 100).unwrap();
        assert_eq!(idx.lookup(5), None);
        for i in 1..=50u32 {
            assert!(idx.append(i * 10, i * 1000));
        }
        assert_eq!(idx.lookup(9), None);
        assert_eq!(idx.lookup(10), Some((10, 1000)));
        assert_eq!(idx.lookup(255), Some((250, 25000)));
        assert_eq!(idx.lookup(u32::MAX), Some((500, 50000)));
        idx.sanity_check(50001, Some(501)).unwrap();
        assert!(idx.sanity_check(50000, None).is_err());
        assert!(idx.sanity_check(60000, Some(500)).is_err());
        // Preallocated size until trimmed.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 800);
        idx.trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 400);
        drop(idx);
        let idx = OffsetIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 50);
        assert_eq!(idx.lookup(499), Some((490, 49000)));
    }

    #[test]
    fn full_index_refuses_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(&dir.path().join("0.index")).unwrap();
        idx.preallocate(20).unwrap(); // two entries (rounded down)
        assert!(idx.append(1, 1));
        assert!(!idx.is_full());
        assert!(idx.append(2, 2));
        assert!(idx.is_full());
        assert!(!idx.append(3, 3));
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn preallocated_zeros_fail_the_sanity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&path).unwrap();
        idx.preallocate(80).unwrap();
        idx.append(3, 100);
        drop(idx); // not trimmed: a crash
        let idx = OffsetIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 10);
        assert!(idx.sanity_check(1000, None).is_err());
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(OffsetIndex::open(&path).is_err());
    }

    #[test]
    fn time_index_lookup_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TimeIndex::create(&dir.path().join("0.timeindex")).unwrap();
        idx.preallocate(1200).unwrap();
        for i in 1..=10i64 {
            assert!(idx.append(i * 100, i as u32 * 7));
        }
        idx.sanity_check(Some(71)).unwrap();
        assert_eq!(idx.lookup_before(100), None);
        assert_eq!(idx.lookup_before(101), Some((100, 7)));
        assert_eq!(idx.lookup_before(550), Some((500, 35)));
        idx.truncate_to_offset(35);
        assert_eq!(idx.last(), Some((400, 28)));
        assert!(idx.append(450, 30));
        idx.sanity_check(None).unwrap();
        assert!(idx.append(440, 31));
        assert!(idx.sanity_check(None).is_err());
    }
}
