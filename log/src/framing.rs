//! Record framing inside a batch: one pass over the records of a batch that checks every
//! length, count and offset delta against the bytes actually present, without decoding keys or
//! values into anything. The produce path runs it on every batch before the batch is stored, so
//! that no batch a consumer cannot decode ever reaches a log (one bad client must not silence
//! every consumer of a partition); list-offsets-by-timestamp uses the same walk to read
//! timestamps.
//!
//! Uncompressed records are walked in place. zstd records are decompressed as a stream into a
//! small buffer that holds at most one record plus one chunk, and the walk stops with an error
//! once the decompressed bytes pass the caller's limit, so a small batch cannot make the broker
//! allocate or spin in proportion to what it claims to hold.
//!
//! Invariants: every allocation is bounded by bytes present (or by the decompression limit),
//! never by a count field; a batch passes only when its record count equals the records
//! present, offset deltas run 0, 1, ..., count-1, every record's fields exactly fill its
//! declared length, header keys are UTF-8, and nothing follows the last record.

use std::io::Read;

use crate::batch::{BatchHeader, Compression, HEADER_LEN};
use crate::error::LogError;
use crate::varint::get_varint;

/// How far past `max.message.bytes` a compressed batch may decompress: 64 times. zstd at level
/// 1 compresses ordinary records 3-10 times; 64 leaves room for very repetitive data while a
/// hostile batch costs at most 64 MiB of decompression (about 50 ms) under the default limit.
pub const MAX_DECOMPRESSION_RATIO: usize = 64;

/// Largest zstd window a batch may ask for (2^24 = 16 MiB): what zstd allocates to decompress
/// it. Level 1-19 frames of a batch of up to 16 MiB never need more.
pub const MAX_ZSTD_WINDOW_LOG: u32 = 24;

/// Decompressed bytes read from zstd at a time.
const CHUNK: usize = 64 * 1024;

/// What a record walk saw of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Position in the batch (also its offset delta).
    pub index: i32,
    /// The record's timestamp (base timestamp plus its delta; the batch's max timestamp for
    /// log-append-time batches).
    pub timestamp: i64,
}

/// Walks every record of one batch whose header, length and CRC were already validated
/// ([`crate::batch::validate`]), checking its framing, and calls `each` for every record in
/// order; `each` returning `false` stops the walk early (the rest is then not checked).
/// `max_decompressed` bounds the decompressed records section of a compressed batch.
pub fn walk_records(
    header: &BatchHeader,
    batch: &[u8],
    max_decompressed: usize,
    mut each: impl FnMut(RecordInfo) -> bool,
) -> Result<(), LogError> {
    let section = &batch[HEADER_LEN..];
    match header.compression()? {
        Compression::None => walk(
            header,
            &mut Slice {
                buf: section,
                pos: 0,
            },
            &mut each,
        ),
        Compression::Zstd => ZSTD.with(|cell| match cell.try_borrow_mut() {
            Ok(mut reused) => {
                let (context, buf) = reused.get_or_insert_with(|| {
                    (
                        zstd::zstd_safe::DCtx::create(),
                        vec![0u8; CHUNK].into_boxed_slice(),
                    )
                });
                walk_zstd(header, section, context, buf, max_decompressed, &mut each)
            }
            // Only if a walk ever ran inside another on one thread.
            Err(_) => {
                let mut context = zstd::zstd_safe::DCtx::create();
                let mut buf = vec![0u8; CHUNK];
                walk_zstd(
                    header,
                    section,
                    &mut context,
                    &mut buf,
                    max_decompressed,
                    &mut each,
                )
            }
        }),
    }
}

