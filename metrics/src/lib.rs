//! Strata's metrics: [`Counter`], [`Gauge`] and [`Histogram`], a process-wide [`Registry`]
//! ([`global`]) that names them, and rendering in the Prometheus text exposition format 0.0.4.
//!
//! How crates use it: each crate that records metrics declares them as `static`s in one
//! `metrics.rs` module (every constructor is `const`, so a static is the metric itself: no
//! lazy initialisation, no pointer to follow), and registers them once, with name, help text
//! and labels, in a `register()` function. Small fixed label sets are separate statics per
//! label value (`PRODUCE`, `FETCH`, ...), each registered under the same family name with its
//! own `&'static` labels. Values that are cheaper to compute than to keep up to date (gauges
//! over live state: under-replicated partitions, upload lag) are written at scrape time by a
//! [`Collector`] registered with [`Registry::register_collector`].
//!
//! Invariant: recording a metric never blocks and never allocates. `inc`, `add`, `set` and
//! `observe` are relaxed atomic operations on the metric itself (a histogram's sum is a
//! compare-and-swap loop on its bits, lock-free); the registry's locks are taken only to
//! register and to render, never to record. Rendering allocates; it runs only when `/metrics`
//! is scraped.

mod metric;
mod registry;
mod text;

pub use metric::{Counter, Gauge, Histogram, MAX_BUCKETS};
pub use registry::{Collector, CollectorHandle, Kind, Labels, Registry};
pub use text::{Encoder, FamilyWriter, CONTENT_TYPE};

/// Bucket bounds in seconds for request latencies: 100 µs to 30 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

static GLOBAL: Registry = Registry::new();

/// The process-wide registry that `/metrics` renders.
pub fn global() -> &'static Registry {
    &GLOBAL
}
