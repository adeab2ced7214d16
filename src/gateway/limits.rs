//! Runtime protections of the gateway: a cap on each user's calls in flight, a plan's tokens
//! per minute per user, and a circuit breaker per provider. Their state is GCRA state in the
//! [`Limiter`] the request rate limits use: shared by every replica through Redis when it is
//! configured, per process otherwise (and per process for a moment while Redis is unreachable).
//!
//! - Calls in flight: each call takes one unit of weight with a lease of `lease` (the longest a
//!   call can hold its credits), and gives it back when it ends. A replica that dies mid-call
//!   leaks its units only until their lease runs out.
//! - Tokens per minute: a call may start while the user's minute has room for one more token;
//!   its tokens are counted when it ends, even past the limit (they were spent), so the next
//!   call waits until the window has drained below the limit again.
//! - Breaker: each failure (5xx, timeout, unreachable; not 429) adds one unit, one cooldown
//!   each; `breaker_failures` of them close to each other open it, and calls skip the provider
//!   until one cooldown has drained; the next call then tries it (a failure re-opens it, a
//!   success clears it).

use std::time::Duration;

use super::models::Provider;
use crate::domain::rate_limit::{Policy, Step, ceil_secs};
use crate::ops::limiter::Limiter;

/// Calls in flight per user.
#[derive(Clone)]
pub struct CallSlots {
    store: Limiter,
    lease: Duration,
}

/// One call's place; given back when dropped.
pub struct Slot {
    taken: Option<(Limiter, Policy, String)>,
}

impl CallSlots {
    pub fn new(store: Limiter, lease: Duration) -> CallSlots {
        CallSlots { store, lease }
    }

    fn policy(&self, limit: u32) -> Policy {
        let lease_us = self.lease.as_micros().max(1) as i64;
        Policy {
            name: "calls",
            limit: limit as u64,
            period_us: lease_us.saturating_mul(limit as i64),
        }
    }

    /// A place for one more call of `user_id`, unless `limit` are in flight (0 = no limit).
    pub async fn take(&self, user_id: i64, limit: u32) -> Option<Slot> {
        if limit == 0 {
            return Some(Slot { taken: None });
        }
        let policy = self.policy(limit);
        let id = user_id.to_string();
        let decision = self.store.step_or_local(&policy, &id, Step::Take(1)).await;
        decision.allowed.then(|| Slot {
            taken: Some((self.store.clone(), policy, id)),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((store, policy, id)) = self.taken.take() else {
            return;
        };
        // Giving the place back may be a Redis call: it runs on its own, the call is over.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                store.step_or_local(&policy, &id, Step::Add(-1)).await;
            });
        }
    }
}

/// Tokens used per user in the last minute.
#[derive(Clone)]
pub struct TokenWindows {
    store: Limiter,
}

fn per_minute(limit: u64) -> Policy {
    Policy {
        name: "tpm",
        limit,
        period_us: 60_000_000,
    }
}

impl TokenWindows {
    pub fn new(store: Limiter) -> TokenWindows {
        TokenWindows { store }
    }

    /// Admits a call while the user's minute has room; the refusal carries the seconds until it
    /// has. A call admitted under the limit may take the count past it (its tokens are known
    /// only afterwards); the next is then refused.
    pub async fn admit(&self, user_id: i64, limit: u64) -> Result<(), u64> {
        let policy = per_minute(limit);
        let id = user_id.to_string();
        let d = self.store.step_or_local(&policy, &id, Step::Probe(1)).await;
        if d.allowed {
            Ok(())
        } else {
            Err(ceil_secs(d.retry_after_us) as u64)
        }
    }

    /// Counts a finished call's tokens against the user's minute.
    pub async fn add(&self, user_id: i64, limit: u64, tokens: u64) {
        let policy = per_minute(limit);
        let weight = i64::try_from(tokens).unwrap_or(i64::MAX);
        let id = user_id.to_string();
        self.store
            .step_or_local(&policy, &id, Step::Add(weight))
            .await;
    }
}

/// One circuit breaker per provider.
#[derive(Clone)]
pub struct Breakers {
    store: Limiter,
    threshold: u32,
    cooldown: Duration,
}