thread_local! {
    /// One zstd decompression context and chunk buffer per thread, reused by every walk: a
    /// context costs more to create than a small batch costs to decompress.
    static ZSTD: std::cell::RefCell<Option<(zstd::zstd_safe::DCtx<'static>, Box<[u8]>)>> =
        const { std::cell::RefCell::new(None) };
}

fn walk_zstd(
    header: &BatchHeader,
    section: &[u8],
    context: &mut zstd::zstd_safe::DCtx<'static>,
    buf: &mut [u8],
    max_decompressed: usize,
    each: &mut impl FnMut(RecordInfo) -> bool,
) -> Result<(), LogError> {
    let mut decoder = zstd::stream::read::Decoder::with_context(section, context);
    decoder
        .window_log_max(MAX_ZSTD_WINDOW_LOG)
        .map_err(|e| zstd_error(header, e))?;
    let mut stream = Stream {
        header,
        reader: decoder,
        buf,
        start: 0,
        end: 0,
        eof: false,
        consumed: 0,
        decompressed: 0,
        max: max_decompressed,
    };
    walk(header, &mut stream, each)
}

/// The produce path's check of one batch: [`walk_records`] plus the batch's timestamps. Every
/// record's timestamp must lie in `[earliest, latest]` (when given), and the header's max
/// timestamp must be the largest of them, as consumers and retention trust it.
pub fn check_records(
    header: &BatchHeader,
    batch: &[u8],
    max_decompressed: usize,
    earliest: Option<i64>,
    latest: Option<i64>,
) -> Result<(), LogError> {
    if header.is_transactional() || header.is_control() {
        return Err(LogError::InvalidBatch(format!(
            "the batch from producer {} is marked {}; Strata does not support transactions yet",
            header.producer_id,
            if header.is_control() {
                "as a control batch"
            } else {
                "transactional"
            }
        )));
    }
    let mut max_seen = i64::MIN;
    let mut out_of_range: Option<(i32, i64)> = None;
    walk_records(header, batch, max_decompressed, |r| {
        max_seen = max_seen.max(r.timestamp);
        let early = earliest.is_some_and(|e| r.timestamp < e);
        let late = latest.is_some_and(|l| r.timestamp > l);
        if early || late {
            out_of_range = Some((r.index, r.timestamp));
            return false;
        }
        true
    })?;
    if let Some((index, ts)) = out_of_range {
        let bound = match (earliest, latest) {
            (Some(e), _) if ts < e => format!(
                "more than message.timestamp.before.max.ms before the broker's clock (earliest accepted {e})"
            ),
            (_, Some(l)) => format!(
                "more than message.timestamp.after.max.ms after the broker's clock (latest accepted {l})"
            ),
            _ => "out of range".to_string(),
        };
        return Err(LogError::InvalidTimestamp(format!(
            "record {index} of the batch has timestamp {ts}, {bound}"
        )));
    }
    if !header.is_log_append_time() && header.max_timestamp != max_seen {
        return Err(LogError::InvalidBatch(format!(
            "the batch header's max timestamp is {} but its records' largest timestamp is \
             {max_seen}",
            header.max_timestamp
        )));
    }
    Ok(())
}

/// The (offset, timestamp) of the first record of one stored batch whose timestamp is at
/// least `timestamp` and whose offset is at least `min_offset`; `None` when there is none. The
/// batch's CRC is checked first, and decompression is bounded by
/// [`crate::records::MAX_DECOMPRESSED_BYTES`] while memory holds one record at a time.
pub fn find_timestamp(
    batch: &[u8],
    timestamp: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let header = crate::batch::validate(batch)?;
    let mut found = None;
    walk_records(
        &header,
        batch,
        crate::records::MAX_DECOMPRESSED_BYTES,
        |r| {
            let offset = header.base_offset + r.index as i64;
            if r.timestamp >= timestamp && offset >= min_offset {
                found = Some((offset, r.timestamp));
                return false;
            }
            true
        },
    )?;
    Ok(found)
}

fn zstd_error(header: &BatchHeader, e: std::io::Error) -> LogError {
    LogError::CorruptBatch(format!(
        "the zstd records section of the batch at offset {} does not decompress: {e}",
        header.base_offset
    ))
}

/// The records section as a sequence of bytes read front to back. Positions count bytes of
/// the (decompressed) section consumed so far.
trait Cursor {
    /// Reads a varint; `Ok(None)` when the section ends first.
    fn varint(&mut self) -> Result<Option<i64>, LogError>;
    /// Steps over `n` bytes; `Ok(false)` when the section ends first.
    fn skip(&mut self, n: usize) -> Result<bool, LogError>;
    /// Steps over `n` bytes that must be UTF-8: `Ok(None)` when the section ends first, else
    /// whether they were.
    fn utf8(&mut self, n: usize) -> Result<Option<bool>, LogError>;
    /// True when nothing is left.
    fn at_end(&mut self) -> Result<bool, LogError>;
    fn position(&self) -> usize;
    /// Bytes left, when known without reading them.
    fn remaining(&self) -> Option<usize>;
}

/// Uncompressed records: the bytes are all there, walked in place.
struct Slice<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor for Slice<'_> {
    fn varint(&mut self) -> Result<Option<i64>, LogError> {
        let mut pos = self.pos;
        match get_varint(self.buf, &mut pos) {
            Ok(v) => {
                self.pos = pos;
                Ok(Some(v))
            }
            Err(_) if self.buf.len() - self.pos < MAX_VARINT => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn skip(&mut self, n: usize) -> Result<bool, LogError> {
        if n > self.buf.len() - self.pos {
            return Ok(false);
        }
        self.pos += n;
        Ok(true)
    }
    fn utf8(&mut self, n: usize) -> Result<Option<bool>, LogError> {
        if n > self.buf.len() - self.pos {
            return Ok(None);
        }
        let ok = std::str::from_utf8(&self.buf[self.pos..self.pos + n]).is_ok();
        self.pos += n;
        Ok(Some(ok))
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(self.pos == self.buf.len())
    }
    fn position(&self) -> usize {
        self.pos
    }
    fn remaining(&self) -> Option<usize> {
        Some(self.buf.len() - self.pos)
    }
}

/// zstd records: decompressed a chunk at a time into one reused buffer; skipped bytes are
/// never held, so memory stays at one chunk whatever a record's size.
struct Stream<'h, 'b, R> {
    header: &'h BatchHeader,
    reader: R,
    buf: &'b mut [u8],
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Bytes consumed before `buf[start]`.
    consumed: usize,
    decompressed: usize,
    max: usize,
}

impl<R: Read> Stream<'_, '_, R> {
    /// Makes at least `n` (at most a chunk) unconsumed bytes available, fewer only at the end.
    fn fill(&mut self, n: usize) -> Result<usize, LogError> {
        debug_assert!(n <= CHUNK);
        while self.end - self.start < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let got = self
                .reader
                .read(&mut self.buf[self.end..])
                .map_err(|e| zstd_error(self.header, e))?;
            self.end += got;
            self.decompressed += got;
            self.eof = got == 0;
            if self.decompressed > self.max {
                return Err(LogError::InvalidBatch(format!(
                    "the zstd records section of the batch at offset {} decompresses to more \
                     than {} bytes ({MAX_DECOMPRESSION_RATIO} times max.message.bytes)",
                    self.header.base_offset, self.max
                )));
            }
        }
        Ok(self.end - self.start)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.consumed += n;
    }
}

impl<R: Read> Cursor for Stream<'_, '_, R> {
    fn varint(&mut self) -> Result<Option<i64>, LogError> {
        let have = self.fill(MAX_VARINT)?;
        let mut pos = 0;
        match get_varint(&self.buf[self.start..self.end], &mut pos) {
            Ok(v) => {
                self.consume(pos);
                Ok(Some(v))
            }
            Err(_) if have < MAX_VARINT => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn skip(&mut self, mut n: usize) -> Result<bool, LogError> {
        while n > 0 {
            let have = self.fill(n.min(CHUNK))?;
            if have == 0 {
                return Ok(false);
            }
            let step = have.min(n);
            self.consume(step);
            n -= step;
        }
        Ok(true)
    }
    fn utf8(&mut self, mut n: usize) -> Result<Option<bool>, LogError> {
        let mut ok = true;
        while n > 0 {
            let have = self.fill(n.min(CHUNK))?;
            if have == 0 {
                return Ok(None);
            }
            let chunk = &self.buf[self.start..self.start + have.min(n)];
            let step = match std::str::from_utf8(chunk) {
                Ok(_) => chunk.len(),
                // A character cut by the chunk's end: take it with the next chunk.
                Err(e) if e.error_len().is_none() && chunk.len() < n && e.valid_up_to() > 0 => {
                    e.valid_up_to()
                }
                Err(_) => {
                    ok = false;
                    chunk.len()
                }
            };
            self.consume(step);
            n -= step;
        }
        Ok(Some(ok))
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(self.fill(1)? == 0)
    }
    fn position(&self) -> usize {
        self.consumed
    }
    fn remaining(&self) -> Option<usize> {
        None
    }
}

/// A varint takes at most 10 bytes.
const MAX_VARINT: usize = 10;

fn walk(
    header: &BatchHeader,
    cursor: &mut impl Cursor,
    each: &mut impl FnMut(RecordInfo) -> bool,
) -> Result<(), LogError> {
    let count = header.record_count;
    for index in 0..count {
        let bad = |what: &str| {
            LogError::InvalidBatch(format!(
                "record {index} of the batch at offset {} (which declares {count} records): \
                 {what}",
                header.base_offset
            ))
        };
        if cursor.at_end()? {
            return Err(bad("missing: the records section ends before it"));
        }
        let len = cursor
            .varint()?
            .ok_or_else(|| bad("its length runs past the end of the batch"))?;
        if len < 0 {
            return Err(bad("its length is negative"));
        }
        let timestamp = record_body(header, index, cursor, len as u64).map_err(|e| match e {
            Field::PastEnd => bad("its length runs past the end of the batch"),
            Field::Bad(what) => bad(&what),
            Field::Log(e) => e,
        })?;
        if !each(RecordInfo { index, timestamp }) {
            return Ok(());
        }
    }
    if !cursor.at_end()? {
        return Err(LogError::InvalidBatch(format!(
            "the batch at offset {} holds bytes after its {count} declared records (more \
             records than it declares, or garbage)",
            header.base_offset
        )));
    }
    Ok(())
}

/// Why a record's body did not pass.
enum Field {
    /// The section ended inside the record.
    PastEnd,
    Bad(String),
    Log(LogError),
}

impl From<LogError> for Field {
    fn from(e: LogError) -> Field {
        Field::Log(e)
    }
}

/// Checks one record's body (the `len` bytes after its length) and returns its timestamp.
fn record_body<C: Cursor>(
    header: &BatchHeader,
    index: i32,
    cursor: &mut C,
    len: u64,
) -> Result<i64, Field> {
    let end = cursor.position() as u64 + len;
    if cursor.remaining().is_some_and(|r| len > r as u64) {
        return Err(Field::PastEnd);
    }
    if len == 0 {
        return Err(Field::Bad("it is empty (no attributes byte)".into()));
    }
    if !cursor.skip(1)? {
        return Err(Field::PastEnd);
    }
    let ts_delta = read(cursor, end, Name::Plain("timestamp delta"))?;
    let offset_delta = read(cursor, end, Name::Plain("offset delta"))?;
    if offset_delta != index as i64 {
        return Err(Field::Bad(format!(
            "its offset delta is {offset_delta}; record {index} must have offset delta {index}"
        )));
    }
    field(cursor, end, Name::Plain("key"), true, false)?;
    field(cursor, end, Name::Plain("value"), true, false)?;
    let headers = read(cursor, end, Name::Plain("header count"))?;
    if headers < 0 || headers as u64 > end - cursor.position() as u64 {
        return Err(Field::Bad(format!(
            "its header count {headers} is impossible"
        )));
    }
    for h in 0..headers {
        field(cursor, end, Name::HeaderKey(h), false, true)?;
        field(cursor, end, Name::HeaderValue(h), true, false)?;
    }
    let at = cursor.position() as u64;
    if at < end && !cursor.skip((end - at) as usize)? {
        return Err(Field::PastEnd);
    }
    if at != end {
        return Err(Field::Bad(format!(
            "its fields end after {} bytes but its length says {len}",
            len + at - end
        )));
    }
    Ok(if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.wrapping_add(ts_delta)
    })
}

/// A field's name in an error, formatted only when there is one.
#[derive(Clone, Copy)]
enum Name {
    Plain(&'static str),
    HeaderKey(i64),
    HeaderValue(i64),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Plain(s) => f.write_str(s),
            Name::HeaderKey(h) => write!(f, "header {h}'s key"),
            Name::HeaderValue(h) => write!(f, "header {h}'s value"),
        }
    }
}

/// Reads a varint of the record that must end by `end`.
fn read<C: Cursor>(cursor: &mut C, end: u64, what: Name) -> Result<i64, Field> {
    let v = cursor.varint()?.ok_or(Field::PastEnd)?;
    if cursor.position() as u64 > end {
        return Err(Field::Bad(format!("its {what} runs past its length")));
    }
    Ok(v)
}

/// Steps over a length-prefixed field (-1 = null when `nullable`) that must end by `end`,
/// checking it is UTF-8 when `utf8`.
fn field<C: Cursor>(
    cursor: &mut C,
    end: u64,
    what: Name,
    nullable: bool,
    utf8: bool,
) -> Result<(), Field> {
    let n = read(cursor, end, what)?;
    if n == -1 && nullable {
        return Ok(());
    }
    if n < 0 {
        return Err(Field::Bad(format!("its {what} length is {n}")));
    }
    if n as u64 > end - cursor.position() as u64 {
        return Err(Field::Bad(format!(
            "its {what} ({n} bytes) runs past the record's length"
        )));
    }
    if utf8 {
        match cursor.utf8(n as usize)? {
            None => Err(Field::PastEnd),
            Some(false) => Err(Field::Bad(format!("its {what} is not UTF-8"))),
            Some(true) => Ok(()),
        }
    } else if cursor.skip(n as usize)? {
        Ok(())
    } else {
        Err(Field::PastEnd)
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
