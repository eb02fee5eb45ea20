//! The segment object: a sealed segment's batches as independent zstd frames, followed by a
//! footer that indexes the frames by offset and time. A reader fetches the footer once, then
//! exactly the frame it needs with one ranged GET.
//!
//! Invariants kept here: a frame holds whole batches only (a batch never straddles two frames),
//! every frame and the footer carry a CRC-32C, and nothing that fails a check is ever returned
//! as records ([`decode_frame`] re-validates every batch's own CRC after decompression).
//!
//! # Byte layout (version 1, all integers big-endian)
//!
//! ```text
//! +----------------------------------------------+ 0
//! | frame 0: one zstd frame (whole batches,      |
//! |          ~frame_bytes uncompressed; a batch  |
//! |          larger than that is a frame alone)  |
//! +----------------------------------------------+ frames[1].position
//! | frame 1 ...                                  |
//! | ...                                          |
//! +----------------------------------------------+ footer start = end of last frame
//! | footer body (footer_len bytes):              |
//! |   frame_count        u32                     |
//! |   frame_count x FrameInfo (44 bytes each):   |
//! |     first_offset     i64                     |
//! |     last_offset      i64                     |
//! |     max_timestamp    i64                     |
//! |     position         u64  (of the frame)     |
//! |     compressed_len   u32                     |
//! |     uncompressed_len u32                     |
//! |     crc32c           u32  (of the frame)     |
//! |   base_offset        i64  (of the segment)   |
//! |   next_offset        i64  (last offset + 1)  |
//! |   max_timestamp      i64                     |
//! |   record_count       i64                     |
//! |   segment_bytes      u64  (uncompressed)     |
//! +----------------------------------------------+ object_len - TRAILER_LEN
//! | trailer (TRAILER_LEN = 18 bytes):            |
//! |   footer_len         u32                     |
//! |   format_version     u16                     |
//! |   magic              8 bytes "STRATASG"      |
//! |   footer_crc32c      u32  (over the footer   |
//! |                      body and the 14 trailer |
//! |                      bytes before it)        |
//! +----------------------------------------------+ object_len
//! ```
//!
//! Versions the reader accepts: [`READABLE_VERSIONS`] (= `[1]`). The writer writes
//! [`FORMAT_VERSION`].
//!
//! # Reading the footer
//!
//! Fetch a generous tail ([`SUGGESTED_TAIL_LEN`], 64 KiB: room for ~1,480 frames, i.e. a
//! ~3 GiB segment at 2 MiB frames) and call [`parse_footer`]. If the footer is longer than the
//! tail, it answers [`FormatError::ShortTail`] with the exact number of tail bytes to fetch
//! (also given by [`tail_len_needed`] from the trailer alone); fetch that many and parse again.
//! This module does no I/O.

use bytes::Bytes;
use strata_log::batch::{validate, BatchIter};
use strata_log::ErrorKind;

/// Magic number at the very end of every segment object.
pub const MAGIC: &[u8; 8] = b"STRATASG";
/// The version this code writes.
pub const FORMAT_VERSION: u16 = 1;
/// The versions this code can read.
pub const READABLE_VERSIONS: &[u16] = &[1];
/// Fixed size of the trailer: footer_len (4) + version (2) + magic (8) + crc (4).
pub const TRAILER_LEN: usize = 18;
/// Tail bytes worth fetching in one GET to get the footer in one round trip almost always.
pub const SUGGESTED_TAIL_LEN: usize = 64 * 1024;
/// Default uncompressed size of a frame.
pub const DEFAULT_FRAME_BYTES: usize = 2 * 1024 * 1024;

const FRAME_INFO_LEN: usize = 44;
/// The largest footer a reader fetches: 1.5 million frames, far more than a segment of
/// `segment.bytes` in frames of [`DEFAULT_FRAME_BYTES`] has. A larger claim is corrupt, so a
/// bad trailer cannot make a reader fetch and hold gigabytes.
pub const MAX_FOOTER_LEN: u32 = 64 * 1024 * 1024;
/// The most a frame may claim to decompress to: a frame holds whole batches, none larger than
/// a produce request (64 MiB by default), so a larger claim is corrupt and never allocated.
pub const MAX_FRAME_UNCOMPRESSED: u32 = 128 * 1024 * 1024;
const FOOTER_FIXED_LEN: usize = 4 + 40;

