//! Consumer groups on the broker: the coordinator of each group (membership, generations,
//! rebalances, assignment) and its offsets in the metadata store.
//!
//! - [`assign`]: range, round-robin and cooperative-sticky assignment (pure).
//! - [`group`]: one group's state machine (pure; time is passed in).
//! - [`limits`]: what a join or a commit may ask for (timeouts, subscription size, metadata).
//! - [`store`]: the group's keys in etcd, every write fenced by the state key's revision.
//! - [`coordinator`]: which broker coordinates which group, the groups it holds, periodic
//!   work, and batched offset commits.
//! - [`service`]: the `Group` gRPC service.

pub mod assign;
pub mod coordinator;
pub mod group;
pub mod limits;
pub mod service;
pub mod store;

pub use coordinator::{GroupConfig, GroupCoordinator};

use std::sync::Arc;
use tokio::sync::watch;

use crate::state::BrokerState;

/// Runs the coordinator's periodic work until `stop`.
pub async fn run(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(coordinator::TICK) => {}
            _ = stop.changed() => return,
        }
        let snapshot = state.replicas.snapshot();
        state.groups.tick(&snapshot).await;
    }
}