/// A breaker's leave to call a provider; says whether failures were on record, so that a
/// success with none (the usual case) writes nothing.
pub struct Pass {
    clean: bool,
}

impl Breakers {
    /// `threshold` 0 turns breaking off.
    pub fn new(store: Limiter, threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            store,
            threshold,
            cooldown,
        }
    }

    fn policy(&self) -> Policy {
        let cooldown_us = self.cooldown.as_micros().max(1) as i64;
        Policy {
            name: "breaker",
            limit: self.threshold as u64,
            period_us: cooldown_us.saturating_mul(self.threshold as i64),
        }
    }

    /// Leave to call `p` now, unless its breaker is open.
    pub async fn allow(&self, p: Provider) -> Option<Pass> {
        if self.threshold == 0 {
            return Some(Pass { clean: true });
        }
        let policy = self.policy();
        let d = self
            .store
            .step_or_local(&policy, p.as_str(), Step::Probe(1))
            .await;
        d.allowed.then_some(Pass {
            clean: d.remaining >= policy.limit,
        })
    }

    /// A call to `p` succeeded: its failures are forgotten.
    pub async fn success(&self, p: Provider, pass: Pass) {
        if pass.clean {
            return;
        }
        let policy = self.policy();
        let all = -(policy.limit as i64);
        self.store
            .step_or_local(&policy, p.as_str(), Step::Add(all))
            .await;
    }

    /// Counts a failure; returns true when it opened the breaker.
    pub async fn failure(&self, p: Provider) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let policy = self.policy();
        let d = self
            .store
            .step_or_local(&policy, p.as_str(), Step::Add(1))
            .await;
        d.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Limiter {
        Limiter::new(None, "test:")
    }

    #[tokio::test]
    async fn slots_cap_calls_per_user_and_free_on_drop() {
        let slots = CallSlots::new(local(), Duration::from_secs(900));
        let a = slots.take(1, 2).await.unwrap();
        let _b = slots.take(1, 2).await.unwrap();
        assert!(slots.take(1, 2).await.is_none());
        assert!(
            slots.take(2, 2).await.is_some(),
            "another user is not affected"
        );
        drop(a);
        tokio::task::yield_now().await;
        assert!(slots.take(1, 2).await.is_some());
        assert!(slots.take(1, 0).await.is_some(), "0 is no limit");
    }

    #[tokio::test]
    async fn tokens_per_minute_refuse_once_reached_until_the_window_drains() {
        let w = TokenWindows::new(local());
        assert!(w.admit(1, 50).await.is_ok());
        w.add(1, 50, 42).await;
        assert!(w.admit(1, 50).await.is_ok(), "42 < 50: admitted");
        w.add(1, 50, 42).await;
        // 84 of 50: refused until 35 tokens have drained (42 s at 50 a minute).
        let wait = w.admit(1, 50).await.unwrap_err();
        assert!((41..=43).contains(&wait), "{wait}");
        assert!(w.admit(2, 50).await.is_ok(), "per user");
    }

    #[tokio::test]
    async fn a_breaker_opens_after_failures_and_is_tried_again_after_its_cooldown() {
        let b = Breakers::new(local(), 3, Duration::from_millis(100));
        let p = Provider::OpenAi;
        assert!(!b.failure(p).await && !b.failure(p).await);
        let pass = b.allow(p).await.expect("two failures: still closed");
        b.success(p, pass).await; // a success forgets them
        assert!(b.allow(p).await.unwrap().clean);
        assert!(!b.failure(p).await && !b.failure(p).await);
        assert!(b.failure(p).await, "the third opens it");
        assert!(b.allow(p).await.is_none());
        assert!(b.allow(Provider::Anthropic).await.is_some(), "per provider");
        tokio::time::sleep(Duration::from_millis(120)).await;
        let _trial = b.allow(p).await.expect("tried again after the cooldown");
        assert!(b.failure(p).await, "a failed trial re-opens it");
        assert!(b.allow(p).await.is_none());
        tokio::time::sleep(Duration::from_millis(120)).await;
        b.success(p, b.allow(p).await.unwrap()).await;
        assert!(b.allow(p).await.unwrap().clean, "a success clears it");
    }
}
