//! The partition replicas this broker hosts, kept in line with the cluster metadata.
//!
//! [`ReplicaManager::apply`] takes a whole [`ClusterSnapshot`] and makes the local replicas
//! match it: opens the logs of partitions assigned to this broker, updates their leader state
//! and config, and closes and deletes what is no longer assigned or whose topic is gone.
//!
//! Invariants: a request is served only by the partition's leader, as the last applied
//! snapshot says; removal takes every log out of its partition before deleting files, so no
//! request touches a deleted log. Directories: `<data>/logs/<topic>~<topic_id>/<partition>/`
//! ('~' never appears in a topic name; the id keeps a re-created topic away from old files).

use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_log::Clock;

use crate::error::{BrokerError, Result};
use crate::metadata::{PartitionState, TopicRecord};
use crate::replica::{blocking, Partition};
use crate::snapshot::{ClusterSnapshot, TopicState};
use crate::topic_config::{self, TopicConfig};

/// A topic as this broker hosts it: only the partitions assigned here.
#[derive(Debug)]
pub struct TopicHandle {
    pub record: TopicRecord,
    pub config: TopicConfig,
    pub partitions: BTreeMap<u32, Arc<Partition>>,
}

#[derive(Debug)]
pub struct ReplicaManager {
    broker_id: i32,
    incarnation: i64,
    logs_dir: PathBuf,
    defaults: TopicConfig,
    clock: Arc<dyn Clock>,
    topics: RwLock<HashMap<String, Arc<TopicHandle>>>,
    snapshot: RwLock<Arc<ClusterSnapshot>>,
    /// Where partitions queue themselves for housekeeping when they change.
    chores: Arc<crate::housekeeping::Inbox>,
}

impl ReplicaManager {
    pub fn new(
        broker_id: i32,
        incarnation: i64,
        logs_dir: PathBuf,
        defaults: TopicConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ReplicaManager {
            broker_id,
            incarnation,
            logs_dir,
            defaults,
            clock,
            topics: RwLock::new(HashMap::new()),
            snapshot: RwLock::new(Arc::new(ClusterSnapshot::default())),
            chores: Arc::default(),
        }
    }

