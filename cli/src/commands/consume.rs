//! `strata consume`: read records from a topic's partitions and print them.
//!
//! Text prints each value on its own line; json prints one object a line with topic,
//! partition, offset, timestamp, key, value and headers.
//!
//! With `-g GROUP` the command is a member of the group: the coordinator assigns its
//! partitions, it starts at the group's committed offsets (`--offset start|end` only says where
//! to start when nothing is committed), and commits what it has written out, every second and
//! when it stops (the offset after the last record printed: at least once), then leaves.

use anyhow::bail;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use strata_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupSettings, OffsetReset,
    SeekTo,
};

use crate::output::{bytes_json, Format};
use crate::parse::{self, OffsetSpec};
use crate::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Consume as a member of this consumer group (partitions assigned by its coordinator,
    /// offsets committed as it goes).
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Group assignment strategies, preferred first (repeatable): cooperative-sticky, range,
    /// roundrobin.
    #[arg(long = "strategy", requires = "group")]
    pub strategies: Vec<String>,
    /// Group session timeout: a member not heard from for this long is removed (e.g. 10s).
    #[arg(long, requires = "group", value_parser = parse::duration)]
    pub session_timeout: Option<Duration>,
    /// Client id shown by `strata group describe`.
    #[arg(long, default_value = "strata-cli")]
    pub client_id: String,
    /// Where to start: start, end, an offset, or @TIMESTAMP_MS. With -g: start or end, used for
    /// partitions the group has no committed offset for.
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

/// How often a group member commits what it has printed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Where records come from: assigned partitions, or a group membership.
enum Source {
    Assigned(Consumer),
    Group(Box<Member>),
}

/// A group member that commits exactly what was printed: the offset after the last record
/// written out, per partition (not the consumer's position, which may be past records a
/// `-n` limit left unprinted).
struct Member {
    consumer: GroupConsumer,
    printed: BTreeMap<(String, u32), i64>,
    last_commit: Instant,
}

impl Member {
    async fn commit(&mut self) -> strata_client::Result<()> {
        self.last_commit = Instant::now();
        let owned = self.consumer.assignment();
        let offsets: Vec<((String, u32), i64)> = self
            .printed
            .iter()
            .filter(|(tp, _)| owned.contains(tp))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        self.printed.clear();
        self.consumer.commit_offsets_sync(&offsets).await
    }
}

impl Source {
    async fn poll(&mut self, timeout: Duration) -> strata_client::Result<Vec<ConsumerRecord>> {
        match self {
            Source::Assigned(c) => c.poll(timeout).await,
            Source::Group(m) => {
                if !m.printed.is_empty() && m.last_commit.elapsed() >= COMMIT_INTERVAL {
                    if let Err(e) = m.commit().await {
                        eprintln!("warning: commit failed (the records will be read again): {e}");
                    }
                }
                m.consumer.poll(timeout).await
            }
        }
    }

    /// Notes a record as written out.
    fn printed(&mut self, r: &ConsumerRecord) {
        if let Source::Group(m) = self {
            m.printed
                .insert((r.topic.to_string(), r.partition), r.offset + 1);
        }
    }
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let mut source = match &args.group {
        Some(group) => Source::Group(Box::new(Member {
            consumer: join(&args, group).await?,
            printed: BTreeMap::new(),
            last_commit: Instant::now(),
        })),
        None => Source::Assigned(assigned(&args).await?),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut consumed = 0u64;
    let mut last_record = Instant::now();
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut failed = None;
    'outer: while args.count.is_none_or(|n| consumed < n) {
        let records = tokio::select! {
            r = source.poll(Duration::from_millis(200)) => match r {
                Ok(r) => r,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            },
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
            source.printed(&r);
            consumed += 1;
            if args.count == Some(consumed) {
                break 'outer;
            }
        }
        // Written out before the next poll commits them: at least once.
        out.flush()?;
    }
    out.flush()?;
    drop(out);
    if let Source::Group(mut m) = source {
        if let Err(e) = m.commit().await {
            eprintln!("warning: the final commit failed (the records will be read again): {e}");
        }
        if let Err(e) = m.consumer.close().await {
            eprintln!("warning: leaving the group failed: {e}");
        }
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    if let Some(n) = args.count {
        if consumed < n {
            eprintln!("error: consumed {consumed} of {n} records before stopping");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A consumer of the named partitions (or all of the topic's), positioned by `--offset`.
async fn assigned(args: &ConsumeArgs) -> anyhow::Result<Consumer> {
    let client = args.connect.client_config()?;
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
    Ok(consumer)
}

/// A member of `group` subscribed to the topic.
async fn join(args: &ConsumeArgs, group: &str) -> anyhow::Result<GroupConsumer> {
    if args.partition.is_some() {
        bail!("--partition cannot be used with -g: the group's coordinator assigns partitions");
    }
    let reset = match args.offset {
        OffsetSpec::Start => OffsetReset::Earliest,
        OffsetSpec::End => OffsetReset::Latest,
        _ => bail!(
            "with -g, --offset is start or end (where to begin without a committed offset); \
             move a group's offsets with `strata group seek`"
        ),
    };
    let mut settings = GroupSettings::new(group);
    settings.client_id = args.client_id.clone();
    // Commits follow what was printed (see `Member`), not the consumer's positions.
    settings.enable_auto_commit = false;
    settings.auto_offset_reset = reset;
    if !args.strategies.is_empty() {
        settings.strategies = args.strategies.clone();
    }
    if let Some(t) = args.session_timeout {
        settings.session_timeout = t;
        settings.heartbeat_interval = settings.heartbeat_interval.min(t / 3);
    }
    let consumer = Consumer::connect(ConsumerConfig::new(args.connect.client_config()?)).await?;
    let admin = Admin::connect(args.connect.client_config()?).await?;
    let meta = admin.metadata(vec![args.topic.clone()]).await?;
    if !meta.topics.iter().any(|t| t.name == args.topic) {
        bail!("topic {:?} does not exist", args.topic);
    }
    Ok(consumer.subscribe(settings, &[args.topic.as_str()])?)
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
