//! `strata bench`: the load generator that reproduces Kafka's published benchmark table.
//!
//! Scenarios (100-byte records and 6 partitions by default, as in LinkedIn's 2014 run):
//! - `produce`: producers send `--records` (or for `--duration`) as fast as they can; latency is
//!   `send` to acknowledgement, timed on one record in 16.
//! - `consume`: makes sure the topic holds `--records` records, then consumers read the topic
//!   from its start to the end it had when they began.
//! - `produce-consume`: consumers start at the end of the topic, producers send, and the run ends
//!   when every produced record has been consumed.
//! - `latency`: one paced producer sends `--rate` records/s; each value carries its *scheduled*
//!   send time, so a stall of the producer counts against the latency of every record that
//!   should have gone out meanwhile (no coordinated omission). The latency is scheduled send to
//!   the consumer's `poll` returning the record.
//! - `replay`: fills a tiered topic, waits until local retention has moved every sealed segment
//!   to the object store, then reads the topic from offset 0.
//! - `idle`: what many partitions cost at rest: creates the topic (e.g. `--partitions 3000
//!   --replicas 3`), times it until every ISR is full, then samples each `--broker-pid`'s CPU
//!   over `--duration` (30 s) with no load, with its open files and RSS.
//!
//! A run prints a result table (or `--format json` with the keys `scenario`, `records`, `bytes`,
//! `seconds`, `records_per_sec`, `mb_per_sec`, `latency_ms.p50/p99/p999` and, with
//! `--broker-pid`, `peak_rss_bytes` per broker) and, on a terminal, a live progress line.
//! The bench measures the client side too: it shares the machine with what it measures.

mod consume;
mod idle;
mod latency;
mod payload;
mod produce;
mod progress;
mod replay;
mod report;
mod rss;

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use strata_client::{Acks, Admin, ClientConfig};
use strata_log::Compression;

use crate::output::Format;
use crate::{parse, ConnectArgs};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Produce,
    Consume,
    #[value(name = "produce-consume", alias = "produce+consume")]
    ProduceConsume,
    Latency,
    Replay,
    Idle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Produce => "produce",
            Scenario::Consume => "consume",
            Scenario::ProduceConsume => "produce-consume",
            Scenario::Latency => "latency",
            Scenario::Replay => "replay",
            Scenario::Idle => "idle",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Topic to use; created when missing (default strata-bench, strata-bench-replay for replay).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records to send (default 1000000; for latency, --rate times --duration).
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Run for this long instead of a record count (produce, produce-consume, latency, idle:
    /// default 30s).
    #[arg(long, value_parser = parse::duration)]
    pub duration: Option<Duration>,
    /// Partitions of the topic when the bench creates it.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Replication factor of the topic when the bench creates it.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Topic config when the bench creates the topic, key=value (repeatable).
    #[arg(short = 'c', long = "topic-config", value_parser = parse::key_value)]
    pub topic_config: Vec<(String, String)>,
    /// Producer instances, each with its own connections and batches.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consumer instances; the partitions are dealt out among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    #[arg(long, default_value = "1MiB", value_parser = parse::size)]
    pub batch_bytes: usize,
    /// How long an open batch waits for more records (default 5ms; latency: 0ms).
    #[arg(long, value_parser = parse::duration)]
    pub linger: Option<Duration>,
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// latency: records per second the paced producer sends.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// latency: records scheduled in this first stretch are sent but not measured.
    #[arg(long, default_value = "2s", value_parser = parse::duration)]
    pub warmup: Duration,
    /// replay: longest wait for local retention to move the sealed segments to the object store.
    #[arg(long, default_value = "5m", value_parser = parse::duration)]
    pub tier_wait: Duration,
    /// A broker process to report the peak RSS of, as PID or NAME=PID (repeatable). Its peak is
    /// reset (/proc/PID/clear_refs) when the measured part of the run begins.
    #[arg(long = "broker-pid", value_parser = rss::parse_pid)]
    pub broker_pids: Vec<(String, u32)>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// What every scenario works from, resolved once from the flags.
pub struct Plan {
    pub scenario: Scenario,
    pub topic: String,
    pub record_size: usize,
    /// A record count, or a run time (the count is then open-ended).
    pub amount: Amount,
    pub producers: u32,
    pub consumers: u32,
    pub acks: Acks,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub partitions: u32,
    pub client: ClientConfig,
}

#[derive(Clone, Copy, Debug)]
pub enum Amount {
    Records(u64),
    Duration(Duration),
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        if args.record_size == 0 {
            bail!("--record-size must be above 0");
        }
        if args.records == Some(0) {
            bail!("--records must be above 0");
        }
        if args.duration == Some(Duration::ZERO) {
            bail!("--duration must be above 0");
        }
        if args.producers == 0 || args.consumers == 0 {
            bail!("--producers and --consumers must be at least 1");
        }
        if args.partitions == 0 {
            bail!("--partitions must be at least 1");
        }
        let amount = match (args.records, args.duration, args.scenario) {
            (Some(n), _, Scenario::Idle) => bail!(
                "--records {n} does not apply to idle: it sends nothing; use --duration"
            ),
            (Some(n), _, _) => Amount::Records(n),
            (None, Some(d), Scenario::Consume | Scenario::Replay) => bail!(
                "--duration {d:?} does not apply to {}: it reads a fixed number of records; use --records",
                args.scenario.name()
            ),
            (None, Some(d), _) => Amount::Duration(d),
            (None, None, Scenario::Latency | Scenario::Idle) => {
                Amount::Duration(Duration::from_secs(30))
            }
            (None, None, _) => Amount::Records(1_000_000),
        };
        if args.scenario == Scenario::Idle && args.broker_pids.is_empty() {
            bail!("idle measures the brokers' CPU time: give each broker as --broker-pid NAME=PID");
        }
        if args.scenario == Scenario::Latency {
            if args.rate == 0 {
                bail!("--rate must be above 0");
            }
            if args.record_size < latency::STAMP_BYTES {
                bail!(
                    "latency needs --record-size of at least {} bytes: each value carries its send time",
                    latency::STAMP_BYTES
                );
            }
        }
        let topic = args.topic.clone().unwrap_or_else(|| match args.scenario {
            Scenario::Replay => "strata-bench-replay".to_string(),
            _ => "strata-bench".to_string(),
        });
        let linger = args.linger.unwrap_or(match args.scenario {
            Scenario::Latency => Duration::ZERO,
            _ => Duration::from_millis(5),
        });
        Ok(Plan {
            scenario: args.scenario,
            topic,
            record_size: args.record_size,
            amount,
            producers: args.producers,
            consumers: args.consumers,
            acks: args.acks,
            batch_bytes: args.batch_bytes,
            linger,
            compression: args.compression,
            partitions: args.partitions,
            client: args.connect.client_config()?,
        })
    }
}

