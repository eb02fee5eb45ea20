//! The registry: metric families by name (help text, type, one series per label set) and the
//! collectors that add families computed at scrape time.
//!
//! Its locks are taken to register and to render, never to record: a series points at a
//! `'static` metric, which callers update directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metric::{Counter, Gauge, Histogram};
use crate::text::{self, Encoder};

/// The labels of one series, fixed at registration: `&[("api", "produce")]`.
pub type Labels = &'static [(&'static str, &'static str)];

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes families computed from live state when `/metrics` is scraped. It runs on the
/// scraping thread (a blocking-pool thread in the broker), after the registered families.
/// Each collector writes whole families under names no other collector or registered metric
/// uses.
pub trait Collector: Send + Sync {
    fn collect(&self, out: &mut Encoder<'_>);
}

impl<F: Fn(&mut Encoder<'_>) + Send + Sync> Collector for F {
    fn collect(&self, out: &mut Encoder<'_>) {
        self(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Counter(&'static Counter),
    Gauge(&'static Gauge),
    Histogram(&'static Histogram),
}

impl Metric {
    fn kind(self) -> Kind {
        match self {
            Metric::Counter(_) => Kind::Counter,
            Metric::Gauge(_) => Kind::Gauge,
            Metric::Histogram(_) => Kind::Histogram,
        }
    }
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    series: Vec<(Labels, Metric)>,
}

type Collectors = Vec<(u64, Arc<dyn Collector>)>;

/// Metric families and collectors, rendered in the Prometheus text format.
pub struct Registry {
    families: Mutex<Vec<Family>>,
    collectors: Mutex<Collectors>,
    next_collector: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &lock(&self.families).len())
            .field("collectors", &lock(&self.collectors).len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// A poisoned lock only means a panic elsewhere mid-registration; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub const fn new() -> Registry {
        Registry {
            families: Mutex::new(Vec::new()),
            collectors: Mutex::new(Vec::new()),
            next_collector: AtomicU64::new(0),
        }
    }

    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        c: &'static Counter,
    ) {
        self.add(name, help, labels, Metric::Counter(c));
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, labels: Labels, g: &'static Gauge) {
        self.add(name, help, labels, Metric::Gauge(g));
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        h: &'static Histogram,
    ) {
        self.add(name, help, labels, Metric::Histogram(h));
    }

    /// Adds a series to the family `name` (created with this help text and type on first use).
    /// Registering the same labels twice keeps the first; a family's type never changes (a
    /// series of another type is a programming error: it panics in debug builds and is
    /// dropped in release builds).
    fn add(&self, name: &'static str, help: &'static str, labels: Labels, metric: Metric) {
        let mut families = lock(&self.families);
        let family = match families.iter().position(|f| f.name == name) {
            Some(i) => &mut families[i],
            None => {
                families.push(Family {
                    name,
                    help,
                    kind: metric.kind(),
                    series: Vec::new(),
                });
                families.last_mut().expect("just pushed")
            }
        };
        if family.kind != metric.kind() {
            debug_assert!(false, "metric {name} registered as two types");
            return;
        }
        if family.series.iter().all(|(l, _)| *l != labels) {
            family.series.push((labels, metric));
        }
    }

    /// Adds a collector; it runs at every render until the handle is dropped.
    pub fn register_collector(&self, c: impl Collector + 'static) -> CollectorHandle<'_> {
        let id = self.next_collector.fetch_add(1, Ordering::Relaxed);
        lock(&self.collectors).push((id, Arc::new(c)));
        CollectorHandle { registry: self, id }
    }

    /// Every family, then every collector's, in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_into(&mut out);
        out
    }

    pub fn render_into(&self, out: &mut String) {
        {
            let families = lock(&self.families);
            for f in families.iter() {
                render_family(out, f);
            }
        }
        // Collectors run outside the lock: one may take its time, or register something.
        let collectors: Vec<Arc<dyn Collector>> = lock(&self.collectors)
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        let mut enc = Encoder::new(out);
        for c in collectors {
            c.collect(&mut enc);
        }
    }
}

fn render_family(out: &mut String, f: &Family) {
    text::write_header(out, f.name, f.help, f.kind);
    for (labels, metric) in &f.series {
        match metric {
            Metric::Counter(c) => text::write_sample(out, f.name, "", labels, None, |o| {
                text::write_u64(o, c.get())
            }),
            Metric::Gauge(g) => text::write_sample(out, f.name, "", labels, None, |o| {
                text::write_i64(o, g.get())
            }),
            Metric::Histogram(h) => render_histogram(out, f.name, labels, h),
        }
    }
}

fn render_histogram(out: &mut String, name: &str, labels: Labels, h: &Histogram) {
    let (cumulative, sum) = h.snapshot();
    let mut le = String::new();
    for (bound, n) in h.bounds().iter().zip(&cumulative) {
        le.clear();
        text::write_f64(&mut le, *bound);
        text::write_sample(out, name, "_bucket", labels, Some(&le), |o| {
            text::write_u64(o, *n)
        });
    }
    let count = *cumulative.last().expect("a +Inf bucket");
    text::write_sample(out, name, "_bucket", labels, Some("+Inf"), |o| {
        text::write_u64(o, count)
    });
    text::write_sample(out, name, "_sum", labels, None, |o| text::write_f64(o, sum));
    text::write_sample(out, name, "_count", labels, None, |o| {
        text::write_u64(o, count)
    });
}

/// Keeps a collector registered; dropping it removes the collector.
#[must_use = "the collector is removed when the handle is dropped"]
pub struct CollectorHandle<'a> {
    registry: &'a Registry,
    id: u64,
}

impl std::fmt::Debug for CollectorHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for CollectorHandle<'_> {
    fn drop(&mut self) {
        lock(&self.registry.collectors).retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_with_labels() {
        static PRODUCE: Counter = Counter::new();
        static FETCH: Counter = Counter::new();
        static CACHED: Gauge = Gauge::new();
        static LATENCY: Histogram = Histogram::new(&[0.005, 0.1, 1.0]);
        let r = Registry::new();
        r.counter(
            "strata_requests_total",
            "Requests handled.",
            &[("api", "produce")],
            &PRODUCE,
        );
        r.counter(
            "strata_requests_total",
            "Requests handled.",
            &[("api", "fetch")],
            &FETCH,
        );
        r.gauge("strata_cache_bytes", "Bytes cached.", &[], &CACHED);
        r.histogram(
            "strata_request_duration_seconds",
            "Request latency.",
            &[("api", "produce")],
            &LATENCY,
        );
        PRODUCE.add(3);
        FETCH.inc();
        CACHED.set(4096);
        LATENCY.observe(0.001);
        LATENCY.observe(0.05);
        LATENCY.observe(0.25);
        LATENCY.observe(3.0);
        let expected = "\
# HELP strata_requests_total Requests handled.
# TYPE strata_requests_total counter
strata_requests_total{api=\"produce\"} 3
strata_requests_total{api=\"fetch\"} 1
# HELP strata_cache_bytes Bytes cached.
# TYPE strata_cache_bytes gauge
strata_cache_bytes 4096
# HELP strata_request_duration_seconds Request latency.
# TYPE strata_request_duration_seconds histogram
strata_request_duration_seconds_bucket{api=\"produce\",le=\"0.005\"} 1
strata_request_duration_seconds_bucket{api=\"produce\",le=\"0.1\"} 2
strata_request_duration_seconds_bucket{api=\"produce\",le=\"1\"} 3
strata_request_duration_seconds_bucket{api=\"produce\",le=\"+Inf\"} 4
strata_request_duration_seconds_sum{api=\"produce\"} 3.301
strata_request_duration_seconds_count{api=\"produce\"} 4
";
        assert_eq!(r.render(), expected);
    }

    #[test]
    fn a_series_registered_twice_is_rendered_once() {
        static C: Counter = Counter::new();
        let r = Registry::new();
        r.counter("c_total", "help", &[("a", "b")], &C);
        r.counter("c_total", "help", &[("a", "b")], &C);
        assert_eq!(r.render().matches("c_total{a=\"b\"}").count(), 1);
    }

    #[test]
    fn collectors_run_at_render_until_their_handle_drops() {
        let r = Registry::new();
        let handle = r.register_collector(|out: &mut Encoder<'_>| {
            out.gauge_family("strata_partitions", "Partitions \"hosted\"\nhere.")
                .sample(&[("role", "leader")], 2.0)
                .sample(&[("role", "fol\"lower")], 0.5);
            out.gauge("strata_up", "Up.", 1.0);
        });
        let expected = "\
# HELP strata_partitions Partitions \"hosted\"\\nhere.
# TYPE strata_partitions gauge
strata_partitions{role=\"leader\"} 2
strata_partitions{role=\"fol\\\"lower\"} 0.5
# HELP strata_up Up.
# TYPE strata_up gauge
strata_up 1
";
        assert_eq!(r.render(), expected);
        drop(handle);
        assert_eq!(r.render(), "");
    }
}