/// Why a segment object could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The segment given to the encoder is not a valid sequence of batches.
    #[error("invalid segment: {0}")]
    InvalidSegment(String),
    /// Stored bytes failed a check.
    #[error("{0}")]
    Corrupt(String),
    /// The object was written by a format version this code cannot read.
    #[error("format version {version} is not one this broker reads ({supported:?})")]
    UnsupportedVersion {
        version: u16,
        supported: &'static [u16],
    },
    /// The tail given to [`parse_footer`] is shorter than trailer + footer.
    #[error("the footer needs the last {need} bytes of the object, but only {have} were given")]
    ShortTail { have: usize, need: usize },
}

impl FormatError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FormatError::InvalidSegment(_) | FormatError::ShortTail { .. } => {
                ErrorKind::InvalidInput
            }
            FormatError::Corrupt(_) | FormatError::UnsupportedVersion { .. } => ErrorKind::Corrupt,
        }
    }
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// One frame's entry in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Byte position of the compressed frame in the object.
    pub position: u64,
    pub compressed_len: u32,
    pub uncompressed_len: u32,
    /// CRC-32C of the compressed frame bytes.
    pub crc: u32,
}

impl FrameInfo {
    /// The byte range to ask the object store for.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.position..self.position + self.compressed_len as u64
    }
}

/// The parsed footer of a segment object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub version: u16,
    pub frames: Vec<FrameInfo>,
    pub base_offset: i64,
    /// The offset after the segment's last record.
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub record_count: i64,
    /// Total uncompressed size of the batches.
    pub segment_bytes: u64,
}

impl Footer {
    /// The frame holding `offset`, or the first frame after it when `offset` falls in a gap;
    /// `None` when `offset` is outside `base_offset..next_offset`.
    pub fn frame_for(&self, offset: i64) -> Option<&FrameInfo> {
        if offset < self.base_offset || offset >= self.next_offset {
            return None;
        }
        let i = self.frames.partition_point(|f| f.last_offset < offset);
        self.frames.get(i)
    }

    /// The first frame holding a record with a timestamp at or after `ts` (the frame where the
    /// earliest such offset lives), or `None` when every record is older.
    pub fn frame_for_timestamp(&self, ts: i64) -> Option<&FrameInfo> {
        self.frames.iter().find(|f| f.max_timestamp >= ts)
    }

    /// Index of a frame in `frames` (by position).
    pub fn frame_index(&self, info: &FrameInfo) -> Option<usize> {
        self.frames
            .binary_search_by_key(&info.position, |f| f.position)
            .ok()
    }

    /// Length of the encoded footer body.
    pub fn body_len(&self) -> usize {
        4 + self.frames.len() * FRAME_INFO_LEN + 40
    }

    /// The object length this footer implies: frames, footer body, trailer.
    pub fn object_len(&self) -> u64 {
        let frames_end = self
            .frames
            .last()
            .map(|f| f.position + f.compressed_len as u64)
            .unwrap_or(0);
        frames_end + (self.body_len() + TRAILER_LEN) as u64
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&(self.frames.len() as u32).to_be_bytes());
        for f in &self.frames {
            out.extend_from_slice(&f.first_offset.to_be_bytes());
            out.extend_from_slice(&f.last_offset.to_be_bytes());
            out.extend_from_slice(&f.max_timestamp.to_be_bytes());
            out.extend_from_slice(&f.position.to_be_bytes());
            out.extend_from_slice(&f.compressed_len.to_be_bytes());
            out.extend_from_slice(&f.uncompressed_len.to_be_bytes());
            out.extend_from_slice(&f.crc.to_be_bytes());
        }
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.next_offset.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.record_count.to_be_bytes());
        out.extend_from_slice(&self.segment_bytes.to_be_bytes());
        let body_len = out.len() - start;
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(MAGIC);
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

/// An encoded segment object and its footer.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Bytes,
    pub footer: Footer,
}

