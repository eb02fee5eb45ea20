//! The `replay` scenario: a consumer reads a topic from offset 0 after local retention has
//! moved every sealed segment to the object store, so nearly every byte comes from the remote
//! tier (footer, ranged frame GETs, the chunk cache) through the ordinary fetch call.

use anyhow::bail;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use strata_client::Admin;

use super::consume;
use super::report::Outcome;
use super::Plan;

/// Topic config for a replay topic the bench creates: tiered, small segments (so all but the
/// active one can move), and local retention that keeps nothing already uploaded.
pub fn topic_defaults() -> HashMap<String, String> {
    [
        ("remote.storage.enable", "true"),
        ("segment.bytes", "2097152"),
        ("local.retention.bytes", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Waits until every partition keeps only its active segment locally: the sealed ones were
/// uploaded (local retention never deletes what the remote tier lacks) and then dropped.
pub async fn wait_for_tiering(plan: &Plan, limit: Duration) -> anyhow::Result<()> {
    let admin = Admin::connect(plan.client.clone()).await?;
    let started = Instant::now();
    loop {
        let status = admin.tier_status(&plan.topic).await?;
        if !status.remote_storage_enabled {
            bail!(
                "topic {:?} does not have remote.storage.enable=true; replay reads from the object store",
                plan.topic
            );
        }
        let waiting: Vec<u32> = status
            .partitions
            .iter()
            .filter(|p| p.local_segments > 1)
            .map(|p| p.partition)
            .collect();
        if waiting.is_empty() && !status.partitions.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!(
                "after {limit:?} partitions {waiting:?} of {:?} still hold sealed segments locally; \
                 is local.retention.bytes above one segment, or the broker's --retention-check-interval long (it defaults to 30s)?",
                plan.topic
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads the whole topic from its start; says how many records came from the remote tier.
pub async fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    let admin = Admin::connect(plan.client.clone()).await?;
    let status = admin.tier_status(&plan.topic).await?;
    let remote: i64 = status
        .partitions
        .iter()
        .map(|p| (p.local_log_start_offset - p.log_start_offset).max(0))
        .sum();
    let mut outcome = consume::read_all(plan).await?;
    outcome.extra.insert("remote_records".into(), json!(remote));
    Ok(outcome)
}
