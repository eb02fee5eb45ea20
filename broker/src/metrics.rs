//! The broker's metrics, and [`register`], which puts every Strata metric (broker, remote
//! tier, coordinator) into the process-wide registry that `/metrics` renders.
//!
//! Two kinds: counters and histograms recorded where things happen (requests in
//! `service.rs` and `replication.rs`, ISR changes, elections, group rebalances), and gauges
//! computed from the broker's live state at scrape time by [`collect`] (partition health,
//! upload lag, groups).
//!
//! Invariant: recording is atomics only (one `Instant::now()` and a few relaxed adds per
//! request): no lock, no allocation, no per-record work. Request bytes are the lengths of the
//! batch buffers already at hand.

use std::sync::Once;
use std::time::Instant;
use strata_metrics::{Counter, Encoder, Gauge, Histogram, Labels, Registry, DURATION_BUCKETS};

use crate::state::BrokerState;

/// Requests, failures, bytes and latency of one gRPC API.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Counter,
    errors: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    duration: Histogram,
}

impl ApiMetrics {
    const fn new() -> ApiMetrics {
        ApiMetrics {
            requests: Counter::new(),
            errors: Counter::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            duration: Histogram::new(DURATION_BUCKETS),
        }
    }

    /// Counts a request carrying `bytes_in` batch bytes; the timer records its latency when
    /// dropped (also when the caller goes away mid-request).
    pub fn begin(&'static self, bytes_in: usize) -> RequestTimer {
        self.requests.inc();
        self.bytes_in.add(bytes_in as u64);
        RequestTimer {
            api: self,
            start: Instant::now(),
        }
    }
}

/// A request in progress; see [`ApiMetrics::begin`].
#[derive(Debug)]
pub struct RequestTimer {
    api: &'static ApiMetrics,
    start: Instant,
}

impl RequestTimer {
    /// Records the outcome: a failure, or the batch bytes answered (`bytes_out`). Returns the
    /// result unchanged.
    pub fn finish<T, E>(
        self,
        result: Result<T, E>,
        bytes_out: impl FnOnce(&T) -> usize,
    ) -> Result<T, E> {
        match &result {
            Ok(answer) => self.api.bytes_out.add(bytes_out(answer) as u64),
            Err(_) => self.api.errors.inc(),
        }
        result
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.api.duration.observe_since(self.start);
    }
}

pub static PRODUCE: ApiMetrics = ApiMetrics::new();
pub static FETCH: ApiMetrics = ApiMetrics::new();
pub static REPLICA_FETCH: ApiMetrics = ApiMetrics::new();
pub static LIST_OFFSETS: ApiMetrics = ApiMetrics::new();
pub static METADATA: ApiMetrics = ApiMetrics::new();

/// (metrics, `api` label, with `direction="in"`, with `direction="out"`).
type ApiLabels = (&'static ApiMetrics, Labels, Labels, Labels);

const APIS: [ApiLabels; 5] = [
    (
        &PRODUCE,
        &[("api", "produce")],
        &[("api", "produce"), ("direction", "in")],
        &[("api", "produce"), ("direction", "out")],
    ),
    (
        &FETCH,
        &[("api", "fetch")],
        &[("api", "fetch"), ("direction", "in")],
        &[("api", "fetch"), ("direction", "out")],
    ),
    (
        &REPLICA_FETCH,
        &[("api", "replica_fetch")],
        &[("api", "replica_fetch"), ("direction", "in")],
        &[("api", "replica_fetch"), ("direction", "out")],
    ),
    (
        &LIST_OFFSETS,
        &[("api", "list_offsets")],
        &[("api", "list_offsets"), ("direction", "in")],
        &[("api", "list_offsets"), ("direction", "out")],
    ),
    (
        &METADATA,
        &[("api", "metadata")],
        &[("api", "metadata"), ("direction", "in")],
        &[("api", "metadata"), ("direction", "out")],
    ),
];

/// The leader removed lagging followers from an ISR (its CAS in the metadata succeeded).
pub static ISR_SHRINKS: Counter = Counter::new();
/// The leader added a caught-up follower to an ISR.
pub static ISR_EXPANDS: Counter = Counter::new();
/// The controller moved a partition's leadership (a dead leader, or back to the preferred one).
pub static LEADER_ELECTIONS: Counter = Counter::new();
/// A group coordinated here formed a new generation.
pub static GROUP_REBALANCES: Counter = Counter::new();
/// Partitions housekeeping visited (they changed, or a chore of theirs was due).
pub static HOUSEKEEPING_VISITS: Counter = Counter::new();
/// Partitions on the housekeeping agenda (a chore of theirs is due some day).
pub static HOUSEKEEPING_SCHEDULED: Gauge = Gauge::new();
/// Whole re-reads of the metadata (start, watch restarts, changes deltas do not cover, resyncs).
pub static METADATA_READS: Counter = Counter::new();
/// Partition states applied from watched changes without a re-read.
pub static METADATA_DELTAS: Counter = Counter::new();
static BUILD_INFO: Gauge = Gauge::new();

/// Registers every Strata metric in the process-wide registry, once.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let r = strata_metrics::global();
        register_broker(r);
        strata_tiering::metrics::register(r);
        strata_coordinator::metrics::register(r);
    });
}

