//! Rate limit of refused joins per source address: a token bucket per IP address, so nobody can
//! guess join tokens or node passwords at line rate. Only refused joins take from the bucket,
//! so many honest nodes behind one address can still join at once; while an address's bucket
//! is empty every join from it is refused, valid or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before full (idle) buckets are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// How fast refused joins are allowed again, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinRateLimit {
    /// Refused joins regained per minute.
    pub per_minute: f64,
    /// Refused joins an address may make in a burst.
    pub burst: u32,
}

impl Default for JoinRateLimit {
    /// 5 a minute, bursts of 10.
    fn default() -> Self {
        Self {
            per_minute: 5.0,
            burst: 10,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every source address.
#[derive(Debug)]
pub(crate) struct JoinLimiter {
    limit: JoinRateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl JoinLimiter {
    pub(crate) fn new(limit: JoinRateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated);
        let regained = elapsed.as_secs_f64() * self.limit.per_minute / 60.0;
        bucket.tokens = (bucket.tokens + regained).min(f64::from(self.limit.burst));
        bucket.updated = now;
    }

    /// Whether `address` may attempt a join now.
    pub(crate) fn allows(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(&address) {
            Some(bucket) => {
                self.refill(bucket, now);
                bucket.tokens >= 1.0
            }
            None => self.limit.burst >= 1,
        }
    }

    /// Takes one attempt from `address`'s bucket (a join was refused).
    pub(crate) fn charge(&self, address: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_ABOVE {
            let burst = f64::from(self.limit.burst);
            buckets.retain(|_, bucket| {
                let elapsed = now.saturating_duration_since(bucket.updated);
                bucket.tokens + elapsed.as_secs_f64() * self.limit.per_minute / 60.0 < burst
            });
        }
        let bucket = buckets.entry(address).or_insert(Bucket {
            tokens: f64::from(self.limit.burst),
            updated: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// How long until `address` may try again (for the refusal message).
    pub(crate) fn retry_after(&self, address: IpAddr) -> Duration {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let missing = buckets
            .get(&address)
            .map(|b| (1.0 - b.tokens).max(0.0))
            .unwrap_or(0.0);
        if self.limit.per_minute <= 0.0 {
            return Duration::from_secs(60);
        }
        Duration::from_secs_f64((missing * 60.0 / self.limit.per_minute).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = JoinLimiter::new(JoinRateLimit {
            per_minute: 600.0,
            burst: 3,
        });
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.allows(attacker));
            limiter.charge(attacker);
        }
        assert!(!limiter.allows(attacker));
        assert!(limiter.allows(other), "limits are per address");
        assert!(limiter.retry_after(attacker) <= Duration::from_secs(1));
        // 600 a minute: one every 100 ms.
        std::thread::sleep(Duration::from_millis(150));
        assert!(limiter.allows(attacker));
    }
}
