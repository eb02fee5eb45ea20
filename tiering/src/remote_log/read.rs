//! Reads below the local log: the manifest names the segment, its footer names the frame, one
//! ranged GET (or the chunk cache) brings it; the next frame is prefetched. Every byte returned
//! passed the frame CRC and every batch CRC.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_log::batch::BatchIter;
use tokio::sync::Semaphore;

use crate::error::{Result, TieringError};
use crate::format::{self, decode_frame, parse_footer, Footer, FormatError, FrameInfo};
use crate::manifest::SegmentMeta;
use crate::metrics;

use super::RemoteLog;

impl RemoteLog {
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
