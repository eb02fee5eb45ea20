//! Reads below the local log: the manifest names the segment, its footer names the frame, the
//! chunk cache or one ranged GET brings it. A miss fetches up to `fetch_chunk_bytes` of
//! frames in one GET; the next chunk is prefetched, and a read of a frame being prefetched
//! waits for it. Every byte returned passed the frame CRC and every batch CRC.

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

use super::chunk::{chunk_of, fetch_frames, Budget};
use super::{InFlight, ReadContext, RemoteLog};
use crate::cache::{ChunkCache, FooterCache};
use parking_lot::Mutex;

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
        let next = manifest.segment_after(&seg.key).cloned();
        match self
            .read_segment(&seg, next.as_ref(), offset, max_bytes)
            .await
        {
            Err(TieringError::NotFound { .. }) => {
                // Retention may have removed it since our manifest was read.
                let fresh = self.manifest().await?;
                match fresh.segment_for(offset) {
                    None => Ok(None),
                    Some(s) if s.key != seg.key => self
                        .read_segment(s, None, offset, max_bytes)
                        .await
                        .map(Some),
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
                let data = self.frame(&seg.key, &footer, frame).await?;
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
        next: Option<&SegmentMeta>,
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
        let data = self.frame(&seg.key, &footer, &frame).await?;
        self.prefetch_after(&seg.key, &footer, &frame, next);
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
        self.wait_for_prefetch(&seg.key, FOOTER).await;
        load_footer(
            &self.store,
            &self.ctx.get_permits,
            &self.ctx.footer_cache,
            seg,
        )
        .await
    }

    /// Waits while a prefetch fetches `(key, position)` (a frame, or [`FOOTER`]). The
    /// `Notified` is created before the second look, so the prefetch's notify_waiters reaches it.
    async fn wait_for_prefetch(&self, key: &str, position: u64) {
        let id = (key.to_string(), position);
        let notify = self.inflight.lock().get(&id).cloned();
        if let Some(n) = notify {
            let wait = n.notified();
            if self.inflight.lock().contains_key(&id) {
                wait.await;
            }
        }
    }

    /// One ranged GET under the broker's remote-read permits.
    async fn get_range(&self, key: &Path, range: std::ops::Range<u64>) -> Result<Bytes> {
        get_range(&self.store, &self.ctx.get_permits, key, range).await
    }

    /// A decoded frame: from the chunk cache when it holds a frame that passes its checks,
    /// else from the store. With a chunk cache, a miss fetches the frame and the frames after
    /// it in one ranged GET of up to `fetch_chunk_bytes` and caches them all (sequential replay
    /// then costs one GET per chunk, not per frame); a frame a prefetch is fetching now is
    /// waited for, not fetched twice. Decompression runs on the blocking pool.
    async fn frame(&self, key: &str, footer: &Footer, info: &FrameInfo) -> Result<Bytes> {
        let Some(cache) = &self.ctx.chunk_cache else {
            let raw = self.get_range(&Path::from(key), info.range()).await?;
            return decode_off_workers(key, raw, *info).await;
        };
        // A prefetch of this frame in flight: wait for it, then look in the cache.
        self.wait_for_prefetch(key, info.position).await;
        if let Some(raw) = cache.get(key, info.position).await {
            match decode_off_workers(key, raw, *info).await {
                Ok(data) => return Ok(data),
                Err(e) => {
                    tracing::warn!(key, position = info.position, error = %e,
                        "dropping a damaged chunk cache entry");
                    cache.evict(key, info.position).await;
                }
            }
        }
        let frames = chunk_of(footer, info, self.ctx.fetch_chunk_bytes);
        let chunk = fetch_frames(&self.store, &self.ctx, key, frames, Budget::Wait).await?;
        let raws = chunk.as_ref().map_or(&[][..], |c| &c.raws[..]);
        let Some(raw) = raws.first().cloned() else {
            return Err(TieringError::segment(
                key,
                FormatError::Corrupt(format!("the footer has no frame at {}", info.position)),
            ));
        };
        let data = decode_off_workers(key, raw.clone(), *info).await?;
        cache.put(key, info.position, &raw).await;
        for (f, r) in frames.iter().zip(raws).skip(1) {
            if crc32c::crc32c(r) == f.crc {
                cache.put(key, f.position, r).await;
            }
        }
        Ok(data)
    }

    /// Starts fetching what comes after `frame` into the chunk cache, if read-ahead is on and a
    /// prefetch slot is free: the next chunk of the segment, or after its last frame the next
    /// segment's footer and first chunk (read-ahead crosses segment boundaries). Demand reads
    /// of the frames it fetches wait for it (see [`RemoteLog::frame`]).
    fn prefetch_after(
        &self,
        key: &str,
        footer: &Arc<Footer>,
        frame: &FrameInfo,
        next_segment: Option<&SegmentMeta>,
    ) {
        let Some(cache) = self.ctx.chunk_cache.clone() else {
            return;
        };
        let next_frame = footer
            .frame_index(frame)
            .and_then(|i| footer.frames.get(i + 1))
            .copied();
        let ahead = match (next_frame, next_segment) {
            (Some(f), _) if cache.contains(key, f.position) => return,
            (Some(f), _) => Ahead::Frame(key.to_string(), Arc::clone(footer), f),
            (None, Some(s)) => {
                let known = self.ctx.footer_cache.get(&s.key);
                if known.is_some_and(|f| {
                    f.frames
                        .first()
                        .is_some_and(|f| cache.contains(&s.key, f.position))
                }) {
                    return;
                }
                Ahead::Segment(s.clone())
            }
            (None, None) => return,
        };
        let Ok(slot) = Arc::clone(&self.prefetch).try_acquire_owned() else {
            return;
        };
        // The next segment's footer and first frame (always at position 0) are marked in
        // flight at once: a demand read arriving before the footer is known waits too.
        let premarked = match &ahead {
            Ahead::Segment(seg) => {
                let notify = Arc::new(tokio::sync::Notify::new());
                let mut marked = self.inflight.lock();
                if marked.contains_key(&(seg.key.clone(), 0)) {
                    return;
                }
                for position in [FOOTER, 0] {
                    marked.insert((seg.key.clone(), position), Arc::clone(&notify));
                }
                Some(notify)
            }
            Ahead::Frame(..) => None,
        };
        let store = Arc::clone(&self.store);
        let ctx = self.ctx.clone();
        let inflight = Arc::clone(&self.inflight);
        tokio::spawn(async move {
            let _slot = slot;
            let (key, footer, first) = match ahead {
                Ahead::Frame(key, footer, first) => (key, footer, first),
                Ahead::Segment(seg) => {
                    let loaded =
                        load_footer(&store, &ctx.get_permits, &ctx.footer_cache, &seg).await;
                    inflight.lock().remove(&(seg.key.clone(), FOOTER));
                    match loaded.map(|f| (f.frames.first().copied(), f)) {
                        Ok((Some(first), f)) => (seg.key, f, first),
                        outcome => {
                            if let Err(e) = outcome {
                                tracing::debug!(key = %seg.key, error = %e, "prefetching the next segment's footer failed");
                            }
                            inflight.lock().remove(&(seg.key.clone(), 0));
                            if let Some(n) = premarked {
                                n.notify_waiters();
                            }
                            return;
                        }
                    }
                }
            };
            let p = Prefetcher {
                store,
                ctx,
                cache,
                inflight,
            };
            prefetch_chunk(&p, &key, &footer, &first, premarked).await;
        });
    }
}

/// The in-flight mark of a segment's footer (no frame starts at this position).
const FOOTER: u64 = u64::MAX;

/// What a prefetch fetches: a frame of a known footer (and the chunk it starts), or the next
/// segment's footer and first chunk.
enum Ahead {
    Frame(String, Arc<Footer>, FrameInfo),
    Segment(SegmentMeta),
}

/// Fetches the chunk starting at `first` (the frames not cached yet) into the cache, marking
/// its frames in flight meanwhile so demand reads wait for it instead of fetching them again.
/// What a prefetch task holds of its remote log.
struct Prefetcher {
    store: Arc<dyn ObjectStore>,
    ctx: ReadContext,
    cache: Arc<ChunkCache>,
    inflight: Arc<Mutex<InFlight>>,
}

async fn prefetch_chunk(
    p: &Prefetcher,
    key: &str,
    footer: &Footer,
    first: &FrameInfo,
    premarked: Option<Arc<tokio::sync::Notify>>,
) {
    let frames: Vec<FrameInfo> = chunk_of(footer, first, p.ctx.fetch_chunk_bytes)
        .iter()
        .take_while(|f| premarked.is_some() || !p.cache.contains(key, f.position))
        .copied()
        .collect();
    let notify = match premarked {
        Some(n) => n,
        None => Arc::new(tokio::sync::Notify::new()),
    };
    {
        let mut marked = p.inflight.lock();
        let first_marked = frames
            .first()
            .and_then(|f| marked.get(&(key.to_string(), f.position)));
        if frames.is_empty() || first_marked.is_some_and(|n| !Arc::ptr_eq(n, &notify)) {
            // Nothing to fetch, or another prefetch has it: drop our own marks.
            marked.retain(|(k, _), n| k != key || !Arc::ptr_eq(n, &notify));
            drop(marked);
            notify.notify_waiters();
            return;
        }
        for f in &frames {
            marked.insert((key.to_string(), f.position), Arc::clone(&notify));
        }
    }
    match fetch_frames(&p.store, &p.ctx, key, &frames, Budget::IfFree).await {
        Ok(None) => tracing::debug!(key = %key, "the chunk budget is spent; prefetch skipped"),
        Ok(Some(chunk)) => {
            for (f, raw) in frames.iter().zip(&chunk.raws) {
                if crc32c::crc32c(raw) == f.crc {
                    p.cache.put(key, f.position, raw).await;
                } else {
                    tracing::debug!(key = %key, "prefetched frame failed its CRC; not cached");
                }
            }
        }
        Err(e) => tracing::debug!(key = %key, error = %e, "prefetch failed"),
    }
    {
        let mut marked = p.inflight.lock();
        for f in &frames {
            marked.remove(&(key.to_string(), f.position));
        }
    }
    notify.notify_waiters();
}

/// Checks and decompresses a frame on the blocking pool (a 2 MiB frame takes milliseconds).
async fn decode_off_workers(key: &str, raw: Bytes, info: FrameInfo) -> Result<Bytes> {
    tokio::task::spawn_blocking(move || decode_frame(&raw, &info))
        .await
        .map_err(|e| TieringError::Unavailable(format!("the frame decoder stopped: {e}")))?
        .map_err(|e| TieringError::segment(key, e))
}

/// A segment's footer, from the footer cache or one (rarely two) tail GETs, checked against
/// the manifest's entry.
async fn load_footer(
    store: &Arc<dyn ObjectStore>,
    permits: &Semaphore,
    footers: &FooterCache,
    seg: &SegmentMeta,
) -> Result<Arc<Footer>> {
    if let Some(f) = footers.get(&seg.key) {
        return Ok(f);
    }
    let key = Path::from(seg.key.as_str());
    let len = seg.object_bytes;
    let tail_len = (format::SUGGESTED_TAIL_LEN as u64).min(len);
    let tail = get_range(store, permits, &key, len - tail_len..len).await?;
    let footer = match parse_footer(&tail) {
        Err(FormatError::ShortTail { need, .. }) if need as u64 <= len => {
            let tail = get_range(store, permits, &key, len - need as u64..len).await?;
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
    footers.put(&seg.key, Arc::clone(&footer));
    Ok(footer)
}

pub(super) async fn get_range(
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
