//! The `idle` scenario: what partitions cost when nothing happens. Waits until every partition
//! of the bench topic has a full ISR (timing it from the bench's start, topic creation
//! included), lets the brokers settle, then samples the CPU time of each `--broker-pid`
//! process over `--duration` with no load, and reports it per broker and per 1,000 partitions
//! with each broker's open file descriptors and resident memory.

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

use super::report::{LatencyKind, Outcome};
use super::Plan;

/// Time given to the last ISR writes and metadata syncs before the sample starts.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for every ISR to fill.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// Waits until every partition of the topic has a leader and a full ISR.
pub async fn wait_ready(plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let partitions = plan.describe_partitions().await?;
        let waiting = partitions
            .iter()
            .filter(|p| p.leader < 0 || p.isr.len() < p.replicas.len())
            .count();
        if waiting == 0 && !partitions.is_empty() {
            return Ok(());
        }
        if started.elapsed() > READY_WITHIN {
            bail!(
                "{waiting} of {} partitions of {:?} still lack a leader or a full ISR after {READY_WITHIN:?}",
                partitions.len(),
                plan.topic
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// User and system CPU seconds a process has used.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat: did the broker exit?"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("an unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("a short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count())
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// Measures the idle brokers; `started` is when the bench began (before the topic existed).
pub async fn run(
    plan: &Plan,
    pids: &[(String, u32)],
    duration: Duration,
    started: Instant,
) -> anyhow::Result<Outcome> {
    wait_ready(plan).await?;
    let ready = started.elapsed();
    let partitions = plan.partitions_of_topic().await?.len();
    tokio::time::sleep(SETTLE).await;
    let before = pids
        .iter()
        .map(|(_, pid)| cpu_seconds(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(duration).await;
    let seconds = t0.elapsed().as_secs_f64();
    let (mut cpu, mut fds, mut rss) = (Map::new(), Map::new(), Map::new());
    let mut total = 0.0;
    for ((name, pid), before) in pids.iter().zip(before) {
        let percent = (cpu_seconds(*pid)? - before) / seconds * 100.0;
        total += percent;
        cpu.insert(name.clone(), json!(percent));
        fds.insert(name.clone(), json!(open_fds(*pid)?));
        rss.insert(name.clone(), json!(rss_bytes(*pid)?));
    }
    let mut extra = Map::new();
    extra.insert("partitions".into(), json!(partitions));
    extra.insert("ready_seconds".into(), json!(ready.as_secs_f64()));
    extra.insert("idle_cpu_percent".into(), Value::Object(cpu));
    extra.insert("idle_cpu_percent_total".into(), json!(total));
    extra.insert(
        "idle_cpu_percent_per_1000_partitions".into(),
        json!(total / (partitions.max(1) as f64 / 1000.0)),
    );
    extra.insert("open_fds".into(), Value::Object(fds));
    extra.insert("rss_bytes".into(), Value::Object(rss));
    Ok(Outcome {
        records: 0,
        bytes: 0,
        seconds,
        latencies_ns: Vec::new(),
        latency: LatencyKind::None,
        extra,
    })
}
