//! Following the cluster metadata: every broker keeps its local replicas in line with what the
//! coordinator says, reacting to change notifications and re-reading everything periodically
//! (so a missed notification costs at most one resync interval).
//!
//! Invariant: only [`BrokerState::sync`] changes which replicas exist locally, and syncs run
//! one at a time, each applying one consistent snapshot.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::error::Result;
use crate::state::BrokerState;

/// Pause before re-creating a broken watch.
const WATCH_BACKOFF: Duration = Duration::from_secs(1);

impl BrokerState {
    /// Reads the whole metadata and applies it to the local replicas.
    pub async fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let snapshot = Arc::new(self.metadata.snapshot().await?);
        self.replicas.apply(snapshot).await?;
        self.attach_remote_logs();
        self.reconcile_fetchers();
        Ok(())
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
            tokio::select! {
                changed = w.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep(resync) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = state.sync().await {
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
