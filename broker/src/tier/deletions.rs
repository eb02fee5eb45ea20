//! Durable deletion of remote data: a deleted topic's objects, and a topic's objects when its
//! `remote.storage.enable` is turned off with `remote.log.delete.on.disable=true` (KIP-950).
//!
//! A deletion is a tombstone in etcd, `remote_deletions/<topic_id>` ([`RemoteDeletion`]),
//! written in the same commit as the change that asks for it (the topic record's removal, or
//! the config change). The controller works through the tombstones every few seconds
//! ([`process`]): it deletes every object under each partition's prefix and removes the
//! tombstone only after a pass that found nothing left to delete. So the deletion survives
//! restarts, controller changes and an unreachable store, and an upload that was in flight
//! when the change landed is deleted too.
//!
//! Invariant: while a topic id has a tombstone, its remote tier cannot be turned back on
//! (the deletion would race the new uploads); `alter_topic_config` refuses it with a sentence.

use serde::{Deserialize, Serialize};
use strata_coordinator::{CoordinatorError, Expect, Write};

use super::Tier;
use crate::error::Result;
use crate::metadata::{decode, encode, MetadataStore, Revisioned};

/// Why a topic's remote data is being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The topic was deleted.
    TopicDeleted,
    /// `remote.storage.enable` was turned off with `remote.log.delete.on.disable=true`.
    Disabled,
}

/// The tombstone of one topic id's remote data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteDeletion {
    pub topic: String,
    pub topic_id: String,
    pub partitions: u32,
    pub reason: Reason,
    pub created_ms: i64,
}

/// Tombstones younger than this wait: an upload that was in flight when the change landed
/// has finished (or abandoned) by then, so one pass usually deletes everything.
const MIN_AGE_MS: i64 = 2_000;

pub fn deletion_key(topic_id: &str) -> String {
    format!("remote_deletions/{topic_id}")
}

impl RemoteDeletion {
    /// The write that records this tombstone (an existing one for the topic id is replaced:
    /// it names the same objects).
    pub fn write(&self) -> Result<Write> {
        Ok(Write::put(
            deletion_key(&self.topic_id),
            encode(self)?,
            Expect::Any,
        ))
    }
}

impl MetadataStore {
    /// The pending tombstones.
    pub async fn remote_deletions(&self) -> Result<Vec<Revisioned<RemoteDeletion>>> {
        let mut out = Vec::new();
        for (key, v) in self.store().list("remote_deletions/").await? {
            out.push(decode(&key, v)?);
        }
        Ok(out)
    }

    /// Whether the topic id's remote data is still being deleted.
    pub async fn remote_deletion_pending(&self, topic_id: &str) -> Result<bool> {
        Ok(self.store().get(&deletion_key(topic_id)).await?.is_some())
    }

    /// Removes a tombstone if it is still the one read.
    async fn remove_remote_deletion(&self, d: &Revisioned<RemoteDeletion>) -> Result<()> {
        match self
            .store()
            .delete(
                &deletion_key(&d.value.topic_id),
                Expect::Revision(d.revision),
            )
            .await
        {
            Ok(()) | Err(CoordinatorError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// One pass over the tombstones (the controller runs it): deletes what each names, and removes
/// the tombstones whose partitions held nothing more. Errors are logged; the next pass retries.
pub async fn process(metadata: &MetadataStore, tier: &Tier, now_ms: i64) {
    let pending = match metadata.remote_deletions().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the pending remote deletions; retrying");
            return;
        }
    };
    for d in pending {
        if now_ms - d.value.created_ms < MIN_AGE_MS {
            continue;
        }
        let t = &d.value;
        let mut deleted = 0;
        let mut failed = None;
        for p in 0..t.partitions {
            match tier
                .partition_log(&t.topic, &t.topic_id, p)
                .delete_all()
                .await
            {
                Ok(n) => deleted += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) => {
                tracing::warn!(topic = %t.topic, topic_id = %t.topic_id, error = %e,
                    "deleting remote data failed; retrying (the deletion is recorded in etcd)")
            }
            None if deleted > 0 => {
                tracing::info!(topic = %t.topic, topic_id = %t.topic_id, reason = ?t.reason, objects = deleted,
                    "deleted remote objects; the next pass checks that none are left")
            }
            None => {
                if let Err(e) = metadata.remove_remote_deletion(&d).await {
                    tracing::warn!(topic = %t.topic, error = %e, "removing a finished remote deletion failed; retrying");
                } else {
                    tracing::info!(topic = %t.topic, topic_id = %t.topic_id, reason = ?t.reason,
                        "remote data deleted");
                }
            }
        }
    }
}
