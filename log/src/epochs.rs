//! The leader-epoch cache of one partition and its checkpoint file, `leader-epoch-checkpoint`:
//! for each leader epoch that wrote to (or took over) the log, the offset where it starts.
//! Followers ask a new leader where their last common epoch ends and truncate there, so that
//! no replica keeps a tail the new leader never had.
//!
//! The checkpoint is a text file, the same as Kafka's:
//!
//! ```text
//! 0           format version: the only one written and read (READABLE_VERSIONS)
//! 3           number of entries
//! 0 0         epoch start_offset, one line per entry, both strictly increasing
//! 2 5
//! 5 9
//! ```
//!
//! It carries no CRC, unlike the other persisted formats: it is a few dozen bytes, written
//! whole to a temp file, fsynced and renamed over the old one, so a crash leaves either the old
//! or the new file; it is only a cache of what the batch headers already say, and `Log::open`
//! rebuilds it from them when it does not parse, is not monotonic, or disagrees with the last
//! batch. A damaged digit that still parses and stays monotonic would go unnoticed; that is the
//! price of keeping Kafka's format (readable by people and Kafka's tools).
//!
//! Invariants kept here: entries are strictly increasing in epoch and start offset, epochs are
//! never negative, and the file on disk matches memory after every successful `save`. Keeping
//! entries within the log's bounds (start offset, end offset) is [`crate::Log`]'s job.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The format version written on the first line.
pub const CHECKPOINT_VERSION: u32 = 0;
/// Format versions this code reads.
pub const READABLE_VERSIONS: &[u32] = &[0];

/// One cached epoch: `epoch` started at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The in-memory cache and where it is persisted.
#[derive(Debug)]
pub struct EpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// An empty cache persisted in `dir` (nothing is written until `save`).
    pub fn new(dir: &Path) -> Self {
        EpochCache {
            path: dir.join(CHECKPOINT_FILE),
            entries: Vec::new(),
        }
    }

    /// Reads the checkpoint in `dir`. `Ok(None)` when the file is missing; a file that does
    /// not parse or is not monotonic is an error saying why (the caller rebuilds the cache).
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let mut cache = EpochCache::new(dir);
        let text = match std::fs::read_to_string(&cache.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(cache.corrupt("it is not UTF-8 text".into()))
            }
            Err(e) => return Err(LogError::io(format!("reading {}", cache.path.display()), e)),
        };
        cache.entries = parse(&text).map_err(|reason| cache.corrupt(reason))?;
        Ok(Some(cache))
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::CorruptFile {
            path: self.path.display().to_string(),
            reason,
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// True when `assign` would record `epoch`: it is not negative and newer than the latest.
    pub fn is_new(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest().is_none_or(|e| epoch > e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest entry and
    /// not negative. Entries starting at or after `start_offset` (epochs that never wrote a
    /// batch) are replaced. Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.is_new(epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops every entry starting at or after `offset` (the log was cut there).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < offset);
        self.entries.len() != before
    }

    /// The log now starts at `offset`: drops entries that end at or before it and moves the
    /// start of the one covering it up to `offset`.
    pub fn truncate_from_start(&mut self, offset: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= offset);
        if covering == 0 {
            return false; // every entry starts after `offset`
        }
        let drop = covering - 1;
        let moved = self.entries[drop].start_offset != offset;
        self.entries.drain(..drop);
        self.entries[0].start_offset = offset;
        drop > 0 || moved
    }

    /// The largest cached epoch <= `epoch` and where it ends: the next entry's start, or
    /// `log_end_offset` for the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        let found = self.entries.get(i.checked_sub(1)?)?;
        let end = self
            .entries
            .get(i)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    pub fn replace(&mut self, entries: Vec<EpochEntry>) {
        self.entries = entries;
    }

    /// Writes the checkpoint: temp file, fsync, rename, directory fsync.
    pub fn save(&self) -> Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = format(&self.entries);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            let dir = self.path.parent().unwrap_or(Path::new("."));
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| LogError::io(format!("writing {}", self.path.display()), e))
    }
}

/// The checkpoint text for `entries`.
pub fn format(entries: &[EpochEntry]) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    text
}

/// Parses checkpoint text; the error says what is wrong.
pub fn parse(text: &str) -> std::result::Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("the first line is not a format version")?;
    if !READABLE_VERSIONS.contains(&version) {
        return Err(format!(
            "format version {version} is not one this build reads ({READABLE_VERSIONS:?})"
        ));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("the second line is not an entry count")?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for (i, line) in lines.by_ref().take(count).enumerate() {
        let mut fields = line.split_whitespace();
        let (epoch, start) = match (fields.next(), fields.next(), fields.next()) {
            (Some(e), Some(s), None) => (e.parse::<i32>().ok(), s.parse::<i64>().ok()),
            _ => (None, None),
        };
        let (Some(epoch), Some(start_offset)) = (epoch, start) else {
            return Err(format!(
                "entry {i} ({line:?}) is not \"epoch start_offset\""
            ));
        };
        if epoch < 0 || start_offset < 0 {
            return Err(format!("entry {i} ({line:?}) is negative"));
        }
        if let Some(prev) = entries.last() {
            if epoch <= prev.epoch || start_offset <= prev.start_offset {
                return Err(format!(
                    "entry {i} ({line:?}) does not follow epoch {} at offset {}",
                    prev.epoch, prev.start_offset
                ));
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if entries.len() != count {
        return Err(format!(
            "the file announces {count} entries but holds {}",
            entries.len()
        ));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(format!("more lines follow the {count} entries"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        let entries = vec![e(0, 0), e(2, 5), e(5, 9)];
        let text = format(&entries);
        assert_eq!(text, "0\n3\n0 0\n2 5\n5 9\n");
        assert_eq!(parse(&text).unwrap(), entries);
        assert_eq!(parse("0\n0\n").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        for (text, why) in [
            ("", "format version"),
            ("1\n0\n", "version 1"),
            ("0\nx\n", "entry count"),
            ("0\n2\n0 0\n", "announces 2"),
            ("0\n1\n0 0\n3 4\n", "more lines"),
            ("0\n2\n1 5\n1 7\n", "does not follow"),
            ("0\n2\n1 5\n2 5\n", "does not follow"),
            ("0\n1\n-1 0\n", "negative"),
            ("0\n1\n1 2 3\n", "not \"epoch"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn cache_operations() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::new(dir.path());
        assert_eq!(c.end_offset_for(3, 10), None);
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 4));
        assert!(!c.assign(-1, 4));
        assert!(c.assign(3, 4));
        assert!(c.assign(4, 4)); // epoch 3 wrote nothing: replaced
        assert_eq!(c.entries(), &[e(1, 0), e(4, 4)]);
        assert_eq!(c.end_offset_for(3, 10), Some((1, 4)));
        assert_eq!(c.end_offset_for(4, 10), Some((4, 10)));
        assert_eq!(c.end_offset_for(0, 10), None);
        assert!(c.assign(6, 8));
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(5));
        assert_eq!(c.entries(), &[e(4, 5), e(6, 8)]);
        assert!(c.truncate_from_end(8));
        assert!(!c.truncate_from_end(8));
        c.save().unwrap();
        assert_eq!(
            EpochCache::load(dir.path()).unwrap().unwrap().entries(),
            &[e(4, 5)]
        );
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"0\n\xff\n").unwrap();
        assert!(EpochCache::load(dir.path()).is_err());
        std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert!(EpochCache::load(dir.path()).unwrap().is_none());
    }
}
