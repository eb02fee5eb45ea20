//! Topic-level configuration: the keys a topic may override, their parsing and validation, and
//! the effective configuration (broker defaults + overrides) each partition's log runs with.
//!
//! Invariant: an override is stored only after it parsed and validated here, so a stored topic
//! config always resolves.

use std::collections::BTreeMap;

use strata_log::LogConfig;

use crate::error::{BrokerError, Result};

/// `local.retention.*` value meaning "the same as the total retention" (Kafka's KIP-405).
pub const INHERIT: i64 = -2;

/// The effective configuration of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// The log settings, with `retention.*` the total retention (both tiers).
    pub log: LogConfig,
    pub min_insync_replicas: u32,
    /// Elect an out-of-sync replica when no in-sync one is alive (may lose records).
    pub unclean_leader_election: bool,
    /// Move sealed segments to the object store.
    pub remote_storage: bool,
    /// Hot-tier retention: -2 as `retention.ms`, -1 unlimited.
    pub local_retention_ms: i64,
    /// Hot-tier retention: -2 as `retention.bytes`, -1 unlimited.
    pub local_retention_bytes: i64,
    /// With tiered storage, the active segment rolls once its oldest data is this old, so
    /// data reaches the bucket within about this long (`remote.upload.max.interval.ms`).
    pub remote_upload_max_interval_ms: i64,
}

/// Not a stored key: set with `remote.storage.enable=false` in one change, it has the topic's
/// remote data deleted (KIP-950); without it, turning the remote tier off is refused.
pub const DELETE_ON_DISABLE: &str = "remote.log.delete.on.disable";

/// Default `remote.upload.max.interval.ms`: one hour.
pub const DEFAULT_REMOTE_UPLOAD_MAX_INTERVAL_MS: i64 = 3_600_000;

impl TopicConfig {
    /// The settings the local log runs with: with tiered storage its retention is the hot
    /// tier's (never longer than the total) and it rolls at least every
    /// `remote.upload.max.interval.ms`; without, the total retention and `segment.ms`.
    pub fn local_log_config(&self) -> LogConfig {
        let mut log = self.log.clone();
        if self.remote_storage {
            let bound = self.remote_upload_max_interval_ms;
            log.segment_ms = Some(log.segment_ms.map_or(bound, |ms| ms.min(bound)));
            log.retention_ms = local_limit(self.local_retention_ms, self.log.retention_ms);
            log.retention_bytes = local_limit(
                self.local_retention_bytes,
                self.log.retention_bytes.map(|b| b as i64),
            )
            .map(|b| b as u64);
        }
        log
    }
}

/// A local limit: inherit the total, unlimited, or a value capped by the total.
fn local_limit(local: i64, total: Option<i64>) -> Option<i64> {
    match (local, total) {
        (INHERIT, total) => total,
        (-1, total) => total,
        (v, Some(t)) => Some(v.min(t)),
        (v, None) => Some(v),
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            log: LogConfig::default(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
            remote_storage: false,
            local_retention_ms: INHERIT,
            local_retention_bytes: INHERIT,
            remote_upload_max_interval_ms: DEFAULT_REMOTE_UPLOAD_MAX_INTERVAL_MS,
        }
    }
}

/// Every key a topic may set, with a line of help.
pub const KEYS: &[(&str, &str)] = &[
    (
        "cleanup.policy",
        "only \"delete\" (retention by time and size) is supported",
    ),
    (
        "flush.messages",
        "fsync after this many records (-1: leave it to the OS)",
    ),
    (
        "flush.ms",
        "fsync at least this often, in ms (-1: leave it to the OS)",
    ),
    (
        "index.interval.bytes",
        "bytes between two offset-index entries",
    ),
    ("max.message.bytes", "largest batch accepted, in bytes"),
    (
        "message.timestamp.after.max.ms",
        "how far ahead of the broker's clock a record's timestamp may be, in ms (-1: no limit)",
    ),
    (
        "message.timestamp.before.max.ms",
        "how far behind the broker's clock a record's timestamp may be, in ms (-1: no limit)",
    ),
    (
        "min.insync.replicas",
        "replicas that must have a batch before acks=all answers",
    ),
    (
        "retention.bytes",
        "partition size above which old segments are deleted (-1: no limit)",
    ),
    (
        "retention.ms",
        "age after which segments are deleted, in ms (-1: keep forever)",
    ),
    (
        "segment.bytes",
        "size at which the active segment is rolled",
    ),
    (
        "segment.index.bytes",
        "maximum size of a segment's index files",
    ),
    (
        "segment.ms",
        "age at which the active segment is rolled, in ms",
    ),
    (
        "local.retention.bytes",
        "hot-tier size above which uploaded segments leave local disk (-2: as retention.bytes)",
    ),
    (
        "local.retention.ms",
        "age after which uploaded segments leave local disk, in ms (-2: as retention.ms)",
    ),
    (
        "remote.storage.enable",
        "move sealed segments to the object store (true or false)",
    ),
    (
        "remote.upload.max.interval.ms",
        "with remote storage, roll the active segment once its oldest data is this old, in ms, so \
         the bucket lags by at most about this long",
    ),
    (
        "unclean.leader.election.enable",
        "elect an out-of-sync replica when no in-sync one is alive (may lose records)",
    ),
];

