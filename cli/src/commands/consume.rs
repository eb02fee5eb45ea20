//! `strata consume`: read records from a topic's partitions and print them.
//!
//! Text prints each value on its own line; json prints one object a line with topic,
//! partition, offset, timestamp, key, value and headers.

use anyhow::bail;
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use strata_client::{Admin, Consumer, ConsumerConfig, ConsumerRecord, SeekTo};

use crate::output::{bytes_json, Format};
use crate::parse::{self, OffsetSpec};
use crate::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Where to start: start, end, an offset, or @TIMESTAMP_MS.
    #[arg(long, default_value = "end", value_parser = parse::offset_spec)]
    pub offset: OffsetSpec,
    /// Stop after this many records.
    #[arg(short = 'n', long = "count")]
    pub count: Option<u64>,
    /// Stop when no record has arrived for this long (e.g. 5s).
    #[arg(long, value_parser = parse::duration)]
    pub timeout: Option<Duration>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client_config();
    let partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => {
            let admin = Admin::connect(client.clone()).await?;
            let meta = admin.metadata(vec![args.topic.clone()]).await?;
            let Some(topic) = meta.topics.iter().find(|t| t.name == args.topic) else {
                bail!("topic {:?} does not exist", args.topic);
            };
            topic.partitions.iter().map(|p| p.partition).collect()
        }
    };
    let mut consumer = Consumer::connect(ConsumerConfig::new(client)).await?;
    consumer
        .assign(
            partitions
                .iter()
                .map(|p| (args.topic.clone(), *p))
                .collect(),
        )
        .await?;
    let to = match args.offset {
        OffsetSpec::Start => SeekTo::Earliest,
        OffsetSpec::End => SeekTo::Latest,
        OffsetSpec::Offset(n) => SeekTo::Offset(n),
        OffsetSpec::Timestamp(ts) => SeekTo::Timestamp(ts),
    };
    for p in &partitions {
        consumer.seek(&args.topic, *p, to).await?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut consumed = 0u64;
    let mut last_record = Instant::now();
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    'outer: while args.count.is_none_or(|n| consumed < n) {
        let records = tokio::select! {
            r = consumer.poll(Duration::from_millis(200)) => r?,
            _ = &mut shutdown => break,
        };
        if records.is_empty() {
            out.flush()?;
            if args.timeout.is_some_and(|t| last_record.elapsed() >= t) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for r in records {
            print_record(&mut out, &r, args.format)?;
            consumed += 1;
            if args.count == Some(consumed) {
                break 'outer;
            }
        }
    }
    out.flush()?;
    drop(out);
    if let Some(n) = args.count {
        if consumed < n {
            eprintln!("error: consumed {consumed} of {n} records before stopping");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_record(out: &mut impl Write, r: &ConsumerRecord, format: Format) -> std::io::Result<()> {
    match format {
        Format::Text => {
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|h| (h.key.clone(), bytes_json(h.value.as_deref())))
                .collect();
            let obj = json!({
                "topic": &*r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": bytes_json(r.key.as_deref()),
                "value": bytes_json(r.value.as_deref()),
                "headers": headers,
            });
            serde_json::to_writer(&mut *out, &obj)?;
            out.write_all(b"\n")
        }
    }
}
