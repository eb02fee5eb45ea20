//! Building the object store from a URL, and the decorators that add behaviour to any store:
//! [`RetryingStore`] (bounded exponential backoff on transient errors) and [`FaultyStore`]
//! (fault injection for tests); the third, [`crate::MeteredStore`] (metrics), is in
//! `metered.rs`. Each implements `ObjectStore` itself, so the rest of the crate only ever sees
//! `Arc<dyn ObjectStore>`.
//!
//! Invariant kept by [`RetryingStore`]: it never retries an answer that is not transient
//! (`NotFound`, `AlreadyExists`, `Precondition`, `NotModified`, bad paths, permissions), so a
//! lost create-if-absent race is reported to the caller, never hidden by a second attempt.
//! Streams already handed out (a GET body, a `list` stream) are not retried mid-way: callers
//! retry the whole operation.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ClientConfigKey;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions,
};

use crate::error::{Result, TieringError};

/// How object-store calls are retried: one retry layer per store, with a total deadline per
/// call (attempts and back-off together). For S3 it is the client's own layer (which also
/// covers multipart parts and lists); for the other stores, [`RetryingStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest one call may take, retries included; then it fails.
    pub deadline: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

/// The longest one S3 request may take (a part of 8 MiB needs 1 MB/s), and the longest a
/// connection may take to open.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for [`object_store_from_url`]; S3 settings are ignored by other schemes.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// S3 endpoint, e.g. `http://127.0.0.1:4566` for LocalStack. Plain http is allowed when
    /// the endpoint is http.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Credentials; when absent, the usual `AWS_*` environment variables are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Retry policy of the [`RetryingStore`] every store is wrapped in.
    pub retry: RetryConfig,
}

/// Builds the store named by `url` and the key prefix under it:
/// - `s3://bucket/prefix`: S3 (path-style requests; region defaults to `us-east-1`),
/// - `file:///abs/dir`: the local filesystem under `dir` (created if missing),
/// - `memory://` or `memory://prefix`: an in-memory store.
///
/// The store is wrapped in a [`crate::MeteredStore`] (each call counted). S3 retries in its
/// client (with [`StoreOptions::retry`] and a total deadline per call); the other stores are
/// wrapped in a [`RetryingStore`] with the same settings. One retry layer each, never two.
pub fn object_store_from_url(
    url: &str,
    options: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let invalid = |why: &str| TieringError::InvalidInput(format!("object store URL {url:?} {why}"));
    let (inner, prefix): (Arc<dyn ObjectStore>, Path) = if let Some(rest) =
        url.strip_prefix("s3://")
    {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("names no bucket (expected s3://bucket/prefix)"));
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false);
        if let Some(region) = &options.region {
            b = b.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        if let Some(endpoint) = &options.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &options.access_key_id {
            b = b.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        let r = options.retry;
        b = b
            .with_retry(object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: r.initial_backoff,
                    max_backoff: r.max_backoff,
                    base: 2.0,
                },
                max_retries: r.max_retries as usize,
                retry_timeout: r.deadline,
            })
            // Set key by key: a whole ClientOptions would drop what `from_env` and
            // `with_allow_http` set.
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", S3_REQUEST_TIMEOUT.as_secs()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}s", S3_CONNECT_TIMEOUT.as_secs()),
            );
        let s3 = b
            .build()
            .map_err(|e| TieringError::InvalidInput(format!("cannot use {url:?}: {e}")))?;
        // The client retries (and times out) itself: no second layer on top.
        let metered: Arc<dyn ObjectStore> = Arc::new(crate::MeteredStore::new(Arc::new(s3)));
        return Ok((metered, parse_prefix(url, prefix)?));
    } else if let Some(dir) = url.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err(invalid("must name an absolute directory (file:///abs/dir)"));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| TieringError::io(format!("cannot create the store directory {dir}"), e))?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| TieringError::InvalidInput(format!("cannot use {url:?}: {e}")))?;
        (Arc::new(fs), Path::default())
    } else if let Some(prefix) = url.strip_prefix("memory://") {
        (Arc::new(InMemory::new()), parse_prefix(url, prefix)?)
    } else {
        return Err(invalid(
            "has an unknown scheme (use s3://, file:// or memory://)",
        ));
    };
    let metered: Arc<dyn ObjectStore> = Arc::new(crate::MeteredStore::new(inner));
    Ok((Arc::new(RetryingStore::new(metered, options.retry)), prefix))
}

fn parse_prefix(url: &str, prefix: &str) -> Result<Path> {
    Path::parse(prefix.trim_matches('/'))
        .map_err(|e| TieringError::InvalidInput(format!("the prefix of {url:?} is invalid: {e}")))
}

/// Whether an error may go away by itself.
pub fn is_transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}

