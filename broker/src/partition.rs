//! One partition replica on this broker: its log, its high watermark and the long-poll wakeups.
//!
//! Invariants: appends to a partition are serialized by the log's write lock, so offsets are
//! dense and in request order; consumers read only below the high watermark; the produce path
//! looks at batch headers only. Log I/O runs on the blocking pool, never on an async worker.

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;
use strata_log::{AppendInfo, Log, LogConfig};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{BrokerError, Result};
use crate::metadata::PartitionState;

/// What a fetch answers.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Offsets and size of a partition, for describe.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStats {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub index: u32,
    /// `None` once the partition was closed or deleted; operations then fail cleanly.
    log: RwLock<Option<Log>>,
    /// The high watermark; receivers wake long-polling fetches.
    high_watermark: watch::Sender<i64>,
    state: RwLock<PartitionState>,
    min_insync_replicas: std::sync::atomic::AtomicU32,
}

impl Partition {
    pub fn new(topic: Arc<str>, index: u32, log: Log, state: PartitionState) -> Arc<Partition> {
        // One replica acknowledges alone: everything in the log is committed.
        let hw = log.log_end_offset();
        Arc::new(Partition {
            topic,
            index,
            log: RwLock::new(Some(log)),
            high_watermark: watch::Sender::new(hw),
            state: RwLock::new(state),
            min_insync_replicas: std::sync::atomic::AtomicU32::new(1),
        })
    }

    pub fn state(&self) -> PartitionState {
        self.state.read().clone()
    }

    /// The topic's min.insync.replicas, as last applied from the metadata.
    pub fn min_insync_replicas(&self) -> u32 {
        self.min_insync_replicas
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_min_insync_replicas(&self, n: u32) {
        self.min_insync_replicas
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Applies leadership and ISR from the metadata.
    pub fn set_state(&self, state: PartitionState) {
        *self.state.write() = state;
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    fn log_error(&self, e: strata_log::LogError) -> BrokerError {
        BrokerError::from_log(&self.topic, self.index, e)
    }

    fn closed(&self) -> BrokerError {
        BrokerError::UnknownTopic(self.topic.to_string())
    }

    /// Runs `f` on the open log, under the read lock.
    fn with_log<T>(&self, f: impl FnOnce(&Log) -> strata_log::Result<T>) -> Result<T> {
        let guard = self.log.read();
        let log = guard.as_ref().ok_or_else(|| self.closed())?;
        f(log).map_err(|e| self.log_error(e))
    }

    /// Runs `f` on the open log, under the write lock.
    fn with_log_mut<T>(&self, f: impl FnOnce(&mut Log) -> strata_log::Result<T>) -> Result<T> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or_else(|| self.closed())?;
        f(log).map_err(|e| self.log_error(e))
    }

    /// Appends the request's batches. `records` is validated (CRC, framing, size) by the log
    /// before anything is written; a rejected request leaves the log unchanged.
    pub async fn append(
        self: &Arc<Self>,
        records: Bytes,
        require_min_isr: Option<u32>,
    ) -> Result<AppendInfo> {
        if let Some(min) = require_min_isr {
            let isr = self.state.read().isr.len();
            if isr < min as usize {
                return Err(BrokerError::NotEnoughReplicas {
                    topic: self.topic.to_string(),
                    partition: self.index,
                    isr,
                    min,
                });
            }
        }
        // The stamps (base offset, leader epoch) are written into the batch headers, so the
        // bytes must be ours: reuse the buffer when nothing else holds it, else copy once.
        let mut buf = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let me = self.clone();
        blocking(move || {
            let epoch = me.state.read().leader_epoch;
            me.with_log_mut(|log| {
                let info = log.append(&mut buf, epoch)?;
                me.high_watermark.send_replace(log.log_end_offset());
                Ok(info)
            })
        })
        .await
    }

    /// Reads whole batches from `offset`, waiting up to `max_wait` for `min_bytes` to be there.
    pub async fn fetch(
        self: &Arc<Self>,
        offset: i64,
        max_wait: Duration,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Result<FetchResult> {
        let deadline = Instant::now() + max_wait;
        let mut hw_rx = self.high_watermark.subscribe();
        loop {
            let hw = *hw_rx.borrow_and_update();
            let me = self.clone();
            let result = blocking(move || {
                let read = me.with_log(|log| log.read(offset, max_bytes, hw))?;
                Ok(FetchResult {
                    records: read.bytes,
                    high_watermark: hw,
                    log_start_offset: read.log_start_offset,
                    log_end_offset: read.log_end_offset,
                })
            })
            .await?;
            if result.records.len() >= min_bytes.max(1) || Instant::now() >= deadline {
                return Ok(result);
            }
            match tokio::time::timeout_at(deadline, hw_rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(BrokerError::UnknownTopic(self.topic.to_string()));
                }
                Err(_) => return Ok(result),
            }
        }
    }

    /// The first offset whose timestamp is at or after `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        self: &Arc<Self>,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>> {
        let me = self.clone();
        blocking(move || {
            let hw = me.high_watermark();
            let found = me.with_log(|log| log.offset_for_timestamp(timestamp_ms))?;
            Ok(found.filter(|(offset, _)| *offset < hw))
        })
        .await
    }

    pub fn stats(&self) -> Result<PartitionStats> {
        self.with_log(|log| {
            Ok(PartitionStats {
                log_start_offset: log.log_start_offset(),
                high_watermark: self.high_watermark(),
                log_end_offset: log.log_end_offset(),
                size_bytes: log.size_bytes(),
            })
        })
    }

    pub fn log_start_offset(&self) -> Result<i64> {
        self.with_log(|log| Ok(log.log_start_offset()))
    }

    pub fn update_config(&self, config: LogConfig) -> Result<()> {
        self.with_log_mut(|log| log.update_config(config))
    }

    /// Time-based roll, flush.ms and (when `retention` is set) retention. Runs on the blocking pool.
    pub fn housekeeping(&self, retention: bool) -> Result<()> {
        let report = self.with_log_mut(|log| {
            log.roll_if_due()?;
            log.flush_if_due()?;
            if retention {
                log.enforce_retention().map(Some)
            } else {
                Ok(None)
            }
        })?;
        if let Some(report) = report {
            if report.deleted_segments > 0 {
                tracing::info!(
                    topic = %self.topic, partition = self.index,
                    segments = report.deleted_segments, bytes = report.deleted_bytes,
                    log_start_offset = report.log_start_offset,
                    "retention deleted segments"
                );
            }
        }
        Ok(())
    }

    /// Takes the log out of the partition (for a clean close or a delete) and wakes every
    /// long-polling fetch, which then fails with unknown topic. Later calls return `None`.
    pub fn take_log(&self) -> Option<Log> {
        let log = self.log.write().take();
        // Wake waiters: they re-read, find the log gone and answer.
        self.high_watermark.send_modify(|_| {});
        log
    }
}

/// Runs blocking log work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(format!("log task failed: {e}")))?
}
