//! The RecordBatch v2 header: parsing, validation, CRC-32C and offset stamping.
//!
//! Disk and wire carry the same bytes, laid out exactly as Kafka's RecordBatch v2
//! (all integers big-endian):
//!
//! ```text
//!  0  base offset            i64   \
//!  8  batch length           i32    | outside the CRC: the broker stamps base offset
//! 12  partition leader epoch i32    | and leader epoch without recomputing it
//! 16  magic (= 2)            i8    /
//! 17  CRC-32C                u32   over bytes 21..end
//! 21  attributes             i16   bits 0-2 codec (0 none, 4 zstd), bit 3 timestamp type,
//!                                  bit 4 transactional, bit 5 control
//! 23  last offset delta      i32
//! 27  base timestamp         i64
//! 35  max timestamp          i64
//! 43  producer id            i64
//! 51  producer epoch         i16
//! 53  base sequence          i32
//! 57  record count           i32
//! 61  records (compressed as one unit when the codec is not none)
//! ```
//!
//! Invariant kept here: a batch is accepted only when its framing, magic, CRC and counts are
//! consistent; nothing in this module looks at individual records, so validating a batch costs
//! one CRC pass and a few header reads whatever the number of records.

use crate::error::LogError;

/// Bytes before the batch length field ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// The only batch format version Strata reads and writes.
pub const MAGIC_V2: i8 = 2;

pub const BASE_OFFSET_POS: usize = 0;
pub const LENGTH_POS: usize = 8;
pub const EPOCH_POS: usize = 12;
pub const MAGIC_POS: usize = 16;
pub const CRC_POS: usize = 17;
pub const ATTRIBUTES_POS: usize = 21;
pub const LAST_OFFSET_DELTA_POS: usize = 23;
pub const BASE_TIMESTAMP_POS: usize = 27;
pub const MAX_TIMESTAMP_POS: usize = 35;
pub const PRODUCER_ID_POS: usize = 43;
pub const PRODUCER_EPOCH_POS: usize = 51;
pub const BASE_SEQUENCE_POS: usize = 53;
pub const RECORD_COUNT_POS: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// How the records section of a batch is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// The records section is one zstd frame.
    Zstd,
}

impl Compression {
    /// The codec id stored in attribute bits 0-2.
    pub fn codec_id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 4,
        }
    }

    fn from_codec_id(id: i16) -> Result<Self, LogError> {
        match id {
            0 => Ok(Compression::None),
            4 => Ok(Compression::Zstd),
            other => Err(LogError::InvalidBatch(format!(
                "compression codec {other} is not supported (Strata reads none=0 and zstd=4)"
            ))),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "compression {other:?} is not supported; use none or zstd"
            )),
        }
    }
}

/// The decoded header of one batch. Parsing it never touches the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field (the whole batch is `batch_length + 12`).
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header fields from the first [`HEADER_LEN`] bytes of `buf`, checking only
    /// that enough bytes are there and that the declared length is sane.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < HEADER_LEN {
            return Err(LogError::InvalidBatch(format!(
                "a batch needs at least {HEADER_LEN} header bytes, got {}",
                buf.len()
            )));
        }
        let header = BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET_POS),
            batch_length: read_i32(buf, LENGTH_POS),
            partition_leader_epoch: read_i32(buf, EPOCH_POS),
            magic: buf[MAGIC_POS] as i8,
            crc: read_u32(buf, CRC_POS),
            attributes: read_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_POS),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP_POS),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP_POS),
            producer_id: read_i64(buf, PRODUCER_ID_POS),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH_POS),
            base_sequence: read_i32(buf, BASE_SEQUENCE_POS),
            record_count: read_i32(buf, RECORD_COUNT_POS),
        };
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(LogError::InvalidBatch(format!(
                "batch length {} is shorter than the v2 header",
                header.batch_length
            )));
        }
        Ok(header)
    }

    /// The whole batch's size in bytes, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset right after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, LogError> {
        Compression::from_codec_id(self.attributes & COMPRESSION_MASK)
    }

    /// True when every record's timestamp is the broker's append time (`max_timestamp`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Computes the CRC-32C a batch should carry (over attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS..])
}

