//! The `latency` scenario: end-to-end latency at a fixed rate, measured without coordinated
//! omission.
//!
//! A paced producer on its own OS thread (finer sleeps than tokio's 1 ms timer) sends record
//! `i` at `origin + i / rate`, and the value's first [`STAMP_BYTES`] bytes carry that
//! *scheduled* time in nanoseconds since `origin`. Consumers subtract it from the time their
//! `poll` returned the record. A producer that falls behind (a full buffer, a slow broker)
//! therefore charges the delay to every record that should have left meanwhile, as a real
//! source producing at that rate would see.

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{DeliveryFuture, Producer, ProducerRecord};
use tokio::sync::mpsc;

use super::consume;
use super::payload::Payloads;
use super::produce::producer_config;
use super::progress::{Counters, Progress};
use super::report::{LatencyKind, Outcome};
use super::{Amount, Plan};

/// The send-time stamp at the start of each value: u64 little-endian nanoseconds.
pub const STAMP_BYTES: usize = 8;

pub async fn run(plan: &Plan, rate: u64, warmup: Duration) -> anyhow::Result<Outcome> {
    let total = match plan.amount {
        Amount::Records(n) => n,
        Amount::Duration(d) => ((warmup + d).as_secs_f64() * rate as f64) as u64,
    };
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start("latency", counters.clone());
    let partitions = plan.partitions_of_topic().await?;
    let target = Arc::new(AtomicU64::new(total));
    let warmup_ns = warmup.as_nanos() as u64;
    let mut consumers = Vec::new();
    for share in consume::deal(plan, partitions) {
        consumers.push(consume::connect(plan, &share).await?);
    }
    let producer = Producer::connect(producer_config(plan, plan.acks)).await?;
    let payloads = Payloads::new(plan.record_size);
    // Everything is connected: the schedule starts now (plus a moment for the readers to start).
    let origin = Instant::now() + Duration::from_millis(20);
    let mut readers = Vec::new();
    for consumer in consumers {
        let (counters, target) = (counters.clone(), target.clone());
        readers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            consume::read_until(consumer, &counters, &target, |batch| {
                let now = origin.elapsed().as_nanos() as u64;
                for r in batch {
                    if let Some(sent) = r.value.as_deref().and_then(stamp) {
                        if sent >= warmup_ns {
                            samples.push(now.saturating_sub(sent));
                        }
                    }
                }
            })
            .await?;
            anyhow::Ok(samples)
        }));
    }
    let (tx, rx) = mpsc::channel::<DeliveryFuture>(1 << 16);
    let collector = tokio::spawn(collect(rx, counters.clone()));
    let pacer = {
        let (producer, topic) = (producer.clone(), plan.topic.clone());
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(handle, producer, topic, payloads, origin, rate, total, tx))
            .context("starting the pacing thread")?
    };
    let paced = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    let behind = paced?;
    let (failed, first_error) = collector.await?;
    producer.close().await?;
    if let Some(e) = first_error {
        bail!("{failed} of {total} records failed; first error: {e}");
    }
    let mut latencies_ns = Vec::new();
    for reader in readers {
        latencies_ns.extend(reader.await.context("a consumer task panicked")??);
    }
    if latencies_ns.is_empty() {
        bail!("no record was sent after the {warmup:?} warm-up; raise --records or --duration");
    }
    let mut extra = Map::new();
    extra.insert("rate".into(), json!(rate));
    extra.insert(
        "max_send_behind_ms".into(),
        json!(behind.as_secs_f64() * 1e3),
    );
    Ok(Outcome {
        records: total,
        bytes: total * plan.record_size as u64,
        seconds: origin.elapsed().as_secs_f64(),
        latencies_ns,
        latency: LatencyKind::EndToEnd,
        extra,
    })
}

/// The scheduled send time in a value, if it has one.
fn stamp(value: &[u8]) -> Option<u64> {
    let b: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Sends record `i` at `origin + i / rate`; returns how far behind schedule it ever fell.
#[allow(clippy::too_many_arguments)]
fn pace(
    handle: tokio::runtime::Handle,
    producer: Producer,
    topic: String,
    payloads: Payloads,
    origin: Instant,
    rate: u64,
    total: u64,
    tx: mpsc::Sender<DeliveryFuture>,
) -> anyhow::Result<Duration> {
    let scheduled_ns = |i: u64| (i as u128 * 1_000_000_000 / rate as u128) as u64;
    let mut sent = 0u64;
    let mut behind = Duration::ZERO;
    while sent < total {
        let now = Instant::now().saturating_duration_since(origin).as_nanos() as u64;
        let next = scheduled_ns(sent);
        if now < next {
            std::thread::sleep(Duration::from_nanos(next - now));
            continue;
        }
        behind = behind.max(Duration::from_nanos(now - next));
        // Every record due by now, stamped with its own scheduled time.
        let due = (((now as u128 * rate as u128) / 1_000_000_000) as u64 + 1).min(total);
        handle.block_on(async {
            for i in sent..due {
                let mut value = BytesMut::with_capacity(payloads.size());
                value.put_u64_le(scheduled_ns(i));
                value.extend_from_slice(&payloads.value(i)[STAMP_BYTES..]);
                let record = ProducerRecord::new(topic.clone(), Bytes::from(value));
                let delivery = producer.send(record).await?;
                if tx.send(delivery).await.is_err() {
                    bail!("the delivery collector stopped");
                }
            }
            anyhow::Ok(())
        })?;
        sent = due;
    }
    Ok(behind)
}

/// Awaits deliveries; returns how many failed and the first error.
async fn collect(
    mut rx: mpsc::Receiver<DeliveryFuture>,
    counters: Arc<Counters>,
) -> (u64, Option<strata_client::Error>) {
    let (mut failed, mut first_error) = (0, None);
    while let Some(delivery) = rx.recv().await {
        if let Err(e) = delivery.await {
            failed += 1;
            first_error.get_or_insert(e);
        }
        counters.add_produced(1);
    }
    (failed, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back() {
        let mut v = BytesMut::new();
        v.put_u64_le(123_456_789);
        v.extend_from_slice(b"rest");
        assert_eq!(stamp(&v), Some(123_456_789));
        assert_eq!(stamp(b"short"), None);
    }
}