impl Plan {
    /// The bench topic's partitions as the cluster describes them now.
    pub async fn describe_partitions(
        &self,
    ) -> anyhow::Result<Vec<strata_client::PartitionDescription>> {
        let admin = Admin::connect(self.client.clone()).await?;
        Ok(admin.describe_topic(&self.topic).await?.partitions)
    }

    /// The partitions the topic has (it may predate the bench and differ from --partitions).
    pub async fn partitions_of_topic(&self) -> anyhow::Result<Vec<u32>> {
        let partitions = self.describe_partitions().await?;
        Ok(partitions.iter().map(|p| p.partition).collect())
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let plan = Plan::from_args(&args)?;
    let mut configs: HashMap<String, String> = match plan.scenario {
        Scenario::Replay => replay::topic_defaults(),
        _ => HashMap::new(),
    };
    configs.extend(args.topic_config.iter().cloned());
    ensure_topic(&plan, args.replicas, configs).await?;
    let rss = rss::Watch::new(args.broker_pids.clone());
    let outcome = match plan.scenario {
        Scenario::Produce => {
            rss.reset()?;
            produce::run(&plan, plan.amount).await?
        }
        Scenario::Consume => {
            produce::fill(&plan, amount_records(&plan)?).await?;
            rss.reset()?;
            consume::read_all(&plan).await?
        }
        Scenario::ProduceConsume => {
            rss.reset()?;
            consume::with_producers(&plan).await?
        }
        Scenario::Latency => {
            rss.reset()?;
            latency::run(&plan, args.rate, args.warmup).await?
        }
        Scenario::Replay => {
            produce::fill(&plan, amount_records(&plan)?).await?;
            replay::wait_for_tiering(&plan, args.tier_wait).await?;
            rss.reset()?;
            replay::run(&plan).await?
        }
        Scenario::Idle => {
            let Amount::Duration(duration) = plan.amount else {
                bail!("idle runs for a --duration");
            };
            idle::run(&plan, &args.broker_pids, duration, started).await?
        }
    };
    let peaks = rss.peaks()?;
    report::print(&plan, args.format, outcome, &peaks);
    Ok(ExitCode::SUCCESS)
}

fn amount_records(plan: &Plan) -> anyhow::Result<u64> {
    match plan.amount {
        Amount::Records(n) => Ok(n),
        Amount::Duration(_) => bail!(
            "{} reads a fixed number of records; use --records",
            plan.scenario.name()
        ),
    }
}

async fn ensure_topic(
    plan: &Plan,
    replicas: u32,
    configs: HashMap<String, String>,
) -> anyhow::Result<()> {
    let admin = Admin::connect(plan.client.clone()).await?;
    if admin.describe_topic(&plan.topic).await.is_ok() {
        return Ok(());
    }
    match admin
        .create_topic(&plan.topic, plan.partitions, replicas, configs)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Some(strata_proto::ErrorCode::TopicAlreadyExists) => {}
        Err(e) => return Err(e).context(format!("creating bench topic {:?}", plan.topic)),
    }
    // In a cluster the brokers learn of a new topic from etcd a moment later: wait until the
    // one answering knows it and every partition has a leader.
    let started = std::time::Instant::now();
    loop {
        match admin.describe_topic(&plan.topic).await {
            Ok(t) if t.partitions.iter().all(|p| p.leader >= 0) => return Ok(()),
            _ if started.elapsed() > Duration::from_secs(30) => {
                bail!(
                    "topic {:?} was created but has no leader for every partition after 30 s",
                    plan.topic
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
