//! The partition replicas this broker hosts, by topic.
//!
//! Invariant: a topic is in the map only with all its partition logs open; removal takes every
//! log out of its partition before deleting files, so no request touches a deleted log.
//! Directories: `<data>/logs/<topic>~<topic_id>/<partition>/` ('~' never appears in a topic
//! name, and the id keeps a re-created topic away from its predecessor's files).

use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_log::Clock;

use crate::error::{BrokerError, Result};
use crate::metadata::{PartitionState, TopicRecord};
use crate::partition::{blocking, Partition};
use crate::topic_config::{self, TopicConfig};

/// A topic as this broker serves it.
#[derive(Debug)]
pub struct TopicHandle {
    pub record: TopicRecord,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug)]
pub struct ReplicaManager {
    logs_dir: PathBuf,
    defaults: TopicConfig,
    clock: Arc<dyn Clock>,
    topics: RwLock<HashMap<String, Arc<TopicHandle>>>,
}

impl ReplicaManager {
    pub fn new(logs_dir: PathBuf, defaults: TopicConfig, clock: Arc<dyn Clock>) -> Self {
        ReplicaManager {
            logs_dir,
            defaults,
            clock,
            topics: RwLock::new(HashMap::new()),
        }
    }

    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    fn topic_dir(&self, record: &TopicRecord) -> PathBuf {
        self.logs_dir
            .join(format!("{}~{}", record.name, record.topic_id))
    }

    pub fn topic(&self, name: &str) -> Result<Arc<TopicHandle>> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    pub fn topics(&self) -> Vec<Arc<TopicHandle>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let handle = self.topic(topic)?;
        handle
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: handle.record.partitions,
            })
    }

    /// Opens (creating if needed) every partition log of a topic and starts serving it.
    pub async fn open_topic(&self, record: TopicRecord, states: Vec<PartitionState>) -> Result<()> {
        let config = topic_config::resolve(&self.defaults, &record.config)?;
        if states.len() != record.partitions as usize {
            return Err(BrokerError::Internal(format!(
                "topic {:?} has {} partitions but {} partition states",
                record.name,
                record.partitions,
                states.len()
            )));
        }
        let dir = self.topic_dir(&record);
        let clock = self.clock.clone();
        let log_config = config.log.clone();
        let topic: Arc<str> = Arc::from(record.name.as_str());
        let partitions = blocking(move || {
            states
                .into_iter()
                .enumerate()
                .map(|(i, state)| {
                    let log = strata_log::Log::open(
                        dir.join(i.to_string()),
                        log_config.clone(),
                        clock.clone(),
                    )
                    .map_err(|e| BrokerError::from_log(&topic, i as u32, e))?;
                    Ok(Partition::new(topic.clone(), i as u32, log, state))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        let handle = Arc::new(TopicHandle {
            record: record.clone(),
            config,
            partitions,
        });
        self.topics.write().insert(record.name.clone(), handle);
        Ok(())
    }

    /// Applies a changed topic record (config overrides) to the running partitions.
    pub fn update_topic(&self, record: TopicRecord) -> Result<()> {
        let old = self.topic(&record.name)?;
        let config = topic_config::resolve(&self.defaults, &record.config)?;
        for p in &old.partitions {
            p.update_config(config.log.clone())?;
        }
        let handle = Arc::new(TopicHandle {
            record: record.clone(),
            config,
            partitions: old.partitions.clone(),
        });
        self.topics.write().insert(record.name.clone(), handle);
        Ok(())
    }

    /// Stops serving a topic and deletes its files.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let Some(handle) = self.topics.write().remove(name) else {
            return Ok(());
        };
        let dir = self.topic_dir(&handle.record);
        blocking(move || {
            for p in &handle.partitions {
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
                for p in &t.partitions {
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

    /// Deletes topic directories that no known topic owns (left by a delete that crashed).
    pub async fn remove_orphans(&self, known: Vec<TopicRecord>) -> Result<()> {
        let logs_dir = self.logs_dir.clone();
        let keep: Vec<String> = known
            .iter()
            .map(|r| format!("{}~{}", r.name, r.topic_id))
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
