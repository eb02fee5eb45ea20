//! Uploading a sealed segment: the object is PUT first, then a new manifest version lists it
//! (fenced by leader epoch, contiguous with the remote end, each base offset once).

use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::error::{Result, TieringError};
use crate::manifest::{Manifest, SegmentMeta};
use crate::metrics;

use super::stream::{self, BatchSource};
use super::{RemoteLog, MANIFEST_WRITE_ATTEMPTS};

impl RemoteLog {
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
        let mut once = Some(segment);
        self.upload_from(base_offset, leader_epoch, Box::new(move || Ok(once.take())))
            .await
    }

    /// Like [`RemoteLog::upload`], with the segment's batches coming from `source` a chunk at
    /// a time: the object is encoded and sent as a stream (`stream`), in memory bounded
    /// by a few frames and parts whatever the segment's size.
    pub async fn upload_from(
        &self,
        base_offset: i64,
        leader_epoch: i32,
        source: BatchSource,
    ) -> Result<Manifest> {
        let result = self.upload_once(source, base_offset, leader_epoch).await;
        if result.is_err() {
            metrics::UPLOAD_ERRORS.inc();
        }
        result
    }

    async fn upload_once(
        &self,
        source: BatchSource,
        base_offset: i64,
        leader_epoch: i32,
    ) -> Result<Manifest> {
        let start = std::time::Instant::now();
        let mut current = (*self.manifest().await?).clone();
        if let Some(done) = self.upload_check(&current, base_offset, leader_epoch)? {
            return Ok(done);
        }
        let cfg = self.upload;
        let key = self
            .paths
            .segment_key(base_offset, leader_epoch, uuid::Uuid::new_v4());
        let put_started = (self.clock.now_ms(), std::time::Instant::now());
        let written = stream::write_object(&self.store, &key, base_offset, cfg, source).await?;
        crate::failpoint::reached(crate::failpoint::UPLOAD_AFTER_OBJECT_PUT, key.as_ref()).await;
        let f = &written.footer;
        let segment_len = f.segment_bytes;
        let meta = SegmentMeta {
            key: key.to_string(),
            base_offset,
            next_offset: f.next_offset,
            max_timestamp: f.max_timestamp,
            object_bytes: written.object_bytes,
            segment_bytes: f.segment_bytes,
            records: f.record_count,
            leader_epoch,
            epochs: written.epochs,
        };
        self.ctx
            .footer_cache
            .put(key.as_ref(), Arc::new(written.footer));
        for _ in 0..MANIFEST_WRITE_ATTEMPTS {
            let waited = elapsed_since(self.clock.now_ms(), put_started);
            if waited > cfg.manifest_deadline {
                self.ctx.footer_cache.remove(key.as_ref());
                self.discard(&key).await;
                return Err(TieringError::Unavailable(format!(
                    "{}: abandoned listing the segment at base offset {base_offset}: {:.1} s \
                     passed since its object PUT, more than the {} s allowed (half the scrub \
                     grace), so a scrub may already have deleted {key}; it will be uploaded again",
                    self.paths.describe(),
                    waited.as_secs_f64(),
                    cfg.manifest_deadline.as_secs()
                )));
            }
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
}

/// Time since `started` (wall ms, monotonic instant): the longer of the two, so neither a wall
/// clock stepped back nor a manual test clock moved forward hides a stall.
fn elapsed_since(now_ms: i64, started: (i64, std::time::Instant)) -> Duration {
    let wall = Duration::from_millis(now_ms.saturating_sub(started.0).max(0) as u64);
    wall.max(started.1.elapsed())
}
