//! Moving partitions between brokers: `strata partition reassign`, `strata reassign --plan`
//! (Kafka's JSON reassignment format, so `kafka-reassign-partitions` habits carry over) and
//! `strata cluster reassignments`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use strata_client::Admin;
use strata_proto::PartitionReassignment;

use crate::output::{table, Format};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum PartitionCommand {
    /// Move one partition to new replicas (the first becomes the preferred leader): the
    /// controller adds the new replicas, lets them catch up, moves leadership and drops the
    /// old ones.
    Reassign {
        topic: String,
        #[arg(long)]
        partition: u32,
        /// The new replicas, broker ids separated by commas.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
        /// Catch-up traffic to the new replicas, bytes per second per leader (64MiB, 10MB...).
        #[arg(long, value_parser = crate::parse::size)]
        throttle: Option<usize>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// `strata reassign --plan FILE (--execute | --verify | --cancel)`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["execute", "verify", "cancel"])))]
pub struct ReassignArgs {
    /// The plan: {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}
    #[arg(long)]
    plan: PathBuf,
    /// Start the moves (the current assignment is printed first, as a plan to roll back to).
    #[arg(long)]
    execute: bool,
    /// Say which moves are complete; exits 0 only when all are, 3 while some are under way,
    /// 1 when a partition is neither at nor moving to its planned replicas.
    #[arg(long)]
    verify: bool,
    /// Cancel the plan's moves still under way: back to their original replicas.
    #[arg(long)]
    cancel: bool,
    /// With --execute: catch-up bytes per second per leader broker (64MiB, 10MB...); a move
    /// already under way keeps its throttle when none is given.
    #[arg(long, value_parser = crate::parse::size, requires = "execute")]
    throttle: Option<usize>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// A plan in Kafka's reassignment JSON format (`log_dirs` is accepted and ignored).
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    version: u32,
    partitions: Vec<PlanEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanEntry {
    topic: String,
    partition: u32,
    replicas: Vec<i32>,
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    log_dirs: Vec<String>,
}

pub async fn partition(cmd: PartitionCommand) -> anyhow::Result<ExitCode> {
    let PartitionCommand::Reassign {
        topic,
        partition,
        replicas,
        throttle,
        connect,
    } = cmd;
    let admin = Admin::connect(connect.client_config()?).await?;
    let moves = vec![(topic, partition, replicas)];
    let answer = admin
        .reassign_partitions(&moves, throttle.unwrap_or(0) as u64)
        .await?;
    print_started(&answer.partitions);
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(args: ReassignArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.plan)
        .map_err(|e| anyhow::anyhow!("cannot read the plan {}: {e}", args.plan.display()))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the plan {} is not a reassignment plan ({e}); expected \
             {{\"version\":1,\"partitions\":[{{\"topic\":\"t\",\"partition\":0,\"replicas\":[1,2,3]}}]}}",
            args.plan.display()
        )
    })?;
    if plan.version != 1 {
        anyhow::bail!(
            "the plan {} has version {}; only version 1 is known",
            args.plan.display(),
            plan.version
        );
    }
    if plan.partitions.is_empty() {
        anyhow::bail!("the plan {} names no partition", args.plan.display());
    }
    let admin = Admin::connect(args.connect.client_config()?).await?;
    if args.execute {
        let mut current = current_assignment(&admin, &plan).await?;
        // A partition moving now rolls back to where its move started.
        let moving = in_progress(&admin, &plan).await?;
        for p in &mut current.partitions {
            if let Some(m) = moving.get(&(p.topic.clone(), p.partition)) {
                p.replicas = original(m);
            }
        }
        println!(
            "Current replica assignment (save it to roll back with --plan FILE --execute):\n{}\n",
            serde_json::to_string(&current)?
        );
        let moves: Vec<(String, u32, Vec<i32>)> = plan
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition, p.replicas))
            .collect();
        let answer = admin
            .reassign_partitions(&moves, args.throttle.unwrap_or(0) as u64)
            .await?;
        print_started(&answer.partitions);
        return Ok(ExitCode::SUCCESS);
    }
    let moving = in_progress(&admin, &plan).await?;
    if args.cancel {
        let cancel: Vec<(String, u32)> = plan
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .filter(|k| moving.contains_key(k))
            .collect();
        if cancel.is_empty() {
            println!("No partition of the plan is being reassigned; nothing to cancel.");
            return Ok(ExitCode::SUCCESS);
        }
        // One partition at a time, as Kafka reports: one that cannot be cancelled (or that
        // finished meanwhile) does not keep the others moving.
        let mut failed = 0;
        for key in &cancel {
            match admin.cancel_reassignments(std::slice::from_ref(key)).await {
                Ok(answer) => {
                    for p in &answer.partitions {
                        println!(
                            "Cancelled the reassignment of {}/{}: replicas {} (leader {}).",
                            p.topic,
                            p.partition,
                            ids(&p.replicas),
                            p.leader
                        );
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {}/{}: {e}", key.0, key.1);
                }
            }
        }
        return Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    // --verify
    let current = current_assignment(&admin, &plan).await?;
    let now: BTreeMap<(String, u32), Vec<i32>> = current
        .partitions
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.replicas))
        .collect();
    let (mut done, mut moving_count, mut wrong) = (0, 0, 0);
    for p in &plan.partitions {
        let key = (p.topic.clone(), p.partition);
        let name = format!("{}/{}", p.topic, p.partition);
        match moving.get(&key) {
            Some(m) if m.target == p.replicas => {
                moving_count += 1;
                let left: u64 = m.catching_up.iter().map(|c| c.bytes_behind).sum();
                println!(
                    "Reassignment of {name} is still in progress (adding {}, about {left} bytes left).",
                    ids(&m.adding)
                );
            }
            Some(m) => {
                wrong += 1;
                println!(
                    "Reassignment of {name} is moving to {} instead of the planned {}.",
                    ids(&m.target),
                    ids(&p.replicas)
                );
            }
            None if now.get(&key) == Some(&p.replicas) => {
                done += 1;
                println!("Reassignment of {name} is complete.");
            }
            None => {
                wrong += 1;
                println!(
                    "Reassignment of {name} is not under way and its replicas are {}, not the planned {}.",
                    now.get(&key).map_or("unknown".to_string(), |r| ids(r)),
                    ids(&p.replicas)
                );
            }
        }
    }
    println!("{done} complete, {moving_count} in progress, {wrong} not as planned.");
    Ok(if wrong > 0 {
        ExitCode::FAILURE
    } else if moving_count > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// `strata cluster reassignments`.
pub async fn list(format: Format, connect: ConnectArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(connect.client_config()?).await?;
    let moving = admin.list_reassignments(vec![]).await?.partitions;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "reassignments": moving.iter().map(|m| json!({
                    "topic": m.topic,
                    "partition": m.partition,
                    "replicas": m.replicas,
                    "from": original(m),
                    "to": m.target,
                    "adding": m.adding,
                    "removing": m.removing,
                    "leader": m.leader,
                    "isr": m.isr,
                    "throttle_bytes_per_sec": m.throttle_bytes_per_sec,
                    "started_ms": m.started_ms,
                    "bytes_left": m.catching_up.iter().map(|c| c.bytes_behind).sum::<u64>(),
                    "offsets_left": m.catching_up.iter().map(|c| c.offsets_behind).sum::<i64>(),
                    "catching_up": m.catching_up.iter().map(|c| json!({
                        "broker": c.broker,
                        "log_end_offset": c.log_end_offset,
                        "offsets_behind": c.offsets_behind,
                        "bytes_behind": c.bytes_behind,
                        "in_sync": c.in_sync,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }))?
        ),
        Format::Text if moving.is_empty() => println!("No reassignment in progress."),
        Format::Text => {
            let rows: Vec<Vec<String>> = moving
                .iter()
                .map(|m| {
                    let bytes: u64 = m.catching_up.iter().map(|c| c.bytes_behind).sum();
                    let offsets: i64 = m.catching_up.iter().map(|c| c.offsets_behind).sum();
                    vec![
                        m.topic.clone(),
                        m.partition.to_string(),
                        ids(&original(m)),
                        ids(&m.target),
                        ids(&m.isr),
                        bytes.to_string(),
                        offsets.to_string(),
                        if m.throttle_bytes_per_sec == 0 {
                            "-".to_string()
                        } else {
                            format!("{} B/s", m.throttle_bytes_per_sec)
                        },
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "TOPIC",
                        "PARTITION",
                        "FROM",
                        "TO",
                        "ISR",
                        "BYTES LEFT",
                        "OFFSETS LEFT",
                        "THROTTLE"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The replicas before the move: the current ones without those being added.
fn original(m: &PartitionReassignment) -> Vec<i32> {
    m.replicas
        .iter()
        .copied()
        .filter(|b| !m.adding.contains(b))
        .collect()
}

fn print_started(partitions: &[PartitionReassignment]) {
    for p in partitions {
        if p.in_progress {
            println!(
                "Reassigning {}/{} from {} to {} (adding {}, removing {}); follow it with \
                 `strata cluster reassignments`.",
                p.topic,
                p.partition,
                ids(&original(p)),
                ids(&p.target),
                ids(&p.adding),
                ids(&p.removing)
            );
        } else {
            println!(
                "{}/{} already has the replicas {}; nothing to move.",
                p.topic,
                p.partition,
                ids(&p.replicas)
            );
        }
    }
}

/// The plan's partitions as they are assigned now, in the plan's format.
async fn current_assignment(admin: &Admin, plan: &Plan) -> anyhow::Result<Plan> {
    let mut topics: Vec<String> = plan.partitions.iter().map(|p| p.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let metadata = admin.metadata(topics).await?;
    let mut partitions = Vec::new();
    for p in &plan.partitions {
        let info = metadata
            .topics
            .iter()
            .find(|t| t.name == p.topic)
            .ok_or_else(|| anyhow::anyhow!("topic {:?} does not exist", p.topic))?
            .partitions
            .iter()
            .find(|i| i.partition == p.partition)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "partition {} of topic {:?} does not exist",
                    p.partition,
                    p.topic
                )
            })?;
        partitions.push(PlanEntry {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: info.replicas.clone(),
            log_dirs: Vec::new(),
        });
    }
    Ok(Plan {
        version: 1,
        partitions,
    })
}

/// The plan's partitions that are being reassigned now.
async fn in_progress(
    admin: &Admin,
    plan: &Plan,
) -> anyhow::Result<BTreeMap<(String, u32), PartitionReassignment>> {
    let mut topics: Vec<String> = plan.partitions.iter().map(|p| p.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    Ok(admin
        .list_reassignments(topics)
        .await?
        .partitions
        .into_iter()
        .map(|m| ((m.topic.clone(), m.partition), m))
        .collect())
}

fn ids(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
