//! Where GCRA state lives ([`crate::domain::rate_limit`]): in the process, or in Redis (one
//! atomic script, the Redis server's clock) so every replica shares one limit. The request rate
//! limits, the gateway's tokens per minute, calls in flight and circuit breakers all keep their
//! state here, each under its own policy name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::domain::rate_limit::{Decision, Policy, Step};

/// How long Redis is left alone after a failure.
const REDIS_BACKOFF: Duration = Duration::from_secs(2);
/// Local entries beyond this are pruned of the idle ones.
const LOCAL_MAX: usize = 100_000;
pub const BACKEND_ERRORS: &str = "tollgate_rate_limit_backend_errors_total";

/// [`Policy::step`] in Redis: returns {allowed, tat, now} in microseconds, `now` from the Redis
/// clock so replicas with skewed clocks agree.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local mode = ARGV[4]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * weight
if new_tat < now then new_tat = now end
if mode ~= 'add' and new_tat - now > period then
  return {0, tat, now}
end
if mode == 'probe' then
  return {1, tat, now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, new_tat, now}
";

/// The GCRA state of one process: local, plus Redis when configured. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    local: Mutex<HashMap<String, i64>>,
    redis: Option<RedisStore>,
    prefix: String,
}

struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    /// After a failure Redis is left alone until then: while it is down, callers get their
    /// fallback at once instead of each waiting for a timeout.
    down_until: Mutex<Option<Instant>>,
}

fn io_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

impl Limiter {
    /// Shared through `redis_url` when given (validation checked it), keys under `prefix`.
    pub fn new(redis_url: Option<&str>, prefix: &str) -> Limiter {
        let redis = redis_url
            .and_then(|u| redis::Client::open(u).ok())
            .map(|client| RedisStore {
                client,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(SCRIPT),
                down_until: Mutex::new(None),
            });
        Limiter {
            inner: Arc::new(Inner {
                local: Mutex::default(),
                redis,
                prefix: prefix.to_string(),
            }),
        }
    }

    pub fn is_shared(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Applies `step` to `id` under `policy`, in Redis when configured; `Err` when Redis is.
    pub async fn step(
        &self,
        policy: &Policy,
        id: &str,
        step: Step,
    ) -> Result<Decision, redis::RedisError> {
        let Some(redis) = &self.inner.redis else {
            return Ok(self.local(policy, id, step));
        };
        let backoff = *redis.down_until.lock().expect("limiter lock");
        if backoff.is_some_and(|t| Instant::now() < t) {
            return Err(io_error("Redis was unreachable moments ago"));
        }
        let key = format!("{}{}:{id}", self.inner.prefix, policy.name);
        let result = redis.step(policy, key, step).await;
        *redis.down_until.lock().expect("limiter lock") =
            result.is_err().then(|| Instant::now() + REDIS_BACKOFF);
        result
    }

    /// [`Limiter::step`], falling back to this process's own state while Redis is unreachable:
    /// for limits that are better enforced per process for a moment than not at all.
    pub async fn step_or_local(&self, policy: &Policy, id: &str, step: Step) -> Decision {
        match self.step(policy, id, step).await {
            Ok(d) => d,
            Err(e) => {
                metrics::counter!(BACKEND_ERRORS).increment(1);
                tracing::warn!(error = %e, policy = policy.name, "limit store unreachable; this process enforces the limit alone meanwhile");
                self.local(policy, id, step)
            }
        }
    }

    fn local(&self, policy: &Policy, id: &str, step: Step) -> Decision {
        let now = now_us();
        let mut map = self.inner.local.lock().expect("limiter lock");
        if map.len() > LOCAL_MAX {
            map.retain(|_, tat| *tat > now);
        }
        let key = format!("{}:{id}", policy.name);
        let (decision, tat) = policy.step(map.get(&key).copied(), now, step);
        map.insert(key, tat);
        decision
    }
}

impl RedisStore {
    async fn step(
        &self,
        policy: &Policy,
        key: String,
        step: Step,
    ) -> Result<Decision, redis::RedisError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1)));
            let manager = tokio::time::timeout(
                Duration::from_secs(2),
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            .map_err(|_| io_error("connecting to Redis timed out"))??;
            *guard = Some(manager);
        }
        let mut c = guard.as_ref().expect("connected above").clone();
        drop(guard);
        let (weight, mode) = step.wire();
        let (allowed, tat, now): (i64, i64, i64) = tokio::time::timeout(
            Duration::from_secs(1),
            self.script
                .key(key)
                .arg(policy.interval_us())
                .arg(policy.period_us)
                .arg(weight)
                .arg(mode)
                .invoke_async(&mut c),
        )
        .await
        .map_err(|_| io_error("the rate limit call to Redis timed out"))??;
        Ok(policy.decision_after(tat, now, allowed == 1))
    }
}

/// Microseconds since the Unix epoch, the clock of the local state.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}
