//! `strata topic create|list|describe|delete|alter-config`.

use anyhow::bail;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use strata_client::{Admin, TopicDescription};

use crate::output::{table, Format};
use crate::{parse, ConnectArgs};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(short = 'p', long, default_value_t = 1)]
        partitions: u32,
        /// Replication factor.
        #[arg(short = 'r', long, default_value_t = 1)]
        replicas: u32,
        /// Topic config override, key=value (repeatable).
        #[arg(short = 'c', long = "config", value_parser = parse::key_value)]
        config: Vec<(String, String)>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List topics.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a topic's partitions, offsets and config.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a topic and all its data.
    Delete {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Raise a topic's partition count (partitions can be added, never removed).
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        total: u32,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Set or remove topic config overrides.
    AlterConfig {
        name: String,
        /// key=value to set (repeatable).
        #[arg(long, value_parser = parse::key_value)]
        set: Vec<(String, String)>,
        /// Key to remove, going back to the broker default (repeatable).
        #[arg(long)]
        delete: Vec<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            config,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let configs: HashMap<String, String> = config.into_iter().collect();
            let d = admin
                .create_topic(&name, partitions, replicas, configs)
                .await?;
            println!(
                "created topic {} ({} partitions, replication factor {}, id {})",
                d.name,
                d.partitions.len(),
                d.replication_factor,
                d.topic_id
            );
        }
        TopicCommand::List { format, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let topics = admin.list_topics().await?;
            match format {
                Format::Json => {
                    let list: Vec<_> = topics
                        .iter()
                        .map(|t| json!({"name": t.name, "topic_id": t.topic_id, "partitions": t.partitions, "replication_factor": t.replication_factor}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                Format::Text => {
                    let rows: Vec<Vec<String>> = topics
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.partitions.to_string(),
                                t.replication_factor.to_string(),
                                t.topic_id.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["NAME", "PARTITIONS", "REPLICAS", "ID"], &rows)
                    );
                }
            }
        }
        TopicCommand::Describe {
            name,
            format,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let d = admin.describe_topic(&name).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&describe_json(&d))?),
                Format::Text => println!("{}", describe_text(&d)),
            }
        }
        TopicCommand::Delete { name, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            admin.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
        TopicCommand::AddPartitions {
            name,
            total,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let d = admin.create_partitions(&name, total).await?;
            println!(
                "topic {name} now has {} partitions (keyed records may map to other partitions from now on)",
                d.partitions.len()
            );
        }
        TopicCommand::AlterConfig {
            name,
            set,
            delete,
            connect,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set key=value or --delete key");
            }
            let deletes_remote = set
                .iter()
                .any(|(k, v)| k == "remote.log.delete.on.disable" && v.trim() == "true");
            let admin = Admin::connect(connect.client_config()?).await?;
            let d = admin
                .alter_topic_config(&name, set.into_iter().collect(), delete)
                .await?;
            if deletes_remote {
                println!(
                    "remote storage of topic {name} is off; its remote data is being deleted in \
                     the background (offsets below the local log start are gone)"
                );
            }
            let mut overrides = d.overrides.clone();
            overrides.sort();
            let shown: Vec<String> = overrides
                .iter()
                .map(|k| format!("{k}={}", d.config.get(k).cloned().unwrap_or_default()))
                .collect();
            println!(
                "altered topic {name}; overrides now: {}",
                if shown.is_empty() {
                    "none".to_string()
                } else {
                    shown.join(", ")
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn describe_json(d: &TopicDescription) -> serde_json::Value {
    let config: std::collections::BTreeMap<_, _> = d.config.iter().collect();
    json!({
        "name": d.name,
        "topic_id": d.topic_id,
        "replication_factor": d.replication_factor,
        "partitions": d.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "replicas": p.replicas,
            "isr": p.isr,
            "log_start_offset": p.log_start_offset,
            "high_watermark": p.high_watermark,
            "log_end_offset": p.log_end_offset,
            "size_bytes": p.size_bytes,
            "under_replicated": p.isr.len() < p.replicas.len(),
        })).collect::<Vec<_>>(),
        "config": config,
        "overrides": d.overrides,
    })
}

fn describe_text(d: &TopicDescription) -> String {
    let ids = |v: &[i32]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.log_end_offset.to_string(),
                p.size_bytes.to_string(),
                status(p).to_string(),
            ]
        })
        .collect();
    let mut config: Vec<_> = d.config.iter().collect();
    config.sort();
    let cfg_rows: Vec<Vec<String>> = config
        .iter()
        .map(|(k, v)| {
            let source = if d.overrides.contains(k) {
                "topic"
            } else {
                "default"
            };
            vec![k.to_string(), v.to_string(), source.to_string()]
        })
        .collect();
    format!(
        "NAME              {}\nID                {}\nPARTITIONS        {}\nREPLICATION       {}\nUNDER-REPLICATED  {}\nOFFLINE           {}\n\n{}\n\n{}",
        d.name,
        d.topic_id,
        d.partitions.len(),
        d.replication_factor,
        d.partitions.iter().filter(|p| status(p) == "under-replicated").count(),
        d.partitions.iter().filter(|p| status(p) == "offline").count(),
        table(
            &[
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG-START",
                "HIGH-WATERMARK",
                "LOG-END",
                "BYTES",
                "STATUS"
            ],
            &rows
        ),
        table(&["CONFIG", "VALUE", "SOURCE"], &cfg_rows)
    )
}

/// A partition's health: offline (no leader), under-replicated (ISR smaller than replicas), ok.
fn status(p: &strata_client::PartitionDescription) -> &'static str {
    if p.leader < 0 {
        "offline"
    } else if p.isr.len() < p.replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}
