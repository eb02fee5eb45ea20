//! The controller: one broker, elected through the coordinator, that places the replicas of new
//! topics, moves leadership away from brokers that died, and finishes reassignments whose
//! target replicas are in sync (`reassign::finish`, in the same pass as the elections).
//!
//! Invariants: only the holder of the controller election writes leadership changes, each as a
//! compare-and-swap on the partition's revision, bumping the leader epoch; leaders come only
//! from alive in-sync replicas (no unclean election). A broker that registers with a new
//! incarnation restarted (KIP-380): every pass treats it as not in sync (out of every ISR, its
//! leaderships moved or re-epoched) until one pass over every partition succeeded, and only
//! then is its incarnation recorded as processed. A broker that registers with another data
//! directory id than the one recorded came back on a new disk: it is not even a last copy
//! (placement::elect), and its disk id is recorded only after such a complete pass. Losing the election lease stops the loop
//! before anything else is written.

use crate::control::placement::Liveness;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::control::{placement, reassign};
use crate::error::Result;
use crate::metadata::{PartitionState, TopicPhase, CONTROLLER_ELECTION};
use crate::state::BrokerState;
use crate::topic_config;

/// How often the controller re-checks leadership without a change notification.
const RECHECK: Duration = Duration::from_secs(2);
const BACKOFF: Duration = Duration::from_secs(1);

/// Campaigns for the controller role and runs it while elected, until `stop` flips.
pub async fn run(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let store = state.metadata.store().clone();
    let me = state.config.broker_id;
    loop {
        let campaign = store.campaign(
            CONTROLLER_ELECTION,
            Bytes::from(me.to_string()),
            state.config.session_ttl,
        );
        let lease = tokio::select! {
            lease = campaign => lease,
            _ = stop.changed() => return,
        };
        let lease = match lease {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "controller campaign failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        tracing::info!(broker = me, "this broker is now the controller");
        *state.controller_fence.lock() = lease.fence();
        state.is_controller.store(true, Ordering::SeqCst);
        let mut changes = store.watch("", crate::metadata::NOT_METADATA).await.ok();
        let mut last_rebalance = tokio::time::Instant::now();
        // Sampled a dozen times per history kept: the compaction lags the target by a twelfth.
        let keep = state.config.metadata_history;
        let mut history =
            crate::history::History::new(keep, (keep / 12).min(crate::history::SAMPLE_EVERY));
        loop {
            let rebalance = last_rebalance.elapsed() >= state.config.leader_rebalance_interval;
            if rebalance {
                last_rebalance = tokio::time::Instant::now();
            }
            if lease.is_lost() {
                break;
            }
            if let Err(e) = elect_leaders(&state, rebalance, &lease).await {
                tracing::warn!(error = %e, "leader election pass failed");
            }
            if rebalance && state.config.auto_balance {
                if let Err(e) = state.auto_balance().await {
                    tracing::warn!(error = %e, "auto-balance failed");
                }
            }
            match state.metadata.topics().await {
                Ok(topics) => crate::topic_changes::finish_interrupted(&state, &topics),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the topics to end interrupted changes")
                }
            }
            compact_history(&state, &mut history).await;
            let changed = async {
                match changes.as_mut() {
                    Some(w) => w.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = lease.lost() => break,
                ok = changed => {
                    if !ok {
                        changes = None;
                    }
                }
                _ = tokio::time::sleep(RECHECK) => {
                    if changes.is_none() {
                        changes = store.watch("", crate::metadata::NOT_METADATA).await.ok();
                    }
                }
                _ = stop.changed() => {
                    state.is_controller.store(false, Ordering::SeqCst);
                    *state.controller_fence.lock() = None;
                    if let Err(e) = lease.release().await {
                        tracing::warn!(error = %e, "resigning as controller failed");
                    }
                    return;
                }
            }
        }
        state.is_controller.store(false, Ordering::SeqCst);
        *state.controller_fence.lock() = None;
        tracing::warn!(
            broker = me,
            "lost the controller election lease; campaigning again"
        );
    }
}

/// Samples the store's revision when due and compacts the history older than about an hour.
async fn compact_history(state: &BrokerState, history: &mut crate::history::History) {
    let now = state.clock.now_ms();
    if !history.due(now) {
        return;
    }
    let store = state.metadata.store();
    let target = match store.revision().await {
        Ok(revision) => history.sample(now, revision),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the metadata store's revision");
            return;
        }
    };
    if let Some(revision) = target {
        match store.compact(revision).await {
            Ok(()) => tracing::info!(revision, "compacted the metadata store's history"),
            Err(e) => {
                tracing::warn!(revision, error = %e, "compacting the metadata store's history failed")
            }
        }
    }
}

