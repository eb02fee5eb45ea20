//! [`MeteredStore`]: an `ObjectStore` decorator that counts and times every call of the store
//! it wraps, and counts the bytes of GET answers and PUT payloads (see [`crate::metrics`]).
//!
//! It sits directly above the real store, under [`crate::RetryingStore`], so each attempt of
//! a retried call is one request, as the store sees (and bills) it. It never changes what a
//! call returns. A GET is timed until its body has been read (or dropped); the payload of a
//! local-filesystem GET is a file the caller reads, so that GET is timed until the file is
//! open. Recording is atomics only.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions,
};

use crate::metrics::{StoreOp, STORE_GET_BYTES, STORE_PUT_BYTES};

/// Counts and times the calls of the store it wraps.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        MeteredStore { inner }
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

/// Whether an error is a failure, not an answer (missing key, lost create-if-absent race).
fn is_failure(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
    )
}

/// Records one finished call of `op`.
fn record<T>(op: StoreOp, start: Instant, result: &object_store::Result<T>) {
    let m = op.metrics();
    m.requests.inc();
    m.duration.observe_since(start);
    if result.as_ref().is_err_and(is_failure) {
        m.errors.inc();
    }
}

/// Runs `call` as one request of `op`.
async fn timed<T>(
    op: StoreOp,
    call: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    let start = Instant::now();
    let result = call.await;
    record(op, start, &result);
    result
}

/// A GET body that counts its bytes and records the GET when it ends or is dropped.
struct MeteredBody {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    start: Instant,
    done: bool,
}

impl MeteredBody {
    fn finish(&mut self, failed: bool) {
        if !self.done {
            self.done = true;
            let m = StoreOp::Get.metrics();
            m.requests.inc();
            m.duration.observe_since(self.start);
            if failed {
                m.errors.inc();
            }
        }
    }
}

impl Stream for MeteredBody {
    type Item = object_store::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => STORE_GET_BYTES.add(chunk.len() as u64),
            Poll::Ready(Some(Err(e))) => self.finish(is_failure(e)),
            Poll::Ready(None) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        let result = timed(StoreOp::Put, self.inner.put_opts(location, payload, opts)).await;
        if result.is_ok() {
            STORE_PUT_BYTES.add(len);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        timed(StoreOp::Put, self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            return timed(StoreOp::Head, self.inner.get_opts(location, options)).await;
        }
        let start = Instant::now();
        let result = self.inner.get_opts(location, options).await;
        match result {
            Ok(mut answer) => {
                answer.payload = match answer.payload {
                    GetResultPayload::Stream(inner) => GetResultPayload::Stream(
                        MeteredBody {
                            inner,
                            start,
                            done: false,
                        }
                        .boxed(),
                    ),
                    file => {
                        STORE_GET_BYTES.add(answer.range.end - answer.range.start);
                        record(StoreOp::Get, start, &Ok(()));
                        file
                    }
                };
                Ok(answer)
            }
            Err(e) => {
                let failed = Err(e);
                record(StoreOp::Get, start, &failed);
                failed
            }
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let result = timed(StoreOp::Get, self.inner.get_ranges(location, ranges)).await;
        if let Ok(parts) = &result {
            STORE_GET_BYTES.add(parts.iter().map(|b| b.len() as u64).sum());
        }
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // One timed delete per path, like RetryingStore (which already deletes path by path).
        let inner = Arc::clone(&self.inner);
        locations
            .and_then(move |path| {
                let inner = Arc::clone(&inner);
                async move {
                    timed(StoreOp::Delete, inner.delete(&path)).await?;
                    Ok(path)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        StoreOp::List.metrics().requests.inc();
        self.inner
            .list(prefix)
            .inspect_err(|e| {
                if is_failure(e) {
                    StoreOp::List.metrics().errors.inc();
                }
            })
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        StoreOp::List.metrics().requests.inc();
        self.inner
            .list_with_offset(prefix, offset)
            .inspect_err(|e| {
                if is_failure(e) {
                    StoreOp::List.metrics().errors.inc();
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        timed(StoreOp::List, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        timed(StoreOp::Copy, self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        timed(StoreOp::Rename, self.inner.rename_opts(from, to, options)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// The counters are process-wide: this test only checks that they grow.
    #[tokio::test]
    async fn counts_gets_puts_and_their_bytes() {
        let store = MeteredStore::new(Arc::new(InMemory::new()));
        let key = Path::from("a/b");
        let (gets, puts) = (
            StoreOp::Get.metrics().requests.get(),
            StoreOp::Put.metrics().requests.get(),
        );
        let (get_bytes, put_bytes) = (STORE_GET_BYTES.get(), STORE_PUT_BYTES.get());
        let get_count = StoreOp::Get.metrics().duration.count();
        store
            .put(&key, PutPayload::from_static(b"hello world"))
            .await
            .unwrap();
        let got = store.get_range(&key, 0..5).await.unwrap();
        assert_eq!(&got[..], b"hello");
        assert!(store.get(&Path::from("missing")).await.is_err());
        assert!(StoreOp::Put.metrics().requests.get() > puts);
        assert!(StoreOp::Get.metrics().requests.get() >= gets + 2);
        assert!(StoreOp::Get.metrics().duration.count() >= get_count + 2);
        assert!(STORE_PUT_BYTES.get() >= put_bytes + 11);
        assert!(STORE_GET_BYTES.get() >= get_bytes + 5);
        store.head(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(StoreOp::Head.metrics().requests.get() > 0);
        assert!(StoreOp::Delete.metrics().requests.get() > 0);
    }
}
