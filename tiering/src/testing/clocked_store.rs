//! A store decorator for tests of time and interleaving: it stamps every object it stores with
//! its own clock (the store's clock, which a test moves apart from the brokers' clocks) and
//! can hold a PUT after it has landed, until the test lets the caller go on (a writer paused
//! between its object PUT and its manifest write).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;
use strata_log::Clock;
use tokio::sync::{Notify, Semaphore};

/// A PUT held after it landed: [`Hold::reached`] resolves once it is held, [`Hold::release`]
/// lets it return.
#[derive(Debug)]
pub struct Hold {
    suffix: String,
    reached: Notify,
    released: Semaphore,
}

impl Hold {
    /// Waits until a matching PUT has landed and is being held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held PUT return to its caller.
    pub fn release(&self) {
        self.released.add_permits(1);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct ClockedStore {
    inner: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    stamps: Arc<Mutex<HashMap<String, i64>>>,
    hold: Mutex<Option<Arc<Hold>>>,
}

impl ClockedStore {
    /// Objects stored through this decorator report `clock`'s time of their PUT as
    /// `Last-Modified`.
    pub fn new(inner: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self {
        ClockedStore {
            inner,
            clock,
            stamps: Arc::default(),
            hold: Mutex::new(None),
        }
    }

    /// Holds the next PUT whose key ends with `suffix`, after it has landed.
    pub fn hold_next_put(&self, suffix: &str) -> Arc<Hold> {
        let hold = Arc::new(Hold {
            suffix: suffix.to_string(),
            reached: Notify::new(),
            released: Semaphore::new(0),
        });
        *self.hold.lock() = Some(Arc::clone(&hold));
        hold
    }

    fn take_hold(&self, key: &str) -> Option<Arc<Hold>> {
        let mut slot = self.hold.lock();
        if slot.as_ref().is_some_and(|h| key.ends_with(&h.suffix)) {
            slot.take()
        } else {
            None
        }
    }
}

fn restamp(stamps: &Mutex<HashMap<String, i64>>, mut meta: ObjectMeta) -> ObjectMeta {
    if let Some(ms) = stamps.lock().get(meta.location.as_ref()) {
        if let Some(t) = chrono_from_ms(*ms) {
            meta.last_modified = t;
        }
    }
    meta
}

fn chrono_from_ms(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms)
}

impl std::fmt::Display for ClockedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClockedStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ClockedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.stamps
            .lock()
            .insert(location.to_string(), self.clock.now_ms());
        if let Some(hold) = self.take_hold(location.as_ref()) {
            hold.reached.notify_one();
            if let Ok(permit) = hold.released.acquire().await {
                permit.forget();
            }
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.stamps
            .lock()
            .insert(location.to_string(), self.clock.now_ms());
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut res = self.inner.get_opts(location, options).await?;
        res.meta = restamp(&self.stamps, res.meta);
        Ok(res)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stamps = Arc::clone(&self.stamps);
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                if let Ok(p) = &r {
                    stamps.lock().remove(p.as_ref());
                }
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let stamps = Arc::clone(&self.stamps);
        self.inner
            .list(prefix)
            .map(move |r| r.map(|m| restamp(&stamps, m)))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut res = self.inner.list_with_delimiter(prefix).await?;
        res.objects = res
            .objects
            .into_iter()
            .map(|m| restamp(&self.stamps, m))
            .collect();
        Ok(res)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.stamps
            .lock()
            .insert(to.to_string(), self.clock.now_ms());
        Ok(())
    }
}
