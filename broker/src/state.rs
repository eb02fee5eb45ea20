//! The state every service and background task of one broker shares.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use strata_log::Clock;

use parking_lot::Mutex;
use std::collections::HashSet;

use crate::config::BrokerConfig;
use crate::metadata::{BrokerRecord, MetadataStore};
use crate::peers::Peers;
use crate::replicas::ReplicaManager;
use crate::replication::Fetchers;

#[derive(Debug)]
pub struct BrokerState {
    pub config: BrokerConfig,
    /// This run's registration incarnation: the broker leads only partitions whose leader
    /// was elected in it.
    pub incarnation: i64,
    /// What this run registers as: id, address, rack, incarnation and data directory id.
    pub registration: BrokerRecord,
    pub metadata: MetadataStore,
    pub replicas: ReplicaManager,
    pub clock: Arc<dyn Clock>,
    pub peers: Peers,
    /// True while this broker holds the controller election.
    pub is_controller: AtomicBool,
    /// While this broker is the controller: the election's fence, which the controller's
    /// admin writes (reassignments) check so that a deposed controller writes nothing.
    pub controller_fence: Mutex<Option<strata_coordinator::Write>>,
    /// Serializes metadata syncs.
    pub sync_lock: tokio::sync::Mutex<()>,
    /// Follower fetch streams, one per leader broker followed.
    pub fetchers: Fetchers,
    /// Leader side: the fetch sessions of the brokers following this one.
    pub fetch_sessions: crate::replication::FetchSessions,
    /// Catch-up traffic to replicas being added by reassignments (throttled ones only).
    pub replication_throttle: Mutex<crate::replication::throttle::Throttle>,
    /// Followers that caught up and should join the ISR: (topic, partition, follower).
    pub isr_joiners: Mutex<HashSet<(String, u32, i32)>>,
    /// The remote tier, when the broker has an object store.
    pub tier: Option<crate::tier::Tier>,
    /// The coordinator of the consumer groups this broker coordinates.
    pub groups: crate::groups::GroupCoordinator,
    /// Topics this broker (as the controller) is creating, deleting or growing now.
    pub topic_changes: crate::topic_changes::TopicChanges,
    /// TLS configs, users and password checks.
    pub security: Arc<crate::security::Security>,
    /// Producer ids this broker may hand out: [next, end).
    pub producer_ids: tokio::sync::Mutex<(i64, i64)>,
}
