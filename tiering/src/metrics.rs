//! The remote tier's metrics: object store calls (by [`crate::metered::MeteredStore`]),
//! uploads (by [`crate::RemoteLog::upload`]), remote reads (by [`crate::RemoteLog::read`]) and
//! the chunk cache. Recording is atomics only (see `strata_metrics`); upload lag, which
//! depends on the local log, is computed by the broker at scrape time.

use strata_metrics::{Counter, Gauge, Histogram, Labels, Registry, DURATION_BUCKETS};

/// Object store calls, as the `op` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Get,
    Head,
    Put,
    Delete,
    List,
    Copy,
    Rename,
}

/// The `op` label of each [`StoreOp`], in declaration order.
const STORE_LABELS: [Labels; 7] = [
    &[("op", "get")],
    &[("op", "head")],
    &[("op", "put")],
    &[("op", "delete")],
    &[("op", "list")],
    &[("op", "copy")],
    &[("op", "rename")],
];

pub(crate) struct StoreOpMetrics {
    pub requests: Counter,
    pub errors: Counter,
    pub duration: Histogram,
}

static STORE: [StoreOpMetrics; 7] = [const {
    StoreOpMetrics {
        requests: Counter::new(),
        errors: Counter::new(),
        duration: Histogram::new(DURATION_BUCKETS),
    }
}; 7];

impl StoreOp {
    pub(crate) fn metrics(self) -> &'static StoreOpMetrics {
        &STORE[self as usize]
    }
}

/// Bytes of GET answers (object bodies, ranges, footers, frames).
pub(crate) static STORE_GET_BYTES: Counter = Counter::new();
/// Bytes of PUT payloads (segment objects and manifests).
pub(crate) static STORE_PUT_BYTES: Counter = Counter::new();

/// Segments uploaded (listed in a manifest).
pub(crate) static UPLOADS: Counter = Counter::new();
/// Uploads that failed (the broker retries them).
pub(crate) static UPLOAD_ERRORS: Counter = Counter::new();
/// Counts an upload that failed before it reached the object store (the broker could not read
/// the manifest or the segment, or refused to upload out of order); failures inside
/// [`crate::RemoteLog::upload`] are counted there.
pub fn upload_failed_before_store() {
    UPLOAD_ERRORS.inc();
}

/// Bytes of local segments uploaded, as on local disk (before compression).
pub(crate) static UPLOAD_BYTES: Counter = Counter::new();
/// Time of an upload: encoding, the object PUT and the manifest write.
pub(crate) static UPLOAD_DURATION: Histogram = Histogram::new(DURATION_BUCKETS);

/// Reads served by the remote tier.
pub(crate) static REMOTE_FETCHES: Counter = Counter::new();
pub(crate) static REMOTE_FETCH_ERRORS: Counter = Counter::new();
/// Batch bytes remote reads returned.
pub(crate) static REMOTE_FETCH_BYTES: Counter = Counter::new();
pub(crate) static REMOTE_FETCH_DURATION: Histogram = Histogram::new(DURATION_BUCKETS);

pub(crate) static CACHE_HITS: Counter = Counter::new();
pub(crate) static CACHE_MISSES: Counter = Counter::new();
pub(crate) static CACHE_EVICTIONS: Counter = Counter::new();
/// Bytes in every chunk cache of the process (one per broker).
pub(crate) static CACHE_BYTES: Gauge = Gauge::new();

/// Registers the remote tier's metrics in `registry` (idempotent).
pub fn register(r: &Registry) {
    for (labels, m) in STORE_LABELS.iter().zip(&STORE) {
        r.counter(
            "strata_object_store_requests_total",
            "Calls to the object store, by operation (each attempt of a retried call counts; \
             a head is a GET of metadata only).",
            labels,
            &m.requests,
        );
        r.counter(
            "strata_object_store_request_errors_total",
            "Object store calls that failed (answers such as not found, already exists or a \
             failed precondition are not failures).",
            labels,
            &m.errors,
        );
        r.histogram(
            "strata_object_store_request_duration_seconds",
            "Latency of object store calls, by operation; a GET until its body was read \
             (list streams are counted but not timed).",
            labels,
            &m.duration,
        );
    }
    r.counter(
        "strata_object_store_get_bytes_total",
        "Bytes the object store answered GETs with (footers and frames of remote reads).",
        &[],
        &STORE_GET_BYTES,
    );
    r.counter(
        "strata_object_store_put_bytes_total",
        "Bytes PUT to the object store (segment objects, compressed, and manifests).",
        &[],
        &STORE_PUT_BYTES,
    );
    r.counter(
        "strata_remote_uploads_total",
        "Segments uploaded to the remote tier and listed in a manifest.",
        &[],
        &UPLOADS,
    );
    r.counter(
        "strata_remote_upload_errors_total",
        "Segment uploads that failed (retried at the next upload pass).",
        &[],
        &UPLOAD_ERRORS,
    );
    r.counter(
        "strata_remote_upload_bytes_total",
        "Bytes of local segments uploaded, as on local disk (before compression).",
        &[],
        &UPLOAD_BYTES,
    );
    r.histogram(
        "strata_remote_upload_duration_seconds",
        "Time of one segment upload: compression, the object PUT and the manifest write.",
        &[],
        &UPLOAD_DURATION,
    );
    r.counter(
        "strata_remote_fetch_requests_total",
        "Reads served from the remote tier (fetches below the local log start).",
        &[],
        &REMOTE_FETCHES,
    );
    r.counter(
        "strata_remote_fetch_errors_total",
        "Reads from the remote tier that failed.",
        &[],
        &REMOTE_FETCH_ERRORS,
    );
    r.counter(
        "strata_remote_fetch_bytes_total",
        "Batch bytes returned by reads from the remote tier.",
        &[],
        &REMOTE_FETCH_BYTES,
    );
    r.histogram(
        "strata_remote_fetch_duration_seconds",
        "Latency of one read from the remote tier: manifest, footer and frame, from the \
         chunk cache or the object store.",
        &[],
        &REMOTE_FETCH_DURATION,
    );
    r.counter(
        "strata_remote_cache_hits_total",
        "Remote-read frames found in the chunk cache.",
        &[],
        &CACHE_HITS,
    );
    r.counter(
        "strata_remote_cache_misses_total",
        "Remote-read frames not in the chunk cache (then fetched from the object store).",
        &[],
        &CACHE_MISSES,
    );
    r.counter(
        "strata_remote_cache_evictions_total",
        "Frames evicted from the chunk cache to stay within its bound.",
        &[],
        &CACHE_EVICTIONS,
    );
    r.gauge(
        "strata_remote_cache_bytes",
        "Bytes held in the chunk cache of remote reads now.",
        &[],
        &CACHE_BYTES,
    );
}
