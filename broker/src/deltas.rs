//! Following metadata by watch deltas: the partition-state changes a watch hands over (ISR
//! changes, elections: what grows with the number of partitions) are applied one partition at
//! a time, without re-reading the whole metadata; anything else (a topic created, deleted or
//! reconfigured, a broker joining or leaving, a replica added to or removed from this broker)
//! makes the broker re-read everything, as before.
//!
//! Invariants: a delta is applied only to a partition of a topic the current snapshot holds,
//! whose replica set keeps or keeps not this broker (so no local replica must be opened or
//! deleted), and only when it is newer than the state the snapshot has (a delta older than a
//! re-read is skipped; the replica's own `set_state` refuses older revisions too). The
//! decision is pure ([`classify`]) and unit-tested.

use std::sync::Arc;

use strata_coordinator::{Event, Versioned};

use crate::metadata::{decode, PartitionState};
use crate::snapshot::ClusterSnapshot;

/// One partition's new state, as a watched change carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub topic: String,
    pub index: u32,
    pub state: PartitionState,
    pub revision: i64,
}

/// What a batch of watched changes needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// These partition states, newer than the snapshot's (possibly none).
    States(Vec<StateChange>),
    /// A change deltas do not apply: re-read everything (the reason, for the log).
    Resync(String),
}

/// Sorts `events` against `snapshot` for broker `me`.
pub fn classify(snapshot: &ClusterSnapshot, me: i32, events: Vec<Event>) -> Delta {
    let mut states: Vec<StateChange> = Vec::new();
    for event in events {
        let Some(rest) = event.key.strip_prefix("partitions/") else {
            return Delta::Resync(format!("{} changed", event.key));
        };
        let Some((topic, index)) = rest.rsplit_once('/') else {
            return Delta::Resync(format!("{} is not a partition state", event.key));
        };
        let Ok(index) = index.parse::<u32>() else {
            return Delta::Resync(format!("{} is not a partition state", event.key));
        };
        let Some(value) = event.value else {
            return Delta::Resync(format!("{} was deleted", event.key));
        };
        let Some(known) = snapshot.topics.get(topic) else {
            return Delta::Resync(format!("{} is of a topic not known yet", event.key));
        };
        let Some(old) = known.partitions.get(index as usize) else {
            // A partition being added (the topic is growing): the count changes next.
            return Delta::Resync(format!("{} is past the topic's partitions", event.key));
        };
        let versioned = Versioned {
            value,
            revision: event.revision,
        };
        let state = match decode::<PartitionState>(&event.key, versioned) {
            Ok(s) => s.value,
            Err(e) => return Delta::Resync(e.to_string()),
        };
        if old.replicas.contains(&me) != state.replicas.contains(&me) {
            return Delta::Resync(format!("{} moves a replica to or from here", event.key));
        }
        // The newest of this batch for the partition, if newer than the snapshot's.
        let seen = states
            .iter()
            .rev()
            .find(|c| c.topic == topic && c.index == index)
            .map_or(known.revision(index as usize), |c| c.revision);
        if event.revision > seen {
            states.push(StateChange {
                topic: topic.to_string(),
                index,
                state,
                revision: event.revision,
            });
        }
    }
    Delta::States(states)
}