fn register_broker(r: &Registry) {
    BUILD_INFO.set(1);
    r.gauge(
        "strata_build_info",
        "Always 1; the version label says which Strata this is.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        &BUILD_INFO,
    );
    for (m, api, _, _) in APIS {
        r.counter(
            "strata_requests_total",
            "Requests received, by API.",
            api,
            &m.requests,
        );
    }
    for (m, api, _, _) in APIS {
        r.counter(
            "strata_request_errors_total",
            "Requests answered with an error, by API.",
            api,
            &m.errors,
        );
    }
    for (m, _, inbound, outbound) in APIS {
        let help = "Batch bytes received (in: produced records) and sent (out: fetched \
                    records), by API; the record batches as stored, without protocol overhead.";
        r.counter("strata_request_bytes_total", help, inbound, &m.bytes_in);
        r.counter("strata_request_bytes_total", help, outbound, &m.bytes_out);
    }
    for (m, api, _, _) in APIS {
        r.histogram(
            "strata_request_duration_seconds",
            "Time from receiving a request to answering it, by API. A fetch's or replica \
             fetch's long poll is included (up to its max wait), and so is an acks=all \
             produce's wait for the in-sync replicas.",
            api,
            &m.duration,
        );
    }
    r.counter(
        "strata_metadata_reads_total",
        "Whole re-reads of the cluster metadata: at start, when the watch restarts or lost \
         changes, for a change deltas do not cover (topics, brokers, replicas moving here), \
         and every resync interval.",
        &[],
        &METADATA_READS,
    );
    r.counter(
        "strata_metadata_deltas_total",
        "Partition states (ISR changes, elections) applied from the metadata watch without \
         re-reading the metadata.",
        &[],
        &METADATA_DELTAS,
    );
    r.counter(
        "strata_housekeeping_visits_total",
        "Partitions housekeeping visited: those that changed since their last visit, and \
         those with a chore due (a roll by segment.ms, a flush by flush.ms, retention, \
         producer-id expiry). An idle partition with nothing due is not visited.",
        &[],
        &HOUSEKEEPING_VISITS,
    );
    r.gauge(
        "strata_housekeeping_scheduled_partitions",
        "Partitions on the housekeeping agenda: a chore of theirs is due at a known time.",
        &[],
        &HOUSEKEEPING_SCHEDULED,
    );
    r.counter(
        "strata_isr_shrinks_total",
        "ISR shrinks written by this broker as leader (lagging followers removed).",
        &[],
        &ISR_SHRINKS,
    );
    r.counter(
        "strata_isr_expands_total",
        "ISR expansions written by this broker as leader (caught-up followers added).",
        &[],
        &ISR_EXPANDS,
    );
    r.counter(
        "strata_controller_leader_elections_total",
        "Leader changes written by this broker as controller.",
        &[],
        &LEADER_ELECTIONS,
    );
    r.counter(
        "strata_group_rebalances_total",
        "New generations formed by the consumer groups this broker coordinates.",
        &[],
        &GROUP_REBALANCES,
    );
}