/// Encodes a sealed segment (concatenated, CRC-valid RecordBatch v2 batches whose first batch
/// starts at or after `base_offset`) into one object. Every batch is validated first: a
/// corrupt segment is refused, never uploaded.
pub fn encode_segment(
    batches: &[u8],
    base_offset: i64,
    frame_bytes: usize,
    zstd_level: i32,
) -> Result<EncodedSegment> {
    let mut enc = SegmentEncoder::new(base_offset, frame_bytes, zstd_level);
    let mut out = Vec::with_capacity(batches.len() / 2 + 1024);
    for item in BatchIter::new(batches) {
        let (_, bytes) = item.map_err(|e| FormatError::InvalidSegment(e.to_string()))?;
        if let Some(frame) = enc.push(bytes)? {
            out.extend_from_slice(&frame);
        }
    }
    let (tail, footer) = enc.finish()?;
    out.extend_from_slice(&tail);
    Ok(EncodedSegment {
        bytes: Bytes::from(out),
        footer,
    })
}

/// Builds a segment object batch by batch, so that a segment of any size is encoded (and
/// uploaded) in memory bounded by one frame: [`SegmentEncoder::push`] returns each frame's
/// compressed bytes as it is sealed, [`SegmentEncoder::finish`] the last frame and the footer.
/// The object is the concatenation of everything returned, in order.
#[derive(Debug)]
pub struct SegmentEncoder {
    base_offset: i64,
    frame_bytes: usize,
    zstd_level: i32,
    /// The batches of the frame being built, and its stats.
    pending: Vec<u8>,
    current: Option<FrameInfo>,
    frames: Vec<FrameInfo>,
    /// Compressed bytes returned so far: the position of the next frame.
    written: u64,
    record_count: i64,
    max_timestamp: i64,
    prev_last: i64,
    segment_bytes: u64,
}

impl SegmentEncoder {
    pub fn new(base_offset: i64, frame_bytes: usize, zstd_level: i32) -> Self {
        SegmentEncoder {
            base_offset,
            frame_bytes: frame_bytes.max(1),
            zstd_level,
            pending: Vec::new(),
            current: None,
            frames: Vec::new(),
            written: 0,
            record_count: 0,
            max_timestamp: -1,
            prev_last: base_offset - 1,
            segment_bytes: 0,
        }
    }

    /// Adds one whole batch (validated here: CRC, framing, offsets after the previous batch's).
    /// Returns the compressed bytes of the frame it sealed, when the batch did not fit in it.
    pub fn push(&mut self, batch: &[u8]) -> Result<Option<Vec<u8>>> {
        let h = validate(batch).map_err(|e| FormatError::InvalidSegment(e.to_string()))?;
        if h.base_offset <= self.prev_last {
            return Err(FormatError::InvalidSegment(format!(
                "the batch at offset {} does not follow offset {} (segment base offset {})",
                h.base_offset, self.prev_last, self.base_offset
            )));
        }
        self.prev_last = h.last_offset();
        self.record_count += h.record_count as i64;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.segment_bytes += batch.len() as u64;
        let fits = self.pending.len() + batch.len() <= self.frame_bytes;
        if let Some(f) = self.current.as_mut() {
            if fits {
                f.last_offset = h.last_offset();
                f.max_timestamp = f.max_timestamp.max(h.max_timestamp);
                self.pending.extend_from_slice(batch);
                return Ok(None);
            }
        }
        let sealed = self.seal()?;
        self.pending.extend_from_slice(batch);
        self.current = Some(FrameInfo {
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
            position: 0,
            compressed_len: 0,
            uncompressed_len: 0,
            crc: 0,
        });
        Ok(sealed)
    }

    /// Compresses the frame being built, if any.
    fn seal(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.current.take() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut info = seal_frame(f, &self.pending, &mut out, self.zstd_level)?;
        info.position = self.written;
        self.written += out.len() as u64;
        self.frames.push(info);
        self.pending.clear();
        Ok(Some(out))
    }

