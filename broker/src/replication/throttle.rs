//! The leader's throttle on catch-up traffic to replicas a reassignment is adding (Kafka's
//! `leader.replication.throttled.rate`): one token bucket per broker, shared by every
//! throttled partition it leads, as a state machine with the time passed in.
//!
//! Invariants: over any window the bytes granted stay within `rate` per second plus one
//! second's burst and one batch (a read always returns at least one whole batch, so the
//! bucket may go below zero, and then grants nothing until it has refilled). Replicas in the
//! ISR are never throttled (the caller's rule, as in Kafka): an acks=all write waits for them.

use std::time::Duration;

#[derive(Debug)]
pub struct Throttle {
    /// Bytes the bucket holds (negative: overdrawn by the last batch).
    tokens: i64,
    last_ms: Option<i64>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            tokens: 0,
            last_ms: None,
        }
    }

    fn refill(&mut self, rate: u64, now_ms: i64) {
        let burst = rate as i64; // one second's worth
        match self.last_ms {
            // A bucket starts full: the first fetch of a move goes at once.
            None => {
                self.tokens = burst;
                self.last_ms = Some(now_ms);
            }
            Some(last) => {
                let elapsed_ms = (now_ms - last).max(0);
                let earned = (elapsed_ms as i128 * rate as i128 / 1000) as i64;
                if earned > 0 {
                    self.tokens = (self.tokens + earned).min(burst);
                    // Keep the remainder of the millisecond the last byte was earned in.
                    let used_ms = (earned as i128 * 1000 / rate as i128) as i64;
                    self.last_ms = Some(last + used_ms.max(1).min(elapsed_ms));
                }
                if self.tokens == burst {
                    self.last_ms = Some(now_ms);
                }
            }
        }
    }

    /// How many bytes a throttled fetch may read now at `rate` bytes per second (`Ok`), or how
    /// long to wait before the bucket holds a byte again (`Err`).
    pub fn grant(&mut self, rate: u64, now_ms: i64) -> Result<usize, Duration> {
        let rate = rate.max(1);
        self.refill(rate, now_ms);
        if self.tokens >= 1 {
            return Ok(self.tokens as usize);
        }
        let missing = (1 - self.tokens) as u128;
        let ms = (missing * 1000).div_ceil(rate as u128) as u64;
        Err(Duration::from_millis(ms.max(1)))
    }

    /// A throttled fetch sent `bytes`.
    pub fn spent(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub(bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_stay_within_the_rate_plus_one_burst() {
        let mut t = Throttle::new();
        let rate = 10_000;
        let mut sent = 0usize;
        let mut now = 0;
        // Ten seconds of a follower asking every 10 ms for up to 4 KiB (batches of 1,500 B).
        while now < 10_000 {
            if let Ok(allowed) = t.grant(rate, now) {
                let read = allowed.clamp(1500, 4096); // at least one batch
                t.spent(read);
                sent += read;
            }
            now += 10;
        }
        let most = (rate * 10 + rate) as usize + 1500;
        assert!(sent <= most, "{sent} > {most}");
        assert!(sent >= (rate * 9) as usize, "{sent} is far below the rate");
    }

    #[test]
    fn an_overdrawn_bucket_says_how_long_to_wait() {
        let mut t = Throttle::new();
        assert_eq!(t.grant(1000, 0), Ok(1000));
        t.spent(3000); // one big batch: 2,000 B below zero
        assert_eq!(t.grant(1000, 0), Err(Duration::from_millis(2001)));
        assert_eq!(t.grant(1000, 1000), Err(Duration::from_millis(1001)));
        assert!(t.grant(1000, 2001).is_ok());
    }
}
