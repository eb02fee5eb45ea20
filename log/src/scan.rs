//! Walking the batches of a segment file from a position to its end, reading large chunks:
//! the one sequential pass behind crash recovery (with CRC checks), index rebuilds and the
//! tail scan of a cleanly closed segment (headers only).
//!
//! Invariant kept here: a walk reports every whole, well-framed batch with dense offsets
//! before the first problem and stops there, saying where and why; it never reads past the
//! given end, and never allocates more than the larger of one chunk and one batch that
//! actually lies in the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, Result};

/// Bytes read at a time when walking a whole segment (recovery, index rebuild).
const SCAN_CHUNK: usize = 1024 * 1024;

/// Where a walk over a segment's batches stopped.
#[derive(Debug)]
pub struct ScanStop {
    pub pos: u64,
    /// Why it stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Walks the whole batches of `file` from `start` to `size`, reading large chunks, calling `f`
/// with each batch's position and header. With `verify`, each batch is also fully validated
/// (CRC included). Batches must carry dense offsets from `expect`.
pub fn scan(
    file: &File,
    path: &Path,
    (start, size): (u64, u64),
    verify: bool,
    mut expect: i64,
    mut f: impl FnMut(u64, &BatchHeader),
) -> Result<ScanStop> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut pos = start;
    let stop = |pos, problem: String| {
        Ok(ScanStop {
            pos,
            problem: Some(problem),
        })
    };
    while pos < size {
        let remaining = size - pos;
        if remaining < HEADER_LEN as u64 {
            return stop(
                pos,
                format!("{remaining} bytes are too few for a batch header"),
            );
        }
        let refill = |buf: &mut Vec<u8>, buf_start: &mut u64, want: usize| -> Result<()> {
            let n = (want.max(SCAN_CHUNK) as u64).min(remaining) as usize;
            buf.resize(n, 0);
            file.read_exact_at(buf, pos)
                .map_err(|e| LogError::io(format!("reading {} at {pos}", path.display()), e))?;
            *buf_start = pos;
            Ok(())
        };
        if pos + HEADER_LEN as u64 > buf_start + buf.len() as u64 {
            refill(&mut buf, &mut buf_start, HEADER_LEN)?;
        }
        let off = (pos - buf_start) as usize;
        let header = match BatchHeader::parse(&buf[off..]) {
            Ok(h) => h,
            Err(e) => return stop(pos, e.to_string()),
        };
        let len = header.total_len();
        if len as u64 > remaining {
            return stop(
                pos,
                format!("the batch declares {len} bytes but {remaining} remain"),
            );
        }
        if header.base_offset != expect {
            return stop(
                pos,
                format!(
                    "the batch starts at offset {}, expected {expect}",
                    header.base_offset
                ),
            );
        }
        if verify {
            if pos + len as u64 > buf_start + buf.len() as u64 {
                refill(&mut buf, &mut buf_start, len)?;
            }
            let off = (pos - buf_start) as usize;
            if let Err(e) = batch::validate(&buf[off..off + len]) {
                return stop(pos, e.to_string());
            }
        }
        f(pos, &header);
        expect = header.next_offset();
        pos += len as u64;
    }
    Ok(ScanStop { pos, problem: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Compression};

    fn batch(n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..n {
            b.append(i as i64, None, Some(b"value"), &[]);
        }
        b.build().unwrap().to_vec()
    }

    #[test]
    fn stops_at_the_first_problem_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut bytes = Vec::new();
        let mut next = 10;
        for n in [1, 3, 2] {
            let mut b = batch(n);
            next = batch::stamp_all(&mut b, next, 0);
            bytes.extend(b);
        }
        let good = bytes.len() as u64;
        let mut bad = batch(1);
        batch::stamp_all(&mut bad, next, 0);
        let last = bad.len() - 1;
        bad[last] ^= 1; // CRC mismatch
        bytes.extend(&bad);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let size = bytes.len() as u64;

        let mut seen = Vec::new();
        let stop = scan(&file, &path, (0, size), true, 10, |p, h| {
            seen.push((p, h.base_offset))
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].1, 11);
        assert_eq!(stop.pos, good);
        assert!(stop.problem.unwrap().contains("CRC"));

        // Without CRC checks the damaged batch passes (framing is fine).
        let stop = scan(&file, &path, (0, size), false, 10, |_, _| {}).unwrap();
        assert_eq!((stop.pos, stop.problem), (size, None));
        // Wrong first offset.
        let stop = scan(&file, &path, (0, size), false, 0, |_, _| {}).unwrap();
        assert_eq!(stop.pos, 0);
        assert!(stop.problem.unwrap().contains("expected 0"));
        // A torn header.
        let stop = scan(&file, &path, (0, good + 20), false, 10, |_, _| {}).unwrap();
        assert_eq!(stop.pos, good);
        assert!(stop.problem.unwrap().contains("too few"));
    }
}