/// Checks that every override names a known key and parses; returns the resolved config.
pub fn resolve(
    defaults: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicConfig> {
    let mut cfg = defaults.clone();
    for (key, value) in overrides {
        apply(&mut cfg, key, value)?;
    }
    cfg.log
        .validate()
        .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
    Ok(cfg)
}

fn apply(cfg: &mut TopicConfig, key: &str, value: &str) -> Result<()> {
    let log = &mut cfg.log;
    match key {
        "cleanup.policy" => {
            if value != "delete" {
                return Err(invalid(key, value, "only \"delete\" is supported"));
            }
        }
        "flush.messages" => log.flush_messages = optional(key, value)?.map(|v| v as u64),
        "flush.ms" => log.flush_ms = optional(key, value)?,
        "index.interval.bytes" => {
            log.index_interval_bytes = positive(key, value, u32::MAX as i64)? as u32
        }
        "max.message.bytes" => {
            log.max_message_bytes = positive(key, value, i32::MAX as i64)? as usize
        }
        "message.timestamp.after.max.ms" => {
            log.message_timestamp_after_max_ms = optional(key, value)?
        }
        "message.timestamp.before.max.ms" => {
            log.message_timestamp_before_max_ms = optional(key, value)?
        }
        "min.insync.replicas" => cfg.min_insync_replicas = positive(key, value, 1024)? as u32,
        "retention.bytes" => log.retention_bytes = optional(key, value)?.map(|v| v as u64),
        "retention.ms" => log.retention_ms = optional(key, value)?,
        "segment.bytes" => log.segment_bytes = positive(key, value, i64::MAX)? as u64,
        "segment.index.bytes" => {
            log.segment_index_bytes = positive(key, value, i32::MAX as i64)? as u32
        }
        "segment.ms" => log.segment_ms = optional(key, value)?,
        "local.retention.ms" => cfg.local_retention_ms = local(key, value)?,
        "local.retention.bytes" => cfg.local_retention_bytes = local(key, value)?,
        "remote.storage.enable" => cfg.remote_storage = boolean(key, value)?,
        "remote.upload.max.interval.ms" => {
            cfg.remote_upload_max_interval_ms = positive(key, value, i64::MAX)?
        }
        "unclean.leader.election.enable" => cfg.unclean_leader_election = boolean(key, value)?,
        other => {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(BrokerError::InvalidConfig(format!(
                "unknown topic config key {other:?}; known keys: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Smallest `segment.bytes` a topic may set: below it a topic rolls every few batches, and
/// each segment costs three files and two memory maps.
pub const MIN_TOPIC_SEGMENT_BYTES: u64 = 16 * 1024;
/// Smallest `segment.ms` a topic may set.
pub const MIN_TOPIC_SEGMENT_MS: i64 = 1000;
/// Smallest `segment.index.bytes` a topic may set: a full index rolls the segment, so a tiny
/// index (12 bytes holds one entry) would roll on every batch.
pub const MIN_TOPIC_SEGMENT_INDEX_BYTES: u32 = 4096;
/// Smallest `index.interval.bytes` a topic may set. An index entry per 256 bytes fills the
/// smallest index (4096 bytes, 341 entries) only after ~87 KB of batches, so the index cannot
/// roll a segment before it holds five times the smallest `segment.bytes`; below it, a topic
/// of small batches would index every batch and roll every few hundred.
pub const MIN_TOPIC_INDEX_INTERVAL_BYTES: u32 = 256;

/// Refuses overrides being set now (a create or an alter) that would make the topic roll
/// every few batches. Only new settings are checked: a topic stored before the floors existed
/// keeps working.
pub fn check_floors<'a>(
    defaults: &TopicConfig,
    set: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<()> {
    for (key, value) in set {
        let mut cfg = defaults.clone();
        apply(&mut cfg, key, value)?;
        floor(&cfg, key)?;
    }
    Ok(())
}

fn floor(cfg: &TopicConfig, key: &str) -> Result<()> {
    let log = &cfg.log;
    let (value, min) = match key {
        "segment.bytes" => (log.segment_bytes as i64, MIN_TOPIC_SEGMENT_BYTES as i64),
        "segment.ms" => match log.segment_ms {
            Some(ms) => (ms, MIN_TOPIC_SEGMENT_MS),
            None => return Ok(()),
        },
        "remote.upload.max.interval.ms" => {
            (cfg.remote_upload_max_interval_ms, MIN_TOPIC_SEGMENT_MS)
        }
        "segment.index.bytes" => (
            log.segment_index_bytes as i64,
            MIN_TOPIC_SEGMENT_INDEX_BYTES as i64,
        ),
        "index.interval.bytes" => (
            log.index_interval_bytes as i64,
            MIN_TOPIC_INDEX_INTERVAL_BYTES as i64,
        ),
        _ => return Ok(()),
    };
    if value < min {
        return Err(BrokerError::InvalidConfig(format!(
            "{key} is {value}; a topic may not set it below {min} (it would roll a new segment \
             every few batches)"
        )));
    }
    Ok(())
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

/// A hot-tier limit: -2 (as the total), -1 (no limit) or a value >= 0.
fn local(key: &str, value: &str) -> Result<i64> {
    match parse(key, value)? {
        v if v < INHERIT => Err(invalid(
            key,
            value,
            "expected -2 (as the total), -1 (no limit) or a value >= 0",
        )),
        v => Ok(v),
    }
}

fn parse(key: &str, value: &str) -> Result<i64> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(key, value, "expected a whole number"))
}

/// A value where -1 means "no limit".
fn optional(key: &str, value: &str) -> Result<Option<i64>> {
    match parse(key, value)? {
        -1 => Ok(None),
        v if v < 0 => Err(invalid(
            key,
            value,
            "expected -1 (no limit) or a value >= 0",
        )),
        v => Ok(Some(v)),
    }
}

fn positive(key: &str, value: &str, max: i64) -> Result<i64> {
    match parse(key, value)? {
        v if v <= 0 => Err(invalid(key, value, "expected a value above 0")),
        v if v > max => Err(invalid(key, value, &format!("expected at most {max}"))),
        v => Ok(v),
    }
}

fn invalid(key: &str, value: &str, why: &str) -> BrokerError {
    BrokerError::InvalidConfig(format!("invalid value {value:?} for {key}: {why}"))
}

/// The effective value of every key, as strings (what `topic describe` shows).
pub fn effective(cfg: &TopicConfig) -> BTreeMap<String, String> {
    let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
    let log = &cfg.log;
    BTreeMap::from([
        ("cleanup.policy".to_string(), "delete".to_string()),
        (
            "flush.messages".to_string(),
            opt(log.flush_messages.map(|v| v as i64)),
        ),
        ("flush.ms".to_string(), opt(log.flush_ms)),
        (
            "index.interval.bytes".to_string(),
            log.index_interval_bytes.to_string(),
        ),
        (
            "max.message.bytes".to_string(),
            log.max_message_bytes.to_string(),
        ),
        (
            "message.timestamp.after.max.ms".to_string(),
            opt(log.message_timestamp_after_max_ms),
        ),
        (
            "message.timestamp.before.max.ms".to_string(),
            opt(log.message_timestamp_before_max_ms),
        ),
        (
            "min.insync.replicas".to_string(),
            cfg.min_insync_replicas.to_string(),
        ),
        (
            "retention.bytes".to_string(),
            opt(log.retention_bytes.map(|v| v as i64)),
        ),
        ("retention.ms".to_string(), opt(log.retention_ms)),
        ("segment.bytes".to_string(), log.segment_bytes.to_string()),
        (
            "segment.index.bytes".to_string(),
            log.segment_index_bytes.to_string(),
        ),
        ("segment.ms".to_string(), opt(log.segment_ms)),
        (
            "local.retention.bytes".to_string(),
            cfg.local_retention_bytes.to_string(),
        ),
        (
            "local.retention.ms".to_string(),
            cfg.local_retention_ms.to_string(),
        ),
        (
            "remote.storage.enable".to_string(),
            cfg.remote_storage.to_string(),
        ),
        (
            "remote.upload.max.interval.ms".to_string(),
            cfg.remote_upload_max_interval_ms.to_string(),
        ),
        (
            "unclean.leader.election.enable".to_string(),
            cfg.unclean_leader_election.to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_that_would_roll_every_few_batches_are_refused() {
        let d = TopicConfig::default();
        for (key, value) in [
            ("segment.index.bytes", "12"),
            ("segment.bytes", "1024"),
            ("segment.ms", "10"),
            ("index.interval.bytes", "1"),
        ] {
            let set = overrides(&[(key, value)]);
            let err = check_floors(&d, &set).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("may not set it below"),
                "{err}"
            );
            // A topic stored with it before the floors existed still resolves.
            resolve(&d, &set).unwrap();
        }
        check_floors(
            &d,
            &overrides(&[
                ("segment.index.bytes", "4096"),
                ("segment.bytes", "16384"),
                ("segment.ms", "1000"),
                ("index.interval.bytes", "256"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn overrides_apply_and_show_in_the_effective_map() {
        let cfg = resolve(
            &TopicConfig::default(),
            &overrides(&[
                ("retention.ms", "-1"),
                ("segment.bytes", "1048576"),
                ("min.insync.replicas", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.log.retention_ms, None);
        assert_eq!(cfg.log.segment_bytes, 1048576);
        assert_eq!(cfg.min_insync_replicas, 2);
        let map = effective(&cfg);
        assert_eq!(map["retention.ms"], "-1");
        assert_eq!(map["segment.bytes"], "1048576");
        assert_eq!(map.len(), KEYS.len());
    }

    #[test]
    fn local_retention_is_the_hot_tier_only_with_remote_storage() {
        let cfg = resolve(
            &TopicConfig::default(),
            &overrides(&[
                ("retention.ms", "86400000"),
                ("local.retention.ms", "3600000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.local_log_config().retention_ms,
            Some(86_400_000),
            "not tiered: total retention"
        );
        let tiered = TopicConfig {
            remote_storage: true,
            ..cfg.clone()
        };
        assert_eq!(tiered.local_log_config().retention_ms, Some(3_600_000));
        let longer = TopicConfig {
            local_retention_ms: 999_999_999,
            ..tiered.clone()
        };
        assert_eq!(
            longer.local_log_config().retention_ms,
            Some(86_400_000),
            "capped by the total"
        );
        let inherit = TopicConfig {
            local_retention_ms: INHERIT,
            ..tiered
        };
        assert_eq!(inherit.local_log_config().retention_ms, Some(86_400_000));
        let err = resolve(
            &TopicConfig::default(),
            &overrides(&[("local.retention.ms", "-3")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("local.retention.ms"), "{err}");
    }

    #[test]
    fn a_tiered_log_rolls_at_least_every_upload_interval() {
        let plain = TopicConfig::default();
        assert_eq!(plain.local_log_config().segment_ms, plain.log.segment_ms);
        let tiered = TopicConfig {
            remote_storage: true,
            ..plain.clone()
        };
        assert_eq!(tiered.local_log_config().segment_ms, Some(3_600_000));
        let set = resolve(
            &tiered,
            &overrides(&[
                ("remote.upload.max.interval.ms", "5000"),
                ("segment.ms", "2000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            set.local_log_config().segment_ms,
            Some(2000),
            "the smaller wins"
        );
        let err = check_floors(
            &tiered,
            &overrides(&[("remote.upload.max.interval.ms", "10")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("below 1000"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        for (k, v, expect) in [
            ("retention.ms", "soon", "expected a whole number"),
            ("retention.ms", "-5", "expected -1"),
            ("segment.bytes", "0", "above 0"),
            ("cleanup.policy", "compact", "only \"delete\""),
            ("no.such.key", "1", "unknown topic config key"),
        ] {
            let err = resolve(&TopicConfig::default(), &overrides(&[(k, v)])).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(expect), "{k}={v}: {msg}");
            assert!(msg.contains(k), "{k}={v}: {msg}");
        }
    }
}
