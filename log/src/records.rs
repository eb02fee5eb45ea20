//! Records inside a batch: the producer-side [`BatchBuilder`] and the consumer-side
//! [`decode_records`]. A codec with no I/O.
//!
//! Each record is encoded as Kafka's v2 record:
//!
//! ```text
//! length varint | attributes i8 | timestamp delta varlong | offset delta varint
//! key length varint (-1 = null) | key | value length varint (-1 = null) | value
//! header count varint | (key length varint | key utf-8 | value length varint | value)*
//! ```
//!
//! The broker never runs this code: it stores and serves batches whole (its produce-path check
//! and timestamp lookups walk the framing with `framing`, never materialising records). Only
//! clients and tools decode records.

use bytes::Bytes;
use std::io::Read;

use crate::batch::{self, BatchHeader, Compression, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::error::LogError;
use crate::varint::{get_varint, put_varint, varint_len};

/// Upper bound on a decompressed records section, so a hostile batch cannot exhaust memory.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// zstd level used when none is given; level 1 favours throughput as the hot path wants.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// A record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One decoded record. Keys and values share the batch's (or its decompressed) buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Builds one batch from records, in the order appended.
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header room followed by the uncompressed records section.
    buf: Vec<u8>,
    compression: Compression,
    zstd_level: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 1024)
    }

    /// A builder whose buffer starts with room for `capacity` bytes of records.
    pub fn with_capacity(compression: Compression, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            compression,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            base_timestamp: -1,
            max_timestamp: -1,
            count: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// Sets the zstd level (ignored without compression).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Sets the idempotent-producer fields.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Uncompressed size of the batch so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes that appending this record would add.
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let body = self.body_len(timestamp, key, value, headers);
        varint_len(body as i64) + body
    }

    fn body_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let base = if self.count == 0 {
            timestamp
        } else {
            self.base_timestamp
        };
        let mut n = 1 + varint_len(timestamp.wrapping_sub(base)) + varint_len(self.count as i64);
        n += bytes_len(key) + bytes_len(value) + varint_len(headers.len() as i64);
        for h in headers {
            n += varint_len(h.key.len() as i64) + h.key.len() + bytes_len(h.value.as_deref());
        }
        n
    }

    /// Appends one record.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let body = self.body_len(timestamp, key, value, headers);
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let buf = &mut self.buf;
        buf.reserve(body + 5);
        put_varint(buf, body as i64);
        buf.push(0);
        put_varint(buf, timestamp.wrapping_sub(self.base_timestamp));
        put_varint(buf, self.count as i64);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i64);
        for h in headers {
            put_varint(buf, h.key.len() as i64);
            buf.extend_from_slice(h.key.as_bytes());
            put_bytes(buf, h.value.as_deref());
        }
        self.count += 1;
    }

    /// Finishes the batch: compresses the records section if asked, writes the header and the
    /// CRC. The base offset is 0 and the leader epoch -1 until the broker stamps them.
    pub fn build(self) -> Result<Bytes, LogError> {
        if self.count == 0 {
            return Err(LogError::InvalidBatch(
                "cannot build a batch without records".to_string(),
            ));
        }
        let mut buf = self.buf;
        if self.compression == Compression::Zstd {
            let compressed = zstd::bulk::compress(&buf[HEADER_LEN..], self.zstd_level)
                .map_err(|e| LogError::io("compressing a batch with zstd", e))?;
            buf.truncate(HEADER_LEN);
            buf.extend_from_slice(&compressed);
        }
        let length = (buf.len() - LOG_OVERHEAD) as i32;
        let h = &mut buf[..HEADER_LEN];
        h[batch::LENGTH_POS..batch::LENGTH_POS + 4].copy_from_slice(&length.to_be_bytes());
        h[batch::EPOCH_POS..batch::EPOCH_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
        h[batch::MAGIC_POS] = MAGIC_V2 as u8;
        let attributes = self.compression.codec_id();
        h[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2]
            .copy_from_slice(&attributes.to_be_bytes());
        h[batch::LAST_OFFSET_DELTA_POS..batch::LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&(self.count - 1).to_be_bytes());
        h[batch::BASE_TIMESTAMP_POS..batch::BASE_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[batch::MAX_TIMESTAMP_POS..batch::MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[batch::PRODUCER_ID_POS..batch::PRODUCER_ID_POS + 8]
            .copy_from_slice(&self.producer_id.to_be_bytes());
        h[batch::PRODUCER_EPOCH_POS..batch::PRODUCER_EPOCH_POS + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        h[batch::BASE_SEQUENCE_POS..batch::BASE_SEQUENCE_POS + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        h[batch::RECORD_COUNT_POS..batch::RECORD_COUNT_POS + 4]
            .copy_from_slice(&self.count.to_be_bytes());
        let crc = batch::compute_crc(&buf);
        buf[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(buf))
    }
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// Decodes every record of one batch. The batch's CRC is checked first: a batch that fails it
/// is an error, never records. Uncompressed keys and values are slices of `batch`.
pub fn decode_records(batch: &Bytes) -> Result<Vec<Record>, LogError> {
    let header = batch::validate(batch)?;
    let section = match header.compression()? {
        Compression::None => batch.slice(HEADER_LEN..),
        Compression::Zstd => Bytes::from(decompress(&batch[HEADER_LEN..])?),
    };
    decode_section(&header, &section)
}

/// Decodes every record of every batch in a buffer of concatenated batches.
pub fn decode_all(batches: &Bytes) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0;
    for item in batch::BatchIter::new(batches) {
        let (header, bytes) = item?;
        let len = header.total_len();
        out.extend(decode_records(&batches.slice(pos..pos + len))?);
        pos += bytes.len();
    }
    Ok(out)
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, LogError> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| LogError::CorruptBatch(format!("zstd records section: {e}")))?;
    decoder
        .window_log_max(crate::framing::MAX_ZSTD_WINDOW_LOG)
        .map_err(|e| LogError::CorruptBatch(format!("zstd records section: {e}")))?;
    let mut out = Vec::with_capacity(data.len() * 4);
    decoder
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| LogError::CorruptBatch(format!("zstd records section: {e}")))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(LogError::CorruptBatch(format!(
            "the records section decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    Ok(out)
}

fn decode_section(header: &BatchHeader, section: &Bytes) -> Result<Vec<Record>, LogError> {
    let count = header.record_count as usize;
    // Each record takes at least 7 bytes: never trust the count for the allocation.
    let mut out = Vec::with_capacity(count.min(section.len() / 7 + 1));
    let mut pos = 0usize;
    for i in 0..count {
        let corrupt = |what: &str| {
            LogError::CorruptBatch(format!(
                "record {i} of the batch at offset {}: {what}",
                header.base_offset
            ))
        };
        let len = get_varint(section, &mut pos)?;
        if len < 0 || pos + len as usize > section.len() {
            return Err(corrupt("its length runs past the end of the batch"));
        }
        let end = pos + len as usize;
        let body = &section[..end];
        pos += 1; // attributes
        let ts_delta = get_varint(body, &mut pos)?;
        let offset_delta = get_varint(body, &mut pos)?;
        let key = get_bytes(section, body, &mut pos).map_err(|_| corrupt("bad key length"))?;
        let value = get_bytes(section, body, &mut pos).map_err(|_| corrupt("bad value length"))?;
        let header_count = get_varint(body, &mut pos)?;
        if header_count < 0 || header_count as usize > body.len() {
            return Err(corrupt("bad header count"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key = get_bytes(section, body, &mut pos)
                .map_err(|_| corrupt("bad header key"))?
                .ok_or_else(|| corrupt("a header key is null"))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| corrupt("a header key is not UTF-8"))?;
            let value =
                get_bytes(section, body, &mut pos).map_err(|_| corrupt("bad header value"))?;
            headers.push(Header { key, value });
        }
        if pos != end {
            return Err(corrupt("its fields do not fill its declared length"));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp,
            key,
            value,
            headers,
        });
    }
    if pos != section.len() {
        return Err(LogError::CorruptBatch(format!(
            "the batch at offset {} has {} bytes after its {} records",
            header.base_offset,
            section.len() - pos,
            count
        )));
    }
    Ok(out)
}

fn get_bytes(section: &Bytes, body: &[u8], pos: &mut usize) -> Result<Option<Bytes>, LogError> {
    let len = get_varint(body, pos)?;
    if len == -1 {
        return Ok(None);
    }
    if len < 0 || *pos + len as usize > body.len() {
        return Err(LogError::CorruptBatch("field length out of bounds".into()));
    }
    let b = section.slice(*pos..*pos + len as usize);
    *pos += len as usize;
    Ok(Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Input {
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    }

    fn input() -> impl Strategy<Value = Input> {
        (
            0i64..4_000_000_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                ),
                0..3,
            ),
        )
            .prop_map(|(timestamp, key, value, headers)| Input {
                timestamp,
                key,
                value,
                headers,
            })
    }

    fn build(inputs: &[Input], compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new(compression);
        for r in inputs {
            let headers: Vec<Header> = r
                .headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.clone(),
                    value: v.clone().map(Bytes::from),
                })
                .collect();
            let before = b.size_bytes();
            let expect = b.record_size(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
            b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
            assert_eq!(b.size_bytes() - before, expect);
        }
        b.build().unwrap()
    }

    proptest! {
        #[test]
        fn round_trip(inputs in proptest::collection::vec(input(), 1..40), zstd in any::<bool>(),
                      base in 0i64..1_000_000_000) {
            let compression = if zstd { Compression::Zstd } else { Compression::None };
            let batch = build(&inputs, compression);
            let mut stamped = batch.to_vec();
            let next = batch::stamp_all(&mut stamped, base, 7);
            prop_assert_eq!(next, base + inputs.len() as i64);
            let header = batch::validate(&stamped).unwrap();
            prop_assert_eq!(header.base_offset, base);
            prop_assert_eq!(header.partition_leader_epoch, 7);
            prop_assert_eq!(header.record_count as usize, inputs.len());
            prop_assert_eq!(header.max_timestamp, inputs.iter().map(|r| r.timestamp).max().unwrap());
            let records = decode_records(&Bytes::from(stamped)).unwrap();
            prop_assert_eq!(records.len(), inputs.len());
            for (i, (r, inp)) in records.iter().zip(&inputs).enumerate() {
                prop_assert_eq!(r.offset, base + i as i64);
                prop_assert_eq!(r.timestamp, inp.timestamp);
                prop_assert_eq!(r.key.as_deref(), inp.key.as_deref());
                prop_assert_eq!(r.value.as_deref(), inp.value.as_deref());
                prop_assert_eq!(r.headers.len(), inp.headers.len());
                for (h, (k, v)) in r.headers.iter().zip(&inp.headers) {
                    prop_assert_eq!(&h.key, k);
                    prop_assert_eq!(h.value.as_deref(), v.as_deref());
                }
            }
        }

        #[test]
        fn any_flipped_byte_after_the_epoch_is_caught(inputs in proptest::collection::vec(input(), 1..10),
                                                      pick in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let batch = build(&inputs, Compression::None).to_vec();
            let mut bad = batch.clone();
            // Bytes 0..16 (offset, length, epoch) are outside the CRC by design; the length is
            // checked by framing. Any change from the magic on must be rejected.
            let i = 16 + pick.index(bad.len() - 16);
            bad[i] ^= flip;
            prop_assert!(batch::validate(&bad).is_err());
            prop_assert!(decode_records(&Bytes::from(bad)).is_err());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&Bytes::from(bytes));
        }
    }

    #[test]
    fn crc_mismatch_is_reported_as_corrupt() {
        let mut b = BatchBuilder::new(Compression::None);
        b.append(1, None, Some(b"hello"), &[]);
        let mut bytes = b.build().unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = batch::validate(&bytes).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");
    }

    #[test]
    fn empty_batch_is_refused() {
        let err = BatchBuilder::new(Compression::None).build().unwrap_err();
        assert!(err.to_string().contains("without records"), "{err}");
    }

    #[test]
    fn zstd_batch_is_smaller_for_repetitive_values() {
        let value = vec![b'x'; 1000];
        let mut plain = BatchBuilder::new(Compression::None);
        let mut packed = BatchBuilder::new(Compression::Zstd);
        for i in 0..100 {
            plain.append(i, None, Some(&value), &[]);
            packed.append(i, None, Some(&value), &[]);
        }
        let (plain, packed) = (plain.build().unwrap(), packed.build().unwrap());
        assert!(
            packed.len() * 10 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(decode_records(&packed).unwrap().len(), 100);
    }
}