/// `snapshot` with `changes` applied (each newer than what it replaces, as [`classify`] made
/// them).
pub fn with_changes(snapshot: &ClusterSnapshot, changes: &[StateChange]) -> Arc<ClusterSnapshot> {
    let mut next = snapshot.clone();
    for c in changes {
        if let Some(t) = next.topics.get_mut(&c.topic) {
            let i = c.index as usize;
            if let Some(slot) = t.partitions.get_mut(i) {
                *slot = c.state.clone();
            }
            if t.revisions.len() <= i {
                t.revisions.resize(i + 1, 0);
            }
            t.revisions[i] = c.revision;
        }
    }
    Arc::new(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{TopicPhase, TopicRecord};
    use crate::snapshot::TopicState;
    use bytes::Bytes;

    const ME: i32 = 1;

    fn state(replicas: &[i32], leader: i32, epoch: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: replicas.to_vec(),
            leader_incarnation: 1,
            emptied: Vec::new(),
            reassigning: None,
        }
    }

    /// Topic "t" with two partitions: 0 on this broker, 1 elsewhere; both at revision 10.
    fn snapshot() -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        s.topics.insert(
            "t".to_string(),
            TopicState {
                record: TopicRecord {
                    name: "t".to_string(),
                    topic_id: "id".to_string(),
                    partitions: 2,
                    replication_factor: 3,
                    config: Default::default(),
                    created_ms: 0,
                    phase: TopicPhase::Ready,
                },
                partitions: vec![state(&[1, 2, 3], 1, 1), state(&[2, 3, 4], 2, 1)],
                revisions: vec![10, 10],
            },
        );
        s
    }

    fn put(key: &str, revision: i64, s: &PartitionState) -> Event {
        Event {
            key: key.to_string(),
            revision,
            value: Some(Bytes::from(serde_json::to_vec(s).unwrap())),
        }
    }

    #[test]
    fn partition_states_of_known_partitions_are_deltas_newest_last() {
        let elected = state(&[1, 2, 3], 2, 2);
        let shrunk = PartitionState {
            isr: vec![2],
            ..state(&[2, 3, 4], 2, 1)
        };
        let events = vec![
            put("partitions/t/0", 11, &state(&[1, 2, 3], 3, 2)),
            put("partitions/t/0", 12, &elected),
            put("partitions/t/1", 12, &shrunk),
        ];
        let Delta::States(changes) = classify(&snapshot(), ME, events) else {
            panic!("partition states must be deltas");
        };
        assert_eq!(changes.len(), 3);
        let next = with_changes(&snapshot(), &changes);
        let t = &next.topics["t"];
        assert_eq!(t.partitions[0], elected, "the newest state wins");
        assert_eq!(t.partitions[1], shrunk);
        assert_eq!(t.revisions, vec![12, 12]);
    }

    #[test]
    fn a_delta_older_than_the_snapshot_is_skipped() {
        let events = vec![put("partitions/t/0", 9, &state(&[1, 2, 3], 3, 0))];
        assert_eq!(classify(&snapshot(), ME, events), Delta::States(vec![]));
        // And one older than a delta of the same batch.
        let events = vec![
            put("partitions/t/0", 12, &state(&[1, 2, 3], 2, 2)),
            put("partitions/t/0", 11, &state(&[1, 2, 3], 3, 1)),
        ];
        let Delta::States(changes) = classify(&snapshot(), ME, events) else {
            panic!("partition states must be deltas");
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].revision, 12);
    }

    #[test]
    fn anything_else_re_reads() {
        let s = snapshot();
        let cases = vec![
            ("a topic record", put("topics/t", 11, &state(&[1], 1, 1))),
            ("a broker", put("brokers/4", 11, &state(&[1], 1, 1))),
            (
                "an unknown topic",
                put("partitions/u/0", 11, &state(&[1], 1, 1)),
            ),
            (
                "a partition being added",
                put("partitions/t/2", 11, &state(&[1], 1, 1)),
            ),
            (
                "a replica moving here",
                put("partitions/t/1", 11, &state(&[1, 2, 3], 2, 2)),
            ),
            (
                "a replica moving away",
                put("partitions/t/0", 11, &state(&[2, 3, 4], 2, 2)),
            ),
            (
                "a deleted state",
                Event {
                    key: "partitions/t/0".into(),
                    revision: 11,
                    value: None,
                },
            ),
            (
                "an undecodable state",
                Event {
                    key: "partitions/t/0".into(),
                    revision: 11,
                    value: Some(Bytes::from("{")),
                },
            ),
            (
                "a key without an index",
                put("partitions/t", 11, &state(&[1], 1, 1)),
            ),
        ];
        for (what, event) in cases {
            // Also behind a good delta: one such change re-reads the whole batch.
            let events = vec![put("partitions/t/0", 11, &state(&[1, 2, 3], 2, 2)), event];
            assert!(
                matches!(classify(&s, ME, events), Delta::Resync(_)),
                "{what} must re-read"
            );
        }
    }
}