/// Partition health and upload lag over this broker's replicas, computed at scrape time.
/// Runs on a blocking-pool thread: it takes each log's read lock briefly and stats files.
pub fn collect(state: &BrokerState, out: &mut Encoder<'_>) {
    let now_ms = state.clock.now_ms();
    let (mut hosted, mut leading, mut under_replicated, mut under_min_isr) = (0, 0, 0, 0);
    let mut reassigning = 0;
    let mut lag = UploadLag::default();
    for topic in state.replicas.local_topics() {
        let tiered = topic.config.remote_storage && state.tier.is_some();
        for p in topic.partitions.values() {
            hosted += 1;
            let ps = p.state();
            if !p.is_leader() {
                continue;
            }
            leading += 1;
            if ps.is_under_replicated() {
                under_replicated += 1;
            }
            if ps.reassigning.is_some() {
                reassigning += 1;
            }
            if ps.isr.len() < p.min_insync_replicas() as usize {
                under_min_isr += 1;
            }
            if tiered {
                lag.add(p, now_ms);
            }
        }
    }
    let controller = state
        .is_controller
        .load(std::sync::atomic::Ordering::Relaxed);
    let offline = if controller {
        state.replicas.snapshot().offline_partitions()
    } else {
        0
    };
    out.gauge(
        "strata_partitions",
        "Partition replicas hosted by this broker, leaders and followers.",
        f64::from(hosted),
    );
    out.gauge(
        "strata_leader_partitions",
        "Partitions this broker leads.",
        f64::from(leading),
    );
    out.gauge(
        "strata_under_replicated_partitions",
        "Partitions this broker leads whose ISR is smaller than their replica set (replicas a \
         reassignment is adding do not count).",
        f64::from(under_replicated),
    );
    out.gauge(
        "strata_reassigning_partitions",
        "Partitions this broker leads that are being reassigned (moved between brokers).",
        f64::from(reassigning),
    );
    out.gauge(
        "strata_under_min_isr_partitions",
        "Partitions this broker leads whose ISR is smaller than min.insync.replicas \
         (acks=all produce to them fails).",
        f64::from(under_min_isr),
    );
    out.gauge(
        "strata_offline_partitions",
        "Partitions without a live leader, as the controller sees them; 0 on other brokers, \
         so the sum over the cluster is the count.",
        f64::from(offline),
    );
    out.gauge(
        "strata_replica_fetch_streams",
        "Fetch streams this broker runs as a follower: one per leader broker it follows, \
         whatever the number of partitions.",
        state.fetchers.streams() as f64,
    );
    out.gauge(
        "strata_replica_fetch_sessions",
        "Fetch sessions open on this broker as a leader: one per follower broker.",
        state.fetch_sessions.len() as f64,
    );
    out.gauge(
        "strata_controller_active",
        "1 on the broker that is the controller, 0 elsewhere.",
        if controller { 1.0 } else { 0.0 },
    );
    out.gauge(
        "strata_remote_upload_lag_bytes",
        "Bytes of sealed, committed local segments not yet in the remote tier, over the \
         tiered partitions this broker leads.",
        lag.bytes as f64,
    );
    out.gauge(
        "strata_remote_upload_lag_segments",
        "Sealed, committed local segments not yet in the remote tier, over the tiered \
         partitions this broker leads.",
        lag.segments as f64,
    );
    out.gauge(
        "strata_remote_upload_lag_seconds",
        "Age of the oldest sealed, committed segment not yet in the remote tier (time since \
         its last write), over the tiered partitions this broker leads; 0 when none waits.",
        lag.oldest_age_ms as f64 / 1000.0,
    );
    out.gauge(
        "strata_groups",
        "Consumer groups this broker coordinates.",
        state.groups.group_count() as f64,
    );
}

#[derive(Debug, Default)]
struct UploadLag {
    bytes: u64,
    segments: u64,
    oldest_age_ms: i64,
}

impl UploadLag {
    /// Adds what a leader of a tiered partition has sealed below its high watermark and not
    /// uploaded (at or after the end of the remote tier, as its last manifest read says).
    fn add(&mut self, p: &crate::replica::Partition, now_ms: i64) {
        let hw = p.high_watermark();
        let remote_end = p.remote_summary().map_or(0, |s| s.end);
        let Ok(segments) = p.with_log(|log| Ok(log.segments())) else {
            return; // closed or deleted meanwhile
        };
        let mut pending = segments
            .iter()
            .filter(|s| s.sealed && s.next_offset <= hw && s.base_offset >= remote_end)
            .peekable();
        if let Some(oldest) = pending.peek() {
            let written_ms = std::fs::metadata(&oldest.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(oldest.max_timestamp, |d| d.as_millis() as i64);
            if written_ms > 0 {
                self.oldest_age_ms = self.oldest_age_ms.max(now_ms - written_ms);
            }
        }
        for s in pending {
            self.bytes += s.size_bytes;
            self.segments += 1;
        }
    }
}
