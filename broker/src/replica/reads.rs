//! Reads from one partition replica: consumer fetches (long poll below the high watermark),
//! the follower-facing read, reads of the remote tier below the local log start, and offset
//! lookups by timestamp.
//!
//! Invariants: a consumer never reads at or past the high watermark; a read below the local log
//! start goes to the remote tier when it holds the offset (also when local retention moved the
//! start while the read was on its way); log I/O runs on the blocking pool, except tail reads
//! ([`Partition::read_tail_inline`]).

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::partition::{blocking, Partition};
use crate::error::{BrokerError, Result};

/// What a fetch answers.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// The offset after the last whole batch of `records` (`None` for no batch).
fn next_offset_after(records: &Bytes) -> Option<i64> {
    strata_log::batch::BatchIter::new(records)
        .filter_map(|item| item.ok())
        .last()
        .map(|(header, _)| header.last_offset() + 1)
}

/// The parts of a fetch as one buffer (one part, the common case, is not copied).
fn join(mut parts: Vec<Bytes>, len: usize) -> Bytes {
    if parts.len() <= 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut out = bytes::BytesMut::with_capacity(len);
    for p in parts {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

/// One partition's part of a long poll: what was read so far and where the next read starts.
/// A wait woken by a new high watermark reads only what came since, never again what it holds
/// (50 fetches waiting for 4 GiB while records arrive read each byte once, not once per
/// append); the batch headers are walked only when a read follows.
#[derive(Debug)]
pub struct FetchCursor {
    next: i64,
    max_bytes: usize,
    parts: Vec<Bytes>,
    held: usize,
    /// The last read had records: `next` moves past them before the next read.
    walk: bool,
    last: Option<FetchResult>,
}

impl FetchCursor {
    pub fn new(offset: i64, max_bytes: usize) -> FetchCursor {
        FetchCursor {
            next: offset,
            max_bytes,
            parts: Vec::new(),
            held: 0,
            walk: false,
            last: None,
        }
    }

    /// Bytes read so far.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether this partition's own bound is reached.
    pub fn is_full(&self) -> bool {
        self.held >= self.max_bytes
    }

    /// Reads what came since the last read, below `high_watermark`, up to `budget` more bytes
    /// (and the cursor's own bound); returns the bytes read.
    pub async fn read_more(
        &mut self,
        p: &Arc<Partition>,
        budget: usize,
        high_watermark: i64,
    ) -> Result<usize> {
        if std::mem::take(&mut self.walk) {
            if let Some(last) = self.parts.last() {
                self.next = next_offset_after(last).unwrap_or(self.next);
            }
        }
        let room = self.max_bytes.saturating_sub(self.held).min(budget);
        let mut result = p.read(self.next, room, high_watermark).await?;
        let n = result.records.len();
        if n > 0 {
            self.held += n;
            self.parts.push(std::mem::take(&mut result.records));
            self.walk = true;
        }
        self.last = Some(result);
        Ok(n)
    }

    /// Everything read, with the partition's bounds as the last read saw them.
    pub fn finish(self, p: &Partition) -> Result<FetchResult> {
        let records = join(self.parts, self.held);
        Ok(match self.last {
            Some(last) => FetchResult { records, ..last },
            None => FetchResult {
                records,
                high_watermark: p.high_watermark(),
                log_start_offset: p.log_start_offset()?,
                log_end_offset: p.log_end_offset(),
            },
        })
    }
}

/// How far behind the log end a read may start and still be done inline (records).
const INLINE_READ_RECORDS: i64 = 4096;

/// The most an inline read copies (beyond the first batch, which it always returns whole).
const INLINE_READ_BYTES: usize = 256 * 1024;

impl Partition {
    /// A receiver of the high watermark (a multi-partition long poll waits on several).
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Reads whole batches from `offset` for a consumer (below the high watermark), waiting up
    /// to `max_wait` for `min_bytes` to be there.
    pub async fn fetch(
        self: &Arc<Self>,
        offset: i64,
        max_wait: Duration,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        let deadline = Instant::now() + max_wait;
        let mut hw_rx = self.high_watermark.subscribe();
        let want = min_bytes.max(1);
        let mut cursor = FetchCursor::new(offset, max_bytes);
        loop {
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            let hw = *hw_rx.borrow_and_update();
            cursor.read_more(self, usize::MAX, hw).await?;
            let done = cursor.held() >= want || cursor.is_full() || Instant::now() >= deadline;
            let waited = if done {
                None
            } else {
                Some(tokio::time::timeout_at(deadline, hw_rx.changed()).await)
            };
            match waited {
                Some(Ok(Ok(()))) => continue,
                Some(Ok(Err(_))) => return Err(self.closed()),
                None | Some(Err(_)) => return cursor.finish(self),
            }
        }
    }

    /// A read of the log's last few records, done on the calling (tokio) thread: followers and
    /// consumers that keep up ask for bytes appended moments ago, which the page cache holds,
    /// so the copy costs microseconds while a hop to the blocking pool and back costs two
    /// thread wake-ups on every replication and fetch round trip (most of end-to-end latency
    /// on a busy machine). `None` sends the read to the blocking pool instead: when the log
    /// lock is taken (an append may be in a write), or the offset is further back than
    /// [`INLINE_READ_RECORDS`], where the bytes may have left the page cache.
    fn read_tail_inline(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Option<Result<FetchResult>> {
        let guard = self.log.try_read()?;
        let log = guard.as_ref()?;
        let end = log.log_end_offset();
        if offset < log.log_start_offset() || end - offset > INLINE_READ_RECORDS {
            return None;
        }
        let read = log
            .read(offset, max_bytes.min(INLINE_READ_BYTES), max_offset)
            .map_err(|e| self.log_error(e));
        drop(guard);
        Some(read.map(|read| self.fetch_result(read)))
    }

    fn fetch_result(&self, read: strata_log::ReadResult) -> FetchResult {
        FetchResult {
            records: read.bytes,
            high_watermark: self.high_watermark(),
            log_start_offset: read.log_start_offset,
            log_end_offset: read.log_end_offset,
        }
    }

    /// One read, up to `max_offset` (exclusive): from the local log, or from the remote tier
    /// when the offset lies below the local log's start and the remote tier holds it.
    pub(crate) async fn read(
        self: &Arc<Self>,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<FetchResult> {
        let local_start = self.local_log_start_offset()?;
        if offset < local_start {
            if let Some(result) = self.read_remote(offset, max_bytes).await? {
                return Ok(result);
            }
        }
        let local = match self.read_tail_inline(offset, max_bytes, max_offset) {
            Some(read) => read,
            None => {
                let me = self.clone();
                blocking(move || {
                    let read = me.with_log(|log| log.read(offset, max_bytes, max_offset))?;
                    Ok(me.fetch_result(read))
                })
                .await
            }
        };
        match local {
            // Local retention moved the start past `offset` since it was read above: the
            // segment is in the remote tier now (retention never passes the manifest's end).
            Err(BrokerError::OffsetOutOfRange { start, .. }) if offset < start => {
                match self.read_remote(offset, max_bytes).await? {
                    Some(result) => Ok(result),
                    None => local,
                }
            }
            other => other,
        }
    }

    async fn read_remote(&self, offset: i64, max_bytes: usize) -> Result<Option<FetchResult>> {
        let (Some(remote), Some(summary)) = (self.remote_log(), self.remote_summary()) else {
            return Ok(None);
        };
        if !summary.holds(offset) {
            return Ok(None);
        }
        let bytes = remote
            .read(offset, max_bytes)
            .await
            .map_err(|e| self.tier_error(e))?;
        let Some(records) = bytes else {
            return Ok(None);
        };
        Ok(Some(FetchResult {
            records,
            high_watermark: self.high_watermark(),
            log_start_offset: summary.start,
            log_end_offset: self.log_end_offset(),
        }))
    }

    /// The first offset whose timestamp is at or after `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        self: &Arc<Self>,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>> {
        // The remote tier holds the oldest records: look there first when it holds any below
        // the local start (timestamps need not grow with offsets, so a local hit is not enough).
        let local_start = self.local_log_start_offset()?;
        if let (Some(remote), Some(summary)) = (self.remote_log(), self.remote_summary()) {
            if summary.segments > 0 && summary.start < local_start {
                let found = remote
                    .offset_for_timestamp(timestamp_ms)
                    .await
                    .map_err(|e| self.tier_error(e))?;
                if let Some(found) = found.filter(|(offset, _)| *offset < local_start) {
                    return Ok(Some(found));
                }
            }
        }
        let me = self.clone();
        blocking(move || {
            let hw = me.high_watermark();
            let found = me.with_log(|log| log.offset_for_timestamp(timestamp_ms))?;
            Ok(found.filter(|(offset, _)| *offset < hw))
        })
        .await
    }
}

impl Partition {
    /// Bytes of the local log from `offset` to its end, estimated from segment sizes: the
    /// segment `offset` falls in counts in proportion to the offsets left in it.
    pub fn local_bytes_from(&self, offset: i64) -> Result<u64> {
        self.with_log(|log| {
            Ok(log
                .segments()
                .iter()
                .map(|s| {
                    if s.base_offset >= offset {
                        s.size_bytes
                    } else if s.next_offset <= offset {
                        0
                    } else {
                        let span = (s.next_offset - s.base_offset) as u128;
                        let left = (s.next_offset - offset) as u128;
                        (s.size_bytes as u128 * left / span) as u64
                    }
                })
                .sum())
        })
    }
}
