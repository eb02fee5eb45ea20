//! `strata bench produce|consume`: a load generator beside the CLI.
//!
//! produce: sends `--records` records of `--record-size` bytes and measures throughput and the
//! latency of each record from `send` to its acknowledgement. consume: makes sure the topic holds
//! at least `--records` records (producing the difference), then reads them from the start and
//! measures throughput and the latency of each poll that returned records.

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use strata_client::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};
use strata_log::Compression;
use tokio::sync::mpsc;

use crate::output::{table, Format};
use crate::{parse, ConnectArgs};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Produce,
    Consume,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    #[arg(long, default_value = "strata-bench")]
    pub topic: String,
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Partitions of the topic when the bench creates it.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Replication factor of the topic when the bench creates it.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    #[arg(long, default_value = "1MiB", value_parser = parse::size)]
    pub batch_bytes: usize,
    #[arg(long, default_value = "5ms", value_parser = parse::duration)]
    pub linger: Duration,
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

struct Outcome {
    records: u64,
    bytes: u64,
    seconds: f64,
    /// Microseconds, unsorted.
    latencies_us: Vec<u64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.record_size == 0 || args.records == 0 {
        bail!("--record-size and --records must be above 0");
    }
    let client = args.connect.client_config();
    ensure_topic(&client, &args).await?;
    let outcome = match args.scenario {
        Scenario::Produce => produce(&client, &args, args.records, args.acks).await?,
        Scenario::Consume => {
            fill(&client, &args).await?;
            consume(&client, &args).await?
        }
    };
    report(&args, outcome)?;
    Ok(ExitCode::SUCCESS)
}

async fn ensure_topic(client: &ClientConfig, args: &BenchArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(client.clone()).await?;
    if admin.describe_topic(&args.topic).await.is_ok() {
        return Ok(());
    }
    match admin
        .create_topic(&args.topic, args.partitions, args.replicas, HashMap::new())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(strata_proto::ErrorCode::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(e).context(format!("creating bench topic {:?}", args.topic)),
    }
}

/// A payload of incompressible-looking bytes, sliced per record without copying.
fn payload(size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..size * 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    Bytes::from(data)
}

async fn produce(
    client: &ClientConfig,
    args: &BenchArgs,
    records: u64,
    acks: Acks,
) -> anyhow::Result<Outcome> {
    let mut config = ProducerConfig::new(client.clone());
    config.acks = acks;
    config.batch_bytes = args.batch_bytes;
    config.linger = args.linger;
    config.compression = args.compression;
    config.buffer_bytes = config
        .buffer_bytes
        .max(args.batch_bytes * 4 * args.partitions as usize);
    let producer = Producer::connect(config).await?;
    let data = payload(args.record_size);
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let collector = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(records as usize);
        let mut first_error = None;
        while let Some((sent, delivery)) = rx.recv().await {
            let (sent, delivery): (Instant, strata_client::DeliveryFuture) = (sent, delivery);
            match delivery.await {
                Ok(_) => latencies.push((Instant::now() - sent).as_micros() as u64),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        (latencies, first_error)
    });
    let started = Instant::now();
    for i in 0..records {
        let start = (i as usize * 7) % args.record_size;
        let value = data.slice(start..start + args.record_size);
        let delivery = producer
            .send(ProducerRecord::new(args.topic.clone(), value))
            .await?;
        if tx.send((Instant::now(), delivery)).await.is_err() {
            break;
        }
    }
    producer.flush().await?;
    drop(tx);
    let (latencies_us, first_error) = collector.await?;
    let seconds = started.elapsed().as_secs_f64();
    producer.close().await?;
    if let Some(e) = first_error {
        bail!(
            "{} of {records} records failed; first error: {e}",
            records - latencies_us.len() as u64
        );
    }
    Ok(Outcome {
        records,
        bytes: records * args.record_size as u64,
        seconds,
        latencies_us,
    })
}

/// Produces whatever the topic lacks for the consume scenario.
async fn fill(client: &ClientConfig, args: &BenchArgs) -> anyhow::Result<()> {
    let admin = Admin::connect(client.clone()).await?;
    let have: i64 = admin
        .describe_topic(&args.topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.log_start_offset)
        .sum();
    let missing = args.records as i64 - have;
    if missing > 0 {
        eprintln!(
            "bench: producing {missing} records into {} first",
            args.topic
        );
        produce(client, args, missing as u64, Acks::Leader).await?;
    }
    Ok(())
}

async fn consume(client: &ClientConfig, args: &BenchArgs) -> anyhow::Result<Outcome> {
    let admin = Admin::connect(client.clone()).await?;
    let partitions: Vec<u32> = admin
        .describe_topic(&args.topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    let mut config = ConsumerConfig::new(client.clone());
    config.fetch_max_bytes = config.fetch_max_bytes.max(args.batch_bytes as u32 * 4);
    let mut consumer = Consumer::connect(config).await?;
    consumer
        .assign(
            partitions
                .iter()
                .map(|p| (args.topic.clone(), *p))
                .collect(),
        )
        .await?;
    for p in &partitions {
        consumer.seek(&args.topic, *p, SeekTo::Earliest).await?;
    }
    let started = Instant::now();
    let (mut records, mut bytes, mut latencies_us) = (0u64, 0u64, Vec::new());
    let mut idle_since = Instant::now();
    while records < args.records {
        let t = Instant::now();
        let batch = consumer.poll(Duration::from_millis(500)).await?;
        if batch.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(10) {
                bail!(
                    "no records arrived for 10 s after {records} of {}",
                    args.records
                );
            }
            continue;
        }
        idle_since = Instant::now();
        latencies_us.push(t.elapsed().as_micros() as u64);
        for r in &batch {
            bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
        }
        records += batch.len() as u64;
    }
    Ok(Outcome {
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        latencies_us,
    })
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

fn report(args: &BenchArgs, mut o: Outcome) -> anyhow::Result<()> {
    o.latencies_us.sort_unstable();
    let (p50, p99, p999) = (
        percentile_ms(&o.latencies_us, 0.50),
        percentile_ms(&o.latencies_us, 0.99),
        percentile_ms(&o.latencies_us, 0.999),
    );
    let seconds = o.seconds.max(1e-9);
    let rps = o.records as f64 / seconds;
    let mbps = o.bytes as f64 / seconds / 1e6;
    let scenario = match args.scenario {
        Scenario::Produce => "produce",
        Scenario::Consume => "consume",
    };
    match args.format {
        Format::Json => println!(
            "{}",
            json!({
                "scenario": scenario, "records": o.records, "bytes": o.bytes, "seconds": o.seconds,
                "records_per_sec": rps, "mb_per_sec": mbps,
                "latency_ms": {"p50": p50, "p99": p99, "p999": p999},
            })
        ),
        Format::Text => println!(
            "{}",
            table(
                &[
                    "SCENARIO",
                    "RECORDS",
                    "BYTES",
                    "SECONDS",
                    "RECORDS/S",
                    "MB/S",
                    "P50 MS",
                    "P99 MS",
                    "P99.9 MS"
                ],
                &[vec![
                    scenario.to_string(),
                    o.records.to_string(),
                    o.bytes.to_string(),
                    format!("{:.2}", o.seconds),
                    format!("{rps:.0}"),
                    format!("{mbps:.1}"),
                    format!("{p50:.2}"),
                    format!("{p99:.2}"),
                    format!("{p999:.2}"),
                ]]
            )
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_rank() {
        let us: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 0.5), 500.0);
        assert_eq!(percentile_ms(&us, 0.99), 990.0);
        assert_eq!(percentile_ms(&us, 0.999), 999.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
