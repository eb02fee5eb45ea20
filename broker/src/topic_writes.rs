//! The steps of the topic changes that take several commits: creation, deletion and new
//! partitions, each writing or deleting partition states in chunks under etcd's transaction
//! limit (`--max-txn-ops`, 128 by default; a chunk is [`CHUNK`] states and one check).
//!
//! Order, so that a crash at any point leaves a state the controller can finish or undo
//! (`topic_changes`):
//! - create: record in phase `Creating` (create-if-absent), states in chunks, record `Ready`;
//! - new partitions: record in phase `Growing`, new states in chunks, record `Ready` with the
//!   new count;
//! - delete: record in phase `Deleting`, states deleted in chunks, record deleted.
//!
//! Invariant: every chunk also checks that the topic record is still at the revision its
//! writer set, so a writer that was interrupted and taken over (the record rewritten by the
//! controller that cleans up) writes nothing more.

use strata_coordinator::{CoordinatorError, Expect, Write};

use crate::error::{BrokerError, Result};
use crate::metadata::{
    encode, partition_key, topic_key, MetadataStore, PartitionState, Revisioned, TopicPhase,
    TopicRecord,
};
use crate::tier::deletions::{Reason, RemoteDeletion};

/// Partition states per commit (with the record check, under etcd's default 128 operations;
/// about 10 KiB, far under its 1.5 MiB request limit).
pub const CHUNK: usize = strata_coordinator::MAX_WRITES_PER_COMMIT;

/// The failpoints after each chunk of partition states is written (creation, new partitions)
/// or deleted (deletion, undoing), so a test can SIGKILL the controller half-way through.
pub const AFTER_STATES_WRITTEN: &str = "topic.after_states_written";
pub const AFTER_STATES_DELETED: &str = "topic.after_states_deleted";

/// What [`MetadataStore::end_interrupted`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Nothing: the record changed since it was read (the change went on, or ended).
    Changed,
    /// The creation or the addition of partitions was undone.
    Undone,
    /// The deletion was finished; the record is the deleted topic's (with `remote_at`, its
    /// remote data's tombstone was recorded with it).
    Deleted(TopicRecord),
}

