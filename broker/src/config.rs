//! The broker's configuration. The CLI fills it from flags, `STRATA_*` variables and files.

use std::path::PathBuf;
use std::time::Duration;

use crate::topic_config::TopicConfig;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker_id: i32,
    pub data_dir: PathBuf,
    /// The address clients are told to use for this broker (`host:port`).
    pub advertised_address: String,
    pub rack: Option<String>,
    /// Cluster-wide defaults a topic's overrides apply to.
    pub topic_defaults: TopicConfig,
    /// How long a retention held back (by the high watermark, or by segments the remote tier
    /// does not hold yet) waits before its partition is looked at again.
    pub retention_check_interval: Duration,
    /// How often housekeeping visits the partitions that changed or have a chore due (a roll
    /// by segment.ms, a flush by flush.ms, retention, producer-id expiry).
    pub housekeeping_interval: Duration,
    /// Largest request (and so produce payload) the gRPC server accepts.
    pub max_request_bytes: usize,
    /// Largest fetch answer, whatever the request asks.
    pub max_fetch_bytes: usize,
    /// Longest long-poll a fetch may ask for.
    pub max_fetch_wait: Duration,
    /// Most partitions one topic may have.
    pub max_partitions_per_topic: u32,
    /// Most partition replicas this broker hosts (lowered at start to what its open-files
    /// and memory-map limits allow: `capacity`).
    pub max_partitions_per_broker: u32,
    /// Most connections the broker holds at once (clients and peers alike).
    pub max_connections: usize,
    /// Lease of the broker's registration and of the controller election: a broker that dies
    /// is noticed after this long.
    pub session_ttl: Duration,
    /// How often the whole metadata is re-read even when the watch reported nothing: a safety
    /// net, since changes arrive by the watch (partition states as deltas).
    pub metadata_resync_interval: Duration,
    /// A follower not caught up for this long leaves the ISR (replica.lag.time.max.ms).
    pub replica_lag_time_max: Duration,
    /// How often the controller moves leadership back to preferred replicas.
    pub leader_rebalance_interval: Duration,
    /// The controller runs `cluster balance` on its own at `leader_rebalance_interval` when
    /// no reassignment is under way.
    pub auto_balance: bool,
    /// How long a stopping broker waits for its leaderships to move (0: no controlled
    /// shutdown).
    pub controlled_shutdown_timeout: Duration,
    /// A producer id not heard from for this long is forgotten by each partition
    /// (producer.id.expiration.ms).
    pub producer_id_expiration: Duration,
    /// How much of etcd's history the controller keeps before compacting it (about an hour).
    pub metadata_history: Duration,
    /// The object store of the remote tier; `None`: no tiered storage.
    pub tier: Option<crate::tier::TierConfig>,
    /// Consumer-group limits and defaults.
    pub groups: crate::groups::GroupConfig,
    /// TLS, authentication and the super users.
    pub security: crate::security::SecurityConfig,
}

impl BrokerConfig {
    pub fn new(
        broker_id: i32,
        data_dir: impl Into<PathBuf>,
        advertised_address: impl Into<String>,
    ) -> Self {
        BrokerConfig {
            broker_id,
            data_dir: data_dir.into(),
            advertised_address: advertised_address.into(),
            rack: None,
            topic_defaults: TopicConfig::default(),
            retention_check_interval: Duration::from_secs(30),
            housekeeping_interval: Duration::from_secs(1),
            max_request_bytes: 64 * 1024 * 1024,
            max_fetch_bytes: 64 * 1024 * 1024,
            max_fetch_wait: Duration::from_secs(30),
            max_partitions_per_topic: 10_000,
            max_partitions_per_broker: crate::capacity::DEFAULT_MAX_PARTITIONS,
            max_connections: crate::limits::MAX_CONNECTIONS,
            session_ttl: Duration::from_secs(6),
            metadata_resync_interval: Duration::from_secs(30),
            replica_lag_time_max: Duration::from_secs(30),
            leader_rebalance_interval: Duration::from_secs(30),
            auto_balance: false,
            controlled_shutdown_timeout: Duration::from_secs(15),
            producer_id_expiration: Duration::from_millis(
                crate::replica::producers::DEFAULT_EXPIRATION_MS as u64,
            ),
            metadata_history: crate::history::KEEP,
            tier: None,
            groups: Default::default(),
            security: Default::default(),
        }
    }

    /// Where partition logs live.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}
