//! One partition's remote log: the manifest in force and who may change it. The jobs live
//! beside it: `upload` (sealed segments become objects, then manifest entries), `read`
//! (reads below the local log: footer, frames, read-ahead), `retention` (remote retention
//! and partition deletion) and `scrub` (garbage no manifest lists).
//!
//! Invariants kept here:
//! - Write order is object first, manifest second ([`RemoteLog::upload`]); delete order is
//!   manifest first, objects second ([`RemoteLog::apply_retention`]). So the manifest never
//!   lists a missing object except while a reader holds an older manifest, and such a reader
//!   re-reads the manifest on `NotFound`.
//! - Segments are uploaded in offset order, contiguously, each once: a re-upload of a listed
//!   base offset is a no-op, so a new leader can resume from the manifest's end.
//! - A remote read returns only bytes that passed the frame CRC and every batch CRC.
//! - Remote GETs run under a per-broker semaphore, and at most `readahead_frames` prefetches
//!   per partition are in flight.

mod chunk;
mod read;
mod retention;
mod scrub;
mod stream;
mod upload;

pub use retention::RetentionPolicy;
pub use scrub::ScrubReport;
pub use stream::{BatchSource, PARTS_IN_FLIGHT, PART_BYTES};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::Mutex;
use strata_log::Clock;
use tokio::sync::Semaphore;

use crate::cache::{ChunkCache, FooterCache};
use crate::error::Result;
use crate::format::{self};
use crate::manifest::{Manifest, ManifestStore, PartitionPaths};

/// Manifest versions scrub keeps (the latest ones).
pub const KEEP_MANIFEST_VERSIONS: usize = 3;
/// Attempts at writing a manifest version when other writers keep winning the race.
const MANIFEST_WRITE_ATTEMPTS: usize = 5;

/// What remote reads share across the partitions of a broker.
#[derive(Debug, Clone)]
pub struct ReadContext {
    /// Bounds the remote GETs in flight on this broker.
    pub get_permits: Arc<Semaphore>,
    pub chunk_cache: Option<Arc<ChunkCache>>,
    pub footer_cache: Arc<FooterCache>,
    /// Chunks prefetched ahead of a read, at most this many in flight per partition (0: off).
    pub readahead_frames: usize,
    /// Compressed bytes one ranged GET fetches on a miss: that frame and the ones after it
    /// (Redpanda's 16 MiB, `remote.fetch.chunk.bytes`).
    pub fetch_chunk_bytes: usize,
    /// Compressed bytes the chunks being fetched on this broker may hold at once
    /// ([`CHUNKS_IN_MEMORY`] chunks): bounds replay memory whatever the partition count.
    pub chunk_budget_bytes: usize,
    pub(crate) chunk_budget: Arc<Semaphore>,
}

/// Chunks the remote reads of a broker hold in memory at once.
pub const CHUNKS_IN_MEMORY: usize = 4;

/// Frames being prefetched, by (object key, frame position), with the signal of their fetch.
pub(super) type InFlight = HashMap<(String, u64), Arc<tokio::sync::Notify>>;

/// Default [`ReadContext::fetch_chunk_bytes`].
pub const DEFAULT_FETCH_CHUNK_BYTES: usize = 16 << 20;

impl ReadContext {
    /// `max_concurrent_gets` GETs in flight, 1,024 footers, two frames of read-ahead.
    pub fn new(max_concurrent_gets: usize, chunk_cache: Option<Arc<ChunkCache>>) -> Self {
        ReadContext {
            get_permits: Arc::new(Semaphore::new(max_concurrent_gets.max(1))),
            chunk_cache,
            footer_cache: FooterCache::new(1024),
            readahead_frames: 2,
            fetch_chunk_bytes: DEFAULT_FETCH_CHUNK_BYTES,
            chunk_budget_bytes: CHUNKS_IN_MEMORY * DEFAULT_FETCH_CHUNK_BYTES,
            chunk_budget: Arc::new(Semaphore::new(CHUNKS_IN_MEMORY * DEFAULT_FETCH_CHUNK_BYTES)),
        }
    }

    /// Sets `remote.fetch.chunk.bytes`, and the chunk budget to [`CHUNKS_IN_MEMORY`] chunks.
    pub fn with_fetch_chunk_bytes(mut self, bytes: usize) -> Self {
        let bytes = bytes.max(1);
        self.fetch_chunk_bytes = bytes;
        self.chunk_budget_bytes = CHUNKS_IN_MEMORY * bytes;
        self.chunk_budget = Arc::new(Semaphore::new(self.chunk_budget_bytes));
        self
    }
}

