//! The producer's background sender: takes ready batches from the [`Accumulator`] and sends
//! them to their partition leaders, retrying retriable failures with exponential backoff
//! (capped at 1 s) until the delivery timeout. Batches of several partitions ready at once for
//! the same leader go out as one `ProduceMany` request (each partition answered on its own);
//! a batch whose partition failed in it continues alone, through the same retry rules.
//!
//! A batch's bytes are built once, when it leaves the accumulator, and the same `Bytes` go out
//! on every attempt. A retried batch holds its partition's in-flight slot, so later batches of
//! that partition wait behind it and order is kept. The loop ends once the accumulator is
//! closed and empty: closing never drops a buffered record.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::{ErrorCode, PartitionBatches, ProduceManyRequest, ProduceRequest};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::accumulator::{Accumulator, Batch, BatchShared};
use crate::config::{Acks, ProducerConfig};
use crate::error::{Error, Result};
use crate::metadata::Cluster;

/// Longest wait between two attempts of one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs until the accumulator is closed and everything in it is complete.
pub(crate) async fn run(acc: Arc<Accumulator>, cluster: Arc<Cluster>, config: Arc<ProducerConfig>) {
    let mut tasks = JoinSet::new();
    loop {
        let closing = acc.is_closed();
        let (ready, next) = acc.drain(Instant::now(), closing);
        for (leader, group) in by_leader(ready, &cluster, &config) {
            let (acc, cluster, config) = (acc.clone(), cluster.clone(), config.clone());
            tasks.spawn(async move {
                match leader {
                    Some(address) if group.len() > 1 => {
                        send_many(&address, group, &acc, &cluster, &config).await
                    }
                    _ => {
                        for batch in group {
                            let shared = batch.shared.clone();
                            let reserved = batch.reserved;
                            let outcome = send_batch(batch, &acc, &cluster, &config).await;
                            shared.complete(outcome);
                            acc.completed(&shared, reserved);
                        }
                    }
                }
            });
        }
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        if closing && acc.is_idle() {
            break;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = acc.wakeup.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => acc.wakeup.notified().await,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Most record bytes in one ProduceMany: a group past it is split (the broker's request limit
/// is 64 MiB by default).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The ready batches in groups of one request each: per leader broker (as the metadata cache
/// has it: the sender loop does no I/O), each partition at most once (a second batch of a
/// partition, with more than one in flight, goes alone), at most [`MAX_REQUEST_BYTES`] of
/// records. With acks=0, a leader not cached, or less than a request timeout left before its
/// delivery deadline (the request's timeout would cut its neighbours short), a batch goes
/// alone; with acks=all every batch goes alone.
fn by_leader(
    ready: Vec<Batch>,
    cluster: &Cluster,
    config: &ProducerConfig,
) -> Vec<(Option<String>, Vec<Batch>)> {
    // With acks=all a request is answered once its slowest partition is replicated, and a
    // partition sends its next batch only then: grouping held fast partitions behind slow
    // ones (3,000 partitions: 0.58 -> 0.29 M records/s). Only acks=1 groups.
    if config.acks != Acks::Leader || ready.len() < 2 {
        return ready.into_iter().map(|b| (None, vec![b])).collect();
    }
    let mut groups: HashMap<String, (Vec<Batch>, HashSet<Partition>, usize)> = HashMap::new();
    let mut out = Vec::new();
    let soon = Instant::now() + config.client.request_timeout;
    for batch in ready {
        let key = (batch.shared.topic.clone(), batch.shared.partition);
        let leader = cluster
            .cached_leader(&key.0, key.1)
            .filter(|_| batch.created + config.delivery_timeout > soon);
        let Some(address) = leader else {
            out.push((None, vec![batch]));
            continue;
        };
        let size = batch.builder.size_bytes();
        let (batches, partitions, bytes) = groups.entry(address.clone()).or_default();
        if partitions.contains(&key) {
            out.push((None, vec![batch]));
            continue;
        }
        if *bytes + size > MAX_REQUEST_BYTES && !batches.is_empty() {
            out.push((Some(address), std::mem::take(batches)));
            partitions.clear();
            *bytes = 0;
        }
        partitions.insert(key);
        *bytes += size;
        batches.push(batch);
    }
    out.extend(
        groups
            .into_iter()
            .map(|(address, (b, _, _))| (Some(address), b)),
    );
    out
}

/// A partition, as the accumulator names it.
type Partition = (Arc<str>, u32);

/// One batch's delivery: its request, built once, and what its attempts so far decided.
struct Delivery {
    shared: Arc<BatchShared>,
    created: Instant,
    /// Buffer-memory permits, given back when the batch completes.
    reserved: usize,
    topic: Arc<str>,
    partition: u32,
    record_count: i32,
    request: ProduceRequest,
    deadline: Instant,
    backoff: Duration,
    sequence_restarted: bool,
    /// An earlier attempt of this batch may have been appended (it timed out, the connection
    /// broke, or the broker appended and then refused): restarting its sequence could then
    /// write it twice, so that is only done while every attempt was refused before the append.
    maybe_appended: bool,
}

impl Delivery {
    /// The batch's request, built once; a batch that cannot be built comes back with the
    /// error (and its permits) to be failed.
    fn new(batch: Batch, config: &ProducerConfig) -> std::result::Result<Delivery, Unbuilt> {
        let topic = batch.shared.topic.clone();
        let partition = batch.shared.partition;
        let record_count = batch.builder.len() as i32;
        let records = match batch.builder.build() {
            Ok(records) => records,
            Err(e) => {
                let err = Error::InvalidInput(format!(
                    "cannot build a batch for {topic}/{partition}: {e}"
                ));
                return Err((batch.shared, batch.reserved, err));
            }
        };
        Ok(Delivery {
            shared: batch.shared,
            created: batch.created,
            reserved: batch.reserved,
            request: ProduceRequest {
                topic: topic.to_string(),
                partition,
                acks: config.acks.to_proto() as i32,
                timeout_ms: timeout_ms(config),
                records,
            },
            topic,
            partition,
            record_count,
            deadline: batch.created + config.delivery_timeout,
            backoff: config.retry_backoff,
            sequence_restarted: false,
            maybe_appended: false,
        })
    }

    /// After a failed attempt: Ok to try again (after the backoff, or at once with a restarted
    /// sequence), or the error that fails the batch.
    async fn failed(&mut self, err: Error, acc: &Accumulator, cluster: &Cluster) -> Result<()> {
        let (topic, partition) = (&self.topic, self.partition);
        let restartable = err.code() == Some(ErrorCode::UnknownProducerId)
            && !self.sequence_restarted
            && !self.maybe_appended;
        self.maybe_appended |= !refused_before_append(&err);
        if restartable {
            // The partition forgot this producer (its id expired after a quiet spell): start
            // its sequence again at 0 with this batch, as Kafka's producer does (KIP-360).
            if let Some(sequence) = acc.restart_sequence(&self.shared, self.record_count) {
                self.sequence_restarted = true;
                let mut bytes = self.request.records.to_vec();
                strata_log::batch::restamp_sequence(&mut bytes, sequence);
                self.request.records = bytes.into();
                tracing::info!(%topic, partition, "the partition forgot this producer id; restarting its sequence at 0");
                return Ok(());
            }
        }
        if !err.is_retriable() {
            return Err(err);
        }
        if Instant::now() + self.backoff >= self.deadline {
            return Err(Error::DeliveryTimeout {
                topic: topic.to_string(),
                partition,
                after: self.deadline.saturating_duration_since(self.created),
                last: Box::new(err),
            });
        }
        tracing::debug!(%topic, partition, error = %err, backoff_ms = self.backoff.as_millis() as u64, "retrying produce");
        cluster.refresh_after(topic, &err).await;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

/// A batch that could not be built: its shared state, its permits and why.
type Unbuilt = (Arc<BatchShared>, usize, Error);

fn timeout_ms(config: &ProducerConfig) -> u32 {
    config
        .client
        .request_timeout
        .as_millis()
        .min(u32::MAX as u128) as u32
}

/// Delivers batches of several partitions led by one broker in one `ProduceMany`; each batch
/// whose partition failed continues alone ([`retry_alone`]).
async fn send_many(
    address: &str,
    group: Vec<Batch>,
    acc: &Accumulator,
    cluster: &Cluster,
    config: &ProducerConfig,
) {
    let mut deliveries = Vec::with_capacity(group.len());
    for batch in group {
        match Delivery::new(batch, config) {
            Ok(d) => deliveries.push(d),
            Err((shared, reserved, e)) => {
                shared.complete(Err(e));
                acc.completed(&shared, reserved);
            }
        }
    }
    if deliveries.is_empty() {
        return;
    }
    let deadline = deliveries
        .iter()
        .map(|d| d.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    let request = ProduceManyRequest {
        acks: config.acks.to_proto() as i32,
        timeout_ms: timeout_ms(config),
        partitions: deliveries
            .iter()
            .map(|d| PartitionBatches {
                topic: d.request.topic.clone(),
                partition: d.partition,
                records: d.request.records.clone(),
            })
            .collect(),
    };
    let outcome: Result<Vec<Result<i64>>> = async {
        let mut client = cluster.conns().log(address).await?;
        let answer = tokio::time::timeout_at(deadline, client.produce_many(request))
            .await
            .map_err(|_| Error::Timeout {
                address: address.to_string(),
                after: config.delivery_timeout,
            })?
            .map_err(|s| cluster.conns().error(s, address))?
            .into_inner();
        let mut by_partition: HashMap<(String, u32), Result<i64>> = answer
            .partitions
            .into_iter()
            .map(|p| {
                let outcome = match p.error_code.is_empty() {
                    true => Ok(p.base_offset),
                    false => Err(Error::of_partition(&p.error_code, p.error_message)),
                };
                ((p.topic, p.partition), outcome)
            })
            .collect();
        Ok(deliveries
            .iter()
            .map(|d| {
                by_partition
                    .remove(&(d.request.topic.clone(), d.partition))
                    .unwrap_or_else(|| {
                        Err(Error::Corrupt(format!(
                            "the ProduceMany answer left out {}/{}",
                            d.topic, d.partition
                        )))
                    })
            })
            .collect())
    }
    .await;
    let outcomes: Vec<Result<i64>> = match outcome {
        Ok(each) => each,
        // A broker older than ProduceMany: every batch goes alone, as before it existed.
        Err(Error::Broker {
            status: tonic::Code::Unimplemented,
            ..
        }) => {
            let alone = deliveries.into_iter().map(|mut d| async move {
                let outcome = d.deliver(acc, cluster).await;
                d.finish(outcome, acc);
            });
            futures::future::join_all(alone).await;
            return;
        }
        // The whole request failed: every batch met that error.
        Err(e) => deliveries.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut retries = Vec::new();
    for (delivery, outcome) in deliveries.into_iter().zip(outcomes) {
        match outcome {
            Ok(base_offset) => delivery.finish(Ok(base_offset), acc),
            Err(err) => retries.push(retry_alone(delivery, err, acc, cluster)),
        }
    }
    futures::future::join_all(retries).await;
}

/// A batch that failed in a `ProduceMany`: the retry rules decide, then it goes alone.
async fn retry_alone(mut delivery: Delivery, err: Error, acc: &Accumulator, cluster: &Cluster) {
    let outcome = match delivery.failed(err, acc, cluster).await {
        Ok(()) => delivery.deliver(acc, cluster).await,
        Err(e) => Err(e),
    };
    delivery.finish(outcome, acc);
}

/// Delivers one batch; returns its base offset (-1 with acks=0) or the error that fails it.
async fn send_batch(
    batch: Batch,
    acc: &Accumulator,
    cluster: &Cluster,
    config: &ProducerConfig,
) -> Result<i64> {
    match Delivery::new(batch, config) {
        Ok(mut delivery) => delivery.deliver(acc, cluster).await,
        Err((_, _, e)) => Err(e),
    }
}

impl Delivery {
    /// Completes the batch's record futures and gives its permits back.
    fn finish(&self, outcome: Result<i64>, acc: &Accumulator) {
        self.shared.complete(outcome);
        acc.completed(&self.shared, self.reserved);
    }

    /// Attempts the batch alone until it succeeds or its retry rules give up.
    async fn deliver(&mut self, acc: &Accumulator, cluster: &Cluster) -> Result<i64> {
        let acks_none = self.request.acks == Acks::None.to_proto() as i32;
        let batch_shared = self.shared.clone();
        let created = self.created;
        loop {
            let (topic, partition, deadline) = (&self.topic, self.partition, self.deadline);
            let request = &self.request;
            let attempt = async {
                let address = cluster.leader(topic, partition).await?;
                let mut client = cluster.conns().log(&address).await?;
                if acks_none {
                    // Handed to the transport: the records are as delivered as acks=0 gets.
                    batch_shared.complete(Ok(-1));
                }
                // An answer that would come after the delivery deadline is not waited for (as
                // Kafka expires in-flight batches): the record's outcome is then unknown, and the
                // caller hears so at the deadline rather than a request timeout later.
                match tokio::time::timeout_at(deadline, client.produce(request.clone())).await {
                    Ok(answer) => answer
                        .map(|r| r.into_inner().base_offset)
                        .map_err(|s| cluster.conns().error(s, &address)),
                    Err(_) => Err(Error::Timeout {
                        address: address.to_string(),
                        after: deadline.saturating_duration_since(created),
                    }),
                }
            }
            .await;
            let err = match attempt {
                Ok(_) if acks_none => return Ok(-1),
                Ok(base_offset) => return Ok(base_offset),
                Err(e) => e,
            };
            if batch_shared.is_complete() {
                // acks=0: nobody waits for this answer any more.
                tracing::debug!(%topic, partition, error = %err, "acks=0 produce failed");
                return Ok(-1);
            }
            self.failed(err, acc, cluster).await?;
        }
    }
}

/// True when `err` says the broker refused the request before appending anything.
fn refused_before_append(err: &Error) -> bool {
    matches!(
        err.code(),
        Some(
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::UnknownProducerId
                | ErrorCode::OutOfOrderSequence
                | ErrorCode::MessageTooLarge
                | ErrorCode::InvalidRecord
                | ErrorCode::InvalidTimestamp
        )
    )
}
