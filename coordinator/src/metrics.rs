//! The coordinator's metrics: latency and failures of every bounded call to etcd, by kind of
//! call. Recording is atomics only (see `strata_metrics`). The embedded store records nothing:
//! its calls are local.

use strata_metrics::{Counter, Histogram, Registry, DURATION_BUCKETS};

/// The kinds of etcd calls, as the `op` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EtcdOp {
    /// A read of one key (or a count of keys under a prefix).
    Get,
    /// A read of every key under a prefix.
    List,
    /// A transaction: every metadata write, and registrations.
    Txn,
    /// Opening a watch stream.
    Watch,
    LeaseGrant,
    LeaseRevoke,
    /// One keepalive round of a lease: the keepalive and its answer, then a check of the key.
    LeaseKeepalive,
    ElectionLeader,
    ElectionResign,
    /// A compaction of etcd's history.
    Compact,
}

/// The `op` label of each [`EtcdOp`], in declaration order.
const LABELS: [&[(&str, &str)]; 10] = [
    &[("op", "get")],
    &[("op", "list")],
    &[("op", "txn")],
    &[("op", "watch")],
    &[("op", "lease_grant")],
    &[("op", "lease_revoke")],
    &[("op", "lease_keepalive")],
    &[("op", "election_leader")],
    &[("op", "election_resign")],
    &[("op", "compact")],
];

struct OpMetrics {
    duration: Histogram,
    errors: Counter,
}

static METRICS: [OpMetrics; 10] = [const {
    OpMetrics {
        duration: Histogram::new(DURATION_BUCKETS),
        errors: Counter::new(),
    }
}; 10];

impl EtcdOp {
    fn metrics(self) -> &'static OpMetrics {
        &METRICS[self as usize]
    }

    /// Records one call that took `elapsed` and succeeded or not (a timeout is a failure).
    pub(crate) fn record(self, elapsed: std::time::Duration, ok: bool) {
        let m = self.metrics();
        m.duration.observe_duration(elapsed);
        if !ok {
            m.errors.inc();
        }
    }
}

/// Registers the coordinator's metrics in `registry` (idempotent).
pub fn register(registry: &Registry) {
    for (labels, m) in LABELS.iter().zip(&METRICS) {
        registry.histogram(
            "strata_coordinator_request_duration_seconds",
            "Latency of calls to etcd by kind of call, including calls that failed or timed out \
             (campaigns and watch streams, which wait by design, are not timed).",
            labels,
            &m.duration,
        );
        registry.counter(
            "strata_coordinator_request_errors_total",
            "Calls to etcd that failed or got no answer within the request timeout.",
            labels,
            &m.errors,
        );
    }
}