/// One pass over every partition: dead brokers leave ISRs, partitions whose leader died get a
/// new one from their alive ISR, and (when `rebalance`) preferred replicas lead again.
///
/// A pass decides from the brokers it read at its start. A pass that was held up (the process
/// frozen, etcd slow) for longer than a third of the session may be deciding from a world that
/// is gone (a broker that restarted with an empty disk could look in sync), and its election
/// lease may have expired without the keepalive noticing yet: it stops before its next write
/// and the next pass starts from fresh reads.
async fn elect_leaders(
    state: &BrokerState,
    rebalance: bool,
    lease: &strata_coordinator::Lease,
) -> Result<()> {
    let read_at = tokio::time::Instant::now();
    let stale_after = state.config.session_ttl / 3;
    let processed = state.metadata.processed_incarnations().await?;
    let disks = state.metadata.recorded_disks().await?;
    let brokers = state.metadata.brokers().await?;
    // A broker with no processed incarnation registers for the first time: it holds nothing
    // yet (or nothing placed with an older incarnation), so it is recorded as it is; only a
    // change of incarnation is a restart. Likewise its disk id (or one from a broker that
    // did not send one before): only a change of disk id is a new disk.
    for b in &brokers {
        if !processed.contains_key(&b.id) {
            state
                .metadata
                .set_processed_incarnation(b.id, b.incarnation)
                .await?;
        }
        if !b.disk_id.is_empty() && disks.get(&b.id).is_none_or(|d| d.is_empty()) {
            state.metadata.set_recorded_disk(b.id, &b.disk_id).await?;
        }
    }
    let shutting_down = state.metadata.shutting_down().await?;
    let live = Liveness::judge(&brokers, &processed, &disks, &shutting_down);
    for id in &live.new_disk {
        tracing::warn!(
            broker = id,
            "broker registered on a new data directory: it holds none of its records, and \
             leaves every ISR (a partition it was the only in-sync replica of goes offline)"
        );
    }
    let mut complete = true;
    let mut decided = Vec::new();
    for topic in state.metadata.topics().await? {
        if matches!(
            topic.value.phase,
            TopicPhase::Creating | TopicPhase::Deleting
        ) {
            continue; // not part of the cluster: see topic_changes
        }
        let name = &topic.value.name;
        let config = topic_config::resolve(state.replicas.defaults(), &topic.value.config)?;
        for (index, current) in state
            .metadata
            .partitions(name)
            .await?
            .into_iter()
            .take(topic.value.partitions as usize)
            .enumerate()
        {
            let next = placement::elect(&current.value, &live, config.unclean_leader_election)
                .or_else(|| placement::shed(&current.value, &live))
                .or_else(|| reassign::finish(&current.value, &live))
                .or_else(|| {
                    rebalance
                        .then(|| placement::prefer(&current.value, &live))
                        .flatten()
                });
            let Some(next) = next else {
                continue;
            };
            decided.push((name.clone(), index as u32, current, next));
        }
    }
    // Written a chunk per transaction: a failover of thousands of partitions takes a few
    // dozen etcd commits, not thousands.
    for chunk in decided.chunks(strata_coordinator::MAX_WRITES_PER_COMMIT - 1) {
        if lease.is_lost() || read_at.elapsed() > stale_after {
            tracing::warn!(
                held_ms = read_at.elapsed().as_millis() as u64,
                "a leader election pass was held up; starting it again from fresh reads"
            );
            return Ok(());
        }
        let updates: Vec<(&str, u32, &PartitionState, i64)> = chunk
            .iter()
            .map(|(name, index, current, next)| (name.as_str(), *index, next, current.revision))
            .collect();
        let written = state
            .metadata
            .update_partitions(&updates, lease.fence())
            .await?;
        for ((name, index, current, next), written) in chunk.iter().zip(written) {
            complete &= written;
            if written {
                log_decision(name, *index, &current.value, next, &live);
            }
        }
    }
    if complete {
        // The incarnation before the disk id: a pass stopped between the two still sees the
        // new disk (and treats the broker as holding nothing) the next time.
        for id in &live.restarted {
            let incarnation = live.incarnation(*id);
            state
                .metadata
                .set_processed_incarnation(*id, incarnation)
                .await?;
            tracing::info!(
                broker = id,
                incarnation,
                "processed a broker restart: it is out of every ISR until it catches up"
            );
        }
        for b in brokers.iter().filter(|b| live.new_disk.contains(&b.id)) {
            state.metadata.set_recorded_disk(b.id, &b.disk_id).await?;
            tracing::info!(broker = b.id, disk_id = %b.disk_id, "processed a broker's new data directory");
        }
    }
    Ok(())
}

/// The log line (and election count) of one partition change the pass wrote.
fn log_decision(
    name: &str,
    index: u32,
    was: &PartitionState,
    next: &PartitionState,
    live: &Liveness,
) {
    if let (Some(r), None) = (&was.reassigning, &next.reassigning) {
        if next.leader != was.leader {
            crate::metrics::LEADER_ELECTIONS.inc();
        }
        tracing::info!(topic = %name, partition = index, replicas = ?next.replicas, removed = ?r.removing, from = was.leader, leader = next.leader, epoch = next.leader_epoch, "reassignment finished");
    } else if next.leader != was.leader && live.shutting_down.contains(&was.leader) {
        crate::metrics::LEADER_ELECTIONS.inc();
        tracing::info!(topic = %name, partition = index, from = was.leader, leader = next.leader, epoch = next.leader_epoch, "controlled shutdown: moved the leadership to another in-sync replica");
    } else if next.leader < 0 && next.isr.is_empty() {
        tracing::warn!(topic = %name, partition = index, "partition offline: its only in-sync replica came back on a new disk; only unclean.leader.election.enable=true brings it back (from a replica that may lack acknowledged records)");
    } else if next.leader < 0 {
        tracing::warn!(topic = %name, partition = index, isr = ?next.isr, "partition offline: no in-sync replica is alive");
    } else if next.leader != was.leader {
        crate::metrics::LEADER_ELECTIONS.inc();
        tracing::info!(topic = %name, partition = index, from = was.leader, leader = next.leader, epoch = next.leader_epoch, "elected a new leader");
    } else if next.leader_epoch != was.leader_epoch {
        tracing::info!(topic = %name, partition = index, leader = next.leader, epoch = next.leader_epoch, "re-elected a restarted leader at a new epoch");
    } else {
        tracing::info!(topic = %name, partition = index, isr = ?next.isr, "removed dead or restarted brokers from the ISR");
    }
}
