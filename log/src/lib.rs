//! Strata's storage engine.
//!
//! - [`batch`]: the RecordBatch v2 header, CRC-32C validation and offset stamping (no records).
//! - [`records`]: building batches from records and decoding them back (clients and tools).
//! - [`varint`]: Kafka's zig-zag varints.
//! - [`clock`]: injected wall-clock time.
//!
//! Invariant: the broker's produce and fetch paths touch batch headers only; per-record work
//! happens in clients.

pub mod batch;
pub mod clock;
pub mod error;
pub mod records;
pub mod varint;

pub use batch::{BatchHeader, Compression};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ErrorKind, LogError, Result};
pub use records::{BatchBuilder, Header, Record};
