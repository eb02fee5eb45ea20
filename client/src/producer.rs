//! The producer: partitions records, appends them to the accumulator and hands out one
//! [`DeliveryFuture`] per record; the background [`sender`](crate::sender) does the I/O.
//!
//! `send` returns as soon as the record is encoded into its partition's open batch (waiting
//! only for buffer memory), so records of one caller are enqueued in call order. Dropping every
//! clone of a [`Producer`] closes it: what was buffered is still sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use strata_log::{Clock, Header, SystemClock};
use tokio::task::JoinHandle;

use crate::accumulator::{Accumulator, AccumulatorConfig, BatchShared, Route};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::metadata::Cluster;
use crate::partitioner::partition_for_key;

/// One record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    pub topic: String,
    /// Explicit partition; otherwise chosen from the key, or sticky when there is no key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; the send time when unset.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: u32,
    /// The record's offset; -1 with acks=0.
    pub offset: i64,
    pub timestamp: i64,
}

/// Resolves once the record's batch is acknowledged (or has failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    batch: Arc<BatchShared>,
    index: u32,
    timestamp: i64,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.batch.poll_outcome(cx).map(|outcome| {
            outcome.map(|base| RecordMetadata {
                topic: this.batch.topic.to_string(),
                partition: this.batch.partition,
                offset: if base < 0 {
                    -1
                } else {
                    base + this.index as i64
                },
                timestamp: this.timestamp,
            })
        })
    }
}

#[derive(Debug)]
struct Inner {
    cluster: Arc<Cluster>,
    acc: Arc<Accumulator>,
    clock: Arc<dyn Clock>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sender drains what is buffered, then exits.
        self.acc.close();
    }
}

/// A handle to a producer; clones share it.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Loads the cluster's metadata and starts the background sender.
    pub async fn connect(config: ProducerConfig) -> Result<Producer> {
        if config.batch_bytes == 0 || config.max_in_flight_per_partition == 0 {
            return Err(Error::InvalidInput(
                "batch_bytes and max_in_flight_per_partition must be at least 1".to_string(),
            ));
        }
        let cluster = Cluster::connect(config.client.clone()).await?;
        let producer = match config.enable_idempotence {
            true => Some(init_producer_id(&cluster).await?),
            false => None,
        };
        let acc = Arc::new(Accumulator::new(AccumulatorConfig {
            producer,
            batch_bytes: config.batch_bytes,
            linger: config.linger,
            compression: config.compression,
            buffer_bytes: config.buffer_bytes.min(u32::MAX as usize),
            max_in_flight: config.max_in_flight_per_partition,
        }));
        let sender = tokio::spawn(crate::sender::run(
            acc.clone(),
            cluster.clone(),
            Arc::new(config),
        ));
        Ok(Producer {
            inner: Arc::new(Inner {
                cluster,
                acc,
                clock: Arc::new(SystemClock),
                sender: Mutex::new(Some(sender)),
            }),
        })
    }

    /// Enqueues `record` and returns the future of its delivery. Waits only for buffer memory.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &*self.inner;
        let topic = match inner.cluster.cached_topic(&record.topic) {
            Some(t) => t,
            None => inner.cluster.topic(&record.topic).await?,
        };
        if topic.partitions() == 0 {
            return Err(Error::UnknownTopic {
                topic: record.topic,
            });
        }
        let route = match (record.partition, &record.key) {
            (Some(p), _) => {
                topic.check(p)?;
                Route::To(p)
            }
            (None, Some(key)) => Route::To(partition_for_key(key, topic.partitions())),
            (None, None) => Route::Sticky,
        };
        let timestamp = record.timestamp.unwrap_or_else(|| inner.clock.now_ms());
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let charge = crate::accumulator::record_charge(key, value, &record.headers);
        inner.acc.reserve(charge).await?;
        let appended = inner.acc.append(
            &topic,
            route,
            timestamp,
            key,
            value,
            &record.headers,
            charge,
        )?;
        Ok(DeliveryFuture {
            batch: appended.shared,
            index: appended.index,
            timestamp,
        })
    }

    /// Sends everything buffered now and waits until every batch in flight has its outcome.
    /// Record failures are reported on their delivery futures, not here.
    pub async fn flush(&self) -> Result<()> {
        if self.inner.acc.is_closed() {
            return Err(Error::Closed);
        }
        for batch in self.inner.acc.seal_all() {
            batch.wait().await;
        }
        Ok(())
    }

    /// Flushes, then stops the background sender. Other clones can no longer send.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        self.inner.acc.close();
        let sender = self.inner.sender.lock().take();
        if let Some(sender) = sender {
            sender.await.map_err(|e| {
                Error::InvalidInput(format!("the producer's sender task failed: {e}"))
            })?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        Arc::get_mut(&mut self.inner)
            .expect("set the clock before cloning the producer")
            .clock = clock;
    }
}

/// Asks any broker for a producer id (idempotence).
async fn init_producer_id(cluster: &Cluster) -> Result<(i64, i16)> {
    let mut last = None;
    for address in cluster.any_broker_addresses() {
        let mut client = match cluster.conns().log(&address).await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match client
            .init_producer_id(strata_proto::InitProducerIdRequest {})
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                return Ok((r.producer_id, r.producer_epoch as i16));
            }
            Err(s) => last = Some(cluster.conns().error(s, &address)),
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidInput("no broker address given".to_string())))
}