/// Upload settings.
#[derive(Debug, Clone, Copy)]
pub struct UploadConfig {
    /// Target uncompressed frame size.
    pub frame_bytes: usize,
    pub zstd_level: i32,
    /// The longest an uploader may take from starting a segment object's PUT to starting the
    /// manifest write that lists it; later, it abandons the write and deletes the object. Half
    /// the scrub grace: the scrub may delete an unlisted object once it is older than the grace.
    pub manifest_deadline: Duration,
    /// Multipart part size; an object smaller than one part goes up in one PUT.
    pub part_bytes: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            frame_bytes: format::DEFAULT_FRAME_BYTES,
            zstd_level: 3,
            manifest_deadline: Duration::from_secs(300),
            part_bytes: stream::PART_BYTES,
        }
    }
}

/// One partition's remote log.
#[derive(Debug)]
pub struct RemoteLog {
    store: Arc<dyn ObjectStore>,
    paths: PartitionPaths,
    manifests: ManifestStore,
    ctx: ReadContext,
    upload: UploadConfig,
    clock: Arc<dyn Clock>,
    /// The latest manifest this instance has seen.
    cached: Mutex<Option<Arc<Manifest>>>,
    /// The leader epoch at which this instance read the store as the partition's leader
    /// ([`RemoteLog::lead`]); while set, `cached` is the manifest in force (this instance
    /// writes every change itself) and no read goes to the store to find it.
    leading: Mutex<Option<i32>>,
    prefetch: Arc<Semaphore>,
    /// Frames a prefetch is fetching now, with what it signals when done.
    inflight: Arc<Mutex<InFlight>>,
}

impl RemoteLog {
    /// `root` is the store prefix followed by the cluster name ([`crate::manifest::root_path`]).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        topic: &str,
        topic_id: &str,
        partition: u32,
        ctx: ReadContext,
    ) -> RemoteLog {
        let paths = PartitionPaths::new(root, topic, topic_id, partition);
        RemoteLog {
            manifests: ManifestStore::new(Arc::clone(&store), paths.clone()),
            store,
            paths,
            prefetch: Arc::new(Semaphore::new(ctx.readahead_frames)),
            ctx,
            upload: UploadConfig::default(),
            clock: strata_log::clock::system(),
            cached: Mutex::new(None),
            leading: Mutex::new(None),
            inflight: Arc::default(),
        }
    }

    pub fn with_upload_config(mut self, upload: UploadConfig) -> Self {
        self.upload = upload;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn paths(&self) -> &PartitionPaths {
        &self.paths
    }

    /// Reads the highest manifest version from the store (and remembers it for reads).
    pub async fn latest_manifest(&self) -> Result<Option<Manifest>> {
        let m = self.manifests.latest().await?;
        *self.cached.lock() = m.clone().map(Arc::new);
        Ok(m)
    }

    async fn fresh(&self) -> Result<Manifest> {
        Ok(self
            .latest_manifest()
            .await?
            .unwrap_or_else(Manifest::empty))
    }

    async fn known(&self) -> Result<Arc<Manifest>> {
        let cached = self.cached.lock().clone();
        match cached {
            Some(m) => Ok(m),
            None => Ok(Arc::new(self.fresh().await?)),
        }
    }

    /// Takes the partition's lead at `epoch`: the first call at an epoch finds the latest
    /// manifest from `hint` ([`ManifestStore::latest_from`]: GETs, no LIST when the hint is
    /// good); later calls at the same epoch return the manifest in memory, with no request.
    /// An empty manifest (version 0) stands for "nothing uploaded yet".
    pub async fn lead(&self, epoch: i32, hint: Option<u64>) -> Result<Arc<Manifest>> {
        if *self.leading.lock() == Some(epoch) {
            if let Some(m) = self.cached.lock().clone() {
                return Ok(m);
            }
        }
        let found = self.manifests.latest_from(hint).await?;
        let m = Arc::new(found.unwrap_or_else(Manifest::empty));
        *self.cached.lock() = Some(m.clone());
        *self.leading.lock() = Some(epoch);
        Ok(m)
    }

    /// Gives up the lead: the manifest in memory is no longer known to be the latest.
    pub fn follow(&self) {
        *self.leading.lock() = None;
    }

    fn is_leading(&self) -> bool {
        self.leading.lock().is_some()
    }

    /// The manifest in force: the one in memory while leading, else the store's latest.
    pub async fn manifest(&self) -> Result<Arc<Manifest>> {
        if self.is_leading() {
            if let Some(m) = self.cached.lock().clone() {
                return Ok(m);
            }
        }
        Ok(Arc::new(self.fresh().await?))
    }

    fn remember(&self, m: &Manifest) {
        *self.cached.lock() = Some(Arc::new(m.clone()));
    }
}
