//! Which part of a sealed local segment the leader uploads next, given where the remote log
//! ends. Pure: the rule is tested here with no store and no log.
//!
//! Replicas roll segments at different batches (a time-based roll fires on each replica's own
//! clock), so a new leader's segment can straddle the manifest's end. The manifest's end is the
//! next offset after a batch the old leader uploaded, and batches are the same bytes on every
//! replica, so it is a batch boundary in the new leader's segment too: the leader uploads the
//! segment from there. A segment wholly below the end is already remote.
//!
//! Invariant: an upload starts exactly at the remote end (or at the segment's base when the
//! remote log is empty), so the remote log never has a hole or an overlap.

/// What to do with one sealed, committed local segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every offset of it is already remote.
    Skip,
    /// Upload its batches from offset `from` (its base, or the remote end inside it).
    Upload { from: i64 },
    /// The remote log ends below the segment's base: offsets `[remote_end, base)` are in
    /// neither tier on this leader, and uploading would leave a hole.
    Gap { remote_end: i64, base: i64 },
}

/// The step for a segment of offsets `[base, next)` when the remote log ends at
/// `remote_end` (`None`: it holds nothing yet).
pub fn step(base: i64, next: i64, remote_end: Option<i64>) -> Step {
    match remote_end {
        None => Step::Upload { from: base },
        Some(end) if next <= end => Step::Skip,
        Some(end) if base <= end => Step::Upload { from: end },
        Some(end) => Step::Gap {
            remote_end: end,
            base,
        },
    }
}

/// Checks that `chunk` (whole batches the local log returned for a read at `offset`) starts
/// with a batch whose base offset is `offset`, and returns the offset after its last batch.
/// `None` when it starts elsewhere: `offset` (the remote end) is inside a local batch, so the
/// local history differs from the uploaded one; or when the chunk holds no whole batch.
pub fn chunk_end(chunk: &[u8], offset: i64) -> Option<i64> {
    let mut end = None;
    for item in strata_log::batch::BatchIter::new(chunk) {
        let (header, _) = item.ok()?;
        if end.is_none() && header.base_offset != offset {
            return None;
        }
        end = Some(header.last_offset() + 1);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::records::BatchBuilder;
    use strata_log::Compression;

    #[test]
    fn a_segment_is_uploaded_from_the_remote_end_or_skipped() {
        assert_eq!(step(0, 100, None), Step::Upload { from: 0 });
        assert_eq!(step(0, 100, Some(0)), Step::Upload { from: 0 });
        assert_eq!(step(0, 100, Some(100)), Step::Skip);
        assert_eq!(step(0, 100, Some(150)), Step::Skip);
        // The straddling segment of a new leader: upload from the end, not refuse it.
        assert_eq!(step(0, 100, Some(40)), Step::Upload { from: 40 });
        assert_eq!(step(100, 200, Some(100)), Step::Upload { from: 100 });
        assert_eq!(
            step(120, 200, Some(100)),
            Step::Gap {
                remote_end: 100,
                base: 120
            }
        );
    }

    fn batches(base: i64, counts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = base;
        for &n in counts {
            let mut b = BatchBuilder::new(Compression::None);
            for i in 0..n {
                b.append(1_000, None, Some(format!("r{i}").as_bytes()), &[]);
            }
            let mut bytes = b.build().unwrap().to_vec();
            strata_log::batch::stamp(&mut bytes, offset, 1);
            offset += n as i64;
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn a_chunk_must_start_at_the_offset_read() {
        let seg = batches(10, &[3, 4, 5]);
        assert_eq!(chunk_end(&seg, 10), Some(22));
        assert_eq!(chunk_end(&batches(13, &[4, 5]), 13), Some(22));
        // Read inside a batch (a diverged history), or nothing.
        assert_eq!(chunk_end(&seg, 11), None);
        assert_eq!(chunk_end(&[], 10), None);
    }
}