/// Checks one complete batch: framing, magic, CRC, codec and record counts. `batch` must be
/// exactly one batch. Returns its header.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(LogError::InvalidBatch(format!(
            "batch length field says {} bytes but {} bytes were given",
            header.total_len(),
            batch.len()
        )));
    }
    if header.magic != MAGIC_V2 {
        return Err(LogError::InvalidBatch(format!(
            "batch magic is {}, Strata reads only RecordBatch v2 (magic 2)",
            header.magic
        )));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC-32C mismatch in the batch at offset {}: stored {:#010x}, computed {:#010x}",
            header.base_offset, header.crc, crc
        )));
    }
    header.compression()?;
    if header.record_count <= 0 {
        return Err(LogError::InvalidBatch(format!(
            "batch declares {} records; a batch holds at least one",
            header.record_count
        )));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(LogError::InvalidBatch(format!(
            "batch declares {} records but a last offset delta of {}",
            header.record_count, header.last_offset_delta
        )));
    }
    Ok(header)
}

/// Writes the broker-assigned base offset and leader epoch into a batch. Both lie outside the
/// CRC, so the stored CRC stays valid.
pub fn stamp(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_POS..EPOCH_POS + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Rewrites an idempotent batch's base sequence (a producer restarting a partition's sequence
/// after the broker forgot it) and its CRC, which covers the field.
pub fn restamp_sequence(batch: &mut [u8], base_sequence: i32) {
    batch[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Splits a buffer of concatenated batches, yielding each batch's header and bytes. Only
/// framing is checked (a CRC check is [`validate`]'s job); a truncated or malformed batch ends
/// the iteration with an error.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, pos: 0 }
    }

    /// Bytes consumed so far (the position of the next batch).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let len = header.total_len();
        if len > rest.len() {
            self.pos = self.buf.len();
            return Some(Err(LogError::InvalidBatch(format!(
                "batch at byte {} declares {} bytes but only {} follow",
                self.pos,
                len,
                rest.len()
            ))));
        }
        self.pos += len;
        Some(Ok((header, &rest[..len])))
    }
}

/// What [`validate_all`] learned from a buffer of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchesSummary {
    pub batches: usize,
    /// Records over all batches (the offsets they will take).
    pub records: i64,
    pub max_timestamp: i64,
    pub bytes: usize,
}

/// Validates every batch in a buffer of concatenated batches (see [`validate`]).
pub fn validate_all(buf: &[u8]) -> Result<BatchesSummary, LogError> {
    if buf.is_empty() {
        return Err(LogError::InvalidBatch(
            "the request carries no record batch".to_string(),
        ));
    }
    let mut summary = BatchesSummary {
        batches: 0,
        records: 0,
        max_timestamp: -1,
        bytes: buf.len(),
    };
    for item in BatchIter::new(buf) {
        let (_, bytes) = item?;
        let header = validate(bytes)?;
        summary.batches += 1;
        summary.records += header.record_count as i64;
        summary.max_timestamp = summary.max_timestamp.max(header.max_timestamp);
    }
    Ok(summary)
}

/// Stamps consecutive base offsets (from `base_offset`) and the leader epoch into every batch
/// of an already validated buffer. Returns the offset after the last record.
pub fn stamp_all(buf: &mut [u8], mut base_offset: i64, leader_epoch: i32) -> i64 {
    let mut pos = 0;
    while pos < buf.len() {
        let len = read_i32(buf, pos + LENGTH_POS) as usize + LOG_OVERHEAD;
        let delta = read_i32(buf, pos + LAST_OFFSET_DELTA_POS) as i64;
        stamp(&mut buf[pos..pos + len], base_offset, leader_epoch);
        base_offset += delta + 1;
        pos += len;
    }
    base_offset
}

pub(crate) fn read_i16(buf: &[u8], pos: usize) -> i16 {
    i16::from_be_bytes([buf[pos], buf[pos + 1]])
}

pub(crate) fn read_i32(buf: &[u8], pos: usize) -> i32 {
    i32::from_be_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_u32(buf: &[u8], pos: usize) -> u32 {
    u32::from_be_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_i64(buf: &[u8], pos: usize) -> i64 {
    i64::from_be_bytes(buf[pos..pos + 8].try_into().expect("8 bytes"))
}
