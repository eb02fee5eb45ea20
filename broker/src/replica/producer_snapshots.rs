//! The producer-state snapshot files of one partition directory, and rebuilding the state from
//! them: the I/O around [`super::producers`]'s codec.
//!
//! Invariants: a snapshot named for offset `o` holds the state of every batch below `o`; one is
//! written (temp file, fsync, rename) each time the active segment changes, so rebuilding on
//! start replays at most about one segment of batch headers; snapshots above the log end (left
//! by a truncation or a torn tail) are removed before rebuilding; a damaged snapshot is
//! skipped with a warning, falling back to an older one or to a replay of the whole log.

use std::io::Write;
use std::path::{Path, PathBuf};
use strata_log::Log;

use super::producers::{ProducerState, SNAPSHOT_SUFFIX};

/// How many snapshots are kept (the newest, and one before it in case it is damaged).
const KEEP: usize = 2;

fn path_of(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// The snapshot files in `dir`, by offset, oldest first.
fn list(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) else {
            continue;
        };
        if let Ok(offset) = stem.parse::<i64>() {
            out.push((offset, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the snapshot of `state` (the batches below `offset`) and prunes old ones.
pub fn write(dir: &Path, offset: i64, state: &ProducerState) -> std::io::Result<()> {
    let path = path_of(dir, offset);
    let tmp = dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&state.encode_snapshot(offset))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    let all = list(dir)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

/// Removes every snapshot above `end` (their batches are gone).
pub fn remove_above(dir: &Path, end: i64) -> std::io::Result<()> {
    for (offset, path) in list(dir)? {
        if offset > end {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Rebuilds the producer state of `log`: the newest readable snapshot at or below its end,
/// then the headers of every batch after it. Batches replayed count as appended at `now_ms`.
pub fn rebuild(log: &Log, now_ms: i64) -> ProducerState {
    let dir = log.dir();
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    if let Err(e) = remove_above(dir, end) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove producer snapshots above the log end");
    }
    let mut state = ProducerState::default();
    let mut from = start;
    let snapshots = list(dir).unwrap_or_default();
    for (offset, path) in snapshots.into_iter().rev().filter(|(o, _)| *o <= end) {
        let decoded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| ProducerState::decode_snapshot(&bytes));
        match decoded {
            Ok((at, loaded)) if at == offset => {
                state = loaded;
                from = offset.max(start);
                break;
            }
            Ok((at, _)) => {
                tracing::warn!(file = %path.display(), at, "a producer snapshot names another offset than its file; skipping it")
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "skipping an unreadable producer snapshot")
            }
        }
    }
    match log.headers_from(from) {
        Ok(headers) => headers
            .iter()
            .filter(|h| h.base_offset >= from)
            .for_each(|h| state.record(h, now_ms)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot rebuild producer state from the log")
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::{BatchBuilder, LogConfig, ManualClock};

    fn idempotent_batch(pid: i64, seq: i32, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(strata_log::Compression::None).producer(pid, 0, seq);
        for i in 0..n {
            b.append(1_000, None, Some(format!("v{i}").as_bytes()), &[]);
        }
        b.build().unwrap().to_vec()
    }

    #[test]
    fn rebuild_uses_the_newest_snapshot_then_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let mut log = Log::open(dir.path(), LogConfig::default(), clock).unwrap();
        let mut state = ProducerState::default();
        for seq in [0, 3] {
            let mut b = idempotent_batch(5, seq, 3);
            log.append(&mut b, 0).unwrap();
            for (h, _) in strata_log::batch::BatchIter::new(&b).flatten() {
                state.record(&h, 0);
            }
        }
        write(dir.path(), log.log_end_offset(), &state).unwrap();
        let mut tail = idempotent_batch(5, 6, 2);
        log.append(&mut tail, 0).unwrap();
        let rebuilt = rebuild(&log, 0);
        let next = strata_log::batch::BatchIter::new(&idempotent_batch(5, 8, 1))
            .next()
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(rebuilt.check(&next), super::super::producers::Check::Append);
        // A snapshot above the log end (after a truncation) is removed and not used.
        write(dir.path(), 1_000, &ProducerState::default()).unwrap();
        let rebuilt = rebuild(&log, 0);
        assert_eq!(rebuilt.check(&next), super::super::producers::Check::Append);
        assert!(!path_of(dir.path(), 1_000).exists());
        // A damaged newest snapshot falls back to replaying the log.
        std::fs::write(path_of(dir.path(), 6), b"garbage").unwrap();
        let rebuilt = rebuild(&log, 0);
        assert_eq!(rebuilt.check(&next), super::super::producers::Check::Append);
    }
}
