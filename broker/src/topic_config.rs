//! Topic-level configuration: the keys a topic may override, their parsing and validation, and
//! the effective configuration (broker defaults + overrides) each partition's log runs with.
//!
//! Invariant: an override is stored only after it parsed and validated here, so a stored topic
//! config always resolves.

use std::collections::BTreeMap;

use strata_log::LogConfig;

use crate::error::{BrokerError, Result};

/// The effective configuration of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub min_insync_replicas: u32,
    /// Elect an out-of-sync replica when no in-sync one is alive (may lose records).
    pub unclean_leader_election: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            log: LogConfig::default(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
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
        "min.insync.replicas" => cfg.min_insync_replicas = positive(key, value, 1024)? as u32,
        "retention.bytes" => log.retention_bytes = optional(key, value)?.map(|v| v as u64),
        "retention.ms" => log.retention_ms = optional(key, value)?,
        "segment.bytes" => log.segment_bytes = positive(key, value, i64::MAX)? as u64,
        "segment.index.bytes" => {
            log.segment_index_bytes = positive(key, value, i32::MAX as i64)? as u32
        }
        "segment.ms" => log.segment_ms = optional(key, value)?,
        "unclean.leader.election.enable" => {
            cfg.unclean_leader_election = match value.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(key, value, "expected true or false")),
            }
        }
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
