//! The state every service of one broker shares.

use std::sync::Arc;
use strata_log::Clock;

use crate::config::BrokerConfig;
use crate::metadata::MetadataStore;
use crate::replicas::ReplicaManager;

#[derive(Debug)]
pub struct BrokerState {
    pub config: BrokerConfig,
    pub metadata: MetadataStore,
    pub replicas: ReplicaManager,
    pub clock: Arc<dyn Clock>,
}
