//! What a group request may ask for: the bounds a JoinGroup's timeouts and subscription and an
//! offset commit's metadata must stay within. Pure checks, run before anything changes.
//!
//! Invariant: a group never holds a member whose rebalance timeout could keep it rebalancing
//! for longer than [`GroupConfig::max_rebalance_timeout`], nor a member or an offset whose
//! stored size is out of proportion with what etcd takes in one request (1.5 MiB by default).

use super::coordinator::GroupConfig;
use super::group::JoinRequest;
use crate::error::{BrokerError, Result};

/// Kafka's `offset.metadata.max.bytes`: the longest metadata string stored with an offset.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

/// Bytes a member's subscription (topic names and owned partitions' topic names) and client
/// id may take in the group's record.
pub const MAX_MEMBER_METADATA_BYTES: usize = 64 * 1024;

/// Assignment strategies a member may list, and the longest name.
pub const MAX_PROTOCOLS: usize = 8;
pub const MAX_PROTOCOL_NAME_BYTES: usize = 64;

/// Checks a JoinGroup before the coordinator looks at the group.
pub fn check_join(group: &str, req: &JoinRequest, c: &GroupConfig) -> Result<()> {
    let invalid = |s: String| Err(BrokerError::InvalidRequest(s));
    if req.session_timeout < c.min_session_timeout || req.session_timeout > c.max_session_timeout {
        return invalid(format!(
            "session timeout {:?} is outside the broker's allowed range {:?}..={:?} \
             (group.min.session.timeout.ms, set by --group-min-session-timeout; \
             group.max.session.timeout.ms)",
            req.session_timeout, c.min_session_timeout, c.max_session_timeout
        ));
    }
    if req.rebalance_timeout < std::time::Duration::from_secs(1) {
        return invalid(format!(
            "rebalance timeout (max.poll.interval) {:?} is too short; give at least 1s",
            req.rebalance_timeout
        ));
    }
    if req.rebalance_timeout > c.max_rebalance_timeout {
        return invalid(format!(
            "rebalance timeout (max.poll.interval) {:?} is longer than the broker allows \
             ({:?}): a member that never rejoins would hold every rebalance of the group open \
             that long",
            req.rebalance_timeout, c.max_rebalance_timeout
        ));
    }
    if req.topics.is_empty() {
        return invalid(format!(
            "a member of group {group} must subscribe to at least one topic"
        ));
    }
    if req.protocols.len() > MAX_PROTOCOLS
        || req
            .protocols
            .iter()
            .any(|p| p.len() > MAX_PROTOCOL_NAME_BYTES)
    {
        return invalid(format!(
            "a member may list at most {MAX_PROTOCOLS} assignment strategies of at most \
             {MAX_PROTOCOL_NAME_BYTES} bytes each; this one lists {}",
            req.protocols.len()
        ));
    }
    let size = req.client_id.len()
        + req.host.len()
        + req.topics.iter().map(|t| t.len() + 8).sum::<usize>()
        + req.owned.iter().map(|(t, _)| t.len() + 8).sum::<usize>();
    if size > MAX_MEMBER_METADATA_BYTES {
        return invalid(format!(
            "the member's subscription ({} topics, {} owned partitions, client id and host) \
             takes {size} bytes, more than the {MAX_MEMBER_METADATA_BYTES} a member may store \
             in its group",
            req.topics.len(),
            req.owned.len()
        ));
    }
    Ok(())
}

/// Checks an offset commit's metadata string (Kafka: OFFSET_METADATA_TOO_LARGE).
pub fn check_offset_metadata(topic: &str, partition: u32, metadata: &str) -> Result<()> {
    if metadata.len() > MAX_OFFSET_METADATA_BYTES {
        return Err(BrokerError::InvalidRequest(format!(
            "the metadata committed with {topic}/{partition} is {} bytes, more than \
             offset.metadata.max.bytes ({MAX_OFFSET_METADATA_BYTES})",
            metadata.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn join() -> JoinRequest {
        JoinRequest {
            member_id: String::new(),
            client_id: "c".into(),
            host: "h".into(),
            topics: ["t".to_string()].into(),
            protocols: vec!["range".into()],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(300),
            owned: vec![],
        }
    }

    fn refused(req: JoinRequest, says: &str) {
        let err = check_join("g", &req, &GroupConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err:?} should say {says:?}");
    }

    #[test]
    fn an_ordinary_join_passes() {
        check_join("g", &join(), &GroupConfig::default()).unwrap();
    }

    #[test]
    fn a_rebalance_timeout_of_49_days_is_refused() {
        refused(
            JoinRequest {
                rebalance_timeout: Duration::from_millis(u32::MAX as u64),
                ..join()
            },
            "longer than the broker allows",
        );
    }

    #[test]
    fn session_timeouts_outside_the_range_are_refused() {
        // Kafka's defaults: 6 s to 30 min.
        for ms in [10, 5_999, 31 * 60 * 1000] {
            refused(
                JoinRequest {
                    session_timeout: Duration::from_millis(ms),
                    ..join()
                },
                "group.max.session.timeout.ms",
            );
        }
    }

    #[test]
    fn a_huge_subscription_is_refused() {
        let topics = (0..5000).map(|i| format!("topic-{i:020}")).collect();
        refused(JoinRequest { topics, ..join() }, "more than the 65536");
        refused(
            JoinRequest {
                protocols: vec!["x".repeat(100)],
                ..join()
            },
            "assignment strategies",
        );
    }

    #[test]
    fn commit_metadata_is_bounded() {
        check_offset_metadata("t", 0, &"m".repeat(4096)).unwrap();
        let err = check_offset_metadata("t", 0, &"m".repeat(1_400_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset.metadata.max.bytes"), "{err}");
    }
}