    /// Seals the last frame; returns its bytes followed by the footer, and the footer.
    pub fn finish(mut self) -> Result<(Vec<u8>, Footer)> {
        if self.current.is_none() && self.frames.is_empty() {
            return Err(FormatError::InvalidSegment(format!(
                "the segment at base offset {} holds no batch",
                self.base_offset
            )));
        }
        let mut out = self.seal()?.unwrap_or_default();
        let footer = Footer {
            version: FORMAT_VERSION,
            frames: std::mem::take(&mut self.frames),
            base_offset: self.base_offset,
            next_offset: self.prev_last + 1,
            max_timestamp: self.max_timestamp,
            record_count: self.record_count,
            segment_bytes: self.segment_bytes,
        };
        footer.encode_into(&mut out);
        Ok((out, footer))
    }
}

fn seal_frame(
    mut info: FrameInfo,
    data: &[u8],
    out: &mut Vec<u8>,
    zstd_level: i32,
) -> Result<FrameInfo> {
    let uncompressed_len = u32::try_from(data.len()).map_err(|_| {
        FormatError::InvalidSegment(format!(
            "the batch at offset {} is larger than 4 GiB",
            info.first_offset
        ))
    })?;
    let compressed = zstd::bulk::compress(data, zstd_level).map_err(|e| {
        FormatError::InvalidSegment(format!("zstd level {zstd_level} refused to compress: {e}"))
    })?;
    info.position = out.len() as u64;
    info.compressed_len = compressed.len() as u32;
    info.uncompressed_len = uncompressed_len;
    info.crc = crc32c::crc32c(&compressed);
    out.extend_from_slice(&compressed);
    Ok(info)
}

/// Reads the trailer at the end of `tail` and returns how many tail bytes (trailer + footer)
/// [`parse_footer`] needs.
pub fn tail_len_needed(tail: &[u8]) -> Result<usize> {
    Ok(read_trailer(tail)?.0 as usize + TRAILER_LEN)
}

/// Returns (footer_len, version) after checking the magic and the version.
fn read_trailer(tail: &[u8]) -> Result<(u32, u16)> {
    if tail.len() < TRAILER_LEN {
        return Err(FormatError::ShortTail {
            have: tail.len(),
            need: TRAILER_LEN,
        });
    }
    let t = &tail[tail.len() - TRAILER_LEN..];
    if &t[6..14] != MAGIC {
        return Err(FormatError::Corrupt(
            "the trailer has no STRATASG magic: not a Strata segment object, or truncated"
                .to_string(),
        ));
    }
    let version = u16::from_be_bytes([t[4], t[5]]);
    if !READABLE_VERSIONS.contains(&version) {
        return Err(FormatError::UnsupportedVersion {
            version,
            supported: READABLE_VERSIONS,
        });
    }
    let footer_len = u32::from_be_bytes(t[0..4].try_into().expect("4 bytes"));
    if footer_len > MAX_FOOTER_LEN {
        return Err(FormatError::Corrupt(format!(
            "the trailer claims a footer of {footer_len} bytes, more than the {MAX_FOOTER_LEN} \
             any segment object has"
        )));
    }
    Ok((footer_len, version))
}

