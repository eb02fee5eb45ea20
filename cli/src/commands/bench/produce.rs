//! The produce side: `--producers` producers sending as fast as their buffers allow, each
//! record timed from `send` to its acknowledgement.

use anyhow::{bail, Context};
use serde_json::Map;
use std::sync::Arc;
use std::time::Instant;
use strata_client::{Acks, Admin, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use super::payload::Payloads;
use super::progress::{Counters, Progress};
use super::report::{LatencyKind, Outcome};
use super::{Amount, Plan};

/// What the producers did together.
pub struct Sent {
    pub records: u64,
    /// Send-to-acknowledgement, nanoseconds, one per record.
    pub latencies_ns: Vec<u64>,
}

/// The `produce` scenario.
pub async fn run(plan: &Plan, amount: Amount) -> anyhow::Result<Outcome> {
    let counters = Arc::new(Counters::default());
    let _progress = Progress::start("produce", counters.clone());
    let started = Instant::now();
    let sent = send_all(plan, amount, plan.acks, counters).await?;
    Ok(Outcome {
        records: sent.records,
        bytes: sent.records * plan.record_size as u64,
        seconds: started.elapsed().as_secs_f64(),
        latencies_ns: sent.latencies_ns,
        latency: LatencyKind::ProduceAck,
        extra: Map::new(),
    })
}

/// Produces whatever the topic lacks of `records` (for the read scenarios), with acks=1.
pub async fn fill(plan: &Plan, records: u64) -> anyhow::Result<()> {
    let admin = Admin::connect(plan.client.clone()).await?;
    let have: i64 = admin
        .describe_topic(&plan.topic)
        .await?
        .partitions
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
/// running for the duration), and waits for every acknowledgement.
pub async fn send_all(
    plan: &Plan,
    amount: Amount,
    acks: Acks,
    counters: Arc<Counters>,
) -> anyhow::Result<Sent> {
    let payloads = Payloads::new(plan.record_size);
    let mut tasks = Vec::new();
    for i in 0..plan.producers {
        let share = match amount {
            Amount::Records(n) => {
                let each = n / plan.producers as u64;
                let extra = u64::from((i as u64) < n % plan.producers as u64);
                Amount::Records(each + extra)
            }
            d => d,
        };
        let producer = Producer::connect(producer_config(plan, acks)).await?;
        let (topic, payloads, counters) = (plan.topic.clone(), payloads.clone(), counters.clone());
        let seed = (i as u64) << 40;
        tasks.push(tokio::spawn(async move {
            send_one(producer, topic, payloads, share, seed, counters).await
        }));
    }
    let mut sent = Sent {
        records: 0,
        latencies_ns: Vec::new(),
    };
    for task in tasks {
        let one = task.await.context("a producer task panicked")??;
        sent.records += one.records;
        sent.latencies_ns.extend(one.latencies_ns);
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

/// One producer's loop; a background task awaits the deliveries in send order.
async fn send_one(
    producer: Producer,
    topic: String,
    payloads: Payloads,
    amount: Amount,
    seed: u64,
    counters: Arc<Counters>,
) -> anyhow::Result<Sent> {
    let (tx, rx) = mpsc::channel(1 << 16);
    let collector = tokio::spawn(collect(rx, counters));
    let started = Instant::now();
    let mut i = 0u64;
    loop {
        match amount {
            Amount::Records(n) if i >= n => break,
            Amount::Duration(d) if i.is_multiple_of(256) && started.elapsed() >= d => break,
            _ => {}
        }
        let record = ProducerRecord::new(topic.clone(), payloads.value(seed + i));
        let delivery = producer.send(record).await?;
        if tx.send((Instant::now(), delivery)).await.is_err() {
            break;
        }
        i += 1;
    }
    producer.flush().await?;
    drop(tx);
    let (latencies_ns, failed, first_error) = collector.await?;
    producer.close().await?;
    if let Some(e) = first_error {
        bail!("{failed} of {i} records failed; first error: {e}");
    }
    Ok(Sent {
        records: i,
        latencies_ns,
    })
}

type Collected = (Vec<u64>, u64, Option<strata_client::Error>);

async fn collect(
    mut rx: mpsc::Receiver<(Instant, DeliveryFuture)>,
    counters: Arc<Counters>,
) -> Collected {
    let (mut latencies, mut failed, mut first_error) = (Vec::new(), 0u64, None);
    let mut acked = 0u64;
    while let Some((sent, delivery)) = rx.recv().await {
        match delivery.await {
            Ok(_) => latencies.push(sent.elapsed().as_nanos() as u64),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        acked += 1;
        if acked.is_multiple_of(1024) {
            counters.add_produced(1024);
        }
    }
    counters.add_produced(acked % 1024);
    (latencies, failed, first_error)
}