async fn with_retry<T, F, Fut>(
    cfg: &RetryConfig,
    op: &str,
    key: &str,
    mut f: F,
) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let attempts = async {
        let mut backoff = cfg.initial_backoff;
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if attempt < cfg.max_retries && is_transient(&e) => {
                    attempt += 1;
                    tracing::debug!(op, key, attempt, error = %e, "retrying object store call");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
                other => return other,
            }
        }
    };
    match tokio::time::timeout(cfg.deadline, attempts).await {
        Ok(result) => result,
        Err(_) => Err(object_store::Error::Generic {
            store: "RetryingStore",
            source: format!(
                "{op} of {key} did not finish within {} s (retries included)",
                cfg.deadline.as_secs_f64()
            )
            .into(),
        }),
    }
}

/// Retries transient failures of the inner store with exponential backoff, a bounded number
/// of times (see the module doc for what is never retried).
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    cfg: RetryConfig,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, cfg: RetryConfig) -> Self {
        RetryingStore { inner, cfg }
    }
}

impl std::fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        with_retry(&self.cfg, "put", location.as_ref(), || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        with_retry(&self.cfg, "put_multipart", location.as_ref(), || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        with_retry(&self.cfg, "get", location.as_ref(), || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        with_retry(&self.cfg, "get_ranges", location.as_ref(), || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let cfg = self.cfg;
        locations
            .and_then(move |path| {
                let inner = Arc::clone(&inner);
                async move {
                    with_retry(&cfg, "delete", path.as_ref(), || inner.delete(&path)).await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        with_retry(&self.cfg, "list", &key, || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        with_retry(&self.cfg, "copy", from.as_ref(), || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        with_retry(&self.cfg, "rename", from.as_ref(), || {
            self.inner.rename_opts(from, to, options.clone())
        })
        .await
    }
}

/// Fault injection for tests: fails the next N calls, fails every call while a flag is set,
/// flips a byte in the middle of every GET answer while another flag is set, or turns every
/// PUT into a plain overwrite (a store without conditional writes) while a third is set.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    fail_next: AtomicUsize,
    failing: AtomicBool,
    corrupt_gets: AtomicBool,
    ignore_put_mode: AtomicBool,
    injected: AtomicUsize,
    calls: AtomicUsize,
    /// Milliseconds every ranged GET waits before reaching the inner store.
    get_delay_ms: AtomicU64,
    /// Bytes of the ranged GETs in flight now, and the most seen at once.
    ranged_in_flight: AtomicU64,
    ranged_in_flight_max: AtomicU64,
}

impl Faults {
    fn check(&self, op: &str, key: &str) -> object_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self.failing.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected fault in {op} of {key}").into(),
            });
        }
        Ok(())
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            faults: Arc::default(),
        }
    }

    /// The next `n` calls fail with a transient (`Generic`) error.
    pub fn fail_next(&self, n: usize) {
        self.faults.fail_next.store(n, Ordering::SeqCst);
    }

    /// Every call fails while set.
    pub fn set_failing(&self, on: bool) {
        self.faults.failing.store(on, Ordering::SeqCst);
    }

    /// Every GET answer has one byte flipped while set.
    pub fn set_corrupt_gets(&self, on: bool) {
        self.faults.corrupt_gets.store(on, Ordering::SeqCst);
    }

    /// While set, PUTs ignore their mode (create-if-absent and update conditions), like an S3
    /// clone without conditional writes.
    pub fn set_ignore_put_mode(&self, on: bool) {
        self.faults.ignore_put_mode.store(on, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.faults.injected.load(Ordering::SeqCst)
    }

    /// Calls seen so far (each deleted path counts as one).
    pub fn calls(&self) -> usize {
        self.faults.calls.load(Ordering::SeqCst)
    }

    /// Every ranged GET waits this long before reaching the inner store (widens the window in
    /// which GETs overlap).
    pub fn set_get_delay(&self, delay: Duration) {
        self.faults
            .get_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The most bytes that ranged GETs asked for at once since the last call.
    pub fn take_max_ranged_bytes_in_flight(&self) -> u64 {
        self.faults.ranged_in_flight_max.swap(0, Ordering::SeqCst)
    }

    fn check(&self, op: &str, key: &str) -> object_store::Result<()> {
        self.faults.check(op, key)
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check("put", location.as_ref())?;
        let opts = if self.faults.ignore_put_mode.load(Ordering::SeqCst) {
            PutOptions::default()
        } else {
            opts
        };
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check("put_multipart", location.as_ref())?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check("get", location.as_ref())?;
        let ranged = match &options.range {
            Some(GetRange::Bounded(r)) => r.end - r.start,
            _ => 0,
        };
        let res = if ranged > 0 {
            let f = &self.faults;
            let now = f.ranged_in_flight.fetch_add(ranged, Ordering::SeqCst) + ranged;
            f.ranged_in_flight_max.fetch_max(now, Ordering::SeqCst);
            let delay = f.get_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let res = self.inner.get_opts(location, options).await;
            f.ranged_in_flight.fetch_sub(ranged, Ordering::SeqCst);
            res?
        } else {
            self.inner.get_opts(location, options).await?
        };
        if !self.faults.corrupt_gets.load(Ordering::SeqCst) {
            return Ok(res);
        }
        let GetResult {
            payload,
            meta,
            range,
            attributes,
            extensions,
        } = res;
        let whole = GetResult {
            payload,
            meta: meta.clone(),
            range: range.clone(),
            attributes: attributes.clone(),
            extensions: Default::default(),
        };
        let mut bytes = whole.bytes().await?.to_vec();
        if !bytes.is_empty() {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
        }
        let body = Bytes::from(bytes);
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(body) }).boxed(),
            ),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Faults are decided per path, before the inner store sees it.
        let faults = Arc::clone(&self.faults);
        let inner = Arc::clone(&self.inner);
        locations
            .and_then(move |path| {
                let faults = Arc::clone(&faults);
                let inner = Arc::clone(&inner);
                async move {
                    faults.check("delete", path.as_ref())?;
                    inner.delete(&path).await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        match self.check("list", &key) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.check("list", &key)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check("copy", from.as_ref())?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutMode;

    fn quick() -> RetryConfig {
        RetryConfig {
            max_retries: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_call_that_does_not_answer_fails_at_its_deadline() {
        let clocked = Arc::new(crate::testing::ClockedStore::new(
            Arc::new(InMemory::new()),
            strata_log::clock::system(),
        ));
        let hold = clocked.hold_next_put("stuck");
        let cfg = RetryConfig {
            deadline: Duration::from_millis(50),
            ..quick()
        };
        let store = RetryingStore::new(clocked.clone(), cfg);
        let err = store
            .put(&Path::from("stuck"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not finish within 0.05 s"),
            "{err}"
        );
        hold.release();
    }

    fn stack() -> (Arc<FaultyStore>, RetryingStore) {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
        let retrying = RetryingStore::new(faulty.clone(), quick());
        (faulty, retrying)
    }

    #[tokio::test]
    async fn retries_transient_errors_within_the_budget() {
        let (faulty, store) = stack();
        let key = Path::from("a/b");
        faulty.fail_next(2);
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(faulty.injected(), 2);
        faulty.fail_next(2);
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"x");
        faulty.fail_next(10);
        assert!(matches!(
            store.get(&key).await,
            Err(object_store::Error::Generic { .. })
        ));
        assert_eq!(faulty.injected(), 8, "1 attempt + 3 retries");
        faulty.fail_next(0);
        faulty.fail_next(1);
        store.delete(&key).await.unwrap();
        assert!(matches!(
            store.head(&key).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn never_retries_already_exists_or_not_found() {
        let (faulty, store) = stack();
        let key = Path::from("m/1.json");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&key, PutPayload::from_static(b"1"), create.clone())
            .await
            .unwrap();
        let before = faulty.calls();
        let err = store
            .put_opts(&key, PutPayload::from_static(b"2"), create)
            .await
            .unwrap_err();
        assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
        let err = store.get(&Path::from("missing")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }));
        assert_eq!(faulty.calls() - before, 2, "one attempt each");
    }

    #[tokio::test]
    async fn faulty_store_corrupts_gets_while_asked() {
        let faulty = FaultyStore::new(Arc::new(InMemory::new()));
        let key = Path::from("k");
        faulty
            .put(&key, PutPayload::from_static(b"hello"))
            .await
            .unwrap();
        faulty.set_corrupt_gets(true);
        let got = faulty.get_range(&key, 0..5).await.unwrap();
        assert_ne!(&got[..], b"hello");
        faulty.set_corrupt_gets(false);
        assert_eq!(&faulty.get_range(&key, 0..5).await.unwrap()[..], b"hello");
        faulty.set_failing(true);
        assert!(faulty.delete(&key).await.is_err());
        faulty.set_failing(false);
        faulty.delete(&key).await.unwrap();
    }

    #[tokio::test]
    async fn urls_name_stores_and_prefixes() {
        let (store, prefix) =
            object_store_from_url("memory://strata/x", &StoreOptions::default()).unwrap();
        assert_eq!(prefix.as_ref(), "strata/x");
        store
            .put(&prefix.clone().join("k"), PutPayload::from_static(b"v"))
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("new/dir");
        let url = format!("file://{}", sub.display());
        let (store, prefix) = object_store_from_url(&url, &StoreOptions::default()).unwrap();
        assert_eq!(prefix, Path::default());
        store
            .put(&Path::from("a/b"), PutPayload::from_static(b"v"))
            .await
            .unwrap();
        assert!(sub.join("a/b").exists());

        let opts = StoreOptions {
            endpoint: Some("http://127.0.0.1:4566".to_string()),
            access_key_id: Some("test".to_string()),
            secret_access_key: Some("test".to_string()),
            ..Default::default()
        };
        let (_, prefix) = object_store_from_url("s3://bucket/some/prefix/", &opts).unwrap();
        assert_eq!(prefix.as_ref(), "some/prefix");

        for bad in ["s3:///x", "file://relative/dir", "gs://b/p", "memory"] {
            let err = object_store_from_url(bad, &StoreOptions::default()).unwrap_err();
            assert_eq!(
                err.kind(),
                strata_log::ErrorKind::InvalidInput,
                "{bad}: {err}"
            );
        }
    }
}
