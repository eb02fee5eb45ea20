//! Chunks: the runs of consecutive frames one ranged GET brings on a cache miss, and the
//! broker-wide budget of the bytes they hold while being fetched and cached.
//!
//! Invariant: the compressed bytes of every chunk in memory at once on a broker add up to at
//! most [`ReadContext::chunk_budget_bytes`], whatever the number of partitions replaying: a
//! demand read waits for its share, a prefetch that finds the budget spent is skipped.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Result, TieringError};
use crate::format::{Footer, FormatError, FrameInfo};

use super::read::get_range;
use super::ReadContext;

/// How a fetch takes its share of the chunk budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// A demand read: waits until the bytes are free.
    Wait,
    /// A prefetch: fetches only if the bytes are free now.
    IfFree,
}

/// The raw frames of one chunk, holding their share of the budget until dropped.
pub(super) struct Chunk {
    pub raws: Vec<Bytes>,
    _budget: OwnedSemaphorePermit,
}

/// `info` and the frames after it in the same object, up to `max_bytes` of compressed frames
/// in all (at least `info`): one ranged GET's worth. Empty when the footer has no such frame.
pub(super) fn chunk_of<'a>(
    footer: &'a Footer,
    info: &FrameInfo,
    max_bytes: usize,
) -> &'a [FrameInfo] {
    let Some(first) = footer.frame_index(info) else {
        return &[];
    };
    let mut total = 0u64;
    let mut end = first;
    for f in &footer.frames[first..] {
        total += f.compressed_len as u64;
        if end > first && total > max_bytes as u64 {
            break;
        }
        end += 1;
    }
    &footer.frames[first..end]
}

/// The raw (compressed) bytes of consecutive `frames` of one object, with one ranged GET
/// under the broker's GET permits and chunk budget. `None` when `budget` is
/// [`Budget::IfFree`] and the budget is spent.
pub(super) async fn fetch_frames(
    store: &Arc<dyn ObjectStore>,
    ctx: &ReadContext,
    key: &str,
    frames: &[FrameInfo],
    budget: Budget,
) -> Result<Option<Chunk>> {
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Ok(None);
    };
    let start = first.position;
    let range = start..last.range().end;
    let Some(held) = take_budget(ctx, range.end - range.start, budget).await? else {
        return Ok(None);
    };
    let all = get_range(store, &ctx.get_permits, &Path::from(key), range).await?;
    let raws = frames
        .iter()
        .map(|f| {
            let from = (f.position - start) as usize;
            let to = from + f.compressed_len as usize;
            if to > all.len() {
                return Err(TieringError::segment(
                    key,
                    FormatError::Corrupt(format!(
                        "a ranged GET returned {} bytes, short of frame {}..{}",
                        all.len(),
                        f.position,
                        f.position + f.compressed_len as u64
                    )),
                ));
            }
            Ok(all.slice(from..to))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Chunk {
        raws,
        _budget: held,
    }))
}

/// A share of the budget for `bytes` (a chunk larger than the whole budget takes all of it).
async fn take_budget(
    ctx: &ReadContext,
    bytes: u64,
    budget: Budget,
) -> Result<Option<OwnedSemaphorePermit>> {
    let n = bytes
        .clamp(1, ctx.chunk_budget_bytes as u64)
        .min(u32::MAX as u64) as u32;
    let sem: Arc<Semaphore> = Arc::clone(&ctx.chunk_budget);
    match budget {
        Budget::Wait => sem.acquire_many_owned(n).await.map(Some).map_err(|_| {
            TieringError::Unavailable("the remote read pool is shut down".to_string())
        }),
        Budget::IfFree => Ok(sem.try_acquire_many_owned(n).ok()),
    }
}
