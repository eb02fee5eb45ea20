//! Settings of the client, the producer and the consumer, with Kafka-like defaults.
//!
//! Plain structs built with `new` and adjusted field by field; the CLI maps its flags onto them.

use std::time::Duration;

use strata_log::Compression;

use crate::error::Error;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap brokers as `host:port`, tried in order.
    pub brokers: Vec<String>,
    /// Upper bound on one request, long polls included.
    pub request_timeout: Duration,
    /// Upper bound on opening a connection to one broker.
    pub connect_timeout: Duration,
    /// TLS: the CA that signed the brokers' certificates, and a client certificate for mTLS.
    pub tls: Option<strata_proto::tls::ClientFiles>,
    /// Sent with every call as `authorization: Basic ...`; only ever over TLS.
    pub credentials: Option<Credentials>,
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ClientConfig {
    pub fn new(brokers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            tls: None,
            credentials: None,
        }
    }
}

/// When the broker acknowledges a produce request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Do not wait for the broker (`acks=0`); offsets are reported as -1.
    None,
    /// Once the leader has appended the batch (`acks=1`).
    Leader,
    /// Once every in-sync replica has it (`acks=all`).
    All,
}

impl Acks {
    pub(crate) fn to_proto(self) -> strata_proto::Acks {
        match self {
            Acks::None => strata_proto::Acks::None,
            Acks::Leader => strata_proto::Acks::Leader,
            Acks::All => strata_proto::Acks::All,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(Error::InvalidInput(format!(
                "acks {other:?} is not valid; use 0, 1 or all"
            ))),
        }
    }
}

/// Producer settings; see the field comments for the defaults.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// Default: [`Acks::All`].
    pub acks: Acks,
    /// A batch is sealed once it reaches this many bytes (uncompressed). Default 16 KiB.
    pub batch_bytes: usize,
    /// How long an open batch may wait for more records. Default 5 ms.
    pub linger: Duration,
    /// Default: none.
    pub compression: Compression,
    /// Memory for records not yet acknowledged; `send` waits when it is used up. Default 32 MiB.
    pub buffer_bytes: usize,
    /// First wait before a retry; doubles up to 1 s. Default 100 ms.
    pub retry_backoff: Duration,
    /// How long a batch may take from creation to acknowledgement, retries included. Default 120 s.
    pub delivery_timeout: Duration,
    /// Produce requests in flight per partition; 1 keeps order across retries. Default 1.
    pub max_in_flight_per_partition: usize,
    /// Idempotent producer: a producer id and per-partition sequence numbers let the broker
    /// write a retried batch once. Default true (as in Kafka).
    pub enable_idempotence: bool,
}

impl ProducerConfig {
    pub fn new(client: ClientConfig) -> Self {
        ProducerConfig {
            client,
            acks: Acks::All,
            batch_bytes: 16 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            buffer_bytes: 32 * 1024 * 1024,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            enable_idempotence: true,
            max_in_flight_per_partition: 1,
        }
    }
}

/// Consumer settings; see the field comments for the defaults.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// Longest long poll of one fetch. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// The broker answers once this many bytes are ready. Default 1.
    pub fetch_min_bytes: u32,
    /// Soft cap on one partition's fetch response. Default 4 MiB.
    pub fetch_max_bytes: u32,
    /// Fetch responses buffered per partition ahead of `poll`. Default 4.
    pub prefetch_batches: usize,
}

impl ConsumerConfig {
    pub fn new(client: ClientConfig) -> Self {
        ConsumerConfig {
            client,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 4 * 1024 * 1024,
            prefetch_batches: 4,
        }
    }
}

/// Where a group member starts reading a partition its group has no committed offset for
/// (`auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on (Kafka's default).
    Latest,
    /// Fail the poll, naming the partition.
    None,
}

impl std::str::FromStr for OffsetReset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            "none" => Ok(OffsetReset::None),
            other => Err(Error::InvalidInput(format!(
                "auto.offset.reset {other:?} is not valid; use earliest, latest or none"
            ))),
        }
    }
}

/// Consumer-group settings; see the field comments for the defaults.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub group: String,
    /// Shown by `strata group describe`. Default "strata-consumer".
    pub client_id: String,
    /// Assignment strategies, preferred first. Default cooperative-sticky, then range.
    pub strategies: Vec<String>,
    /// The coordinator removes a member it has not heard from for this long. Default 10 s.
    pub session_timeout: Duration,
    /// How often the background task heartbeats. Default 3 s.
    pub heartbeat_interval: Duration,
    /// A member that does not poll for this long leaves the group. Default 300 s.
    pub max_poll_interval: Duration,
    /// Commit the positions of what `poll` returned, every `auto_commit_interval`, and before
    /// partitions are revoked. Default true, every 5 s.
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// Default [`OffsetReset::Latest`].
    pub auto_offset_reset: OffsetReset,
}

impl GroupSettings {
    pub fn new(group: impl Into<String>) -> Self {
        GroupSettings {
            group: group.into(),
            client_id: "strata-consumer".to_string(),
            strategies: vec!["cooperative-sticky".to_string(), "range".to_string()],
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetReset::Latest,
        }
    }
}

impl From<&str> for GroupSettings {
    fn from(group: &str) -> Self {
        GroupSettings::new(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse() {
        assert_eq!("0".parse::<Acks>().unwrap(), Acks::None);
        assert_eq!("1".parse::<Acks>().unwrap(), Acks::Leader);
        assert_eq!("all".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("-1".parse::<Acks>().unwrap(), Acks::All);
        let err = "2".parse::<Acks>().unwrap_err();
        assert_eq!(err.to_string(), "acks \"2\" is not valid; use 0, 1 or all");
    }
}
