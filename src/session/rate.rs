//! Per-connection inbound rate limit (protocol §6): a token bucket, and a
//! second one for clients that keep going at twice the rate.
//!
//! Each message takes a token from the first bucket (`rate`/s, `burst`);
//! without one it is answered `rate_limited`. Each such refused message also
//! takes a token from a second bucket of the same size; when that one runs
//! dry too, the client has been sending at more than twice the allowed rate
//! for a whole burst, and is closed with 4429.

use std::time::Instant;

struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer `rate_limited`, drop the message.
    Limit,
    /// Close with 4429.
    Close,
}

pub struct RateLimiter {
    allowed: Bucket,
    excess: Bucket,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32, now: Instant) -> RateLimiter {
        RateLimiter {
            allowed: Bucket::new(rate, burst as f64, now),
            excess: Bucket::new(rate, burst as f64, now),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.allowed.take(now) {
            Verdict::Allow
        } else if self.excess.take(now) {
            Verdict::Limit
        } else {
            Verdict::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(rate_per_sec: f64, seconds: u64) -> Vec<Verdict> {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 20, t0);
        let n = (rate_per_sec * seconds as f64) as u64;
        (0..n)
            .map(|i| r.check(t0 + Duration::from_secs_f64(i as f64 / rate_per_sec)))
            .take_while(|v| *v != Verdict::Close)
            .chain(std::iter::once(Verdict::Close))
            .collect()
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 20, t0);
        assert!((0..20).all(|_| r.check(t0) == Verdict::Allow));
        assert_eq!(r.check(t0), Verdict::Limit);
        assert_eq!(r.check(t0 + Duration::from_millis(150)), Verdict::Allow);
    }

    #[test]
    fn within_the_rate_nothing_is_refused() {
        let v = run(9.0, 60);
        assert!(v[..v.len() - 1].iter().all(|v| *v == Verdict::Allow));
    }

    #[test]
    fn between_the_rate_and_twice_it_is_limited_but_not_closed() {
        let v = run(15.0, 60);
        assert_eq!(v.len(), 901, "never closed");
        assert!(v.contains(&Verdict::Limit));
    }

    #[test]
    fn above_twice_the_rate_is_closed() {
        let v = run(25.0, 60);
        assert!(v.len() < 500, "closed after {} messages", v.len());
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10.0, 20, t0);
        let flood: Vec<Verdict> = (0..41).map(|_| r.check(t0)).collect();
        assert_eq!(flood.iter().filter(|v| **v == Verdict::Allow).count(), 20);
        assert_eq!(flood.iter().filter(|v| **v == Verdict::Limit).count(), 20);
        assert_eq!(flood[40], Verdict::Close);
    }
}
