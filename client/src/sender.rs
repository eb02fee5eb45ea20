//! The producer's background sender: takes ready batches from the [`Accumulator`] and sends
//! each to its partition leader, retrying retriable failures with exponential backoff (capped
//! at 1 s) until the delivery timeout.
//!
//! A batch's bytes are built once, when it leaves the accumulator, and the same `Bytes` go out
//! on every attempt. A retried batch holds its partition's in-flight slot, so later batches of
//! that partition wait behind it and order is kept. The loop ends once the accumulator is
//! closed and empty: closing never drops a buffered record.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::{ErrorCode, ProduceRequest};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::accumulator::{Accumulator, Batch};
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
        for batch in ready {
            let (acc, cluster, config) = (acc.clone(), cluster.clone(), config.clone());
            tasks.spawn(async move {
                let shared = batch.shared.clone();
                let reserved = batch.reserved;
                let outcome = send_batch(batch, &acc, &cluster, &config).await;
                shared.complete(outcome);
                acc.completed(&shared, reserved);
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

/// Delivers one batch; returns its base offset (-1 with acks=0) or the error that fails it.
async fn send_batch(
    batch: Batch,
    acc: &Accumulator,
    cluster: &Cluster,
    config: &ProducerConfig,
) -> Result<i64> {
    let topic = batch.shared.topic.clone();
    let partition = batch.shared.partition;
    let record_count = batch.builder.len() as i32;
    let records = batch.builder.build().map_err(|e| {
        Error::InvalidInput(format!("cannot build a batch for {topic}/{partition}: {e}"))
    })?;
    let mut request = ProduceRequest {
        topic: topic.to_string(),
        partition,
        acks: config.acks.to_proto() as i32,
        timeout_ms: config
            .client
            .request_timeout
            .as_millis()
            .min(u32::MAX as u128) as u32,
        records,
    };
    let deadline = batch.created + config.delivery_timeout;
    let mut backoff = config.retry_backoff;
    let mut sequence_restarted = false;
    // An earlier attempt of this batch may have been appended (it timed out, the connection
    // broke, or the broker appended and then refused): restarting its sequence could then
    // write it twice, so that is only done while every attempt was refused before the append.
    let mut maybe_appended = false;
    loop {
        let attempt = async {
            let address = cluster.leader(&topic, partition).await?;
            let mut client = cluster.conns().log(&address).await?;
            if config.acks == Acks::None {
                // Handed to the transport: the records are as delivered as acks=0 gets.
                batch.shared.complete(Ok(-1));
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
                    after: deadline.saturating_duration_since(batch.created),
                }),
            }
        }
        .await;
        let err = match attempt {
            Ok(_) if config.acks == Acks::None => return Ok(-1),
            Ok(base_offset) => return Ok(base_offset),
            Err(e) => e,
        };
        if batch.shared.is_complete() {
            // acks=0: nobody waits for this answer any more.
            tracing::debug!(%topic, partition, error = %err, "acks=0 produce failed");
            return Ok(-1);
        }
        let restartable = err.code() == Some(ErrorCode::UnknownProducerId)
            && !sequence_restarted
            && !maybe_appended;
        maybe_appended |= !refused_before_append(&err);
        if restartable {
            // The partition forgot this producer (its id expired after a quiet spell): start
            // its sequence again at 0 with this batch, as Kafka's producer does (KIP-360).
            if let Some(sequence) = acc.restart_sequence(&batch.shared, record_count) {
                sequence_restarted = true;
                let mut bytes = request.records.to_vec();
                strata_log::batch::restamp_sequence(&mut bytes, sequence);
                request.records = bytes.into();
                tracing::info!(%topic, partition, "the partition forgot this producer id; restarting its sequence at 0");
                continue;
            }
        }
        if !err.is_retriable() {
            return Err(err);
        }
        if Instant::now() + backoff >= deadline {
            return Err(Error::DeliveryTimeout {
                topic: topic.to_string(),
                partition,
                after: config.delivery_timeout,
                last: Box::new(err),
            });
        }
        tracing::debug!(%topic, partition, error = %err, backoff_ms = backoff.as_millis() as u64, "retrying produce");
        cluster.refresh_after(&topic, &err).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
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
