//! The client's one error type.
//!
//! Broker failures keep the broker's sentence (`topic "orders" does not exist`) and the
//! Kafka-style [`ErrorCode`] it sent in the `strata-error` metadata; transport failures name the
//! broker address. `Display` is always a sentence for a person, never `{:?}`. The type is
//! `Clone` because one failed batch fails every record future that shares it.

use std::time::Duration;

use strata_proto::errors::ERROR_CODE_KEY;
use strata_proto::ErrorCode;

/// Everything a Strata client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The broker answered with an error status; `message` is its sentence.
    #[error("{message}")]
    Broker {
        code: ErrorCode,
        status: tonic::Code,
        message: String,
    },
    /// No connection could be made to a broker, or it broke mid-request.
    #[error("cannot reach broker {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// A request got no answer within the request timeout.
    #[error("broker {address} did not answer within {} ms", .after.as_millis())]
    Timeout { address: String, after: Duration },
    /// The topic is not in the cluster's metadata.
    #[error("topic \"{topic}\" does not exist")]
    UnknownTopic { topic: String },
    /// The partition number is outside the topic.
    #[error("topic \"{topic}\" has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    /// A caller-side mistake: a bad argument or setting.
    #[error("{0}")]
    InvalidInput(String),
    /// Bytes from the broker failed their CRC or framing checks.
    #[error("corrupt data from the broker: {0}")]
    Corrupt(String),
    /// A batch could not be delivered before `delivery_timeout`.
    #[error("delivery to {topic}/{partition} timed out after {} ms; last error: {last}", .after.as_millis())]
    DeliveryTimeout {
        topic: String,
        partition: u32,
        after: Duration,
        last: Box<Error>,
    },
    /// The producer was closed before the call.
    #[error("the producer is closed")]
    Closed,
}

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A partition's error inside a multi-partition answer (its code of docs/errors.md and
    /// sentence), as the one-partition call's status would have made it.
    pub(crate) fn of_partition(code: &str, message: String) -> Error {
        let code = ErrorCode::parse(code);
        Error::Broker {
            code,
            status: code.grpc_code(),
            message,
        }
    }

    /// The Kafka-style code of the failure, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Timeout { .. } | Error::DeliveryTimeout { .. } => {
                Some(ErrorCode::RequestTimedOut)
            }
            Error::UnknownTopic { .. } | Error::UnknownPartition { .. } => {
                Some(ErrorCode::UnknownTopicOrPartition)
            }
            Error::Corrupt(_) => Some(ErrorCode::CorruptMessage),
            Error::Unreachable { .. } | Error::InvalidInput(_) | Error::Closed => None,
        }
    }

    /// True when sending the same request again may succeed: a retriable broker code, a
    /// transport failure or a request timeout. Errors the client itself decided on (unknown
    /// topic after a metadata refresh, bad input, delivery timeout) are final.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { code, status, .. } => {
                code.is_retriable() || *status == tonic::Code::Unavailable
            }
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// True when the client should refresh its metadata before retrying.
    pub(crate) fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Broker { code, .. } => code.needs_metadata_refresh(),
            Error::Unreachable { .. } => true,
            _ => false,
        }
    }

    /// Maps a status from a call to `address`. Statuses tonic made from a local transport
    /// failure carry a source error and no Strata code; the broker's own statuses carry neither.
    pub(crate) fn from_status(status: tonic::Status, address: &str, timeout: Duration) -> Error {
        let local = status.metadata().get(ERROR_CODE_KEY).is_none()
            && std::error::Error::source(&status).is_some();
        if local {
            if status.code() == tonic::Code::Cancelled {
                return Error::Timeout {
                    address: address.to_string(),
                    after: timeout,
                };
            }
            return Error::Unreachable {
                address: address.to_string(),
                reason: describe_cause(&status),
            };
        }
        let code = ErrorCode::of(&status);
        let message = if status.message().is_empty() {
            format!("broker {address} answered {code}")
        } else {
            status.message().to_string()
        };
        Error::Broker {
            code,
            status: status.code(),
            message,
        }
    }

    /// Maps a failed connection attempt to `address`.
    pub(crate) fn connect(address: &str, err: &tonic::transport::Error) -> Error {
        Error::Unreachable {
            address: address.to_string(),
            reason: describe_cause(err),
        }
    }
}

/// The I/O error (possibly wrapped in others) that carries a rustls error, if any.
fn tls_failure(io: &std::io::Error) -> Option<&std::io::Error> {
    let inner = io.get_ref()?;
    if inner.is::<rustls::Error>() {
        return Some(io);
    }
    tls_failure(inner.downcast_ref::<std::io::Error>()?)
}

/// The most useful sentence in an error chain: an I/O error's kind ("connection refused")
/// when there is one, else the innermost message.
fn describe_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.to_string().starts_with("TLS handshake failed") {
                return io.to_string();
            }
            if let Some(tls) = tls_failure(io) {
                return strata_proto::tls::describe(tls, "the broker", strata_proto::tls::BROKER);
            }
            if let Some(alert) = io.to_string().strip_prefix("received fatal alert: ") {
                return strata_proto::tls::describe_alert(alert, strata_proto::tls::BROKER);
            }
            return match io.kind() {
                std::io::ErrorKind::Other => io.to_string(),
                kind => kind.to_string(),
            };
        }
        innermost = e.to_string();
        current = e.source();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_status_keeps_message_and_code() {
        let status = ErrorCode::UnknownTopicOrPartition.status("topic \"orders\" does not exist");
        let err = Error::from_status(status, "b:1", Duration::from_secs(1));
        assert_eq!(err.to_string(), "topic \"orders\" does not exist");
        assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
        assert!(err.is_retriable());
    }

    #[test]
    fn plain_unavailable_is_retriable() {
        let err = Error::from_status(
            tonic::Status::unavailable("busy"),
            "b:1",
            Duration::from_secs(1),
        );
        assert!(err.is_retriable());
        assert_eq!(err.to_string(), "busy");
    }

    #[test]
    fn non_retriable_code() {
        let status = ErrorCode::MessageTooLarge.status("batch too large");
        let err = Error::from_status(status, "b:1", Duration::from_secs(1));
        assert!(!err.is_retriable());
    }
}
