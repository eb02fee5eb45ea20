//! One partition's remote log: uploads sealed segments, serves reads below the local log,
//! applies remote retention, deletes the partition, and scrubs garbage.
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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use strata_log::batch::BatchIter;
use strata_log::Clock;
use tokio::sync::Semaphore;

use crate::cache::{ChunkCache, FooterCache};
use crate::error::{Result, TieringError};
use crate::format::{self, decode_frame, parse_footer, Footer, FormatError, FrameInfo};
use crate::manifest::{Manifest, ManifestStore, PartitionPaths, SegmentMeta};
use crate::metrics;

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
    /// Frames prefetched ahead of a read, at most this many in flight per partition (0: off).
    pub readahead_frames: usize,
}

impl ReadContext {
    /// `max_concurrent_gets` GETs in flight, 1,024 footers, two frames of read-ahead.
    pub fn new(max_concurrent_gets: usize, chunk_cache: Option<Arc<ChunkCache>>) -> Self {
        ReadContext {
            get_permits: Arc::new(Semaphore::new(max_concurrent_gets.max(1))),
            chunk_cache,
            footer_cache: FooterCache::new(1024),
            readahead_frames: 2,
        }
    }
}

/// Upload settings.
#[derive(Debug, Clone, Copy)]
pub struct UploadConfig {
    /// Target uncompressed frame size.
    pub frame_bytes: usize,
    pub zstd_level: i32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            frame_bytes: format::DEFAULT_FRAME_BYTES,
            zstd_level: 3,
        }
    }
}

/// Which segments remote retention removes: the oldest segments that match any rule, up to
/// the first that matches none.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionPolicy {
    /// Move the remote log start to this offset; segments wholly below it go.
    pub start_offset: Option<i64>,
    /// `retention.ms`: segments whose newest record is older than this go.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: oldest segments go while what remains stays at or above this.
    pub retention_bytes: Option<u64>,
}

