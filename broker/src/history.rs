//! How much of the metadata store's history the controller keeps: etcd keeps every revision
//! until it is compacted, and nothing else compacts it (etcd's auto-compaction is off by
//! default), so a steady stream of offset commits and ISR changes would grow its database
//! until the 2 GiB quota stops every metadata write.
//!
//! The controller samples the store's revision every [`SAMPLE_EVERY`] and compacts to the
//! newest sample at least [`KEEP`] old: about an hour of history stays (enough for any watch
//! to resume), older revisions go. Pure: time is passed in.
//!
//! Invariant: the compaction target is always a revision the store had at least `keep` ago,
//! so no revision younger than that is ever compacted; at most `keep / every + 2` samples are
//! held.

use std::collections::VecDeque;
use std::time::Duration;

/// How long history is kept.
pub const KEEP: Duration = Duration::from_secs(60 * 60);
/// How often the revision is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct History {
    keep_ms: i64,
    every_ms: i64,
    /// (time, revision), oldest first.
    samples: VecDeque<(i64, i64)>,
    compacted: i64,
}

impl History {
    pub fn new(keep: Duration, every: Duration) -> History {
        History {
            keep_ms: keep.as_millis() as i64,
            every_ms: every.as_millis().max(1) as i64,
            samples: VecDeque::new(),
            compacted: 0,
        }
    }

    /// Whether a sample is due at `now_ms`.
    pub fn due(&self, now_ms: i64) -> bool {
        self.samples
            .back()
            .is_none_or(|(at, _)| now_ms - at >= self.every_ms)
    }

    /// Records the store's `revision` at `now_ms`; returns the revision to compact to, when
    /// one at least `keep` old is newer than the last compaction.
    pub fn sample(&mut self, now_ms: i64, revision: i64) -> Option<i64> {
        self.samples.push_back((now_ms, revision));
        let mut target = None;
        while let Some(&(at, rev)) = self.samples.front() {
            if now_ms - at < self.keep_ms {
                break;
            }
            target = Some(rev);
            self.samples.pop_front();
        }
        let target = target.filter(|r| *r > self.compacted)?;
        self.compacted = target;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn compacts_to_what_the_store_had_an_hour_ago() {
        let mut h = History::new(KEEP, SAMPLE_EVERY);
        let mut compactions = Vec::new();
        // A sample every 5 minutes for 3 hours; the revision grows by 1,000 a minute.
        for t in (0..=180).step_by(5) {
            let now = t * MIN;
            assert!(h.due(now));
            if let Some(r) = h.sample(now, 1_000 * t) {
                compactions.push((t, r));
            }
            assert!(!h.due(now + MIN), "not due again a minute later");
            assert!(h.samples.len() <= 14, "bounded: {}", h.samples.len());
        }
        // The first compaction an hour in, to the revision at time 0 (nothing to forget yet:
        // revision 0 is not newer than nothing), then each to the revision an hour before.
        assert_eq!(compactions.first(), Some(&(65, 5_000)));
        for (t, r) in &compactions {
            assert_eq!(*r, 1_000 * (t - 60), "at {t} min");
        }
    }

    #[test]
    fn an_idle_store_is_compacted_once() {
        let mut h = History::new(KEEP, SAMPLE_EVERY);
        let targets: Vec<i64> = (0..=36).filter_map(|i| h.sample(i * 5 * MIN, 42)).collect();
        assert_eq!(targets, vec![42]);
    }
}
