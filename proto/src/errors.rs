//! Machine-readable error codes carried beside a gRPC status.
//!
//! The status code and message are for people and generic gRPC tooling; clients decide whether
//! to retry, refresh metadata or give up from the Kafka-style code the broker puts in the
//! `strata-error` metadata entry. Keep the names Kafka's, so operators recognise them.

/// The response metadata key holding one of the codes below.
pub const ERROR_CODE_KEY: &str = "strata-error";

/// One code per kind of failure a client reacts to differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownTopicOrPartition,
    InvalidTopic,
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidConfig,
    InvalidRecord,
    InvalidTimestamp,
    CorruptMessage,
    MessageTooLarge,
    OffsetOutOfRange,
    NotLeaderOrFollower,
    LeaderNotAvailable,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    RequestTimedOut,
    FencedLeaderEpoch,
    KafkaStorageError,
    InvalidRequest,
    OutOfOrderSequence,
    UnknownProducerId,
    NotCoordinator,
    CoordinatorNotAvailable,
    RebalanceInProgress,
    UnknownMemberId,
    IllegalGeneration,
    InvalidGroupId,
    GroupIdNotFound,
    NonEmptyGroup,
    SaslAuthenticationFailed,
    TopicAuthorizationFailed,
    GroupAuthorizationFailed,
    ClusterAuthorizationFailed,
    ResourceNotFound,
    DuplicateResource,
    InvalidReplicaAssignment,
    NoReassignmentInProgress,
    Unknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 38] = [
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::InvalidTopic,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidRecord,
        ErrorCode::InvalidTimestamp,
        ErrorCode::CorruptMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
        ErrorCode::RequestTimedOut,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::KafkaStorageError,
        ErrorCode::InvalidRequest,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::UnknownProducerId,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::RebalanceInProgress,
        ErrorCode::UnknownMemberId,
        ErrorCode::IllegalGeneration,
        ErrorCode::InvalidGroupId,
        ErrorCode::GroupIdNotFound,
        ErrorCode::NonEmptyGroup,
        ErrorCode::SaslAuthenticationFailed,
        ErrorCode::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed,
        ErrorCode::ResourceNotFound,
        ErrorCode::DuplicateResource,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::NoReassignmentInProgress,
        ErrorCode::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::InvalidTopic => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidRecord => "INVALID_RECORD",
            ErrorCode::InvalidTimestamp => "INVALID_TIMESTAMP",
            ErrorCode::CorruptMessage => "CORRUPT_MESSAGE",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::KafkaStorageError => "KAFKA_STORAGE_ERROR",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::OutOfOrderSequence => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::UnknownProducerId => "UNKNOWN_PRODUCER_ID",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::SaslAuthenticationFailed => "SASL_AUTHENTICATION_FAILED",
            ErrorCode::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
            ErrorCode::GroupAuthorizationFailed => "GROUP_AUTHORIZATION_FAILED",
            ErrorCode::ClusterAuthorizationFailed => "CLUSTER_AUTHORIZATION_FAILED",
            ErrorCode::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorCode::DuplicateResource => "DUPLICATE_RESOURCE",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::NoReassignmentInProgress => "NO_REASSIGNMENT_IN_PROGRESS",
            ErrorCode::Unknown => "UNKNOWN_SERVER_ERROR",
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Unknown)
    }

    /// True when the same request may succeed later, possibly after a metadata refresh.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::RequestTimedOut
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
        )
    }

    /// True when the client should find the group's coordinator again before retrying.
    pub fn needs_coordinator_lookup(self) -> bool {
        matches!(
            self,
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
        )
    }

    /// True when the client should refresh its metadata before retrying.
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
        )
    }

    /// The gRPC status code this error travels with.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorCode::UnknownTopicOrPartition => Code::NotFound,
            ErrorCode::TopicAlreadyExists => Code::AlreadyExists,
            ErrorCode::InvalidTopic
            | ErrorCode::InvalidPartitions
            | ErrorCode::InvalidReplicationFactor
            | ErrorCode::InvalidConfig
            | ErrorCode::InvalidRecord
            | ErrorCode::InvalidTimestamp
            | ErrorCode::MessageTooLarge
            | ErrorCode::InvalidReplicaAssignment
            | ErrorCode::InvalidRequest => Code::InvalidArgument,
            ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducerId => {
                Code::FailedPrecondition
            }
            ErrorCode::CorruptMessage => Code::DataLoss,
            ErrorCode::OffsetOutOfRange => Code::OutOfRange,
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::NotEnoughReplicasAfterAppend => Code::Unavailable,
            ErrorCode::RequestTimedOut => Code::DeadlineExceeded,
            ErrorCode::FencedLeaderEpoch => Code::FailedPrecondition,
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => Code::Unavailable,
            ErrorCode::RebalanceInProgress => Code::Aborted,
            ErrorCode::UnknownMemberId
            | ErrorCode::IllegalGeneration
            | ErrorCode::NonEmptyGroup => Code::FailedPrecondition,
            ErrorCode::InvalidGroupId => Code::InvalidArgument,
            ErrorCode::GroupIdNotFound => Code::NotFound,
            ErrorCode::SaslAuthenticationFailed => Code::Unauthenticated,
            ErrorCode::TopicAuthorizationFailed
            | ErrorCode::GroupAuthorizationFailed
            | ErrorCode::ClusterAuthorizationFailed => Code::PermissionDenied,
            ErrorCode::ResourceNotFound => Code::NotFound,
            ErrorCode::DuplicateResource => Code::AlreadyExists,
            ErrorCode::NoReassignmentInProgress => Code::FailedPrecondition,
            ErrorCode::KafkaStorageError | ErrorCode::Unknown => Code::Internal,
        }
    }

    /// Builds the status for this code with a sentence for a person.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), message);
        status.metadata_mut().insert(
            ERROR_CODE_KEY,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }

    /// Reads the code from a status; statuses without one are classified by their gRPC code.
    pub fn of(status: &tonic::Status) -> ErrorCode {
        if let Some(v) = status.metadata().get(ERROR_CODE_KEY) {
            if let Ok(s) = v.to_str() {
                return ErrorCode::parse(s);
            }
        }
        match status.code() {
            tonic::Code::Unavailable => ErrorCode::LeaderNotAvailable,
            tonic::Code::DeadlineExceeded => ErrorCode::RequestTimedOut,
            tonic::Code::NotFound => ErrorCode::UnknownTopicOrPartition,
            tonic::Code::InvalidArgument => ErrorCode::InvalidRequest,
            tonic::Code::OutOfRange => ErrorCode::OffsetOutOfRange,
            tonic::Code::DataLoss => ErrorCode::CorruptMessage,
            _ => ErrorCode::Unknown,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_a_status() {
        for code in ErrorCode::ALL {
            let status = code.status("something went wrong");
            assert_eq!(ErrorCode::of(&status), code);
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }
}
