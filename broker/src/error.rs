//! The broker's error type, mapped to a gRPC status in exactly one place
//! (`From<BrokerError> for tonic::Status`). Errors are logged where they are handled, not here.

use strata_coordinator::CoordinatorError;
use strata_log::{ErrorKind, LogError};
use strata_proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic:?} does not exist (the topic has {count} partitions: 0..={last})", last = .count.saturating_sub(1))]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error("{}", not_leader(topic, *partition, *broker, *leader))]
    NotLeader {
        topic: String,
        partition: u32,
        broker: i32,
        leader: i32,
    },
    #[error("topic {name:?} {detail}")]
    TopicExists { name: String, detail: &'static str },
    /// A change of the topic's structure (partitions being added) is under way.
    #[error("{0}")]
    TopicChanging(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("offset {offset} is outside the log of {topic}/{partition} ({range})", range = describe_range(*.start, *.end))]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        start: i64,
        end: i64,
    },
    #[error("not enough in-sync replicas for {topic}/{partition}: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: usize,
        min: u32,
    },
    #[error("{topic}/{partition}: the records up to offset {last_offset} are in the leader's log, but the ISR shrank to {isr} before they were replicated and min.insync.replicas is {min}; they are not durable as acks=all asked (retry, or check the followers)")]
    NotEnoughReplicasAfterAppend {
        topic: String,
        partition: u32,
        last_offset: i64,
        isr: usize,
        min: u32,
    },
    #[error("{topic}/{partition}: {source}")]
    Log {
        topic: String,
        partition: u32,
        #[source]
        source: LogError,
    },
    #[error(transparent)]
    Metadata(#[from] CoordinatorError),
    #[error("{topic}/{partition}: {source}")]
    Tier {
        topic: String,
        partition: u32,
        #[source]
        source: strata_tiering::TieringError,
    },
    #[error("{0}")]
    NotController(String),
    #[error("{0}")]
    OutOfOrderSequence(String),
    #[error("{0}")]
    UnknownProducerId(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    FencedEpoch(String),
    /// The controller's own answer to a forwarded request, passed on as it is.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    NotCoordinator(String),
    #[error("{0}")]
    CoordinatorUnavailable(String),
    #[error("{0}")]
    UnknownMember(String),
    #[error("{0}")]
    IllegalGeneration(String),
    #[error("{0}")]
    RebalanceInProgress(String),
    #[error("{0}")]
    InvalidGroup(String),
    #[error("{0}")]
    UnknownGroup(String),
    #[error("{0}")]
    GroupNotEmpty(String),
    #[error("{0}")]
    AuthenticationFailed(String),
    #[error("{0}")]
    ClusterAuthorizationFailed(String),
    #[error("{0}")]
    TopicAuthorizationFailed(String),
    #[error("{0}")]
    GroupAuthorizationFailed(String),
    #[error("{0}")]
    DuplicateResource(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    NoReassignmentInProgress(String),
    #[error("{0}")]
    Internal(String),
}

impl BrokerError {
    /// The Kafka-style code clients react to.
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            BrokerError::NotLeader { leader, .. } if *leader < 0 => ErrorCode::LeaderNotAvailable,
            BrokerError::NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
            BrokerError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
            BrokerError::TopicChanging(_) => ErrorCode::InvalidRequest,
            BrokerError::InvalidTopicName { .. } => ErrorCode::InvalidTopic,
            BrokerError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            BrokerError::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
            BrokerError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            BrokerError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            BrokerError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            BrokerError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            BrokerError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend
            }
            BrokerError::Log { source, .. } => match source {
                LogError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
                LogError::InvalidTimestamp(_) => ErrorCode::InvalidTimestamp,
                LogError::InvalidConfig(_) => ErrorCode::InvalidConfig,
                other => match other.kind() {
                    ErrorKind::InvalidInput => ErrorCode::InvalidRecord,
                    ErrorKind::Corrupt => ErrorCode::CorruptMessage,
                    ErrorKind::OutOfRange => ErrorCode::OffsetOutOfRange,
                    _ => ErrorCode::KafkaStorageError,
                },
            },
            BrokerError::Tier { source, .. } => match source.kind() {
                ErrorKind::Corrupt => ErrorCode::CorruptMessage,
                ErrorKind::Unavailable => ErrorCode::LeaderNotAvailable,
                ErrorKind::Fenced => ErrorCode::NotLeaderOrFollower,
                _ => ErrorCode::KafkaStorageError,
            },
            BrokerError::Metadata(CoordinatorError::Unavailable(_)) => {
                ErrorCode::LeaderNotAvailable
            }
            BrokerError::Metadata(_) => ErrorCode::Unknown,
            BrokerError::ShuttingDown | BrokerError::NotController(_) => {
                ErrorCode::LeaderNotAvailable
            }
            BrokerError::Forwarded(status) => ErrorCode::of(status),
            BrokerError::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequence,
            BrokerError::UnknownProducerId(_) => ErrorCode::UnknownProducerId,
            BrokerError::Timeout(_) => ErrorCode::RequestTimedOut,
            BrokerError::FencedEpoch(_) => ErrorCode::FencedLeaderEpoch,
            BrokerError::Internal(_) => ErrorCode::Unknown,
            BrokerError::NotCoordinator(_) => ErrorCode::NotCoordinator,
            BrokerError::CoordinatorUnavailable(_) => ErrorCode::CoordinatorNotAvailable,
            BrokerError::UnknownMember(_) => ErrorCode::UnknownMemberId,
            BrokerError::IllegalGeneration(_) => ErrorCode::IllegalGeneration,
            BrokerError::RebalanceInProgress(_) => ErrorCode::RebalanceInProgress,
            BrokerError::InvalidGroup(_) => ErrorCode::InvalidGroupId,
            BrokerError::UnknownGroup(_) => ErrorCode::GroupIdNotFound,
            BrokerError::GroupNotEmpty(_) => ErrorCode::NonEmptyGroup,
            BrokerError::AuthenticationFailed(_) => ErrorCode::SaslAuthenticationFailed,
            BrokerError::ClusterAuthorizationFailed(_) => ErrorCode::ClusterAuthorizationFailed,
            BrokerError::TopicAuthorizationFailed(_) => ErrorCode::TopicAuthorizationFailed,
            BrokerError::GroupAuthorizationFailed(_) => ErrorCode::GroupAuthorizationFailed,
            BrokerError::DuplicateResource(_) => ErrorCode::DuplicateResource,
            BrokerError::ResourceNotFound(_) => ErrorCode::ResourceNotFound,
            BrokerError::InvalidReplicaAssignment(_) => ErrorCode::InvalidReplicaAssignment,
            BrokerError::NoReassignmentInProgress(_) => ErrorCode::NoReassignmentInProgress,
        }
    }

    /// Attaches the partition to a log error, turning out-of-range into its precise form.
    pub fn from_log(topic: &str, partition: u32, source: LogError) -> BrokerError {
        match source {
            LogError::OffsetOutOfRange { offset, start, end } => BrokerError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset,
                start,
                end,
            },
            source => BrokerError::Log {
                topic: topic.to_string(),
                partition,
                source,
            },
        }
    }
}

impl From<BrokerError> for tonic::Status {
    fn from(err: BrokerError) -> tonic::Status {
        err.code().status(err.to_string())
    }
}

fn not_leader(topic: &str, partition: u32, broker: i32, leader: i32) -> String {
    if leader < 0 {
        format!("{topic}/{partition} has no leader right now (no in-sync replica is alive)")
    } else if leader == broker {
        format!("broker {broker} leads {topic}/{partition} but has not opened it yet; retry")
    } else {
        format!("broker {broker} is not the leader of {topic}/{partition}; broker {leader} is")
    }
}

fn describe_range(start: i64, end: i64) -> String {
    if start >= end {
        format!("the log is empty; the next offset to be written is {end}")
    } else {
        format!(
            "valid offsets are {start}..={}; {end} is the next offset to be written",
            end - 1
        )
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