impl MetadataStore {
    /// Writes `record` in phase `Creating` if no topic has its name; returns its revision.
    pub async fn begin_create(&self, record: &TopicRecord) -> Result<i64> {
        let mut creating = record.clone();
        creating.phase = TopicPhase::Creating;
        let key = topic_key(&record.name);
        match self
            .store()
            .put(&key, encode(&creating)?, Expect::Absent)
            .await
        {
            Ok(revision) => Ok(revision),
            Err(CoordinatorError::Conflict { .. }) => Err(self.name_taken(&record.name).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Why a create found the name taken: an existing topic, or one a change is under way on.
    async fn name_taken(&self, name: &str) -> BrokerError {
        let detail = match self.topic(name).await {
            Ok(Some(t)) if t.value.phase == TopicPhase::Deleting => {
                "is being deleted; create it again once that has finished"
            }
            Ok(Some(t)) if t.value.phase == TopicPhase::Creating => {
                "is being created (or an interrupted creation is being undone); retry in a few \
                 seconds"
            }
            _ => "already exists",
        };
        BrokerError::TopicExists {
            name: name.to_string(),
            detail,
        }
    }

    /// Creates the states of partitions `first..` of `name`, in chunks, each only while the
    /// topic record is at `revision`.
    pub async fn write_partition_states(
        &self,
        name: &str,
        revision: i64,
        first: u32,
        states: &[PartitionState],
    ) -> Result<()> {
        for (n, chunk) in states.chunks(CHUNK).enumerate() {
            let start = first + (n * CHUNK) as u32;
            let mut writes = vec![Write::check(topic_key(name), Expect::Revision(revision))];
            for (i, state) in chunk.iter().enumerate() {
                writes.push(Write::put(
                    partition_key(name, start + i as u32),
                    encode(state)?,
                    Expect::Absent,
                ));
            }
            self.chunk(name, writes).await?;
            let detail = format!(
                "{name}: wrote partition states {start}..{}",
                start as usize + chunk.len()
            );
            strata_tiering::failpoint::reached(AFTER_STATES_WRITTEN, &detail).await;
        }
        Ok(())
    }

    /// Deletes the states of the partitions of `name` numbered `from` or more, in chunks, each
    /// only while the topic record is at `revision`.
    pub async fn delete_partition_states(
        &self,
        name: &str,
        revision: i64,
        from: u32,
    ) -> Result<()> {
        let keys: Vec<String> = self
            .store()
            .list(&format!("partitions/{name}/"))
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| {
                key.rsplit('/')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| p >= from)
            })
            .collect();
        for (n, chunk) in keys.chunks(CHUNK).enumerate() {
            let mut writes = vec![Write::check(topic_key(name), Expect::Revision(revision))];
            writes.extend(
                chunk
                    .iter()
                    .map(|key| Write::delete(key.clone(), Expect::Any)),
            );
            self.chunk(name, writes).await?;
            let detail = format!("{name}: deleted chunk {n} of the partition states");
            strata_tiering::failpoint::reached(AFTER_STATES_DELETED, &detail).await;
        }
        Ok(())
    }

    /// Replaces the topic record if it is still at `revision`; returns the new revision, or
    /// `None` when it changed.
    pub async fn replace_topic(&self, record: &TopicRecord, revision: i64) -> Result<Option<i64>> {
        match self
            .store()
            .put(
                &topic_key(&record.name),
                encode(record)?,
                Expect::Revision(revision),
            )
            .await
        {
            Ok(written) => Ok(Some(written)),
            Err(CoordinatorError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the topic record if it is still at `revision`, in one commit with `also` (the
    /// tombstone of its remote data); `false` when it changed.
    pub async fn remove_topic_record(
        &self,
        name: &str,
        revision: i64,
        also: Vec<Write>,
    ) -> Result<bool> {
        let mut writes = vec![Write::delete(topic_key(name), Expect::Revision(revision))];
        writes.extend(also);
        match self.store().commit(writes).await {
            Ok(_) => Ok(true),
            Err(CoordinatorError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a topic: `Creating` record, states, `Ready` record.
    pub async fn create_topic(
        &self,
        record: &TopicRecord,
        states: &[PartitionState],
    ) -> Result<()> {
        let revision = self.begin_create(record).await?;
        self.write_partition_states(&record.name, revision, 0, states)
            .await?;
        let mut ready = record.clone();
        ready.phase = TopicPhase::Ready;
        self.replace_topic(&ready, revision)
            .await?
            .map(|_| ())
            .ok_or_else(|| interrupted(&record.name, "creation"))
    }

    /// Adds the partitions `states` (numbered from the record's count) to a `Ready` topic read
    /// at `current.revision`. `Ok(false)` when the record changed before the change began.
    pub async fn add_partitions(
        &self,
        current: &Revisioned<TopicRecord>,
        states: &[PartitionState],
    ) -> Result<bool> {
        let old = current.value.partitions;
        let to = old + states.len() as u32;
        let mut growing = current.value.clone();
        growing.phase = TopicPhase::Growing { to };
        let Some(revision) = self.replace_topic(&growing, current.revision).await? else {
            return Ok(false);
        };
        let name = &current.value.name;
        self.write_partition_states(name, revision, old, states)
            .await?;
        let mut grown = current.value.clone();
        grown.partitions = to;
        grown.phase = TopicPhase::Ready;
        self.replace_topic(&grown, revision)
            .await?
            .map(|_| true)
            .ok_or_else(|| interrupted(name, "addition of partitions"))
    }

    /// Deletes a topic read at `current.revision`: `Deleting` record, states, record. `Ok(false)`
    /// when the record changed before the deletion began. With `remote_at` (the cluster tiers;
    /// the time now), the record's removal also records the tombstone that has the topic's
    /// remote data deleted (`tier::deletions`).
    pub async fn delete_topic(
        &self,
        current: &Revisioned<TopicRecord>,
        remote_at: Option<i64>,
    ) -> Result<bool> {
        let mut deleting = current.value.clone();
        deleting.phase = TopicPhase::Deleting;
        let Some(revision) = self.replace_topic(&deleting, current.revision).await? else {
            return Ok(false);
        };
        self.finish_delete(&current.value, revision, remote_at)
            .await?;
        Ok(true)
    }

    /// The rest of a deletion whose record is `Deleting` at `revision`.
    pub async fn finish_delete(
        &self,
        topic: &TopicRecord,
        revision: i64,
        remote_at: Option<i64>,
    ) -> Result<()> {
        let name = &topic.name;
        self.delete_partition_states(name, revision, 0).await?;
        let tombstone = match remote_at {
            Some(now) => vec![RemoteDeletion {
                topic: topic.name.clone(),
                topic_id: topic.topic_id.clone(),
                partitions: topic.partitions,
                reason: Reason::TopicDeleted,
                created_ms: now,
            }
            .write()?],
            None => Vec::new(),
        };
        if self.remove_topic_record(name, revision, tombstone).await? {
            Ok(())
        } else {
            Err(interrupted(name, "deletion"))
        }
    }

    /// Ends a change interrupted half-way (`topic` is its record as read, not `Ready`): a
    /// deletion is finished, a creation undone (the topic deleted), an addition of partitions
    /// undone (the new states deleted). The first write takes the record over, so the
    /// interrupted writer's next chunk fails.
    pub async fn end_interrupted(
        &self,
        topic: &Revisioned<TopicRecord>,
        remote_at: Option<i64>,
    ) -> Result<Ended> {
        let name = &topic.value.name;
        match topic.value.phase {
            TopicPhase::Ready => Ok(Ended::Changed),
            TopicPhase::Creating | TopicPhase::Deleting => {
                let mut deleting = topic.value.clone();
                deleting.phase = TopicPhase::Deleting;
                let Some(revision) = self.replace_topic(&deleting, topic.revision).await? else {
                    return Ok(Ended::Changed);
                };
                // An undone creation uploaded nothing: it was never part of the cluster.
                let remote_at = remote_at.filter(|_| topic.value.phase == TopicPhase::Deleting);
                self.finish_delete(&topic.value, revision, remote_at)
                    .await?;
                Ok(match topic.value.phase {
                    TopicPhase::Deleting => Ended::Deleted(topic.value.clone()),
                    _ => Ended::Undone,
                })
            }
            TopicPhase::Growing { .. } => {
                let Some(revision) = self.replace_topic(&topic.value, topic.revision).await? else {
                    return Ok(Ended::Changed);
                };
                self.delete_partition_states(name, revision, topic.value.partitions)
                    .await?;
                let mut ready = topic.value.clone();
                ready.phase = TopicPhase::Ready;
                match self.replace_topic(&ready, revision).await? {
                    Some(_) => Ok(Ended::Undone),
                    None => Err(interrupted(name, "undoing of an addition of partitions")),
                }
            }
        }
    }

    /// One chunk; a failed check means another writer took the topic over.
    async fn chunk(&self, name: &str, writes: Vec<Write>) -> Result<()> {
        match self.store().commit(writes).await {
            Ok(_) => Ok(()),
            Err(CoordinatorError::Conflict { key, .. }) => Err(BrokerError::Internal(format!(
                "the change of topic {name:?} was interrupted: {key} changed under it (another \
                 controller took the change over); check the topic and retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

fn interrupted(name: &str, what: &str) -> BrokerError {
    BrokerError::Internal(format!(
        "the {what} of topic {name:?} was interrupted: its record changed under it (another \
         controller took the change over); check the topic and retry"
    ))
}

#[cfg(test)]
#[path = "topic_writes_tests.rs"]
mod tests;
