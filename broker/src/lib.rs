//! Strata's broker: the gRPC services over partitions hosted on this node.
//!
//! - [`server`]: start (lock data dir, register, open logs), serve, clean shutdown.
//! - [`service`]: the `Log` and `Admin` gRPC services, thin translations only (the Log
//!   service's multi-partition calls in `log_many.rs`).
//! - [`admin`]: topic create, delete, describe, config changes (metadata first, replicas follow).
//! - [`replica`]: one replica: log, role, high watermark, long-poll fetch, and the pure rules
//!   of its leader state, follower truncation and producer state.
//! - [`replicas`]: the replicas this broker hosts, kept in line with the metadata.
//! - [`cluster`]: following the metadata (watch + periodic resync).
//! - [`control`]: the elected controller (places replicas, moves leadership, drives
//!   reassignments) and the pure placement, election and reassignment rules.
//! - [`capacity`]: how many replicas a broker can host (its limits), checked on topic changes.
//! - [`disk_id`]: the data directory's identity, sent in the registration.
//! - [`replication`]: between brokers: one fetch session per (follower, leader) broker pair,
//!   the leader's side (sessions, epoch queries, ISR changes) and the follower's streams.
//! - [`limits`]: the server's message sizes, deadlines, connection and stream limits.
//! - [`history`]: how much etcd history the controller keeps (compaction, pure).
//! - [`groups`]: consumer groups: coordinator, rebalances, assignment, committed offsets.
//! - [`tier`]: the remote tier: uploads, remote retention, scrub, remote reads' plumbing.
//! - [`snapshot`]: one consistent view of the cluster metadata.
//! - [`peers`]: connections to the other brokers.
//! - [`metadata`]: typed metadata over the coordinator's CAS key-value store.
//! - [`topic_config`]: topic config keys, parsing, defaults.
//! - [`topic_writes`]: the chunked steps of topic creation, deletion and new partitions.
//! - [`topic_changes`]: who runs those changes (the controller, one per topic) and how an
//!   interrupted one is finished or undone.
//! - [`metrics`]: the broker's metrics, and the scrape-time gauges over its partitions.
//! - [`metrics_http`]: the `GET /metrics` endpoint (Prometheus text format).
//! - [`error`]: the crate's error and its single mapping to a gRPC status.
//!
//! Invariant: the produce path validates and stamps batch headers only; it never decodes records.

pub mod admin;
pub mod capacity;
pub mod cluster;
pub mod config;
pub mod control;
pub mod deltas;
pub mod disk_id;
pub mod error;
pub mod groups;
pub mod history;
pub mod housekeeping;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod metrics_http;
pub mod peers;
pub mod replica;
pub mod replicas;
pub mod replication;
pub mod retention_preview;
pub mod security;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod tier;
pub mod topic_changes;
pub mod topic_config;
pub mod topic_writes;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::Broker;
pub use topic_config::TopicConfig;
