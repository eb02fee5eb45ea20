//! The controller: one broker, elected through the coordinator, that places the replicas of new
//! topics and moves leadership away from brokers that died.
//!
//! Invariants: only the holder of the controller election writes leadership changes, each as a
//! compare-and-swap on the partition's revision, bumping the leader epoch; leaders come only
//! from alive in-sync replicas (no unclean election). Losing the election lease stops the loop
//! before anything else is written.

use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::error::Result;
use crate::metadata::CONTROLLER_ELECTION;
use crate::placement;
use crate::state::BrokerState;

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
        state.is_controller.store(true, Ordering::SeqCst);
        let mut changes = store.watch("").await.ok();
        loop {
            if let Err(e) = elect_leaders(&state).await {
                tracing::warn!(error = %e, "leader election pass failed");
            }
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
                        changes = store.watch("").await.ok();
                    }
                }
                _ = stop.changed() => {
                    state.is_controller.store(false, Ordering::SeqCst);
                    if let Err(e) = lease.release().await {
                        tracing::warn!(error = %e, "resigning as controller failed");
                    }
                    return;
                }
            }
        }
        state.is_controller.store(false, Ordering::SeqCst);
        tracing::warn!(
            broker = me,
            "lost the controller election lease; campaigning again"
        );
    }
}

/// One pass: every partition whose leader is gone gets a new one from its alive ISR.
async fn elect_leaders(state: &BrokerState) -> Result<()> {
    let alive: BTreeSet<i32> = state
        .metadata
        .brokers()
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    for topic in state.metadata.topics().await? {
        let name = &topic.value.name;
        for (index, current) in state
            .metadata
            .partitions(name)
            .await?
            .into_iter()
            .enumerate()
        {
            let Some(next) = placement::elect(&current.value, &alive) else {
                continue;
            };
            if state
                .metadata
                .update_partition(name, index as u32, &next, current.revision)
                .await?
            {
                if next.leader < 0 {
                    tracing::warn!(topic = %name, partition = index, isr = ?next.isr, "partition offline: no in-sync replica is alive");
                } else {
                    tracing::info!(topic = %name, partition = index, leader = next.leader, epoch = next.leader_epoch, "elected a new leader");
                }
            }
        }
    }
    Ok(())
}
