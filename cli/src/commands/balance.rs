//! `strata cluster drain` and `strata cluster balance`: plans made by the brokers (rack-aware,
//! fewest moves), printed as a table or as a Kafka reassignment plan, and started unless
//! `--dry-run`.

use serde_json::json;
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;
use strata_client::Admin;
use strata_proto::ReassignmentPlan;

use crate::output::{table, Format};
use crate::ConnectArgs;

/// `strata cluster drain BROKER`.
pub async fn drain(
    broker: i32,
    wait: Option<Duration>,
    dry_run: bool,
    throttle: Option<usize>,
    format: Format,
    connect: ConnectArgs,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(connect.client_config()?).await?;
    let plan = admin
        .drain_broker(broker, dry_run, throttle.unwrap_or(0) as u64)
        .await?;
    print_plan(&plan, format, &format!("drain broker {broker}"))?;
    if let (Some(within), true) = (wait, plan.started) {
        if tokio::time::timeout(within, wait_for_moves(&admin, &plan))
            .await
            .is_err()
        {
            anyhow::bail!(
                "the drain of broker {broker} did not finish within {within:?}; its moves go on \
                 (strata cluster reassignments shows them)"
            );
        }
        let hosted = hosted_by(&admin, broker).await?;
        if hosted > 0 {
            anyhow::bail!(
                "broker {broker} still hosts {hosted} replicas (new topics may have been placed \
                 on it meanwhile); drain it again"
            );
        }
        println!("Broker {broker} hosts no replica and leads nothing; it can be stopped for good.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata cluster balance`.
pub async fn balance(
    dry_run: bool,
    throttle: Option<usize>,
    format: Format,
    connect: ConnectArgs,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(connect.client_config()?).await?;
    let plan = admin
        .balance_cluster(dry_run, throttle.unwrap_or(0) as u64)
        .await?;
    print_plan(&plan, format, "balance the cluster")?;
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &ReassignmentPlan, format: Format, what: &str) -> anyhow::Result<()> {
    match format {
        // Kafka's reassignment JSON: `strata reassign --plan FILE --execute` takes it.
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": 1,
                "partitions": plan.moves.iter().map(|m| json!({
                    "topic": m.topic,
                    "partition": m.partition,
                    "replicas": m.to,
                })).collect::<Vec<_>>(),
            }))?
        ),
        Format::Text if plan.moves.is_empty() => {
            println!("Nothing to move to {what}: every replica is where it should be.")
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = plan
                .moves
                .iter()
                .map(|m| {
                    vec![
                        m.topic.clone(),
                        m.partition.to_string(),
                        ids(&m.from),
                        ids(&m.to),
                    ]
                })
                .collect();
            println!("{}", table(&["TOPIC", "PARTITION", "FROM", "TO"], &rows));
            if plan.started {
                println!(
                    "\nStarted {} reassignments to {what}; follow them with `strata cluster \
                     reassignments`.",
                    plan.moves.len()
                );
            } else {
                println!(
                    "\nDry run: nothing was moved. `--format json` prints this plan for \
                     `strata reassign --plan FILE --execute`."
                );
            }
        }
    }
    Ok(())
}

/// Waits until none of the plan's partitions is being reassigned, printing what is left.
async fn wait_for_moves(admin: &Admin, plan: &ReassignmentPlan) -> anyhow::Result<()> {
    let planned: BTreeSet<(String, u32)> = plan
        .moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    let mut last = usize::MAX;
    loop {
        let moving = admin.list_reassignments(vec![]).await?.partitions;
        let left: Vec<_> = moving
            .iter()
            .filter(|m| planned.contains(&(m.topic.clone(), m.partition)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if left.len() != last {
            let bytes: u64 = left
                .iter()
                .flat_map(|m| m.catching_up.iter().map(|c| c.bytes_behind))
                .sum();
            eprintln!(
                "{} of {} partitions still moving (about {bytes} bytes left)...",
                left.len(),
                planned.len()
            );
            last = left.len();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How many partition replicas broker `broker` hosts, by the metadata.
async fn hosted_by(admin: &Admin, broker: i32) -> anyhow::Result<usize> {
    Ok(admin
        .metadata(vec![])
        .await?
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.replicas.contains(&broker))
        .count())
}

fn ids(ids: &[i32]) -> String {
    ids.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
