//! `strata produce`: one record per line of standard input.
//!
//! Records are sent in line order; a summary (records, bytes, seconds) goes to stderr, and the
//! exit status is non-zero if any record failed.

use anyhow::Context;
use bytes::Bytes;
use std::process::ExitCode;
use std::time::Instant;
use strata_client::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use strata_log::Compression;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value (a line without SEP has no key).
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key hash, sticky without a key).
    #[arg(long)]
    pub partition: Option<u32>,
    /// 0: do not wait; 1: the leader has it; all: every in-sync replica has it.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// How long a record may take from send to acknowledgement, retries included (Kafka's
    /// delivery.timeout.ms), e.g. "30s".
    #[arg(long, default_value = "120s", value_parser = crate::parse::duration)]
    pub delivery_timeout: std::time::Duration,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How many delivery results may wait to be counted before reading stdin pauses.
const PENDING_RESULTS: usize = 65_536;
/// How many failures are printed in full.
const SHOWN_ERRORS: usize = 5;

pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let mut config = ProducerConfig::new(args.connect.client_config()?);
    config.acks = args.acks;
    config.compression = args.compression;
    config.delivery_timeout = args.delivery_timeout;
    let producer = Producer::connect(config).await?;
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<(u64, DeliveryFuture)>(PENDING_RESULTS);
    let collector = tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some((line, delivery)) = rx.recv().await {
            if let Err(e) = delivery.await {
                failed += 1;
                if failed <= SHOWN_ERRORS as u64 {
                    eprintln!("error: line {line}: {e}");
                }
            }
        }
        failed
    });
    let mut lines = tokio::io::BufReader::with_capacity(1 << 20, tokio::io::stdin()).split(b'\n');
    let (mut records, mut bytes, mut send_error) = (0u64, 0u64, None);
    while let Some(mut line) = lines
        .next_segment()
        .await
        .context("reading standard input")?
    {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        bytes += line.len() as u64;
        let line = Bytes::from(line);
        let (key, value) = split_key(&line, args.key_separator.as_deref());
        let mut record = ProducerRecord::new(args.topic.clone(), value);
        record.key = key;
        record.partition = args.partition;
        records += 1;
        match producer.send(record).await {
            Ok(delivery) => {
                if tx.send((records, delivery)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                send_error = Some(format!("line {records}: {e}"));
                break;
            }
        }
    }
    let flushed = producer.flush().await;
    drop(tx);
    let failed = collector.await.context("result collector failed")?;
    let _ = producer.close().await;
    let secs = started.elapsed().as_secs_f64();
    if let Some(e) = send_error {
        eprintln!("error: {e}");
        let before = records - 1;
        eprintln!(
            "stopped at line {records}: {} records before it were produced, {failed} failed",
            before - failed.min(before)
        );
        return Ok(ExitCode::FAILURE);
    }
    flushed?;
    eprintln!(
        "produced {} records ({bytes} bytes) in {secs:.2} s ({:.0} records/s){}",
        records - failed,
        (records - failed) as f64 / secs.max(1e-9),
        if failed > 0 {
            format!("; {failed} records failed")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn split_key(line: &Bytes, separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    let Some(sep) = separator.filter(|s| !s.is_empty()) else {
        return (None, line.clone());
    };
    let sep = sep.as_bytes();
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (Some(line.slice(..i)), line.slice(i + sep.len()..)),
        None => (None, line.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_separator() {
        let line = Bytes::from_static(b"user-1::a::b");
        let (k, v) = split_key(&line, Some("::"));
        assert_eq!(k.as_deref(), Some(&b"user-1"[..]));
        assert_eq!(&v[..], b"a::b");
        let (k, v) = split_key(&Bytes::from_static(b"no-key"), Some(":"));
        assert_eq!(k, None);
        assert_eq!(&v[..], b"no-key");
        assert_eq!(split_key(&line, None).0, None);
    }
}
