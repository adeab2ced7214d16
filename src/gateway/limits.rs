//! Runtime protections of the gateway, per process: a cap on each user's calls in flight, a
//! plan's tokens per minute per user, and a circuit breaker per provider (after `breaker_failures` failures in a row — 5xx, timeouts,
//! unreachable; not 429 — the provider is skipped for `breaker_cooldown_ms`, then one call
//! tries it again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::models::Provider;

/// Calls in flight per user.
#[derive(Clone, Default)]
pub struct CallSlots {
    in_flight: Arc<Mutex<HashMap<i64, u32>>>,
}

/// One call's place; freed when dropped.
pub struct Slot {
    slots: CallSlots,
    user_id: i64,
}

impl CallSlots {
    /// A place for one more call of `user_id`, unless `limit` are in flight (0 = no limit).
    pub fn take(&self, user_id: i64, limit: u32) -> Option<Slot> {
        let mut map = self.in_flight.lock().expect("slots lock");
        let n = map.entry(user_id).or_insert(0);
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            user_id,
        })
    }

    pub fn in_flight(&self, user_id: i64) -> u32 {
        let map = self.in_flight.lock().expect("slots lock");
        map.get(&user_id).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.slots.in_flight.lock().expect("slots lock");
        if let Some(n) = map.get_mut(&self.user_id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user_id);
            }
        }
    }
}

/// Tokens used per user in the current minute (fixed windows aligned to the minute).
#[derive(Clone, Default)]
pub struct TokenWindows {
    used: Arc<Mutex<HashMap<i64, (i64, u64)>>>,
}

const MINUTE_MS: i64 = 60_000;

impl TokenWindows {
    /// Admits a call unless the user's tokens this minute already reached `limit`; the refusal
    /// carries the seconds until the next minute. A call admitted under the limit may take
    /// the count past it (its tokens are known only afterwards); the next is then refused.
    pub fn admit(&self, user_id: i64, limit: u64, now_ms: i64) -> Result<(), u64> {
        let window = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let map = self.used.lock().expect("tokens lock");
        match map.get(&user_id) {
            Some(&(start, used)) if start == window && used >= limit => {
                Err(((window + MINUTE_MS - now_ms) as u64).div_ceil(1000))
            }
            _ => Ok(()),
        }
    }

    /// Adds a finished call's tokens to the user's minute.
    pub fn add(&self, user_id: i64, tokens: u64, now_ms: i64) {
        let window = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let mut map = self.used.lock().expect("tokens lock");
        let entry = map.entry(user_id).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += tokens;
        // Forget users idle since an earlier minute now and then, so the map stays small.
        if map.len() > 10_000 {
            map.retain(|_, (start, _)| *start == window);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

/// One circuit breaker per provider.
#[derive(Clone)]
pub struct Breakers {
    states: Arc<Mutex<HashMap<&'static str, BreakerState>>>,
    threshold: u32,
    cooldown: Duration,
}

impl Breakers {
    /// `threshold` 0 turns breaking off.
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            states: Arc::default(),
            threshold,
            cooldown,
        }
    }

    /// Whether a call may go to `p` now: closed, or open with its cooldown over (then this call
    /// is the trial: the breaker stays open for others until it succeeds or fails again).
    pub fn allow(&self, p: Provider) -> bool {
        let mut states = self.states.lock().expect("breaker lock");
        let s = states.entry(p.as_str()).or_default();
        match s.open_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half open: let this call through, hold the others for another cooldown.
                s.open_until = Some(Instant::now() + self.cooldown);
                true
            }
            None => true,
        }
    }

    pub fn success(&self, p: Provider) {
        let mut states = self.states.lock().expect("breaker lock");
        states.insert(p.as_str(), BreakerState::default());
    }

    /// Counts a failure; returns true when it opened the breaker.
    pub fn failure(&self, p: Provider) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut states = self.states.lock().expect("breaker lock");
        let s = states.entry(p.as_str()).or_default();
        s.failures += 1;
        if s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_calls_per_user_and_free_on_drop() {
        let slots = CallSlots::default();
        let a = slots.take(1, 2).unwrap();
        let _b = slots.take(1, 2).unwrap();
        assert!(slots.take(1, 2).is_none());
        assert!(slots.take(2, 2).is_some(), "another user is not affected");
        drop(a);
        assert_eq!(slots.in_flight(1), 1);
        assert!(slots.take(1, 2).is_some());
        assert!(slots.take(1, 0).is_some(), "0 is no limit");
    }

    #[test]
    fn tokens_per_minute_refuse_once_reached_until_the_next_minute() {
        let w = TokenWindows::default();
        let t0 = 1_800_000_000_000; // a minute boundary (a multiple of 60,000)
        assert!(w.admit(1, 50, t0).is_ok());
        w.add(1, 42, t0 + 1_000);
        assert!(w.admit(1, 50, t0 + 2_000).is_ok(), "42 < 50: admitted");
        w.add(1, 42, t0 + 3_000);
        assert_eq!(w.admit(1, 50, t0 + 45_000), Err(15));
        assert!(w.admit(2, 50, t0 + 45_000).is_ok(), "per user");
        assert!(w.admit(1, 50, t0 + 60_000).is_ok(), "a new minute");
    }

    #[test]
    fn a_breaker_opens_after_failures_in_a_row_and_half_opens_after_its_cooldown() {
        let b = Breakers::new(3, Duration::from_millis(50));
        let p = Provider::OpenAi;
        assert!(!b.failure(p) && !b.failure(p));
        b.success(p); // a success resets the count
        assert!(!b.failure(p) && !b.failure(p));
        assert!(b.failure(p), "the third in a row opens it");
        assert!(!b.allow(p));
        assert!(
            b.allow(Provider::Anthropic),
            "other providers are not affected"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(p), "one trial after the cooldown");
        assert!(!b.allow(p), "only one");
        b.success(p);
        assert!(b.allow(p));
    }
}
