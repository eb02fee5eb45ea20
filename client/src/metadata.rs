//! The cluster as the client sees it: broker addresses, topics, partition leaders.
//!
//! The cache is filled from the `Metadata` RPC (bootstrap brokers tried in order, then every
//! broker already known) and refreshed when a topic is missing from it or a call fails with a
//! code that `needs_metadata_refresh()`. Every produce, fetch and list-offsets goes to the
//! partition's leader as the cache last saw it; a stale entry costs one retry, never a wrong
//! answer, because a broker that is not the leader refuses the request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::Channel;
use parking_lot::RwLock;
use strata_proto::log_client::LogClient;
use strata_proto::{ErrorCode, MetadataRequest, MetadataResponse};

use crate::config::ClientConfig;
use crate::connection::Connections;
use crate::error::{Error, Result};

/// What the client knows of one topic.
#[derive(Debug)]
pub(crate) struct TopicMeta {
    pub name: Arc<str>,
    /// Leader broker id per partition, indexed by partition number (-1: no leader).
    pub leaders: Vec<i32>,
}

impl TopicMeta {
    pub fn partitions(&self) -> u32 {
        self.leaders.len() as u32
    }

    /// Checks that `partition` exists.
    pub fn check(&self, partition: u32) -> Result<()> {
        if partition < self.partitions() {
            Ok(())
        } else {
            Err(Error::UnknownPartition {
                topic: self.name.to_string(),
                partition,
                partitions: self.partitions(),
            })
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    brokers: HashMap<i32, String>,
    topics: HashMap<String, Arc<TopicMeta>>,
}

/// Connections plus the metadata cache; shared by every part of one client.
#[derive(Debug)]
pub(crate) struct Cluster {
    conns: Connections,
    cache: RwLock<Cache>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// Connects to the first bootstrap broker that answers and loads every topic's metadata.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.brokers.is_empty() {
            return Err(Error::InvalidInput(
                "no broker address given; pass at least one host:port".to_string(),
            ));
        }
        let cluster = Arc::new(Cluster {
            conns: Connections::new(config),
            cache: RwLock::new(Cache::default()),
            refreshing: tokio::sync::Mutex::new(()),
        });
        cluster.refresh(&[]).await?;
        Ok(cluster)
    }

    pub fn conns(&self) -> &Connections {
        &self.conns
    }

    pub fn config(&self) -> &ClientConfig {
        self.conns.config()
    }

    /// Addresses to try for cluster-wide calls: bootstrap brokers first, then known ones.
    pub fn any_broker_addresses(&self) -> Vec<String> {
        let mut out = self.config().brokers.clone();
        let cache = self.cache.read();
        let mut known: Vec<_> = cache.brokers.iter().collect();
        known.sort();
        for (_, address) in known {
            if !out.contains(address) {
                out.push(address.clone());
            }
        }
        out
    }

    /// Calls `Metadata` on the first broker that answers.
    pub async fn fetch_metadata(&self, topics: Vec<String>) -> Result<MetadataResponse> {
        let mut last = None;
        for address in self.any_broker_addresses() {
            let mut client = match self.conns.log(&address).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let request = MetadataRequest {
                topics: topics.clone(),
            };
            match client.metadata(request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let err = self.conns.error(status, &address);
                    if !matches!(err, Error::Unreachable { .. } | Error::Timeout { .. }) {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.expect("at least one broker address"))
    }

    /// Reloads the given topics (every topic when empty) into the cache.
    pub async fn refresh(&self, topics: &[String]) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let response = self.fetch_metadata(topics.to_vec()).await?;
        let mut cache = self.cache.write();
        cache.brokers = response
            .brokers
            .iter()
            .map(|b| (b.id, b.address.clone()))
            .collect();
        if topics.is_empty() {
            cache.topics.clear();
        } else {
            for t in topics {
                cache.topics.remove(t);
            }
        }
        for t in response.topics {
            let mut parts = t.partitions;
            parts.sort_by_key(|p| p.partition);
            let meta = TopicMeta {
                name: Arc::from(t.name.as_str()),
                leaders: parts.iter().map(|p| p.leader).collect(),
            };
            cache.topics.insert(t.name, Arc::new(meta));
        }
        Ok(())
    }

    /// The cached metadata of `topic`, without any I/O.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicMeta>> {
        self.cache.read().topics.get(topic).cloned()
    }

    /// The metadata of `topic`, refreshing the cache once when it is not there.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicMeta>> {
        if let Some(meta) = self.cached_topic(topic) {
            return Ok(meta);
        }
        self.refresh(&[topic.to_string()]).await?;
        self.cached_topic(topic).ok_or_else(|| Error::UnknownTopic {
            topic: topic.to_string(),
        })
    }

    /// The leader's address as the cache has it, without any I/O (`None`: not cached, or no
    /// leader).
    pub fn cached_leader(&self, topic: &str, partition: u32) -> Option<String> {
        let cache = self.cache.read();
        let id = *cache.topics.get(topic)?.leaders.get(partition as usize)?;
        (id >= 0).then(|| cache.brokers.get(&id).cloned()).flatten()
    }

    /// The address of the leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<String> {
        let meta = self.topic(topic).await?;
        meta.check(partition)?;
        let id = meta.leaders[partition as usize];
        let address = self.cache.read().brokers.get(&id).cloned();
        match address {
            Some(address) if id >= 0 => Ok(address),
            _ => Err(Error::Broker {
                code: ErrorCode::LeaderNotAvailable,
                status: tonic::Code::Unavailable,
                message: format!("partition {topic}/{partition} has no leader right now"),
            }),
        }
    }

    /// Refreshes `topic` if `err` says the cache may be stale. A failed refresh is left for
    /// the next attempt to find.
    pub async fn refresh_after(&self, topic: &str, err: &Error) {
        if err.needs_metadata_refresh() {
            if let Err(e) = self.refresh(&[topic.to_string()]).await {
                tracing::debug!(topic, error = %e, "metadata refresh failed");
            }
        }
    }

    /// Runs `call` against the partition's leader, retrying retriable failures (a leader that
    /// died, moved or is being elected) with backoff for up to the request timeout, long enough
    /// to ride out a leader failover (for one-off calls such as list offsets).
    pub async fn call_leader<T, F, Fut>(
        &self,
        topic: &str,
        partition: u32,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(LogClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut backoff = Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + self.conns.config().request_timeout;
        loop {
            let result = async {
                let address = self.leader(topic, partition).await?;
                let client = self.conns.log(&address).await?;
                call(client)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| self.conns.error(s, &address))
            }
            .await;
            match result {
                Err(e) if e.is_retriable() && tokio::time::Instant::now() + backoff < deadline => {
                    self.refresh_after(topic, &e).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}