/// What [`RemoteLog::scrub`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub deleted_objects: Vec<Path>,
    pub deleted_manifests: Vec<u64>,
    /// Unlisted objects left alone because they are younger than the grace period.
    pub young_unlisted: usize,
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
    inflight: Arc<Mutex<HashSet<(String, u64)>>>,
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

    /// Uploads a sealed segment (`segment`: its batches; `base_offset`: its base offset) and
    /// lists it in a new manifest version. Idempotent: if a listed segment already has this
    /// base offset, the latest manifest is returned unchanged. Refused as fenced when the
    /// manifest has a higher leader epoch, and as invalid when `base_offset` is not the
    /// manifest's end offset (unless the manifest is empty).
    ///
    /// The object is PUT before the manifest names it (see [`ManifestStore::write_next`]); an
    /// object whose manifest write fails is garbage that [`RemoteLog::scrub`] removes.
    ///
    /// Metrics: a segment listed by this call counts as one upload; a failed call as one
    /// upload error.
    pub async fn upload(
        &self,
        segment: Bytes,
        base_offset: i64,
        leader_epoch: i32,
    ) -> Result<Manifest> {
        let result = self.upload_once(segment, base_offset, leader_epoch).await;
        if result.is_err() {
            metrics::UPLOAD_ERRORS.inc();
        }
        result
    }

    async fn upload_once(
        &self,
        segment: Bytes,
        base_offset: i64,
        leader_epoch: i32,
    ) -> Result<Manifest> {
        let start = std::time::Instant::now();
        let segment_len = segment.len() as u64;
        let mut current = (*self.manifest().await?).clone();
        if let Some(done) = self.upload_check(&current, base_offset, leader_epoch)? {
            return Ok(done);
        }
        let cfg = self.upload;
        let encoded = tokio::task::spawn_blocking(move || {
            format::encode_segment(&segment, base_offset, cfg.frame_bytes, cfg.zstd_level)
        })
        .await
        .map_err(|e| TieringError::Unavailable(format!("the segment encoder stopped: {e}")))??;
        let key = self
            .paths
            .segment_key(base_offset, leader_epoch, uuid::Uuid::new_v4());
        let object_bytes = encoded.bytes.len() as u64;
        self.store
            .put(&key, PutPayload::from(encoded.bytes))
            .await
            .map_err(|e| TieringError::store(&key, e))?;
        crate::failpoint::reached(crate::failpoint::UPLOAD_AFTER_OBJECT_PUT, key.as_ref()).await;
        let f = &encoded.footer;
        let meta = SegmentMeta {
            key: key.to_string(),
            base_offset,
            next_offset: f.next_offset,
            max_timestamp: f.max_timestamp,
            object_bytes,
            segment_bytes: f.segment_bytes,
            records: f.record_count,
            leader_epoch,
        };
        self.ctx
            .footer_cache
            .put(key.as_ref(), Arc::new(encoded.footer));
        for _ in 0..MANIFEST_WRITE_ATTEMPTS {
            let mut next = current.clone();
            next.leader_epoch = leader_epoch;
            if next.segments.is_empty() {
                next.remote_log_start_offset = next.remote_log_start_offset.max(base_offset);
            }
            next.segments.push(meta.clone());
            match self.manifests.write_next(&current, next).await {
                Ok(written) => {
                    self.remember(&written);
                    metrics::UPLOADS.inc();
                    metrics::UPLOAD_BYTES.add(segment_len);
                    metrics::UPLOAD_DURATION.observe_since(start);
                    return Ok(written);
                }
                Err(TieringError::ManifestConflict { .. }) => {
                    self.follow();
                    current = self.fresh().await?;
                    match self.upload_check(&current, base_offset, leader_epoch) {
                        Ok(None) => continue,
                        Ok(Some(done)) => {
                            if !done.segments.iter().any(|s| s.key == meta.key) {
                                self.discard(&key).await;
                            }
                            return Ok(done);
                        }
                        Err(e) => {
                            self.discard(&key).await;
                            return Err(e);
                        }
                    }
                }
                Err(e @ TieringError::Fenced { .. }) => {
                    self.follow();
                    self.discard(&key).await;
                    return Err(e);
                }
                Err(e) => {
                    // The write may have landed: re-read before the next decision.
                    self.follow();
                    return Err(e);
                }
            }
        }
        Err(TieringError::Unavailable(format!(
            "{}: gave up listing the segment at base offset {base_offset} after \
             {MANIFEST_WRITE_ATTEMPTS} lost manifest races; {key} is left for scrub",
            self.paths.describe()
        )))
    }

    /// `Some(manifest)` when the upload is already done, an error when it must not happen.
    fn upload_check(&self, m: &Manifest, base_offset: i64, epoch: i32) -> Result<Option<Manifest>> {
        if m.leader_epoch > epoch {
            return Err(TieringError::Fenced {
                partition: self.paths.describe(),
                ours: epoch,
                current: m.leader_epoch,
            });
        }
        if m.segments.iter().any(|s| s.base_offset == base_offset) {
            return Ok(Some(m.clone()));
        }
        match m.end_offset() {
            Some(end) if end != base_offset => Err(TieringError::NotContiguous {
                partition: self.paths.describe(),
                base_offset,
                remote_end: end,
            }),
            _ => Ok(None),
        }
    }

    /// Best-effort removal of an object no manifest lists (scrub catches what this misses).
    async fn discard(&self, key: &Path) {
        if let Err(e) = self.store.delete(key).await {
            tracing::debug!(key = %key, error = %e, "left an unlisted segment object for scrub");
        }
    }

    /// Reads whole batches starting with the one holding `offset`, from one frame, up to
    /// `max_bytes` (at least one batch). `None` when `offset` is below the remote log start or
    /// at/after the remote end.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<Bytes>> {
        let start = std::time::Instant::now();
        let result = self.read_once(offset, max_bytes).await;
        match &result {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                metrics::REMOTE_FETCHES.inc();
                metrics::REMOTE_FETCH_BYTES.add(bytes.len() as u64);
                metrics::REMOTE_FETCH_DURATION.observe_since(start);
            }
            Err(_) => {
                metrics::REMOTE_FETCHES.inc();
                metrics::REMOTE_FETCH_ERRORS.inc();
                metrics::REMOTE_FETCH_DURATION.observe_since(start);
            }
        }
        result
    }

    async fn read_once(&self, offset: i64, max_bytes: usize) -> Result<Option<Bytes>> {
        let mut manifest = self.known().await?;
        let beyond = manifest.end_offset().is_none_or(|end| offset >= end);
        if (beyond || offset < manifest.remote_log_start_offset) && !self.is_leading() {
            manifest = Arc::new(self.fresh().await?);
        }
        let Some(seg) = manifest.segment_for(offset).cloned() else {
            return Ok(None);
        };
        match self.read_segment(&seg, offset, max_bytes).await {
            Err(TieringError::NotFound { .. }) => {
                // Retention may have removed it since our manifest was read.
                let fresh = self.manifest().await?;
                match fresh.segment_for(offset) {
                    None => Ok(None),
                    Some(s) if s.key != seg.key => {
                        self.read_segment(s, offset, max_bytes).await.map(Some)
                    }
                    Some(_) => Err(TieringError::NotFound {
                        key: seg.key.clone(),
                    }),
                }
            }
            r => r.map(Some),
        }
    }

    /// The (offset, timestamp) of the first remote record whose timestamp is at or after
    /// `timestamp_ms`, or `None` when every remote record is older. Segments whose maximum
    /// timestamp (in the manifest) is older are skipped without a GET; in a candidate segment
    /// the footer's time index names the first frame to decode.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let manifest = self.manifest().await?;
        let start = manifest.remote_log_start_offset;
        for seg in manifest
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= timestamp_ms && s.next_offset > start)
        {
            let footer = self.footer(seg).await?;
            let Some(first) = footer
                .frame_for_timestamp(timestamp_ms)
                .and_then(|f| footer.frame_index(f))
            else {
                continue;
            };
            for frame in &footer.frames[first..] {
                if frame.max_timestamp < timestamp_ms {
                    continue;
                }
                let data = self.frame(&seg.key, frame).await?;
                if let Some(found) = first_at_or_after(&data, timestamp_ms, start)
                    .map_err(|e| TieringError::segment(&seg.key, FormatError::Corrupt(e)))?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    async fn read_segment(
        &self,
        seg: &SegmentMeta,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes> {
        let footer = self.footer(seg).await?;
        let Some(frame) = footer.frame_for(offset).copied() else {
            return Err(TieringError::segment(
                &seg.key,
                FormatError::Corrupt(format!("the footer has no frame for offset {offset}")),
            ));
        };
        let data = self.frame(&seg.key, &frame).await?;
        self.prefetch_after(&seg.key, &footer, &frame);
        let mut start = None;
        let mut end = 0;
        let mut iter = BatchIter::new(&data);
        loop {
            let pos = iter.position();
            let Some(item) = iter.next() else { break };
            let (h, bytes) = item.map_err(|e| {
                TieringError::segment(&seg.key, FormatError::Corrupt(e.to_string()))
            })?;
            match start {
                None if h.last_offset() < offset => continue,
                None => start = Some(pos),
                Some(s) if pos + bytes.len() - s > max_bytes => break,
                Some(_) => {}
            }
            end = pos + bytes.len();
        }
        let start = start.ok_or_else(|| {
            TieringError::segment(
                &seg.key,
                FormatError::Corrupt(format!(
                    "the frame indexed for offset {offset} does not hold it"
                )),
            )
        })?;
        Ok(data.slice(start..end))
    }

    /// The segment's footer, from the footer cache or one (rarely two) tail GETs.
    async fn footer(&self, seg: &SegmentMeta) -> Result<Arc<Footer>> {
        if let Some(f) = self.ctx.footer_cache.get(&seg.key) {
            return Ok(f);
        }
        let key = Path::from(seg.key.as_str());
        let len = seg.object_bytes;
        let tail_len = (format::SUGGESTED_TAIL_LEN as u64).min(len);
        let tail = self.get_range(&key, len - tail_len..len).await?;
        let footer = match parse_footer(&tail) {
            Err(FormatError::ShortTail { need, .. }) if need as u64 <= len => {
                let tail = self.get_range(&key, len - need as u64..len).await?;
                parse_footer(&tail)
            }
            r => r,
        }
        .map_err(|e| TieringError::segment(&seg.key, e))?;
        if footer.object_len() != len
            || footer.base_offset != seg.base_offset
            || footer.next_offset != seg.next_offset
        {
            return Err(TieringError::segment(
                &seg.key,
                FormatError::Corrupt(format!(
                    "the footer describes a {}-byte object with offsets {}..{}, the manifest a \
                     {len}-byte object with offsets {}..{}",
                    footer.object_len(),
                    footer.base_offset,
                    footer.next_offset,
                    seg.base_offset,
                    seg.next_offset
                )),
            ));
        }
        let footer = Arc::new(footer);
        self.ctx.footer_cache.put(&seg.key, Arc::clone(&footer));
        Ok(footer)
    }

    /// One ranged GET under the broker's remote-read permits.
    async fn get_range(&self, key: &Path, range: std::ops::Range<u64>) -> Result<Bytes> {
        get_range(&self.store, &self.ctx.get_permits, key, range).await
    }

    /// A decoded frame: from the chunk cache when it holds a frame that passes its checks,
    /// else from the store (and then cached).
    async fn frame(&self, key: &str, info: &FrameInfo) -> Result<Bytes> {
        if let Some(cache) = &self.ctx.chunk_cache {
            if let Some(raw) = cache.get(key, info.position).await {
                match decode_frame(&raw, info) {
                    Ok(data) => return Ok(data),
                    Err(e) => {
                        tracing::warn!(key, position = info.position, error = %e,
                            "dropping a damaged chunk cache entry");
                        cache.evict(key, info.position).await;
                    }
                }
            }
        }
        let raw = self.get_range(&Path::from(key), info.range()).await?;
        let data = decode_frame(&raw, info).map_err(|e| TieringError::segment(key, e))?;
        if let Some(cache) = &self.ctx.chunk_cache {
            cache.put(key, info.position, &raw).await;
        }
        Ok(data)
    }

    /// Starts fetching the frame after `frame` into the chunk cache, if read-ahead is on, the
    /// frame is not cached or in flight, and a prefetch slot is free.
    fn prefetch_after(&self, key: &str, footer: &Footer, frame: &FrameInfo) {
        let Some(cache) = self.ctx.chunk_cache.clone() else {
            return;
        };
        let Some(next) = footer
            .frame_index(frame)
            .and_then(|i| footer.frames.get(i + 1))
            .copied()
        else {
            return;
        };
        if cache.contains(key, next.position) {
            return;
        }
        let Ok(slot) = Arc::clone(&self.prefetch).try_acquire_owned() else {
            return;
        };
        let id = (key.to_string(), next.position);
        if !self.inflight.lock().insert(id.clone()) {
            return;
        }
        let store = Arc::clone(&self.store);
        let permits = Arc::clone(&self.ctx.get_permits);
        let inflight = Arc::clone(&self.inflight);
        tokio::spawn(async move {
            let _slot = slot;
            let path = Path::from(id.0.as_str());
            match get_range(&store, &permits, &path, next.range()).await {
                Ok(raw) if crc32c::crc32c(&raw) == next.crc => cache.put(&id.0, id.1, &raw).await,
                Ok(_) => {
                    tracing::debug!(key = %id.0, "prefetched frame failed its CRC; not cached")
                }
                Err(e) => tracing::debug!(key = %id.0, error = %e, "prefetch failed"),
            }
            inflight.lock().remove(&id);
        });
    }

    /// Removes the oldest segments the policy expires: writes a manifest without them and with
    /// a higher `remote_log_start_offset` (fenced by `leader_epoch`), THEN deletes their
    /// objects. Returns the manifest now in force and the objects deleted. An object whose
    /// delete fails is unlisted garbage for [`RemoteLog::scrub`].
    pub async fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        leader_epoch: i32,
    ) -> Result<(Manifest, Vec<Path>)> {
        let mut current = (*self.manifest().await?).clone();
        for _ in 0..MANIFEST_WRITE_ATTEMPTS {
            if current.leader_epoch > leader_epoch {
                return Err(TieringError::Fenced {
                    partition: self.paths.describe(),
                    ours: leader_epoch,
                    current: current.leader_epoch,
                });
            }
            let expired = expired_prefix(&current, policy, self.clock.now_ms());
            let mut new_start = current.remote_log_start_offset;
            if let Some(o) = policy.start_offset {
                new_start = new_start.max(o);
            }
            if let Some(last) = current.segments[..expired].last() {
                new_start = new_start.max(last.next_offset);
            }
            if expired == 0 && new_start == current.remote_log_start_offset {
                return Ok((current, Vec::new()));
            }
            let mut next = current.clone();
            next.leader_epoch = leader_epoch;
            next.remote_log_start_offset = new_start;
            let gone: Vec<SegmentMeta> = next.segments.drain(..expired).collect();
            match self.manifests.write_next(&current, next).await {
                Ok(written) => {
                    self.remember(&written);
                    let mut deleted = Vec::new();
                    for s in gone {
                        self.ctx.footer_cache.remove(&s.key);
                        let key = Path::from(s.key);
                        match self.store.delete(&key).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(key),
                            Err(e) => {
                                tracing::warn!(key = %key, error = %e, "expired segment object left for scrub")
                            }
                        }
                    }
                    return Ok((written, deleted));
                }
                Err(TieringError::ManifestConflict { .. }) => {
                    self.follow();
                    current = self.fresh().await?;
                }
                Err(e) => {
                    self.follow();
                    return Err(e);
                }
            }
        }
        Err(TieringError::Unavailable(format!(
            "{}: gave up applying retention after {MANIFEST_WRITE_ATTEMPTS} lost manifest races",
            self.paths.describe()
        )))
    }

    /// Deletes every manifest version and object of the partition (topic deletion): manifests
    /// first, oldest version first, so readers see the newest view until the partition is gone
    /// and a crash half-way leaves only unlisted objects. Returns how many objects went.
    pub async fn delete_all(&self) -> Result<usize> {
        let prefix = self.paths.partition_prefix();
        let all: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| TieringError::store(&prefix, e))?;
        let (mut manifests, others): (Vec<Path>, Vec<Path>) = all
            .into_iter()
            .partition(|p| PartitionPaths::manifest_version(p).is_some());
        manifests.sort_by_key(PartitionPaths::manifest_version);
        let mut n = 0;
        for p in manifests.into_iter().chain(others) {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(TieringError::store(&p, e)),
            }
        }
        *self.cached.lock() = None;
        self.follow();
        Ok(n)
    }

    /// Removes garbage older than `grace`: manifest versions before the latest
    /// [`KEEP_MANIFEST_VERSIONS`], then `.seg` objects that no remaining manifest version
    /// lists. `grace` must exceed the longest time between an object's PUT and its manifest
    /// write, and the longest a writer may hold a manifest it read.
    pub async fn scrub(&self, grace: Duration) -> Result<ScrubReport> {
        let cutoff = self.clock.now_ms() - grace.as_millis() as i64;
        let old = |m: &object_store::ObjectMeta| m.last_modified.timestamp_millis() < cutoff;
        let mut report = ScrubReport::default();
        // One LIST of the partition's prefix finds both the manifest versions and the objects.
        let prefix = self.paths.partition_prefix();
        let listing: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| TieringError::store(&prefix, e))?;
        let (mut versions, objects): (Vec<_>, Vec<_>) = listing
            .into_iter()
            .partition(|m| PartitionPaths::manifest_version(&m.location).is_some());
        versions.sort_by_key(|m| PartitionPaths::manifest_version(&m.location));
        let keep_from = versions.len().saturating_sub(KEEP_MANIFEST_VERSIONS);
        let mut remaining = Vec::new();
        for (i, meta) in versions.iter().enumerate() {
            let v = PartitionPaths::manifest_version(&meta.location).unwrap_or_default();
            if i < keep_from && old(meta) {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        report.deleted_manifests.push(v)
                    }
                    Err(e) => return Err(TieringError::store(&meta.location, e)),
                }
            } else {
                remaining.push(v);
            }
        }
        let mut listed = HashSet::new();
        for v in remaining {
            match self.manifests.load(v).await {
                Ok(m) => listed.extend(m.segments.into_iter().map(|s| s.key)),
                Err(TieringError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for meta in objects {
            let key = meta.location.as_ref();
            if !key.ends_with(".seg") || listed.contains(key) {
                continue;
            }
            if !old(&meta) {
                report.young_unlisted += 1;
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    report.deleted_objects.push(meta.location)
                }
                Err(e) => return Err(TieringError::store(&meta.location, e)),
            }
        }
        Ok(report)
    }
}

