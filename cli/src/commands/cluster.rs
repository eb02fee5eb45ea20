//! `strata cluster info`: controller, brokers (alive or not), partition health; `strata
//! cluster reassignments`: the partitions being moved; `drain` and `balance` (in
//! `commands::balance`).

use serde_json::json;
use std::process::ExitCode;
use strata_client::Admin;

use crate::output::{table, Format};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the controller, the brokers and partition health.
    Info {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Move every replica and leadership off a broker (then it can be stopped for good).
    Drain {
        broker: i32,
        /// Wait until every move has finished.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (the moves go on) after this long.
        #[arg(long, default_value = "1h", value_parser = crate::parse::duration, requires = "wait")]
        timeout: std::time::Duration,
        /// Print the plan; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Catch-up bytes per second per leader broker (64MiB, 10MB...).
        #[arg(long, value_parser = crate::parse::size)]
        throttle: Option<usize>,
        /// `json` prints the plan in Kafka's reassignment format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Even out replica and leader counts across the live brokers (rack-aware, fewest moves).
    Balance {
        /// Print the plan; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Catch-up bytes per second per leader broker (64MiB, 10MB...).
        #[arg(long, value_parser = crate::parse::size)]
        throttle: Option<usize>,
        /// `json` prints the plan in Kafka's reassignment format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Partitions being reassigned: from, to, ISR, bytes and offsets left.
    Reassignments {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    let (format, connect) = match cmd {
        ClusterCommand::Info { format, connect } => (format, connect),
        ClusterCommand::Reassignments { format, connect } => {
            return crate::commands::reassign::list(format, connect).await
        }
        ClusterCommand::Drain {
            broker,
            wait,
            timeout,
            dry_run,
            throttle,
            format,
            connect,
        } => {
            return crate::commands::balance::drain(
                broker,
                wait.then_some(timeout),
                dry_run,
                throttle,
                format,
                connect,
            )
            .await
        }
        ClusterCommand::Balance {
            dry_run,
            throttle,
            format,
            connect,
        } => return crate::commands::balance::balance(dry_run, throttle, format, connect).await,
    };
    let admin = Admin::connect(connect.client_config()?).await?;
    let info = admin.cluster_info().await?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "cluster": info.cluster,
                "controller": info.controller,
                "brokers": info.brokers.iter().map(|b| json!({
                    "id": b.id,
                    "address": b.address,
                    "rack": if b.rack.is_empty() { serde_json::Value::Null } else { json!(b.rack) },
                    "alive": b.alive,
                })).collect::<Vec<_>>(),
                "partitions": info.partitions,
                "offline_partitions": info.offline_partitions,
                "under_replicated_partitions": info.under_replicated_partitions,
            }))?
        ),
        Format::Text => {
            let rows: Vec<Vec<String>> = info
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        format!(
                            "{}{}",
                            b.id,
                            if b.id == info.controller {
                                " (controller)"
                            } else {
                                ""
                            }
                        ),
                        b.address.clone(),
                        if b.rack.is_empty() {
                            "-".into()
                        } else {
                            b.rack.clone()
                        },
                        if b.alive { "alive" } else { "dead" }.to_string(),
                    ]
                })
                .collect();
            println!(
                "CLUSTER       {}\nCONTROLLER    {}\nPARTITIONS    {} ({} offline, {} under-replicated)\n\n{}",
                info.cluster,
                if info.controller < 0 { "none".to_string() } else { info.controller.to_string() },
                info.partitions,
                info.offline_partitions,
                info.under_replicated_partitions,
                table(&["BROKER", "ADDRESS", "RACK", "STATE"], &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
