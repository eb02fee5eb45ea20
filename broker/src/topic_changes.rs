//! Who runs the topic changes that take several commits (`topic_writes`), and how an
//! interrupted one ends.
//!
//! Only the controller creates, deletes or grows topics (other brokers forward the request).
//! It runs each change as its own task, so a client that hangs up does not stop it half-way,
//! and claims the topic's name for it ([`TopicChanges`]): one change per topic at a time.
//!
//! A topic record found outside `Ready` with no claim on it was left by a change that was
//! interrupted (its controller crashed, was deposed, or met an error). Every controller pass
//! ends it ([`finish_interrupted`]): a deletion is finished; a creation is undone (the topic
//! deleted); an addition of partitions is undone (the new states deleted, the count kept). The
//! first write of each takes the record over (a CAS on it), which stops the interrupted writer.
//!
//! Invariant: a claim is taken before the change's first write and released after its last,
//! and the controller ends only changes nobody claims, so it never undoes one that is running.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use crate::error::{BrokerError, Result};
use crate::metadata::{Revisioned, TopicRecord};
use crate::state::BrokerState;
use crate::topic_writes::Ended;

/// The topics this broker is changing now.
#[derive(Debug, Default, Clone)]
pub struct TopicChanges(Arc<Mutex<HashSet<String>>>);

/// A running change of one topic; dropping it releases the topic.
#[derive(Debug)]
pub struct Claim {
    changes: TopicChanges,
    name: String,
}

impl TopicChanges {
    /// Claims `name`, or says that a change of it is already running.
    pub fn claim(&self, name: &str) -> Result<Claim> {
        if !self.0.lock().insert(name.to_string()) {
            return Err(BrokerError::TopicChanging(format!(
                "another change of topic {name:?} (creation, deletion or new partitions) is \
                 under way; retry once it has finished"
            )));
        }
        Ok(Claim {
            changes: self.clone(),
            name: name.to_string(),
        })
    }

    pub fn is_claimed(&self, name: &str) -> bool {
        self.0.lock().contains(name)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.changes.0.lock().remove(&self.name);
    }
}

/// Runs `change` of topic `name` as its own task holding the topic's claim, and waits for it.
pub async fn run<T, F>(changes: &TopicChanges, name: &str, change: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let claim = changes.claim(name)?;
    let task = tokio::spawn(async move {
        let _claim = claim;
        change.await
    });
    task.await
        .map_err(|e| BrokerError::Internal(format!("the change of topic {name:?} stopped: {e}")))?
}

/// Ends every change the metadata shows half-done that nobody here is running: the
/// controller's duty, on each of its passes. Each runs as its own claimed task.
pub fn finish_interrupted(state: &Arc<BrokerState>, topics: &[Revisioned<TopicRecord>]) {
    for topic in topics {
        if topic.value.phase.is_ready() {
            continue;
        }
        let Ok(claim) = state.topic_changes.claim(&topic.value.name) else {
            continue;
        };
        let state = state.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let _claim = claim;
            let name = topic.value.name.clone();
            let phase = topic.value.phase.clone();
            let remote_at = state.tier.is_some().then(|| state.clock.now_ms());
            match state.metadata.end_interrupted(&topic, remote_at).await {
                Ok(Ended::Changed) => {}
                Ok(Ended::Undone) => {
                    tracing::warn!(topic = %name, ?phase, "undid an interrupted topic change")
                }
                Ok(Ended::Deleted(_)) => {
                    tracing::warn!(topic = %name, "finished an interrupted topic deletion (its remote data is deleted in the background)");
                }
                Err(e) => {
                    tracing::warn!(topic = %name, ?phase, error = %e, "ending an interrupted topic change failed; the next pass retries")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_change_per_topic_at_a_time() {
        let changes = TopicChanges::default();
        let claim = changes.claim("t").unwrap();
        assert!(changes.is_claimed("t"));
        let err = changes.claim("t").unwrap_err();
        assert!(
            err.to_string().contains("another change of topic \"t\""),
            "{err}"
        );
        assert!(changes.claim("u").is_ok(), "other topics are independent");
        drop(claim);
        assert!(!changes.is_claimed("t"));
        assert!(changes.claim("t").is_ok(), "released when the change ends");
    }
}
