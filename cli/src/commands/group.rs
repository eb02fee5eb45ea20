//! `strata group list | describe | seek | delete`: consumer groups, their members, committed
//! offsets and lag.

use anyhow::bail;
use serde_json::json;
use std::process::ExitCode;
use strata_client::{Admin, SeekTo};

use crate::output::{table, Format};
use crate::parse::{self, OffsetSpec};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the cluster's consumer groups.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// A group's state, members, assignments, committed offsets and lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Move a group's committed offsets (only while the group has no members).
    Seek {
        group: String,
        /// start, end, an offset, or @TIMESTAMP_MS.
        #[arg(long, value_parser = parse::offset_spec)]
        to: OffsetSpec,
        /// Every partition of this topic (default: every partition the group has committed).
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a group without members, with its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(cmd: GroupCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GroupCommand::List { format, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let groups = admin.list_groups().await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "groups": groups.iter().map(|g| json!({
                            "group": g.group, "state": g.state, "protocol": g.protocol,
                            "members": g.members, "generation": g.generation,
                        })).collect::<Vec<_>>()
                    }))?
                ),
                Format::Text => {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|g| {
                            vec![
                                g.group.clone(),
                                g.state.clone(),
                                g.members.to_string(),
                                g.generation.to_string(),
                                g.protocol.clone(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &["GROUP", "STATE", "MEMBERS", "GENERATION", "PROTOCOL"],
                            &rows
                        )
                    );
                }
            }
        }
        GroupCommand::Describe {
            group,
            format,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let d = admin.describe_group(&group).await?;
            let g = &d.group;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "group": g.group,
                        "state": g.state,
                        "generation": g.generation,
                        "protocol": g.protocol,
                        "coordinator": g.coordinator,
                        "members": g.members.iter().map(|m| json!({
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "host": m.host,
                            "assignment": m.assignment.iter().map(|a| json!({
                                "topic": a.topic, "partition": a.partition,
                            })).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                        "offsets": d.offsets.iter().map(|o| json!({
                            "topic": o.topic,
                            "partition": o.partition,
                            "committed": o.committed,
                            "high_watermark": o.high_watermark,
                            "lag": o.lag,
                        })).collect::<Vec<_>>(),
                    }))?
                ),
                Format::Text => {
                    println!(
                        "GROUP {}  STATE {}  GENERATION {}  PROTOCOL {}  COORDINATOR {}\n",
                        g.group,
                        g.state,
                        g.generation,
                        if g.protocol.is_empty() {
                            "-"
                        } else {
                            &g.protocol
                        },
                        g.coordinator
                    );
                    let owner = |topic: &str, partition: u32| {
                        g.members
                            .iter()
                            .find(|m| {
                                m.assignment
                                    .iter()
                                    .any(|a| a.topic == topic && a.partition == partition)
                            })
                            .map(|m| format!("{} ({})", m.member_id, m.host))
                            .unwrap_or_else(|| "-".to_string())
                    };
                    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                    let rows: Vec<Vec<String>> = d
                        .offsets
                        .iter()
                        .map(|o| {
                            vec![
                                o.topic.clone(),
                                o.partition.to_string(),
                                dash(o.committed),
                                o.high_watermark.to_string(),
                                dash(o.lag),
                                owner(&o.topic, o.partition),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "TOPIC",
                                "PARTITION",
                                "COMMITTED",
                                "HIGH-WATERMARK",
                                "LAG",
                                "MEMBER"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
        GroupCommand::Seek {
            group,
            to,
            topic,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let to = match to {
                OffsetSpec::Start => SeekTo::Earliest,
                OffsetSpec::End => SeekTo::Latest,
                OffsetSpec::Offset(n) => SeekTo::Offset(n),
                OffsetSpec::Timestamp(ts) => SeekTo::Timestamp(ts),
            };
            let set = admin.seek_group(&group, to, topic.as_deref()).await?;
            if set.is_empty() {
                bail!("nothing to move");
            }
            let rows: Vec<Vec<String>> = set
                .iter()
                .map(|((t, p), o)| vec![t.clone(), p.to_string(), o.to_string()])
                .collect();
            println!("{}", table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows));
        }
        GroupCommand::Delete { group, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let n = admin.delete_group(&group).await?;
            println!("deleted group {group} and its {n} committed offsets");
        }
    }
    Ok(ExitCode::SUCCESS)
}