    /// The partitions that changed since housekeeping last visited them.
    pub fn chores(&self) -> &crate::housekeeping::Inbox {
        &self.chores
    }

    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    /// The metadata last applied.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.snapshot.read().clone()
    }

    fn topic_dir(&self, record: &TopicRecord) -> PathBuf {
        self.logs_dir
            .join(format!("{}~{}", record.name, record.topic_id))
    }

    /// Local topics, by name.
    pub fn local_topics(&self) -> Vec<Arc<TopicHandle>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    /// The local replica of a partition, whatever its role.
    pub fn local(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        self.topics
            .read()
            .get(topic)?
            .partitions
            .get(&partition)
            .cloned()
    }

    /// The partition if this broker leads it; otherwise the precise error (unknown topic or
    /// partition, not the leader, no leader).
    pub fn leader(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        if let Some(p) = self.local(topic, partition) {
            if p.is_leader() {
                return Ok(p);
            }
        }
        let snapshot = self.snapshot();
        let state = snapshot.partition(topic, partition)?;
        Err(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition,
            broker: self.broker_id,
            leader: state.leader,
        })
    }

    /// Publishes `snapshot` as is (its partition states were applied to the local replicas by
    /// the caller, see [`crate::deltas`]).
    pub fn publish(&self, snapshot: Arc<ClusterSnapshot>) {
        *self.snapshot.write() = snapshot;
    }

    /// Makes the local replicas match `snapshot`, then publishes it.
    pub async fn apply(&self, snapshot: Arc<ClusterSnapshot>) -> Result<()> {
        let current: HashMap<String, Arc<TopicHandle>> = self.topics.read().clone();
        for (name, handle) in &current {
            let same = snapshot
                .topics
                .get(name)
                .is_some_and(|t| t.record.topic_id == handle.record.topic_id);
            if !same {
                self.remove_topic(name).await?;
            }
        }
        for (name, topic) in &snapshot.topics {
            let existing = self.topics.read().get(name).cloned();
            if let Err(e) = self.apply_topic(topic, existing).await {
                // One broken topic must not stop the others from being served.
                tracing::error!(topic = %name, error = %e, "cannot apply topic metadata");
            }
        }
        *self.snapshot.write() = snapshot;
        Ok(())
    }

    async fn apply_topic(
        &self,
        topic: &TopicState,
        existing: Option<Arc<TopicHandle>>,
    ) -> Result<()> {
        let me = self.broker_id;
        let incarnation = self.incarnation;
        let assigned: BTreeMap<u32, (PartitionState, i64)> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.replicas.contains(&me))
            .map(|(i, s)| (i as u32, (s.clone(), topic.revision(i))))
            .collect();
        let config = topic_config::resolve(&self.defaults, &topic.record.config)?;
        let mut partitions = existing
            .as_ref()
            .map(|h| h.partitions.clone())
            .unwrap_or_default();
        let config_changed = existing.as_ref().is_some_and(|h| h.config != config);
        // Drop partitions no longer assigned here.
        let gone: Vec<u32> = partitions
            .keys()
            .filter(|p| !assigned.contains_key(p))
            .copied()
            .collect();
        for p in gone {
            if let Some(partition) = partitions.remove(&p) {
                let dir = self.topic_dir(&topic.record).join(p.to_string());
                blocking(move || {
                    if let Some(log) = partition.take_log() {
                        log.delete().map_err(|e| {
                            BrokerError::from_log(&partition.topic, partition.index, e)
                        })?;
                    }
                    remove_dir(&dir)
                })
                .await?;
            }
        }
        // Update the ones we have, open the new ones.
        let mut to_open = Vec::new();
        for (p, (state, revision)) in &assigned {
            match partitions.get(p) {
                Some(partition) => {
                    partition.set_state(state.clone(), *revision);
                    if config_changed {
                        partition.set_tiered(config.remote_storage);
                        partition.set_unclean_leader_election(config.unclean_leader_election);
                        partition.update_config(config.local_log_config())?;
                        partition.set_min_insync_replicas(config.min_insync_replicas);
                    }
                }
                None => to_open.push((*p, state.clone(), *revision)),
            }
        }
        if !to_open.is_empty() {
            let dir = self.topic_dir(&topic.record);
            let (clock, log_config) = (self.clock.clone(), config.local_log_config());
            let chores = self.chores.clone();
            let min_isr = config.min_insync_replicas;
            let tiered = config.remote_storage;
            let unclean = config.unclean_leader_election;
            let name: Arc<str> = Arc::from(topic.record.name.as_str());
            let opened = blocking(move || {
                in_parallel(to_open, |(p, state, revision)| {
                    let log = strata_log::Log::open(
                        dir.join(p.to_string()),
                        log_config.clone(),
                        clock.clone(),
                    )
                    .map_err(|e| BrokerError::from_log(&name, p, e))?;
                    let partition = Partition::new(
                        name.clone(),
                        p,
                        (me, incarnation),
                        log,
                        (state, revision),
                        clock.clone(),
                        chores.clone(),
                    );
                    partition.set_min_insync_replicas(min_isr);
                    partition.set_tiered(tiered);
                    partition.set_unclean_leader_election(unclean);
                    Ok((p, partition))
                })
            })
            .await?;
            partitions.extend(opened);
        }
        if partitions.is_empty() && existing.is_none() {
            return Ok(());
        }
        let handle = Arc::new(TopicHandle {
            record: topic.record.clone(),
            config,
            partitions,
        });
        self.topics
            .write()
            .insert(topic.record.name.clone(), handle);
        Ok(())
    }

    /// Stops hosting a topic and deletes its files.
    async fn remove_topic(&self, name: &str) -> Result<()> {
        let Some(handle) = self.topics.write().remove(name) else {
            return Ok(());
        };
        let dir = self.topic_dir(&handle.record);
        tracing::info!(topic = %name, "deleting local replicas");
        blocking(move || {
            for p in handle.partitions.values() {
                if let Some(log) = p.take_log() {
                    log.delete()
                        .map_err(|e| BrokerError::from_log(&p.topic, p.index, e))?;
                }
            }
            remove_dir(&dir)
        })
        .await
    }

    /// Closes every log cleanly (flush, trim indexes, clean-shutdown marker).
    pub async fn close_all(&self) -> Result<()> {
        let topics: Vec<_> = self.topics.write().drain().map(|(_, t)| t).collect();
        blocking(move || {
            let mut first_error = None;
            for t in topics {
                for p in t.partitions.values() {
                    if let Some(log) = p.take_log() {
                        if let Err(e) = log.close() {
                            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing log failed");
                            first_error.get_or_insert(BrokerError::from_log(&p.topic, p.index, e));
                        }
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
    }

    /// Deletes topic directories that the snapshot does not know (left by a delete that
    /// happened while this broker was down, or crashed half-way).
    pub async fn remove_orphans(&self, snapshot: &ClusterSnapshot) -> Result<()> {
        let logs_dir = self.logs_dir.clone();
        let keep: Vec<String> = snapshot
            .topics
            .values()
            .map(|t| format!("{}~{}", t.record.name, t.record.topic_id))
            .collect();
        blocking(move || {
            let entries = match std::fs::read_dir(&logs_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(&logs_dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&logs_dir, e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                if name.contains('~') && !keep.contains(&name) {
                    tracing::info!(dir = %entry.path().display(), "removing files of a deleted topic");
                    remove_dir(&entry.path())?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// Threads that open a topic's new logs at once: opening one is mostly waiting for fsyncs
/// (segment files, the directory), so a topic of thousands of partitions opens several times
/// faster with a few in flight than one by one.
const OPEN_THREADS: usize = 8;

/// `open` over every item, on up to [`OPEN_THREADS`] threads (from a blocking task); the
/// results in the items' order, or the first error.
fn in_parallel<I, T, F>(items: Vec<I>, open: F) -> Result<Vec<T>>
where
    I: Send,
    T: Send,
    F: Fn(I) -> Result<T> + Sync,
{
    if items.len() < 2 * OPEN_THREADS {
        return items.into_iter().map(open).collect();
    }
    let per_thread = items.len().div_ceil(OPEN_THREADS);
    let mut items = items.into_iter();
    let chunks: Vec<Vec<I>> = std::iter::from_fn(|| {
        let chunk: Vec<I> = items.by_ref().take(per_thread).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
    .collect();
    std::thread::scope(|scope| {
        let open = &open;
        let threads: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || chunk.into_iter().map(open).collect::<Result<Vec<T>>>())
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            let opened = thread
                .join()
                .map_err(|_| BrokerError::Internal("a thread opening logs panicked".to_string()))?;
            all.extend(opened?);
        }
        Ok(all)
    })
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::Internal(format!("{}: {e}", path.display()))
}
