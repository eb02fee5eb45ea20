//! `strata retention show|set`: the two retention levels of a topic, total (both tiers) and
//! local (the hot tier), in durations and sizes rather than config keys.

use anyhow::bail;
use std::collections::HashMap;
use std::process::ExitCode;
use strata_client::Admin;

use crate::output::table;
use crate::parse::{self, RetentionValue};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show a topic's total and local retention.
    Show {
        topic: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Change a topic's retention; --dry-run shows what each tier would delete.
    Set {
        topic: String,
        /// Total retention (both tiers): a duration (30d) and/or a size (500GiB); repeatable.
        #[arg(long, value_parser = parse::retention_value, allow_hyphen_values = true)]
        total: Vec<RetentionValue>,
        /// Local (hot tier) retention: a duration (6h) and/or a size; repeatable.
        #[arg(long, value_parser = parse::retention_value, allow_hyphen_values = true)]
        local: Vec<RetentionValue>,
        /// Print what would be deleted from each tier, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn human_ms(ms: i64) -> String {
    match ms {
        -2 => "as total".to_string(),
        -1 => "forever".to_string(),
        ms if ms > 0 && ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms > 0 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn human_bytes(b: i64) -> String {
    match b {
        -2 => "as total".to_string(),
        -1 => "unlimited".to_string(),
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b => format!("{b}B"),
    }
}

/// The config keys a set of `--total` / `--local` values becomes.
fn keys(
    total: &[RetentionValue],
    local: &[RetentionValue],
) -> anyhow::Result<HashMap<String, String>> {
    let mut set = HashMap::new();
    for (prefix, values) in [("", total), ("local.", local)] {
        for v in values {
            let (key, value) = match v {
                RetentionValue::Time(ms) => (format!("{prefix}retention.ms"), ms),
                RetentionValue::Size(b) => (format!("{prefix}retention.bytes"), b),
            };
            if set.insert(key.clone(), value.to_string()).is_some() {
                bail!("{key} is given twice; give at most one duration and one size per level");
            }
        }
    }
    if set.is_empty() {
        bail!("nothing to change: give --total and/or --local");
    }
    Ok(set)
}

pub async fn run(cmd: RetentionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RetentionCommand::Show { topic, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let d = admin.describe_topic(&topic).await?;
            let get = |k: &str| {
                d.config
                    .get(k)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(-1)
            };
            println!(
                "TOPIC           {}\nREMOTE STORAGE  {}\nTOTAL           {} / {}   (retention.ms / retention.bytes)\nLOCAL           {} / {}   (local.retention.ms / local.retention.bytes)",
                d.name,
                d.config.get("remote.storage.enable").map_or("false", String::as_str),
                human_ms(get("retention.ms")),
                human_bytes(get("retention.bytes")),
                human_ms(get("local.retention.ms")),
                human_bytes(get("local.retention.bytes")),
            );
        }
        RetentionCommand::Set {
            topic,
            total,
            local,
            dry_run,
            connect,
        } => {
            let set = keys(&total, &local)?;
            let admin = Admin::connect(connect.client_config()?).await?;
            if dry_run {
                let preview = admin.retention_preview(&topic, set).await?;
                let cell = |t: Option<strata_client::TierDeletion>| {
                    let t = t.unwrap_or_default();
                    let up_to = if t.up_to_offset < 0 {
                        "-".to_string()
                    } else {
                        t.up_to_offset.to_string()
                    };
                    [t.segments.to_string(), t.bytes.to_string(), up_to]
                };
                let rows: Vec<Vec<String>> = preview
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut row = vec![p.partition.to_string()];
                        row.extend(cell(p.local));
                        row.extend(cell(p.remote));
                        row
                    })
                    .collect();
                println!("dry run: nothing was changed. Would delete:\n");
                println!(
                    "{}",
                    table(
                        &[
                            "PARTITION",
                            "LOCAL-SEGMENTS",
                            "LOCAL-BYTES",
                            "LOCAL-START-AFTER",
                            "REMOTE-SEGMENTS",
                            "REMOTE-BYTES",
                            "REMOTE-START-AFTER"
                        ],
                        &rows
                    )
                );
            } else {
                let mut shown: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                shown.sort();
                admin.alter_topic_config(&topic, set, vec![]).await?;
                println!("retention of {topic} set: {}", shown.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