async fn get_range(
    store: &Arc<dyn ObjectStore>,
    permits: &Semaphore,
    key: &Path,
    range: std::ops::Range<u64>,
) -> Result<Bytes> {
    let _permit = permits
        .acquire()
        .await
        .map_err(|_| TieringError::Unavailable("the remote read pool is shut down".to_string()))?;
    store
        .get_range(key, range)
        .await
        .map_err(|e| TieringError::store(key, e))
}

/// How many of the oldest segments the policy expires.
fn expired_prefix(m: &Manifest, policy: &RetentionPolicy, now_ms: i64) -> usize {
    let mut remaining = m.total_segment_bytes();
    let mut n = 0;
    for s in &m.segments {
        let by_offset = policy.start_offset.is_some_and(|o| s.next_offset <= o);
        let by_time = policy
            .retention_ms
            .is_some_and(|ms| s.max_timestamp < now_ms.saturating_sub(ms));
        let by_size = policy
            .retention_bytes
            .is_some_and(|max| remaining.saturating_sub(s.segment_bytes) >= max && remaining > max);
        if !(by_offset || by_time || by_size) {
            break;
        }
        remaining -= s.segment_bytes;
        n += 1;
    }
    n
}

/// The first record of `data` (whole batches) at offset `min_offset` or later whose timestamp
/// is at or after `timestamp_ms`. Only batches whose maximum timestamp qualifies are decoded.
fn first_at_or_after(
    data: &Bytes,
    timestamp_ms: i64,
    min_offset: i64,
) -> std::result::Result<Option<(i64, i64)>, String> {
    let mut iter = BatchIter::new(data);
    loop {
        let pos = iter.position();
        let Some(item) = iter.next() else {
            return Ok(None);
        };
        let (h, bytes) = item.map_err(|e| e.to_string())?;
        if h.max_timestamp < timestamp_ms || h.last_offset() < min_offset {
            continue;
        }
        let batch = &data[pos..pos + bytes.len()];
        let found = strata_log::framing::find_timestamp(batch, timestamp_ms, min_offset)
            .map_err(|e| e.to_string())?;
        if found.is_some() {
            return Ok(found);
        }
    }
}
