//! A token bucket for `rate=N` on consume sockets and the producers' `messages-per-second`: at
//! most N records a second over time, the first record at once, bounded bursts.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl RateLimit {
    /// `None` when `rate` is absent or 0 (unlimited).
    pub fn new(rate: Option<u32>, burst: usize, now: Instant) -> Option<RateLimit> {
        let per_second = f64::from(rate.filter(|r| *r > 0)?);
        let capacity = (burst.max(1) as f64).min(per_second.max(1.0));
        Some(RateLimit { per_second, capacity, tokens: 1.0, updated: now })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Whole records that may be sent now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.floor() as usize
    }

    /// When at least one record may be sent (now, if already allowed).
    pub fn next_allowed(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }

    /// Records that `n` records were sent.
    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_when_absent_or_zero() {
        assert!(RateLimit::new(None, 1, Instant::now()).is_none());
        assert!(RateLimit::new(Some(0), 1, Instant::now()).is_none());
    }

    #[test]
    fn first_record_at_once_then_evenly_spaced() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(10), 1, t0).unwrap();
        assert_eq!(r.available(t0), 1);
        r.take(1);
        assert_eq!(r.available(t0), 0);
        let next = r.next_allowed(t0);
        assert!((next - t0).as_millis().abs_diff(100) <= 1, "{:?}", next - t0);
        assert_eq!(r.available(t0 + Duration::from_millis(100)), 1);
    }

    #[test]
    fn never_more_than_rate_per_second_over_time() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(50), 10, t0).unwrap();
        let mut sent = 0;
        let mut t = t0;
        while t < t0 + Duration::from_secs(10) {
            let n = r.available(t).min(10);
            r.take(n);
            sent += n;
            t += Duration::from_millis(7);
        }
        assert!(sent <= 50 * 10 + 10, "sent {sent}");
        assert!(sent >= 50 * 10 - 10, "sent {sent}");
    }
}
