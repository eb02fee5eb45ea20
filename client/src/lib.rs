//! Strata's Rust client: a batching [`Producer`], a [`Consumer`] of assigned partitions and an
//! [`Admin`] handle, speaking the gRPC contract of `strata-proto`.
//!
//! - [`config`]: settings with Kafka-like defaults.
//! - [`error`]: the one [`Error`] type; `Display` is the broker's sentence.
//! - `connection` / `metadata`: cached channels per broker, the topic/leader cache, routing.
//! - [`partitioner`]: Kafka-compatible murmur2 key hashing and the sticky keyless choice.
//! - `accumulator` / `sender`: the producer's batches and its background I/O.
//! - [`producer`], [`consumer`], [`admin`]: the public handles; `fetcher`: the consumer's
//!   background long polls, one per leader broker.
//! - [`group`]: a consumer in a group ([`Consumer::subscribe`]); `coordinator`: reaching the
//!   group's coordinator.
//!
//! Records are encoded once, into RecordBatch v2 batches built by `strata-log`; the bytes a
//! producer sends are the bytes the broker stores and a consumer decodes.

mod accumulator;
pub mod admin;
pub mod config;
mod connection;
pub mod consumer;
mod coordinator;
pub mod error;
mod fetcher;
pub mod group;
pub mod group_admin;
mod metadata;
pub mod partitioner;
pub mod producer;
pub mod security;
mod sender;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use admin::Admin;
pub use config::{
    Acks, ClientConfig, ConsumerConfig, Credentials, GroupSettings, OffsetReset, ProducerConfig,
};
pub use consumer::{Consumer, ConsumerRecord, SeekTo};
pub use error::{Error, Result};
pub use group::{GroupConsumer, RebalanceEvent};
pub use group_admin::{GroupDescription, OffsetLag};
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
pub use strata_log::{Compression, Header};
pub use strata_proto::{
    BrokerInfo, ClusterInfoResponse, DescribeGroupResponse, ErrorCode, GroupSummary,
    MetadataResponse, PartitionDescription, PartitionInfo, PartitionStatus, TierDeletion,
    TierStatusResponse, TopicDescription, TopicMetadata, TopicSummary,
};
