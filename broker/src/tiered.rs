//! The broker's side of tiered storage: which object store, one [`RemoteLog`] per hosted
//! partition, and the background work that moves sealed segments there.
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
use strata_tiering::{ChunkCache, ReadContext, RemoteLog, RetentionPolicy, StoreOptions};
use tokio::sync::watch;

use crate::error::{BrokerError, Result};
use crate::replica::{blocking, Partition, RemoteSummary};
use crate::replicas::TopicHandle;
use crate::state::BrokerState;

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
    /// Objects no manifest lists are deleted once older than this.
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
                    .with_clock(self.clock.clone()),
                )
            })
            .clone()
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

/// Uploads, remote retention and scrub, until `stop`.
pub async fn run(state: Arc<BrokerState>, mut stop: watch::Receiver<bool>) {
    let Some(tier) = state.tier.as_ref() else {
        return;
    };
    let interval = tier.config.upload_interval;
    let mut pass: u64 = 0;
    let mut last_scrub = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        pass += 1;
        let scrub = last_scrub.elapsed() >= tier.config.scrub_interval;
        if scrub {
            last_scrub = tokio::time::Instant::now();
        }
        for topic in state
            .replicas
            .local_topics()
            .into_iter()
            .filter(|t| t.config.remote_storage)
        {
            for p in topic.partitions.values() {
                let outcome = if p.is_leader() {
                    lead_partition(tier, &topic, p, scrub).await
                } else if pass.is_multiple_of(10) {
                    // Followers learn where the remote tier ends, to bound their local retention.
                    refresh(p).await.map(|_| ())
                } else {
                    Ok(())
                };
                if let Err(e) = outcome {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "tiered storage work failed; retrying");
                }
            }
        }
    }
}

/// Reads the latest manifest into the partition's summary.
async fn refresh(p: &Arc<Partition>) -> Result<Option<strata_tiering::Manifest>> {
    let Some(remote) = p.remote_log() else {
        return Ok(None);
    };
    let manifest = remote
        .latest_manifest()
        .await
        .map_err(|e| p.tier_error(e))?;
    p.set_remote_summary(manifest.as_ref().map(RemoteSummary::of));
    Ok(manifest)
}

/// Leader: upload what is sealed and committed, then apply total retention to the remote tier.
async fn lead_partition(
    tier: &Tier,
    topic: &TopicHandle,
    p: &Arc<Partition>,
    scrub: bool,
) -> Result<()> {
    let Some(remote) = p.remote_log() else {
        return Ok(());
    };
    let epoch = p.leader_epoch();
    let counted = |e: BrokerError| {
        strata_tiering::metrics::upload_failed_before_store();
        e
    };
    let mut manifest = refresh(p).await.map_err(counted)?;
    let hw = p.high_watermark();
    let segments = p.with_log(|log| Ok(log.segments()))?;
    for seg in segments.iter().filter(|s| s.sealed && s.next_offset <= hw) {
        let end = manifest.as_ref().and_then(|m| m.end_offset());
        if end.is_some_and(|e| seg.base_offset < e) {
            continue; // already uploaded
        }
        if let Some(e) = end.filter(|e| seg.base_offset > *e) {
            return Err(counted(BrokerError::Internal(format!(
                "{}/{}: the remote tier ends at {e} but the next local segment starts at {}; not uploading out of order",
                p.topic, p.index, seg.base_offset
            ))));
        }
        let path = seg.path.clone();
        let bytes = blocking(move || {
            std::fs::read(&path)
                .map_err(|e| BrokerError::Internal(format!("reading {}: {e}", path.display())))
        })
        .await
        .map_err(counted)?;
        let next = remote
            .upload(bytes::Bytes::from(bytes), seg.base_offset, epoch)
            .await
            .map_err(|e| p.tier_error(e))?;
        tracing::debug!(topic = %p.topic, partition = p.index, base = seg.base_offset, next = seg.next_offset, "segment uploaded");
        p.set_remote_summary(Some(RemoteSummary::of(&next)));
        manifest = Some(next);
    }
    // Total retention over both tiers: time on the remote segments, size on remote + local-only.
    let Some(current) = manifest.filter(|m| !m.segments.is_empty()) else {
        return Ok(());
    };
    let cfg = &topic.config.log;
    let local_only = p.local_bytes_above(current.end_offset().unwrap_or(0))?;
    let policy = RetentionPolicy {
        start_offset: None,
        retention_ms: cfg.retention_ms,
        retention_bytes: cfg.retention_bytes.map(|b| b.saturating_sub(local_only)),
    };
    let (after, deleted) = remote
        .apply_retention(&policy, epoch)
        .await
        .map_err(|e| p.tier_error(e))?;
    if !deleted.is_empty() {
        tracing::info!(topic = %p.topic, partition = p.index, objects = deleted.len(), remote_log_start = after.remote_log_start_offset, "remote retention deleted segments");
        p.set_remote_summary(Some(RemoteSummary::of(&after)));
    }
    if scrub {
        let report = remote
            .scrub(tier.config.scrub_grace)
            .await
            .map_err(|e| p.tier_error(e))?;
        if !report.deleted_objects.is_empty() {
            tracing::info!(topic = %p.topic, partition = p.index, objects = report.deleted_objects.len(), "scrub removed unlisted objects");
        }
    }
    Ok(())
}
