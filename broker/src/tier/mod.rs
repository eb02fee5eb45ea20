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
//! - topic deletion, and turning the remote tier off, delete the topic's objects through a
//!   tombstone in etcd ([`deletions`]); ids in keys keep a re-created topic away from them.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strata_log::Clock;
use strata_tiering::{ChunkCache, ReadContext, RemoteLog, StoreOptions, UploadConfig};

use crate::error::{BrokerError, Result};
use crate::state::BrokerState;

pub mod deletions;
pub mod lineage;
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
    /// Partitions uploading at once on this broker (`--remote-upload-concurrency`).
    pub upload_concurrency: usize,
    /// Compressed bytes one ranged GET of a replay fetches (`remote.fetch.chunk.bytes`,
    /// `--remote-fetch-chunk-bytes`); remote reads hold at most four such chunks at once.
    pub fetch_chunk_bytes: usize,
}

/// Smallest `--remote-fetch-chunk-bytes` (below a frame, each GET brings one frame).
pub const MIN_FETCH_CHUNK_BYTES: usize = 64 << 10;
/// Largest `--remote-fetch-chunk-bytes` (four chunks are held in memory at once).
pub const MAX_FETCH_CHUNK_BYTES: usize = 256 << 20;

/// Checks a `--remote-fetch-chunk-bytes` value, with a sentence naming the bounds.
pub fn check_fetch_chunk_bytes(bytes: usize) -> std::result::Result<usize, String> {
    if (MIN_FETCH_CHUNK_BYTES..=MAX_FETCH_CHUNK_BYTES).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "--remote-fetch-chunk-bytes is {bytes}; it must be between {} (64KiB) and {} \
             (256MiB): each GET of a replay fetches this much, and four chunks are held in \
             memory at once",
            MIN_FETCH_CHUNK_BYTES, MAX_FETCH_CHUNK_BYTES
        ))
    }
}

/// Default `--remote-upload-concurrency`.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;

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
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            fetch_chunk_bytes: strata_tiering::remote_log::DEFAULT_FETCH_CHUNK_BYTES,
        }
    }
}

/// How long a start-up check waits for the store before calling it unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Tier::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCheck {
    Ready,
    /// The store did not answer (the sentence says how); tiering waits for it.
    Unreachable(String),
}

/// Whether a store error means "nothing answered" (no connection, a timeout) rather than an
/// answer such as "no such bucket" or "access denied": an HTTP error of the connect, request,
/// timeout or interrupted kind somewhere in its chain of sources.
fn unreachable(e: &strata_tiering::object_store::Error) -> bool {
    use strata_tiering::object_store::client::{HttpError, HttpErrorKind};
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = err.source();
    }
    false
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
    /// Set once the store passed [`Tier::check`].
    ready: std::sync::atomic::AtomicBool,
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
            ctx: ReadContext::new(config.max_concurrent_gets, Some(cache))
                .with_fetch_chunk_bytes(config.fetch_chunk_bytes),
            config,
            store,
            clock,
            logs: Mutex::new(HashMap::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Checks the store answers, the bucket exists (a list of one key under the root) and
    /// create-if-absent PUTs are honoured (manifest fencing depends on them). A store that
    /// does not answer (no connection, or no answer within 20 s) is [`StoreCheck::Unreachable`]:
    /// the broker starts and serves local data, and tiering waits for it ([`Tier::is_ready`]).
    /// A store that answers "no such bucket", refuses the credentials or ignores conditional
    /// PUTs is an error.
    pub async fn check(&self) -> Result<StoreCheck> {
        if let Some(unreachable) = self.check_listing().await? {
            return Ok(unreachable);
        }
        let url = &self.config.url;
        let check =
            strata_tiering::bucket::check_conditional_put(self.store.as_ref(), &self.root, url);
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Err(_) => Ok(StoreCheck::Unreachable(format!(
                "object store {url} did not answer a PUT within {} s",
                CHECK_TIMEOUT.as_secs()
            ))),
            Ok(Err(strata_tiering::TieringError::Store { source, .. })) if unreachable(&source) => {
                Ok(StoreCheck::Unreachable(format!(
                    "object store {url} cannot be reached: {source}"
                )))
            }
            Ok(Err(e)) => Err(BrokerError::InvalidConfig(e.to_string())),
            Ok(Ok(())) => {
                self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(StoreCheck::Ready)
            }
        }
    }

    /// Whether the store passed [`Tier::check`]; until it has, nothing is uploaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn check_listing(&self) -> Result<Option<StoreCheck>> {
        use futures::StreamExt;
        let mut listing = self.store.list(Some(&self.root));
        let url = &self.config.url;
        match tokio::time::timeout(CHECK_TIMEOUT, listing.next()).await {
            Err(_) => Ok(Some(StoreCheck::Unreachable(format!(
                "object store {url} did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )))),
            Ok(Some(Err(e))) if unreachable(&e) => Ok(Some(StoreCheck::Unreachable(format!(
                "object store {url} cannot be reached: {e}"
            )))),
            Ok(Some(Err(e))) => Err(BrokerError::InvalidConfig(format!(
                "object store {url} cannot be listed (does the bucket exist, are the credentials right?): {e}"
            ))),
            Ok(_) => Ok(None),
        }
    }

    /// The remote log of a partition of `topic` (by topic id: a re-created topic has its own),
    /// kept while the partition is tiered here.
    pub fn remote_log(&self, topic: &str, topic_id: &str, partition: u32) -> Arc<RemoteLog> {
        let key = (topic_id.to_string(), partition);
        self.logs
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(self.partition_log(topic, topic_id, partition)))
            .clone()
    }

    /// A remote log of its own, sharing nothing cached with the partition's (for deletions).
    pub fn partition_log(&self, topic: &str, topic_id: &str, partition: u32) -> RemoteLog {
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
        })
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
    /// Attaches remote logs to tiered partitions and detaches them from the others. Called
    /// after every metadata sync. A partition whose topic stopped being tiered forgets its
    /// remote log and the bounds it knew: if the topic is tiered again, its remote tier starts
    /// afresh (its old data is deleted first, `deletions`).
    pub fn attach_remote_logs(&self) {
        let Some(tier) = &self.tier else { return };
        for t in self.replicas.local_topics() {
            if !t.config.remote_storage {
                tier.forget(&t.record.topic_id);
            }
            for p in t.partitions.values() {
                if t.config.remote_storage {
                    p.set_remote_log(Some(tier.remote_log(
                        &t.record.name,
                        &t.record.topic_id,
                        p.index,
                    )));
                } else if p.remote_log().is_some() || p.remote_summary().is_some() {
                    p.set_remote_log(None);
                    p.set_remote_summary(None);
                }
            }
        }
    }
}