/// Parses the footer from the last bytes of a segment object (`tail` may be longer than the
/// footer; only its end is read). Checks magic, version, CRC and the footer's own consistency.
pub fn parse_footer(tail: &[u8]) -> Result<Footer> {
    let (footer_len, version) = read_trailer(tail)?;
    let need = footer_len as usize + TRAILER_LEN;
    if tail.len() < need {
        return Err(FormatError::ShortTail {
            have: tail.len(),
            need,
        });
    }
    let covered = &tail[tail.len() - need..tail.len() - 4];
    let stored = u32::from_be_bytes(tail[tail.len() - 4..].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(covered);
    if stored != computed {
        return Err(FormatError::Corrupt(format!(
            "footer CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let body = &covered[..footer_len as usize];
    let mut r = Reader(body);
    let count = r.u32()? as usize;
    if body.len() != FOOTER_FIXED_LEN + count * FRAME_INFO_LEN {
        return Err(FormatError::Corrupt(format!(
            "footer is {} bytes but declares {count} frames",
            body.len()
        )));
    }
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        frames.push(FrameInfo {
            first_offset: r.i64()?,
            last_offset: r.i64()?,
            max_timestamp: r.i64()?,
            position: r.u64()?,
            compressed_len: r.u32()?,
            uncompressed_len: r.u32()?,
            crc: r.u32()?,
        });
    }
    let footer = Footer {
        version,
        frames,
        base_offset: r.i64()?,
        next_offset: r.i64()?,
        max_timestamp: r.i64()?,
        record_count: r.i64()?,
        segment_bytes: r.u64()?,
    };
    check_footer(&footer)?;
    Ok(footer)
}

fn check_footer(f: &Footer) -> Result<()> {
    let bad = |why: String| Err(FormatError::Corrupt(format!("inconsistent footer: {why}")));
    if f.frames.is_empty() {
        return bad("no frame".to_string());
    }
    let mut pos = 0u64;
    let mut prev_last = f.base_offset - 1;
    for (i, fr) in f.frames.iter().enumerate() {
        if fr.position != pos {
            return bad(format!(
                "frame {i} at byte {} should be at {pos}",
                fr.position
            ));
        }
        if fr.first_offset <= prev_last || fr.last_offset < fr.first_offset {
            return bad(format!(
                "frame {i} covers offsets {}..={} after offset {prev_last}",
                fr.first_offset, fr.last_offset
            ));
        }
        pos += fr.compressed_len as u64;
        prev_last = fr.last_offset;
    }
    if f.next_offset != prev_last + 1 {
        return bad(format!(
            "next offset {} but the last frame ends at offset {prev_last}",
            f.next_offset
        ));
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(FormatError::Corrupt("footer ends early".to_string()));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("N bytes"))
    }
    fn u32(&mut self) -> Result<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
}

/// Checks a fetched frame against its footer entry (length, CRC-32C), decompresses it with the
/// footer's size as the bound, and validates every batch (framing, CRC, offsets). Any mismatch
/// is [`FormatError::Corrupt`]; the bytes are never returned as records.
pub fn decode_frame(frame: &[u8], info: &FrameInfo) -> Result<Bytes> {
    let at = info.first_offset;
    if frame.len() != info.compressed_len as usize {
        return Err(FormatError::Corrupt(format!(
            "the frame at offset {at} is {} bytes, the footer says {}",
            frame.len(),
            info.compressed_len
        )));
    }
    let crc = crc32c::crc32c(frame);
    if crc != info.crc {
        return Err(FormatError::Corrupt(format!(
            "CRC-32C mismatch in the frame at offset {at}: stored {:#010x}, computed {crc:#010x}",
            info.crc
        )));
    }
    if info.uncompressed_len > MAX_FRAME_UNCOMPRESSED {
        return Err(FormatError::Corrupt(format!(
            "the frame at offset {at} claims {} bytes uncompressed, more than the {} any frame \
             holds",
            info.uncompressed_len, MAX_FRAME_UNCOMPRESSED
        )));
    }
    let data = zstd::bulk::decompress(frame, info.uncompressed_len as usize).map_err(|e| {
        FormatError::Corrupt(format!("the frame at offset {at} does not decompress: {e}"))
    })?;
    if data.len() != info.uncompressed_len as usize {
        return Err(FormatError::Corrupt(format!(
            "the frame at offset {at} decompresses to {} bytes, the footer says {}",
            data.len(),
            info.uncompressed_len
        )));
    }
    let mut first = None;
    let mut last = i64::MIN;
    for item in BatchIter::new(&data) {
        let (_, bytes) = item.map_err(|e| corrupt_batch(at, e))?;
        let h = validate(bytes).map_err(|e| corrupt_batch(at, e))?;
        if h.base_offset <= last {
            return Err(FormatError::Corrupt(format!(
                "the frame at offset {at} holds batches out of order ({} after {last})",
                h.base_offset
            )));
        }
        first.get_or_insert(h.base_offset);
        last = h.last_offset();
    }
    if first != Some(info.first_offset) || last != info.last_offset {
        return Err(FormatError::Corrupt(format!(
            "the frame indexed as offsets {}..={} holds offsets {first:?}..={last}",
            info.first_offset, info.last_offset
        )));
    }
    Ok(Bytes::from(data))
}

fn corrupt_batch(at: i64, e: strata_log::LogError) -> FormatError {
    FormatError::Corrupt(format!("the frame at offset {at} holds a bad batch: {e}"))
}

#[cfg(test)]
mod tests;
