//! What frontend replicas share through Redis: answers (L2: fresh for `l2_ttl`, kept as stale
//! copies for `stale_for` more), rate-limit buckets (one Lua script per take, so replicas never
//! race on a bucket), and short flight locks, so one replica fetches an answer while the others
//! wait for it to land in Redis.
//!
//! Redis is an accelerator, never a dependency: every command is bounded by
//! [`COMMAND_TIMEOUT_MS`], a failure drops the connection and waits a growing pause before the
//! next attempt, and callers treat "no answer" as a miss, an allowed request (fail-open) or an
//! untaken lock. The connection goes through the `io` network seam and the redis crate's
//! multiplexed connection over it, so the simulator can run it too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::io::Env;

/// Longest wait for one Redis command (connecting included).
pub const COMMAND_TIMEOUT_MS: u64 = 100;
/// First pause before reconnecting after a failure; doubled per failure up to the max.
const RECONNECT_PAUSE_MS_MIN: u64 = 200;
const RECONNECT_PAUSE_MS_MAX: u64 = 10_000;
/// Bytes of the store time put before an answer's body.
const STORED_AT_SIZE_BYTES: usize = 8;

/// Token bucket take: KEYS[1] the bucket; ARGV capacity, tokens per ms, now (Unix ms). Returns
/// {1, 0} when a token was taken, {0, ms until one is back} otherwise.
const TAKE_TOKEN_SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
if now > updated then
  tokens = math.min(capacity, tokens + (now - updated) * per_ms)
  updated = now
end
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(updated))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return {allowed, retry_ms}
";

/// An answer found in Redis.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedAnswer {
    /// Stored less than the L2 TTL ago.
    Fresh(bytes::Bytes),
    /// Older, within the stale window.
    Stale(bytes::Bytes),
}

/// The Redis client.
pub struct Shared {
    env: Env,
    address: String,
    key_prefix: String,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    reconnect: Mutex<Reconnect>,
    take_token: redis::Script,
    /// Commands that failed or timed out (connection attempts included).
    pub errors_total: AtomicU64,
    /// Whether the last command succeeded.
    pub up: AtomicBool,
}

struct Reconnect {
    not_before: Option<Instant>,
    pause_ms: u64,
}

impl Shared {
    /// A client of the Redis at `address` (`host:port`); it connects on first use.
    pub fn new(env: Env, address: String, key_prefix: String) -> Shared {
        Shared {
            env,
            address,
            key_prefix,
            connection: tokio::sync::Mutex::new(None),
            reconnect: Mutex::new(Reconnect { not_before: None, pause_ms: RECONNECT_PAUSE_MS_MIN }),
            take_token: redis::Script::new(TAKE_TOKEN_SCRIPT),
            errors_total: AtomicU64::new(0),
            up: AtomicBool::new(false),
        }
    }

    /// The Redis key for a cache key: hashed, so any query text makes a short, safe key.
    pub fn key(&self, kind: &str, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
        format!("{}{kind}:{hex}", self.key_prefix)
    }

