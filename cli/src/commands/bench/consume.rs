//! The consume side: `--consumers` consumers, each assigned a share of the partitions, reading
//! either a fixed range (the `consume` and `replay` scenarios) or alongside producers
//! (`produce-consume`).

use anyhow::{bail, Context};
use serde_json::Map;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_client::{Consumer, ConsumerConfig, ConsumerRecord, SeekTo};

use super::produce;
use super::progress::{Counters, Progress};
use super::report::{LatencyKind, Outcome};
use super::Plan;

/// A consumer gives up when nothing arrives for this long.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Reads every partition from its start to the high watermark it has now.
pub async fn read_all(plan: &Plan) -> anyhow::Result<Outcome> {
    // Partitions with records, and the offset each is read up to.
    let ends: HashMap<u32, i64> = plan
        .describe_partitions()
        .await?
        .iter()
        .filter(|p| p.high_watermark > p.log_start_offset)
        .map(|p| (p.partition, p.high_watermark))
        .collect();
    if ends.is_empty() {
        bail!("topic {:?} holds no records to read", plan.topic);
    }
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(plan.scenario.name(), counters.clone());
    let mut connected = Vec::new();
    for share in deal(plan, ends.keys().copied().collect()) {
        connected.push((connect(plan, &share).await?, share));
    }
    // Seeking starts the prefetching fetches, so the clock starts before the first seek.
    let started = Instant::now();
    let mut consumers = Vec::new();
    for (mut consumer, share) in connected {
        for p in &share {
            consumer.seek(&plan.topic, *p, SeekTo::Earliest).await?;
        }
        let stop_at: HashMap<u32, i64> = share.iter().map(|p| (*p, ends[p])).collect();
        consumers.push((consumer, stop_at));
    }
    let mut tasks = Vec::new();
    for (consumer, stop_at) in consumers {
        let counters = counters.clone();
        tasks.push(tokio::spawn(read_range(consumer, stop_at, counters)));
    }
    let mut out = Outcome {
        records: 0,
        bytes: 0,
        seconds: 0.0,
        latencies_ns: Vec::new(),
        latency: LatencyKind::Poll,
        extra: Map::new(),
    };
    for task in tasks {
        let (records, bytes, polls) = task.await.context("a consumer task panicked")??;
        out.records += records;
        out.bytes += bytes;
        out.latencies_ns.extend(polls);
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// `produce-consume`: consumers wait at the end of the topic, then producers send, and the run
/// lasts until everything produced has been consumed.
pub async fn with_producers(plan: &Plan) -> anyhow::Result<Outcome> {
    let partitions = plan.partitions_of_topic().await?;
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start(plan.scenario.name(), counters.clone());
    // Known once the producers are done; the consumers stop when they have read that many.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    for share in deal(plan, partitions) {
        let consumer = connect(plan, &share).await?;
        let (counters, target) = (counters.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            read_until(consumer, &counters, &target, |_| {}).await
        }));
    }
    let sent = produce::send_all(plan, plan.amount, plan.acks, counters.clone()).await?;
    target.store(sent.records, Ordering::SeqCst);
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.context("a consumer task panicked")??;
    }
    Ok(Outcome {
        records: sent.records,
        bytes,
        seconds: sent.started.elapsed().as_secs_f64(),
        latencies_ns: sent.latencies_ns,
        latency: LatencyKind::ProduceAck,
        extra: Map::new(),
    })
}

/// Deals partitions round-robin to the consumers (none gets an empty share).
pub fn deal(plan: &Plan, mut partitions: Vec<u32>) -> Vec<Vec<u32>> {
    partitions.sort_unstable();
    let n = (plan.consumers as usize).min(partitions.len()).max(1);
    let mut shares = vec![Vec::new(); n];
    for (i, p) in partitions.into_iter().enumerate() {
        shares[i % n].push(p);
    }
    shares
}

pub async fn connect(plan: &Plan, share: &[u32]) -> anyhow::Result<Consumer> {
    let mut config = ConsumerConfig::new(plan.client.clone());
    let four_batches = u32::try_from(plan.batch_bytes)
        .unwrap_or(u32::MAX)
        .saturating_mul(4);
    config.fetch_max_bytes = config.fetch_max_bytes.max(four_batches);
    let mut consumer = Consumer::connect(config).await?;
    consumer
        .assign(share.iter().map(|p| (plan.topic.clone(), *p)).collect())
        .await?;
    Ok(consumer)
}

fn value_bytes(batch: &[ConsumerRecord]) -> u64 {
    batch
        .iter()
        .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
        .sum()
}

/// Reads until every partition reaches its stop offset: (records, value bytes, poll latencies).
async fn read_range(
    mut consumer: Consumer,
    mut stop_at: HashMap<u32, i64>,
    counters: Arc<Counters>,
) -> anyhow::Result<(u64, u64, Vec<u64>)> {
    let (mut records, mut bytes, mut polls) = (0u64, 0u64, Vec::new());
    let mut last_data = Instant::now();
    while !stop_at.is_empty() {
        let t = Instant::now();
        let batch = consumer.poll(Duration::from_millis(500)).await?;
        if batch.is_empty() {
            if last_data.elapsed() > IDLE_LIMIT {
                bail!(
                    "no records arrived for {IDLE_LIMIT:?} with partitions {:?} unfinished",
                    stop_at.keys().collect::<Vec<_>>()
                );
            }
            continue;
        }
        last_data = Instant::now();
        polls.push(t.elapsed().as_nanos() as u64);
        for r in &batch {
            if stop_at
                .get(&r.partition)
                .is_some_and(|end| r.offset + 1 >= *end)
            {
                stop_at.remove(&r.partition);
            }
        }
        records += batch.len() as u64;
        bytes += value_bytes(&batch);
        counters.add_consumed(batch.len() as u64);
    }
    Ok((records, bytes, polls))
}

/// Reads until the shared count of consumed records reaches `target`; `each` sees every batch.
/// Returns the value bytes read.
pub async fn read_until(
    mut consumer: Consumer,
    counters: &Counters,
    target: &AtomicU64,
    mut each: impl FnMut(&[ConsumerRecord]),
) -> anyhow::Result<u64> {
    let mut bytes = 0u64;
    // Progress of all consumers: one whose partitions are quiet is not stuck while others read.
    let (mut last_data, mut seen) = (Instant::now(), 0);
    while counters.consumed() < target.load(Ordering::SeqCst) {
        let batch = consumer.poll(Duration::from_millis(200)).await?;
        if batch.is_empty() {
            let now_seen = counters.consumed();
            if now_seen != seen {
                (last_data, seen) = (Instant::now(), now_seen);
            } else if last_data.elapsed() > IDLE_LIMIT {
                bail!("no records arrived for {IDLE_LIMIT:?} after {seen} were consumed");
            }
            continue;
        }
        last_data = Instant::now();
        each(&batch);
        bytes += value_bytes(&batch);
        counters.add_consumed(batch.len() as u64);
    }
    Ok(bytes)
}
