//! The state every service and background task of one broker shares.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use strata_log::Clock;

use crate::config::BrokerConfig;
use crate::metadata::MetadataStore;
use crate::peers::Peers;
use crate::replicas::ReplicaManager;

#[derive(Debug)]
pub struct BrokerState {
    pub config: BrokerConfig,
    pub metadata: MetadataStore,
    pub replicas: ReplicaManager,
    pub clock: Arc<dyn Clock>,
    pub peers: Peers,
    /// True while this broker holds the controller election.
    pub is_controller: AtomicBool,
    /// Serializes metadata syncs.
    pub sync_lock: tokio::sync::Mutex<()>,
}
