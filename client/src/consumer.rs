//! The consumer: manually assigned partitions, fetched in the background (one long poll per
//! leader broker for every partition it leads, see `fetcher`) into a buffer per partition of up
//! to `prefetch_batches` answers, ready for `poll`.
//!
//! `poll` decodes batches (the CRC is checked there: a corrupt batch is an error, never
//! records), drops records below the partition's position (a fetch answers with the whole batch
//! holding the offset asked for) and advances the position past what it returns. Positions move
//! only in `poll` and `seek`; the fetcher never decides what the application has seen.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_log::records::decode_all;
use strata_log::Header;
use strata_proto::list_offsets_request::Spec;
use strata_proto::ListOffsetsRequest;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::fetcher::{Feeds, Fetched};
use crate::metadata::Cluster;

/// Where to move a partition's position.
#[derive(Clone, Copy, Debug)]
pub enum SeekTo {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This exact offset.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

#[derive(Debug)]
struct Assigned {
    topic: Arc<str>,
    partition: u32,
    position: i64,
    rx: mpsc::Receiver<Fetched>,
    /// The fetcher's record of this partition, stopped when this is dropped.
    feeds: Arc<Feeds>,
    generation: u64,
    /// An error met while records were already collected; returned by the next `poll`.
    held: Option<Error>,
    /// Paused: `poll` returns nothing from it (the fetcher stops asking for it once its buffer is full).
    paused: bool,
}

impl Drop for Assigned {
    fn drop(&mut self) {
        self.feeds
            .stop(&(self.topic.clone(), self.partition), self.generation);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

/// A consumer of manually assigned partitions.
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: Arc<ConsumerConfig>,
    parts: Vec<Assigned>,
    ready: Arc<Notify>,
    feeds: Arc<Feeds>,
    fetcher: JoinHandle<()>,
    /// Partition `poll` starts draining from, rotated for fairness.
    next: usize,
}

impl Consumer {
    /// Loads the cluster's metadata.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        let config = Arc::new(config);
        let ready = Arc::new(Notify::new());
        let feeds = Arc::new(Feeds::default());
        let fetcher = tokio::spawn(crate::fetcher::run(
            feeds.clone(),
            cluster.clone(),
            config.clone(),
            ready.clone(),
        ));
        Ok(Consumer {
            cluster,
            config,
            parts: Vec::new(),
            ready,
            feeds,
            fetcher,
            next: 0,
        })
    }

    /// Replaces the assignment. Partitions already assigned keep their position; new ones
    /// start at the latest offset until `seek`.
    pub async fn assign(&mut self, partitions: Vec<(String, u32)>) -> Result<()> {
        let mut seen = HashSet::new();
        let mut wanted = Vec::new();
        for (topic, partition) in partitions {
            let mut meta = self.cluster.topic(&topic).await?;
            if meta.check(partition).is_err() {
                // Partitions may have been added since the metadata was cached.
                self.cluster.refresh(std::slice::from_ref(&topic)).await?;
                meta = self.cluster.topic(&topic).await?;
            }
            meta.check(partition)?;
            if seen.insert((topic.clone(), partition)) {
                wanted.push((meta.name.clone(), partition));
            }
        }
        let mut old = std::mem::take(&mut self.parts);
        for (topic, partition) in wanted {
            if let Some(i) = old
                .iter()
                .position(|a| *a.topic == *topic && a.partition == partition)
            {
                self.parts.push(old.swap_remove(i));
                continue;
            }
            let position = self
                .list_offset(&topic, partition, Spec::Latest(true))
                .await?;
            let assigned = self.start(topic, partition, position);
            self.parts.push(assigned);
        }
        self.next = 0;
        Ok(())
    }

    /// Moves the position of an assigned partition and restarts its fetching there.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<i64> {
        let i = self.index(topic, partition)?;
        let position = match to {
            SeekTo::Earliest => {
                self.list_offset(topic, partition, Spec::Earliest(true))
                    .await?
            }
            SeekTo::Latest => {
                self.list_offset(topic, partition, Spec::Latest(true))
                    .await?
            }
            SeekTo::Timestamp(ms) => {
                self.list_offset(topic, partition, Spec::TimestampMs(ms))
                    .await?
            }
            SeekTo::Offset(o) if o < 0 => {
                return Err(Error::InvalidInput(format!(
                    "cannot seek {topic}/{partition} to offset {o}; offsets start at 0"
                )))
            }
            SeekTo::Offset(o) => o,
        };
        let name = self.parts[i].topic.clone();
        // Dropping the old state stops fetching it and discards what it prefetched (an answer
        // still in flight for it belongs to an older generation and is dropped).
        self.parts[i] = self.start(name, partition, position);
        Ok(position)
    }

