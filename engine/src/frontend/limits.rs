//! Token-bucket rate limits: per user, per key taken from the request, and global. A bucket
//! holds a minute's allowance and refills continuously, so a user allowed 100 requests a minute
//! may spend them in a burst and then gets one every 0.6 s.
//!
//! Buckets live in memory, bounded: past [`BUCKET_COUNT_MAX`] buckets, full ones (idle users)
//! are dropped, and should every bucket be in use a new identity is let through uncounted
//! (fail-open, counted in `limit_overflow_total`), never refused for lack of room.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Most buckets per limit kept at once.
pub const BUCKET_COUNT_MAX: usize = 200_000;

/// A refusal: which limit and when to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// `user`, `key` or `global`.
    pub scope: &'static str,
    /// Requests per minute of that limit.
    pub limit_per_minute: u64,
    /// Whole tokens left (0).
    pub remaining: u64,
    /// When one token is back.
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One limit's buckets.
pub struct RateLimit {
    scope: &'static str,
    per_minute: u64,
    buckets: HashMap<String, Bucket>,
    overflow_count: u64,
}

impl RateLimit {
    /// A limit of `per_minute` requests per identity; 0 is no limit.
    pub fn new(scope: &'static str, per_minute: u64) -> RateLimit {
        RateLimit { scope, per_minute, buckets: HashMap::new(), overflow_count: 0 }
    }

    /// Takes one token from `identity`'s bucket, or says when there will be one.
    pub fn take(&mut self, identity: &str, now: Instant) -> Result<(), Refusal> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = self.per_minute as f64;
        let per_ms = capacity / 60_000.0;
        if !self.buckets.contains_key(identity) && self.buckets.len() >= BUCKET_COUNT_MAX {
            self.buckets.retain(|_, bucket| {
                bucket.tokens + now.saturating_duration_since(bucket.updated).as_millis() as f64 * per_ms < capacity
            });
            if self.buckets.len() >= BUCKET_COUNT_MAX {
                self.overflow_count += 1;
                return Ok(());
            }
        }
        let bucket = self.buckets.entry(identity.to_string()).or_insert(Bucket { tokens: capacity, updated: now });
        let elapsed_ms = now.saturating_duration_since(bucket.updated).as_secs_f64() * 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_ms * per_ms).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - bucket.tokens) / per_ms).ceil();
        Err(Refusal {
            scope: self.scope,
            limit_per_minute: self.per_minute,
            remaining: 0,
            retry_after: Duration::from_millis(wait_ms as u64),
        })
    }

    /// New identities let through because the table was full.
    pub fn overflow_count(&self) -> u64 {
        self.overflow_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_allowance_then_a_steady_trickle() {
        let start = Instant::now();
        let mut limit = RateLimit::new("user", 100);
        for _ in 0..100 {
            limit.take("alice", start).unwrap();
        }
        let refusal = limit.take("alice", start).unwrap_err();
        assert_eq!(refusal.scope, "user");
        assert_eq!(refusal.limit_per_minute, 100);
        assert_eq!(refusal.retry_after, Duration::from_millis(600));
        // Another user has a bucket of their own.
        limit.take("bob", start).unwrap();
        // 0.6 s later exactly one more request is allowed.
        let later = start + Duration::from_millis(600);
        limit.take("alice", later).unwrap();
        assert!(limit.take("alice", later).is_err());
        // A minute's rest refills the bucket, never beyond its capacity.
        let rested = later + Duration::from_secs(600);
        for _ in 0..100 {
            limit.take("alice", rested).unwrap();
        }
        assert!(limit.take("alice", rested).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        let mut limit = RateLimit::new("global", 0);
        let now = Instant::now();
        for _ in 0..10_000 {
            limit.take("", now).unwrap();
        }
    }
}
