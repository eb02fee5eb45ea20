//! The three metric types. Every method that records is one relaxed atomic operation (or, for
//! a histogram's sum, a lock-free compare-and-swap loop): no lock, no allocation, no syscall.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A value that only goes up (requests, bytes, errors). Rendered as Prometheus `counter`.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (bytes cached now). Rendered as Prometheus `gauge`.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Most finite bucket bounds a [`Histogram`] may have.
pub const MAX_BUCKETS: usize = 24;

/// A distribution over fixed bucket bounds (seconds or bytes): one counter per bucket and a
/// sum. Rendered as Prometheus `histogram`: cumulative `_bucket{le=..}` lines, `_sum` and
/// `_count`.
///
/// There is no separate count: `_count` is rendered as the sum of the buckets read, so it
/// always equals the `+Inf` bucket, even while observations race the scrape.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `buckets[i]` counts observations in `(bounds[i-1], bounds[i]]`; `buckets[bounds.len()]`
    /// those above the last bound. Not cumulative: rendering adds them up.
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    /// The f64 bits of the sum of observations.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds`: finite, strictly increasing, at most [`MAX_BUCKETS`] of them
    /// (checked at compile time when the histogram is a `static`).
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        assert!(
            bounds.len() <= MAX_BUCKETS,
            "a histogram has at most MAX_BUCKETS bounds"
        );
        let mut i = 0;
        while i < bounds.len() {
            assert!(bounds[i].is_finite(), "histogram bounds must be finite");
            assert!(
                i == 0 || bounds[i - 1] < bounds[i],
                "histogram bounds must increase"
            );
            i += 1;
        }
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1],
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation. NaN is ignored.
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + v).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Records a duration, in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Records the time since `start`, in seconds.
    pub fn observe_since(&self, start: Instant) {
        self.observe_duration(start.elapsed());
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Cumulative counts, one per bound and a last one for `+Inf` (which is the count), and
    /// the sum.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self.buckets[..=self.bounds.len()]
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, f64::from_bits(self.sum.load(Ordering::Relaxed)))
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets[..=self.bounds.len()]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive_and_cumulative() {
        static H: Histogram = Histogram::new(&[0.1, 1.0]);
        H.observe(0.05);
        H.observe(0.1);
        H.observe(0.5);
        H.observe(7.0);
        H.observe(f64::NAN);
        let (buckets, sum) = H.snapshot();
        assert_eq!(buckets, vec![2, 3, 4]);
        assert!((sum - 7.65).abs() < 1e-9, "{sum}");
        assert_eq!(H.count(), 4);
    }

    #[test]
    fn concurrent_observations_all_count() {
        static H: Histogram = Histogram::new(crate::DURATION_BUCKETS);
        static C: Counter = Counter::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        H.observe(f64::from(i % 7) * 0.001);
                        C.inc();
                    }
                });
            }
        });
        assert_eq!(H.count(), 40_000);
        assert_eq!(C.get(), 40_000);
        let (_, sum) = H.snapshot();
        let expected = 4.0 * (0..10_000).map(|i| f64::from(i % 7) * 0.001).sum::<f64>();
        assert!((sum - expected).abs() < 1e-6, "{sum} vs {expected}");
    }

    #[test]
    fn gauges_go_both_ways() {
        let g = Gauge::new();
        g.add(10);
        g.sub(3);
        assert_eq!(g.get(), 7);
        g.set(-2);
        assert_eq!(g.get(), -2);
    }
}
