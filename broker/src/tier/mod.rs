//! The broker's side of tiered storage: which object store, one [`RemoteLog`] per hosted
//! partition, and the background work that moves sealed segments there ([`work`], with the
//! upload rule in [`plan`]).
//!
//! Invariants:
//! - only the leader uploads, only sealed segments wholly below the high watermark, in offset
//!   order, and each segment once (the manifest says what is there; a new leader continues
//!   from it);
//! - a partition's local retention never deletes a segment the remote tier does not hold yet
//!   (its retention limit is the manifest's end, set only after the manifest was written);
//! - remote retention writes the new manifest before deleting objects;
//! - topic deletion deletes the topic's objects; ids in keys keep a re-created topic away from
//!   them.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_log::Clock;
use strata_tiering::{ChunkCache, ReadContext, RemoteLog, StoreOptions, UploadConfig};

use crate::error::{BrokerError, Result};
use crate::state::BrokerState;

pub mod plan;
mod work;

pub use work::run;

/// How the broker reaches its object store.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// `s3://bucket/prefix`, `file:///abs/dir` or `memory://`.
    pub url: String,
    pub options: StoreOptions,
    /// Bound of the on-disk chunk cache of remote reads (`remote.cache.bytes`).
    pub cache_bytes: u64,
    /// Remote GETs in flight at once on this broker: replays cannot starve anything else.
    pub max_concurrent_gets: usize,
    /// How often leaders look for segments to upload.
    pub upload_interval: Duration,
    /// Objects no manifest lists are deleted once older than this, by the store's clock; an
    /// uploader abandons a manifest write later than half of it after its object PUT.
    pub scrub_grace: Duration,
    /// How often leaders scrub their partitions.
    pub scrub_interval: Duration,
}

impl TierConfig {
    pub fn new(url: impl Into<String>) -> Self {
        TierConfig {
            url: url.into(),
            options: StoreOptions::default(),
            cache_bytes: 1 << 30,
            max_concurrent_gets: 16,
            upload_interval: Duration::from_secs(1),
            scrub_grace: Duration::from_secs(600),
            scrub_interval: Duration::from_secs(600),
        }
    }
}

/// The remote tier of one broker.
#[derive(Debug)]
pub struct Tier {
    pub config: TierConfig,
    store: Arc<dyn strata_tiering::object_store::ObjectStore>,
    root: strata_tiering::object_store::path::Path,
    ctx: ReadContext,
    clock: Arc<dyn Clock>,
    logs: Mutex<HashMap<(String, u32), Arc<RemoteLog>>>,
}

impl Tier {
    /// Opens the store named by the config; the chunk cache lives in `cache_dir`.
    pub fn open(
        config: TierConfig,
        cluster: &str,
        cache_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Result<Tier> {
        let (store, prefix) = strata_tiering::object_store_from_url(&config.url, &config.options)
            .map_err(|e| {
            BrokerError::InvalidConfig(format!("object store {}: {e}", config.url))
        })?;
        let cache = ChunkCache::new(cache_dir, config.cache_bytes)
            .map_err(|e| BrokerError::Internal(format!("remote read cache: {e}")))?;
        Ok(Tier {
            root: strata_tiering::root_path(&prefix, cluster),
            ctx: ReadContext::new(config.max_concurrent_gets, Some(cache)),
            config,
            store,
            clock,
            logs: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the store answers, the bucket exists (a list of one key under the root) and
    /// create-if-absent PUTs are honoured (manifest fencing depends on them).
    pub async fn check(&self) -> Result<()> {
        self.check_listing().await?;
        let url = &self.config.url;
        let check =
            strata_tiering::bucket::check_conditional_put(self.store.as_ref(), &self.root, url);
        match tokio::time::timeout(Duration::from_secs(20), check).await {
            Err(_) => Err(BrokerError::InvalidConfig(format!(
                "object store {url} did not answer a PUT within 20 s"
            ))),
            Ok(Err(e)) => Err(BrokerError::InvalidConfig(e.to_string())),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn check_listing(&self) -> Result<()> {
        use futures::StreamExt;
        let mut listing = self.store.list(Some(&self.root));
        let url = &self.config.url;
        match tokio::time::timeout(Duration::from_secs(20), listing.next()).await {
            Err(_) => Err(BrokerError::InvalidConfig(format!(
                "object store {url} did not answer within 20 s"
            ))),
            Ok(Some(Err(e))) => Err(BrokerError::InvalidConfig(format!(
                "object store {url} cannot be listed (does the bucket exist, are the credentials right?): {e}"
            ))),
            Ok(_) => Ok(()),
        }
    }

    /// The remote log of a partition of `topic` (by topic id: a re-created topic has its own).
    pub fn remote_log(&self, topic: &str, topic_id: &str, partition: u32) -> Arc<RemoteLog> {
        let key = (topic_id.to_string(), partition);
        self.logs
            .lock()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(
                    RemoteLog::new(
                        self.store.clone(),
                        self.root.clone(),
                        topic,
                        topic_id,
                        partition,
                        self.ctx.clone(),
                    )
                    .with_clock(self.clock.clone())
                    .with_upload_config(UploadConfig {
                        manifest_deadline: self.config.scrub_grace / 2,
                        ..UploadConfig::default()
                    }),
                )
            })
            .clone()
    }

    /// A lower bound on the store's time, by which scrubs judge object age (one PUT and one
    /// HEAD of a probe under the cluster's root).
    pub async fn store_now_ms(&self) -> Result<i64> {
        strata_tiering::store_clock::now_ms(self.store.as_ref(), &self.root)
            .await
            .map_err(|e| BrokerError::Internal(format!("object store {}: {e}", self.config.url)))
    }

    /// Forgets the remote logs of a topic id (after deletion).
    fn forget(&self, topic_id: &str) {
        self.logs.lock().retain(|(id, _), _| id != topic_id);
    }
}

impl BrokerState {
    /// Attaches remote logs to tiered partitions (and detaches them from others). Called after
    /// every metadata sync.
    pub fn attach_remote_logs(&self) {
        let Some(tier) = &self.tier else { return };
        for t in self.replicas.local_topics() {
            for p in t.partitions.values() {
                let remote = t
                    .config
                    .remote_storage
                    .then(|| tier.remote_log(&t.record.name, &t.record.topic_id, p.index));
                p.set_remote_log(remote);
            }
        }
    }

    /// Deletes every object of a deleted topic, in the background.
    pub fn delete_remote_data(&self, topic: &str, topic_id: &str, partitions: u32) {
        let Some(tier) = &self.tier else { return };
        let logs: Vec<_> = (0..partitions)
            .map(|p| tier.remote_log(topic, topic_id, p))
            .collect();
        tier.forget(topic_id);
        let topic = topic.to_string();
        tokio::spawn(async move {
            for log in logs {
                match log.delete_all().await {
                    Ok(n) => {
                        tracing::info!(%topic, deleted = n, "deleted remote objects of a deleted topic")
                    }
                    Err(e) => {
                        tracing::warn!(%topic, error = %e, "deleting remote objects failed; the scrub will retry")
                    }
                }
            }
        });
    }
}
