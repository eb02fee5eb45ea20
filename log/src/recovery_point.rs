//! The recovery-point checkpoint of one partition, `recovery-point-checkpoint`: the offset
//! below which every record is known to be on disk (fsynced). After an unclean stop, recovery
//! re-validates every segment holding offsets at or above it, not just the last one.
//!
//! The file is text, like the leader-epoch checkpoint:
//!
//! ```text
//! 0           format version: the only one written and read (READABLE_VERSIONS)
//! 1234        the recovery point
//! ```
//!
//! It is written whole to a temp file, fsynced and renamed, so a crash leaves the old or the
//! new file. A file that is missing or does not parse counts as recovery point 0 (everything is
//! re-validated): the safe direction, never a reason to trust unsynced data.
//!
//! Invariant: the recovery point only moves forward past data that was fsynced before the
//! checkpoint was written; truncation moves it back to the new log end.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE: &str = "recovery-point-checkpoint";
/// The format version written on the first line.
pub const CHECKPOINT_VERSION: u32 = 0;
/// Format versions this code reads.
pub const READABLE_VERSIONS: &[u32] = &[0];

/// Reads the recovery point of the log in `dir`; 0 when the file is missing or unreadable.
pub fn load(dir: &Path) -> i64 {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse(&text) {
            Some(offset) => offset,
            None => {
                tracing::warn!(file = %path.display(),
                    "recovery-point checkpoint does not parse; re-validating the whole log");
                0
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e,
                "cannot read the recovery-point checkpoint; re-validating the whole log");
            0
        }
    }
}

fn parse(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    let version: u32 = lines.next()?.trim().parse().ok()?;
    if !READABLE_VERSIONS.contains(&version) {
        return None;
    }
    let offset: i64 = lines.next()?.trim().parse().ok()?;
    (offset >= 0 && lines.all(|l| l.trim().is_empty())).then_some(offset)
}

/// Writes the recovery point: temp file, fsync, rename, directory fsync.
pub fn save(dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(format!("{CHECKPOINT_VERSION}\n{offset}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| LogError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_falls_back_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), 0, "missing");
        save(dir.path(), 4242).unwrap();
        assert_eq!(load(dir.path()), 4242);
        for bad in ["", "0\n", "9\n5\n", "0\n-3\n", "0\nx\n", "0\n5\n6\n"] {
            std::fs::write(dir.path().join(CHECKPOINT_FILE), bad).unwrap();
            assert_eq!(load(dir.path()), 0, "{bad:?}");
        }
    }
}
