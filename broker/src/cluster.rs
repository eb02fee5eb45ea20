//! Following the cluster metadata: every broker keeps its local replicas in line with what the
//! coordinator says. The changes its watch hands over are applied as deltas where they are
//! partition states ([`crate::deltas`]); any other change, a watch that lost changes, and the
//! periodic resync re-read everything (so a missed notification costs at most one resync
//! interval).
//!
//! Invariant: only [`BrokerState::sync`] changes which replicas exist locally, and syncs and
//! deltas run one at a time (under `sync_lock`), each applying one consistent snapshot.

use std::sync::Arc;
use std::time::Duration;
use strata_coordinator::{Changes, Event};
use tokio::sync::watch;

use crate::deltas::{classify, with_changes, Delta};
use crate::error::Result;
use crate::state::BrokerState;

/// Pause before re-creating a broken watch.
const WATCH_BACKOFF: Duration = Duration::from_secs(1);

impl BrokerState {
    /// Reads the whole metadata and applies it to the local replicas.
    pub async fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock().await;
        crate::metrics::METADATA_READS.inc();
        let snapshot = Arc::new(self.metadata.snapshot().await?);
        self.replicas.apply(snapshot).await?;
        self.attach_remote_logs();
        self.reconcile_fetchers();
        Ok(())
    }

    /// Applies watched changes: partition states as deltas, anything else by a re-read.
    pub async fn apply_changes(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let reason = {
            let _one_at_a_time = self.sync_lock.lock().await;
            let snapshot = self.replicas.snapshot();
            match classify(&snapshot, self.config.broker_id, events) {
                Delta::States(changes) if changes.is_empty() => return Ok(()), // all stale
                Delta::States(changes) => {
                    let mut moved = false;
                    for c in &changes {
                        if let Some(p) = self.replicas.local(&c.topic, c.index) {
                            let before = p.leader_and_epoch();
                            p.set_state(c.state.clone(), c.revision);
                            moved |= p.leader_and_epoch() != before;
                        }
                    }
                    crate::metrics::METADATA_DELTAS.add(changes.len() as u64);
                    self.replicas.publish(with_changes(&snapshot, &changes));
                    if moved {
                        self.reconcile_fetchers();
                    }
                    return Ok(());
                }
                Delta::Resync(reason) => reason,
            }
        };
        tracing::debug!(%reason, "re-reading the metadata");
        self.sync().await
    }
}

/// Runs until `stop` flips: watch, sync on every change and every resync interval.
pub async fn follow_metadata(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let store = state.metadata.store().clone();
    let resync = state.config.metadata_resync_interval;
    let mut failing = false;
    loop {
        let mut changes = match store.watch("", crate::metadata::NOT_METADATA).await {
            Ok(w) => Some(w),
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot watch metadata; serving from the last known state");
                }
                failing = true;
                None
            }
        };
        // Whatever changed while there was no watch.
        match state.sync().await {
            Ok(()) if failing => {
                tracing::info!("metadata reachable again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read metadata; serving from the last known state");
                }
                failing = true;
            }
        }
        let Some(w) = changes.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(WATCH_BACKOFF) => continue,
                _ = stop.changed() => return,
            }
        };
        loop {
            let applied = tokio::select! {
                changes = w.changes() => match changes {
                    Ok(Changes::Events(events)) => state.apply_changes(events).await,
                    Ok(Changes::Unknown) => state.sync().await,
                    Err(_) => break,
                },
                _ = tokio::time::sleep(resync) => state.sync().await,
                _ = stop.changed() => return,
            };
            if let Err(e) = applied {
                tracing::warn!(error = %e, "metadata sync failed");
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_BACKOFF) => {}
            _ = stop.changed() => return,
        }
    }
}
