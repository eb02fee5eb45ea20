//! Strata's broker: the gRPC services over partitions hosted on this node.
//!
//! - [`server`]: start (lock data dir, register, open logs), serve, clean shutdown.
//! - [`service`]: the `Log` and `Admin` gRPC services, thin translations only.
//! - [`admin`]: topic create, delete, describe, config changes (metadata first, replicas follow).
//! - [`partition`]: one replica: log, high watermark, long-poll fetch.
//! - [`replicas`]: the replicas this broker hosts.
//! - [`metadata`]: typed metadata over the coordinator's CAS key-value store.
//! - [`topic_config`]: topic config keys, parsing, defaults.
//! - [`error`]: the crate's error and its single mapping to a gRPC status.
//!
//! Invariant: the produce path validates and stamps batch headers only; it never decodes records.

pub mod admin;
pub mod config;
pub mod error;
pub mod metadata;
pub mod partition;
pub mod replicas;
pub mod server;
pub mod service;
pub mod state;
pub mod topic_config;

pub use config::BrokerConfig;
pub use error::BrokerError;
pub use server::Broker;
pub use topic_config::TopicConfig;
