//! The produce side: `--producers` producers sending as fast as their buffers allow, each
//! record timed from `send` to its acknowledgement.

use anyhow::{bail, Context};
use serde_json::Map;
use std::sync::Arc;
use std::time::Instant;
use strata_client::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use super::payload::Payloads;
use super::progress::{Counters, Progress};
use super::report::{LatencyKind, Outcome};
use super::{Amount, Plan};

/// What the producers did together.
pub struct Sent {
    /// When the first producer started sending (after every connection was made).
    pub started: Instant,
    pub records: u64,
    /// Send-to-acknowledgement, nanoseconds, one per record.
    pub latencies_ns: Vec<u64>,
}

/// The `produce` scenario.
pub async fn run(plan: &Plan, amount: Amount) -> anyhow::Result<Outcome> {
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start("produce", counters.clone());
    let sent = send_all(plan, amount, plan.acks, counters).await?;
    Ok(Outcome {
        records: sent.records,
        bytes: sent.records * plan.record_size as u64,
        seconds: sent.started.elapsed().as_secs_f64(),
        latencies_ns: sent.latencies_ns,
        latency: LatencyKind::ProduceAck,
        extra: Map::new(),
    })
}

/// Produces whatever the topic lacks of `records` (for the read scenarios), with acks=1.
pub async fn fill(plan: &Plan, records: u64) -> anyhow::Result<()> {
    let have: i64 = plan
        .describe_partitions()
        .await?
        .iter()
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    let missing = records as i64 - have;
    if missing > 0 {
        eprintln!(
            "bench: producing {missing} records into {} first",
            plan.topic
        );
        let counters = Arc::new(Counters::default());
        let _progress = Progress::start("fill", counters.clone());
        send_all(
            plan,
            Amount::Records(missing as u64),
            Acks::Leader,
            counters,
        )
        .await?;
    }
    Ok(())
}

/// Runs `plan.producers` producers at once, splitting a record count among them (or each
/// running for the duration), and waits for every acknowledgement. The clock starts once every
/// producer is connected and the payloads are built.
pub async fn send_all(
    plan: &Plan,
    amount: Amount,
    acks: Acks,
    counters: Arc<Counters>,
) -> anyhow::Result<Sent> {
    let payloads = Payloads::new(plan.record_size);
    let mut producers = Vec::new();
    for _ in 0..plan.producers {
        producers.push(Producer::connect(producer_config(plan, acks)).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let share = match amount {
            Amount::Records(n) => {
                let each = n / plan.producers as u64;
                let extra = u64::from((i as u64) < n % plan.producers as u64);
                Amount::Records(each + extra)
            }
            d => d,
        };
        let job = Job {
            topic: plan.topic.clone(),
            payloads: payloads.clone(),
            amount: share,
            seed: (i as u64) << 40,
            capacity: (producer_config(plan, acks).buffer_bytes / plan.record_size).max(1 << 16),
        };
        tasks.push(tokio::spawn(send_one(producer, job, counters.clone())));
    }
    let mut sent = Sent {
        started,
        records: 0,
        latencies_ns: Vec::new(),
    };
    for task in tasks {
        let (records, latencies_ns) = task.await.context("a producer task panicked")??;
        sent.records += records;
        sent.latencies_ns.extend(latencies_ns);
    }
    Ok(sent)
}

pub fn producer_config(plan: &Plan, acks: Acks) -> ProducerConfig {
    let mut config = ProducerConfig::new(plan.client.clone());
    config.acks = acks;
    config.batch_bytes = plan.batch_bytes;
    config.linger = plan.linger;
    config.compression = plan.compression;
    config.buffer_bytes = config
        .buffer_bytes
        .max(plan.batch_bytes * 4 * plan.partitions as usize);
    config
}

/// What one producer sends.
struct Job {
    topic: String,
    payloads: Payloads,
    amount: Amount,
    /// Where its payload draws start (producers draw different values).
    seed: u64,
    /// Deliveries waiting for the collector: room for every record the producer's buffer can
    /// hold, so the channel never stalls the producer.
    capacity: usize,
}

/// Records per delivery group: the first of each group is timed, and the group travels to the
/// collector as one message. Timing one record in 16 (as Kafka's ProducerPerformance samples
/// too) keeps the bench's own clock reads and channel operations off the per-record path;
/// millions of records still give tens of thousands of samples.
const GROUP: usize = 16;

/// Deliveries of consecutive records; the first was timed from `sent`.
struct Group {
    sent: Instant,
    deliveries: Vec<DeliveryFuture>,
}

/// One producer's loop; a background task awaits the deliveries in send order (so a record is
/// timed when it and every record sent before it are acknowledged). Returns the records sent and
/// the latencies of the timed ones.
async fn send_one(
    producer: Producer,
    job: Job,
    counters: Arc<Counters>,
) -> anyhow::Result<(u64, Vec<u64>)> {
    let Job {
        topic,
        payloads,
        amount,
        seed,
        capacity,
    } = job;
    let (tx, rx) = mpsc::channel(capacity / GROUP + 1);
    let collector = tokio::spawn(collect(rx, counters));
    let started = Instant::now();
    let mut i = 0u64;
    let mut group: Option<Group> = None;
    loop {
        match amount {
            Amount::Records(n) if i >= n => break,
            Amount::Duration(d) if i.is_multiple_of(256) && started.elapsed() >= d => break,
            _ => {}
        }
        let record = ProducerRecord::new(topic.clone(), payloads.value(seed + i));
        // Timed from before `send`: a wait for buffer memory is part of the latency.
        let g = group.get_or_insert_with(|| Group {
            sent: Instant::now(),
            deliveries: Vec::with_capacity(GROUP),
        });
        g.deliveries.push(producer.send(record).await?);
        i += 1;
        if g.deliveries.len() == GROUP && tx.send(group.take().unwrap()).await.is_err() {
            break;
        }
    }
    if let Some(g) = group.take() {
        let _ = tx.send(g).await;
    }
    producer.flush().await?;
    drop(tx);
    let (latencies_ns, failed, first_error) = collector.await?;
    producer.close().await?;
    if let Some(e) = first_error {
        bail!("{failed} of {i} records failed; first error: {e}");
    }
    Ok((i, latencies_ns))
}

type Collected = (Vec<u64>, u64, Option<strata_client::Error>);

async fn collect(mut rx: mpsc::Receiver<Group>, counters: Arc<Counters>) -> Collected {
    let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0u64, None);
    while let Some(group) = rx.recv().await {
        let n = group.deliveries.len() as u64;
        for (k, delivery) in group.deliveries.into_iter().enumerate() {
            match delivery.await {
                Ok(_) if k == 0 => latencies.push(group.sent.elapsed().as_nanos() as u64),
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        counters.add_produced(n);
    }
    (latencies, failed, first_error)
}
