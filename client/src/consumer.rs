//! The consumer: manually assigned partitions, each with a background fetch task that
//! long-polls its leader and keeps up to `prefetch_batches` responses ready for `poll`.
//!
//! `poll` decodes batches (the CRC is checked there: a corrupt batch is an error, never
//! records), drops records below the partition's position (a fetch answers with the whole batch
//! holding the offset asked for) and advances the position past what it returns. Positions move
//! only in `poll` and `seek`; a fetch task never decides what the application has seen.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_log::batch::BatchIter;
use strata_log::records::decode_all;
use strata_log::Header;
use strata_proto::list_offsets_request::Spec;
use strata_proto::{FetchRequest, ListOffsetsRequest};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::metadata::Cluster;

/// Longest wait between two attempts of a failing fetch.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

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

/// What a fetch task hands to `poll`: one response's batch bytes, or the error that stopped it.
type Fetched = Result<Bytes>;

#[derive(Debug)]
struct Assigned {
    topic: Arc<str>,
    partition: u32,
    position: i64,
    rx: mpsc::Receiver<Fetched>,
    task: JoinHandle<()>,
    /// An error met while records were already collected; returned by the next `poll`.
    held: Option<Error>,
    /// Paused: `poll` returns nothing from it (its fetch task stops once its buffer is full).
    paused: bool,
}

impl Drop for Assigned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A consumer of manually assigned partitions.
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: Arc<ConsumerConfig>,
    parts: Vec<Assigned>,
    ready: Arc<Notify>,
    /// Partition `poll` starts draining from, rotated for fairness.
    next: usize,
}

impl Consumer {
    /// Loads the cluster's metadata.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            cluster,
            config: Arc::new(config),
            parts: Vec::new(),
            ready: Arc::new(Notify::new()),
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
        // Dropping the old state aborts its fetch task and discards what it prefetched.
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

    /// Drops every assigned partition (their fetch tasks stop).
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
        let (tx, rx) = mpsc::channel(self.config.prefetch_batches.max(1));
        let task = tokio::spawn(fetch_loop(
            self.cluster.clone(),
            self.config.clone(),
            topic.clone(),
            partition,
            position,
            tx,
            self.ready.clone(),
        ));
        Assigned {
            topic,
            partition,
            position,
            rx,
            task,
            held: None,
            paused: false,
        }
    }

    /// Decodes everything the fetch tasks have ready, without waiting.
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
            while let Ok(fetched) = part.rx.try_recv() {
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

/// Long-polls one partition from `offset` until the consumer drops the receiver or a
/// non-retriable error ends it (that error is the last thing it sends).
async fn fetch_loop(
    cluster: Arc<Cluster>,
    config: Arc<ConsumerConfig>,
    topic: Arc<str>,
    partition: u32,
    mut offset: i64,
    tx: mpsc::Sender<Fetched>,
    ready: Arc<Notify>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let result = async {
            let address = cluster.leader(&topic, partition).await?;
            let mut client = cluster.conns().log(&address).await?;
            let request = FetchRequest {
                topic: topic.to_string(),
                partition,
                offset,
                max_wait_ms: config.fetch_max_wait.as_millis().min(u32::MAX as u128) as u32,
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
            };
            client
                .fetch(request)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| cluster.conns().error(s, &address))
        }
        .await;
        let message = match result {
            Ok(response) => {
                backoff = FIRST_BACKOFF;
                if response.records.is_empty() {
                    // A broker that answers an empty long poll early must not make this spin.
                    let floor = started + config.fetch_max_wait.min(Duration::from_millis(50));
                    tokio::time::sleep_until(floor).await;
                    continue;
                }
                match next_offset(&response.records) {
                    Ok(next) => {
                        offset = offset.max(next);
                        Ok(response.records)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(%topic, partition, error = %e, "fetch failed; retrying");
                cluster.refresh_after(&topic, &e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => Err(e),
        };
        let stop = message.is_err();
        if tx.send(message).await.is_err() {
            return;
        }
        ready.notify_one();
        if stop {
            return;
        }
    }
}

/// The offset after the last batch of a fetch response (headers only; `poll` checks CRCs).
fn next_offset(records: &Bytes) -> Result<i64> {
    let mut next = -1;
    for item in BatchIter::new(records) {
        let (header, _) = item.map_err(|e| Error::Corrupt(e.to_string()))?;
        next = header.next_offset();
    }
    Ok(next)
}
