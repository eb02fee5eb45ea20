//! Strata's remote tier: sealed segments become zstd-framed objects in an object store, listed
//! by immutable, epoch-fenced manifests; remote reads fetch one footer, then one frame, through
//! a bounded on-disk chunk cache.
//!
//! - [`format`]: the segment object's byte layout (no I/O).
//! - [`manifest`]: the versioned partition manifest and its create-if-absent writer.
//! - [`remote_log`]: upload, read, retention, deletion and scrub of one partition's remote log.
//! - [`cache`]: the bounded chunk cache and footer cache.
//! - [`store`]: building an `ObjectStore` from a URL, and the retry / fault decorators.
//! - [`store_clock`]: the store's own time, by which scrubs judge object age.
//! - [`metered`]: the decorator that counts and times object store calls.
//! - [`metrics`]: the remote tier's metrics (object store, uploads, remote reads, cache).
//! - [`bucket`]: bucket administration (`strata tier init`) and the conditional-PUT check.
//! - [`failpoint`]: named pause points for fault tests of real processes.
//! - [`error`]: [`TieringError`] and its [`strata_log::ErrorKind`].

pub mod bucket;
pub mod cache;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod manifest;
pub mod metered;
pub mod metrics;
pub mod remote_log;
pub mod store;
pub mod store_clock;
pub mod testing;

/// The object_store crate, for callers that hold stores and paths.
pub use object_store;

pub use cache::{ChunkCache, FooterCache};
pub use error::{Result, TieringError};
pub use format::{
    decode_frame, encode_segment, parse_footer, EncodedSegment, Footer, FrameInfo, SegmentEncoder,
};
pub use manifest::{root_path, Manifest, ManifestStore, PartitionPaths, SegmentMeta};
pub use metered::MeteredStore;
pub use remote_log::{
    BatchSource, ReadContext, RemoteLog, RetentionPolicy, ScrubReport, UploadConfig,
};
pub use store::{object_store_from_url, FaultyStore, RetryConfig, RetryingStore, StoreOptions};