    /// Returns the records ready now, waiting up to `timeout` for the first; an empty `Vec`
    /// when none came. Records of one partition are in offset order.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.drain()?;
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, self.ready.notified())
                .await
                .is_err()
            {
                return self.drain();
            }
        }
    }

    /// Stops returning records of these assigned partitions until [`Consumer::resume`]; their
    /// positions stay where they are.
    pub fn pause(&mut self, partitions: &[(String, u32)]) -> Result<()> {
        self.set_paused(partitions, true)
    }

    /// Returns records of these partitions again.
    pub fn resume(&mut self, partitions: &[(String, u32)]) -> Result<()> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&mut self, partitions: &[(String, u32)], paused: bool) -> Result<()> {
        let found: Vec<usize> = partitions
            .iter()
            .map(|(t, p)| self.index(t, *p))
            .collect::<Result<_>>()?;
        for i in found {
            self.parts[i].paused = paused;
        }
        if !paused {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.parts
            .iter()
            .map(|a| (a.topic.to_string(), a.partition))
            .collect()
    }

    /// The next offset `poll` will return for the partition, if it is assigned.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.parts
            .iter()
            .find(|a| &*a.topic == topic && a.partition == partition)
            .map(|a| a.position)
    }

    /// The partition's log start offset (in the remote tier when it holds older data).
    pub async fn start_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        self.cluster.topic(topic).await?.check(partition)?;
        self.list_offset(topic, partition, Spec::Earliest(true))
            .await
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Drops every assigned partition (the fetcher stops asking for them).
    pub(crate) fn clear_assignment(&mut self) {
        self.parts.clear();
        self.next = 0;
    }

    /// The partition's high watermark (the offset the next record will get once replicated).
    pub async fn end_offsets(&self, topic: &str, partition: u32) -> Result<i64> {
        self.cluster.topic(topic).await?.check(partition)?;
        self.list_offset(topic, partition, Spec::Latest(true)).await
    }

    fn index(&self, topic: &str, partition: u32) -> Result<usize> {
        self.parts
            .iter()
            .position(|a| &*a.topic == topic && a.partition == partition)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "partition {topic}/{partition} is not assigned to this consumer"
                ))
            })
    }

    async fn list_offset(&self, topic: &str, partition: u32, spec: Spec) -> Result<i64> {
        let request = ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: Some(spec),
        };
        let response = self
            .cluster
            .call_leader(topic, partition, |mut client| {
                let request = request.clone();
                async move { client.list_offsets(request).await }
            })
            .await?;
        Ok(response.offset)
    }

    fn start(&self, topic: Arc<str>, partition: u32, position: i64) -> Assigned {
        let (rx, generation) = self.feeds.start(
            (topic.clone(), partition),
            position,
            self.config.prefetch_batches,
        );
        Assigned {
            topic,
            partition,
            position,
            rx,
            feeds: self.feeds.clone(),
            generation,
            held: None,
            paused: false,
        }
    }

    /// Decodes everything the fetcher has ready, without waiting.
    fn drain(&mut self) -> Result<Vec<ConsumerRecord>> {
        let mut out = Vec::new();
        let n = self.parts.len();
        let start = self.next;
        self.next = if n == 0 { 0 } else { (start + 1) % n };
        for i in 0..n {
            let part = &mut self.parts[(start + i) % n];
            if part.paused {
                continue;
            }
            if let Some(err) = part.held.take() {
                if out.is_empty() {
                    return Err(err);
                }
                part.held = Some(err);
                return Ok(out);
            }
            let mut drained = false;
            while let Ok(fetched) = part.rx.try_recv() {
                if !drained {
                    // Room in its buffer: the fetcher may ask for more.
                    drained = true;
                    self.feeds.wake.notify_one();
                }
                let result = fetched.and_then(|bytes| {
                    decode_all(&bytes).map_err(|e| Error::Corrupt(e.to_string()))
                });
                let records = match result {
                    Ok(records) => records,
                    Err(err) if out.is_empty() => return Err(err),
                    Err(err) => {
                        part.held = Some(err);
                        return Ok(out);
                    }
                };
                for r in records {
                    if r.offset < part.position {
                        continue;
                    }
                    part.position = r.offset + 1;
                    out.push(ConsumerRecord {
                        topic: part.topic.clone(),
                        partition: part.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                }
            }
        }
        Ok(out)
    }
}