    /// The answer stored under `key`, fresh when stored less than `fresh_ms` ago.
    pub async fn get_answer(&self, key: &str, fresh_ms: i64) -> Option<SharedAnswer> {
        let value: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(key).clone()).await?;
        let value = value?;
        if value.len() < STORED_AT_SIZE_BYTES {
            return None;
        }
        let stored_at_ms = i64::from_be_bytes(value[..STORED_AT_SIZE_BYTES].try_into().ok()?);
        let body = bytes::Bytes::copy_from_slice(&value[STORED_AT_SIZE_BYTES..]);
        if self.env.clock.now_ms() - stored_at_ms < fresh_ms {
            Some(SharedAnswer::Fresh(body))
        } else {
            Some(SharedAnswer::Stale(body))
        }
    }

    /// Stores `body` under `key` for `keep_ms` (TTL and stale window together).
    pub async fn put_answer(&self, key: &str, body: &[u8], keep_ms: i64) {
        let mut value = Vec::with_capacity(STORED_AT_SIZE_BYTES + body.len());
        value.extend_from_slice(&self.env.clock.now_ms().to_be_bytes());
        value.extend_from_slice(body);
        let command = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(keep_ms.max(1)).clone();
        let _: Option<()> = self.run(command).await;
    }

    /// Takes the lock `key` for `hold_ms`: `Some(true)` taken, `Some(false)` held by another
    /// replica, `None` Redis unavailable.
    pub async fn try_lock(&self, key: &str, hold_ms: u64) -> Option<bool> {
        let command = redis::cmd("SET").arg(key).arg(1).arg("NX").arg("PX").arg(hold_ms.max(1)).clone();
        let answer: Option<Option<String>> = self.run(command).await;
        answer.map(|reply| reply.is_some())
    }

    /// Releases a lock taken with [`Shared::try_lock`].
    pub async fn unlock(&self, key: &str) {
        let _: Option<i64> = self.run(redis::cmd("DEL").arg(key).clone()).await;
    }

    /// Takes a token from the bucket `key` (`per_minute` capacity): `Some(Ok)` taken,
    /// `Some(Err(wait))` empty for `wait`, `None` Redis unavailable.
    pub async fn take_token(&self, key: &str, per_minute: u64) -> Option<Result<(), Duration>> {
        let per_ms = per_minute as f64 / 60_000.0;
        let mut connection = self.connection().await?;
        let now_ms = self.env.clock.now_ms();
        let mut invocation = self.take_token.key(key);
        invocation.arg(per_minute).arg(format!("{per_ms:.9}")).arg(now_ms);
        let (allowed, retry_ms) = self.bounded(invocation.invoke_async::<(i64, i64)>(&mut connection)).await?;
        Some(if allowed == 1 { Ok(()) } else { Err(Duration::from_millis(retry_ms.max(1) as u64)) })
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Option<T> {
        let mut connection = self.connection().await?;
        self.bounded(command.query_async::<T>(&mut connection)).await
    }

    /// Awaits one command for at most [`COMMAND_TIMEOUT_MS`]; a failure is recorded, never
    /// returned.
    async fn bounded<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(Duration::from_millis(COMMAND_TIMEOUT_MS), call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(&error.to_string()).await;
                None
            }
            Err(_) => {
                self.failed("timed out").await;
                None
            }
        }
    }

    /// The open connection, or a new one unless a recent failure asks to wait.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Some(connection.clone());
        }
        {
            let reconnect = self.reconnect.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if reconnect.not_before.is_some_and(|not_before| Instant::now() < not_before) {
                return None;
            }
        }
        let connection_info = redis::RedisConnectionInfo::default();
        let connect = async {
            let stream = self.env.net.connect(self.address.clone()).await.map_err(|error| error.to_string())?;
            MultiplexedConnection::new_with_config(&connection_info, stream, redis::AsyncConnectionConfig::new())
                .await
                .map_err(|error| error.to_string())
        };
        let result = match tokio::time::timeout(Duration::from_millis(COMMAND_TIMEOUT_MS), connect).await {
            Ok(result) => result,
            Err(_) => Err("connect timed out".to_string()),
        };
        match result {
            Ok((connection, driver)) => {
                self.env.spawner.spawn("frontend-redis-connection", Box::pin(driver));
                tracing::info!(address = %self.address, "connected to redis");
                *slot = Some(connection.clone());
                Some(connection)
            }
            Err(error) => {
                drop(slot);
                self.failed(&format!("connect: {error}")).await;
                None
            }
        }
    }

    fn succeeded(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            let mut reconnect = self.reconnect.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            reconnect.pause_ms = RECONNECT_PAUSE_MS_MIN;
        }
    }

    async fn failed(&self, error: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let was_up = self.up.swap(false, Ordering::Relaxed);
        *self.connection.lock().await = None;
        let mut reconnect = self.reconnect.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reconnect.not_before = Some(Instant::now() + Duration::from_millis(reconnect.pause_ms));
        if was_up || reconnect.pause_ms == RECONNECT_PAUSE_MS_MIN {
            tracing::warn!(address = %self.address, %error, pause_ms = reconnect.pause_ms, "redis unavailable; serving without it");
        }
        reconnect.pause_ms = (reconnect.pause_ms * 2).min(RECONNECT_PAUSE_MS_MAX);
    }
}
