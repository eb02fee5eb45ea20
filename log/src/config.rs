//! Per-partition settings of the local log ([`LogConfig`]), with Kafka's names and defaults.
//!
//! Invariant kept here: a [`crate::Log`] only ever runs with a configuration that passed
//! [`LogConfig::validate`], so the engine never has to guard against nonsense such as a
//! segment smaller than one batch header or an index that cannot hold a single entry.

use crate::error::{LogError, Result};
use crate::index::{OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Smallest accepted `segment.bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest accepted `segment.bytes`: index entries store file positions as u32, and a segment
/// may exceed `segment.bytes` by one append, so the limit leaves room below 4 GiB (Kafka's own
/// limit is an i32).
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// Settings of one partition's local log. Names follow Kafka's topic configs
/// (`segment.bytes` is `segment_bytes`, ...); times are milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would grow past this many bytes.
    pub segment_bytes: u64,
    /// Roll once the active segment is this old (and non-empty). `None`: never on time.
    pub segment_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log stays at least this big without them.
    /// `None`: unlimited.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this. `None`: keep forever.
    pub retention_ms: Option<i64>,
    /// Add an offset-index entry each time this many log bytes have been written since the
    /// previous entry.
    pub index_interval_bytes: u32,
    /// Maximum size of each index file (`.index`, `.timeindex`); a full index rolls the segment.
    pub segment_index_bytes: u32,
    /// fsync after this many records since the last fsync. `None`: leave it to the OS.
    pub flush_messages: Option<u64>,
    /// fsync when this long has passed since the last fsync (see `Log::flush_if_due`).
    /// `None`: leave it to the OS.
    pub flush_ms: Option<i64>,
    /// Largest batch accepted by `append`, header included.
    pub max_message_bytes: usize,
    /// A produced record's timestamp may be at most this far behind the broker's clock.
    /// `None`: unlimited (Kafka's default).
    pub message_timestamp_before_max_ms: Option<i64>,
    /// A produced record's timestamp may be at most this far ahead of the broker's clock
    /// (Kafka's default: one hour). `None`: unlimited.
    pub message_timestamp_after_max_ms: Option<i64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: Some(7 * DAY_MS),
            retention_bytes: None,
            retention_ms: Some(7 * DAY_MS),
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            message_timestamp_before_max_ms: None,
            message_timestamp_after_max_ms: Some(60 * 60 * 1000),
        }
    }
}

impl LogConfig {
    /// Checks that every setting makes sense; the error names the setting and the rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(LogError::InvalidConfig(msg));
        if self.segment_bytes < MIN_SEGMENT_BYTES || self.segment_bytes > MAX_SEGMENT_BYTES {
            return bad(format!(
                "segment.bytes is {}, it must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if let Some(ms) = self.segment_ms {
            if ms <= 0 {
                return bad(format!("segment.ms is {ms}, it must be positive"));
            }
        }
        if let Some(ms) = self.retention_ms {
            if ms < 0 {
                return bad(format!(
                    "retention.ms is {ms}, it must be zero or more (leave it unset to keep data forever)"
                ));
            }
        }
        if self.index_interval_bytes == 0 {
            return bad("index.interval.bytes is 0, it must be positive".to_string());
        }
        let min_index = TIME_ENTRY_LEN.max(OFFSET_ENTRY_LEN) as u32;
        if self.segment_index_bytes < min_index {
            return bad(format!(
                "segment.index.bytes is {}, it must hold at least one entry ({min_index} bytes)",
                self.segment_index_bytes
            ));
        }
        if self.flush_messages == Some(0) {
            return bad(
                "flush.messages is 0, it must be positive (leave it unset to let the OS flush)"
                    .to_string(),
            );
        }
        if let Some(ms) = self.flush_ms {
            if ms <= 0 {
                return bad(format!("flush.ms is {ms}, it must be positive"));
            }
        }
        for (key, v) in [
            (
                "message.timestamp.before.max.ms",
                self.message_timestamp_before_max_ms,
            ),
            (
                "message.timestamp.after.max.ms",
                self.message_timestamp_after_max_ms,
            ),
        ] {
            if let Some(ms) = v {
                if ms < 0 {
                    return bad(format!(
                        "{key} is {ms}, it must be zero or more (leave it unset for no limit)"
                    ));
                }
            }
        }
        if self.max_message_bytes < crate::batch::HEADER_LEN {
            return bad(format!(
                "max.message.bytes is {}, smaller than a batch header ({} bytes)",
                self.max_message_bytes,
                crate::batch::HEADER_LEN
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_kafka() {
        let c = LogConfig::default();
        c.validate().unwrap();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.retention_bytes, None);
    }

    #[test]
    fn nonsense_is_refused_with_a_sentence() {
        let cases: Vec<(LogConfig, &str)> = vec![
            (
                LogConfig {
                    segment_bytes: 10,
                    ..Default::default()
                },
                "segment.bytes",
            ),
            (
                LogConfig {
                    segment_ms: Some(0),
                    ..Default::default()
                },
                "segment.ms",
            ),
            (
                LogConfig {
                    retention_ms: Some(-5),
                    ..Default::default()
                },
                "retention.ms",
            ),
            (
                LogConfig {
                    index_interval_bytes: 0,
                    ..Default::default()
                },
                "index.interval.bytes",
            ),
            (
                LogConfig {
                    segment_index_bytes: 4,
                    ..Default::default()
                },
                "segment.index.bytes",
            ),
            (
                LogConfig {
                    flush_messages: Some(0),
                    ..Default::default()
                },
                "flush.messages",
            ),
            (
                LogConfig {
                    max_message_bytes: 3,
                    ..Default::default()
                },
                "max.message.bytes",
            ),
        ];
        for (config, name) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
