//! One partition replica on this broker (DESIGN.md "Broker layout": `replica/`).
//!
//! - [`partition`]: the I/O shell: the log, the role, the high watermark, long-poll wakeups;
//!   it applies the decisions of the pure parts below under its locks. Its other jobs have
//!   files of their own: `reads` (fetches, remote reads, timestamp lookups), `follower` (the
//!   follower's appends, truncation and reset), `tier_view` (the remote tier's bounds and the
//!   local retention limit).
//! - [`leader`]: the leader's replication state (follower progress, maximal ISR, high
//!   watermark, `acks=all` outcome): a state machine without I/O.
//! - [`truncation`]: the follower's truncation decisions (KIP-101/KIP-279), without I/O.
//! - [`producers`]: idempotent-producer state (sequences per producer id) and its snapshot
//!   codec, without I/O; [`producer_snapshots`]: the snapshot files and rebuilding from them.

mod follower;
pub mod leader;
pub mod partition;
#[cfg(test)]
mod partition_tests;
pub mod producer_snapshots;
pub mod producers;
mod reads;
mod tier_view;
pub mod truncation;

pub(crate) use partition::blocking;
pub use partition::{Appended, Partition, PartitionStats};
pub use reads::{FetchCursor, FetchResult};
pub use tier_view::RemoteSummary;
