//! Strata's storage engine: the batch format and one partition's local log.
//!
//! - [`batch`]: the RecordBatch v2 header, CRC-32C validation and offset stamping (no records).
//! - [`framing`]: one bounded pass over the records of a batch, checking their framing (the
//!   produce path) and reading their timestamps (timestamp lookups).
//! - [`records`]: building batches from records and decoding them back (clients and tools).
//! - [`varint`]: Kafka's zig-zag varints.
//! - [`clock`]: injected wall-clock time.
//! - [`config`]: [`LogConfig`], the per-partition settings (segment.bytes, retention.ms, ...).
//! - [`index`]: the sparse, memory-mapped offset and time indexes beside each segment.
//! - [`scan`]: one sequential pass over a segment file (recovery, index rebuilds).
//! - [`segment`]: one `.log` file of whole batches with its indexes.
//! - [`epochs`]: the leader-epoch cache and its `leader-epoch-checkpoint` file.
//! - [`log`]: [`Log`], a partition directory of segments: append (as leader or replica), read,
//!   roll, retention, flush policy, truncation, crash recovery and the epoch cache.
//!
//! Invariant: the broker's fetch path touches batch headers only; its produce path adds one
//! pass over the record framing (no decoding into values, no allocation from a count field);
//! everything else per record happens in clients. Bytes read from disk
//! are returned only after their batch passed its CRC check.

pub mod batch;
pub mod clock;
pub mod config;
pub mod epochs;
pub mod error;
pub mod framing;
pub mod index;
pub mod log;
pub mod records;
pub mod recovery_point;
pub mod scan;
pub mod segment;
pub mod varint;

pub use batch::{BatchHeader, Compression};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::LogConfig;
pub use epochs::EpochEntry;
pub use error::{ErrorKind, LogError, Result};
pub use log::Chores;
pub use log::{AppendInfo, Log, ReadResult, RetentionReport, SegmentInfo};
pub use records::{BatchBuilder, Header, Record};

/// CRC-32C (Castagnoli) of `data`: the checksum of batches, and of the other persisted formats
/// that keep their own files beside the log (producer-state snapshots).
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}
