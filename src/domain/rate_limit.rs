//! Rate limits as GCRA (the generic cell rate algorithm): each key keeps one number, its
//! theoretical arrival time (TAT). A policy of `limit` requests per `period` admits a request
//! when it would not push the TAT more than `period` ahead of now. The same arithmetic runs in
//! process and, atomically, in Redis (see `ops::limiter`). Times are microseconds.
//!
//! A step may weigh more than one (a call's tokens against tokens per minute), be a probe that
//! stores nothing (may a call start?), or be forced (tokens already spent are counted even past
//! the limit; a finished call gives its place back with a negative weight).

/// What one step does to a key's TAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Admit `weight` if it fits, and count it.
    Take(i64),
    /// Would `weight` fit? Counts nothing.
    Probe(i64),
    /// Count `weight` whatever the limit (negative: give back); the TAT never falls below now.
    Add(i64),
}

impl Step {
    /// The wire form for the Redis script: (weight, mode).
    pub fn wire(self) -> (i64, &'static str) {
        match self {
            Step::Take(w) => (w, "take"),
            Step::Probe(w) => (w, "probe"),
            Step::Add(w) => (w, "add"),
        }
    }
}

/// `limit` requests per `period_us`, bursting up to `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Name shown in the `RateLimit-Policy` header (`ip`, `key`, `app`).
    pub name: &'static str,
    pub limit: u64,
    pub period_us: i64,
}

/// The outcome for one request under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that would still be admitted right now.
    pub remaining: u64,
    /// Until the whole quota is available again.
    pub reset_us: i64,
    /// When refused: how long until one request would be admitted.
    pub retry_after_us: i64,
}

impl Policy {
    /// Time between two requests at the sustained rate.
    pub fn interval_us(&self) -> i64 {
        (self.period_us / self.limit.max(1) as i64).max(1)
    }

    /// Checks a request at `now` against the stored TAT; returns the decision and the TAT to
    /// store (unchanged when refused).
    pub fn check(&self, tat: Option<i64>, now: i64) -> (Decision, i64) {
        self.step(tat, now, Step::Take(1))
    }

    /// Applies `step` at `now` to the stored TAT; returns the decision and the TAT to store.
    /// The Redis script (`ops::limiter`) is this function, line for line.
    pub fn step(&self, tat: Option<i64>, now: i64, step: Step) -> (Decision, i64) {
        let interval = self.interval_us();
        let tat = tat.unwrap_or(now).max(now);
        let (weight, _) = step.wire();
        let new_tat = (tat + interval.saturating_mul(weight)).max(now);
        match step {
            Step::Add(_) => (self.decision_after(new_tat, now, true), new_tat),
            _ if new_tat - now > self.period_us => (self.decision_after(tat, now, false), tat),
            Step::Probe(_) => (self.decision_after(tat, now, true), tat),
            Step::Take(_) => (self.decision_after(new_tat, now, true), new_tat),
        }
    }

    /// The decision implied by a TAT (used for what Redis returns).
    pub fn decision_after(&self, tat: i64, now: i64, allowed: bool) -> Decision {
        let interval = self.interval_us();
        let ahead = (tat - now).max(0);
        let remaining = ((self.period_us - ahead) / interval).max(0) as u64;
        Decision {
            allowed,
            remaining: remaining.min(self.limit),
            reset_us: ahead,
            retry_after_us: if allowed {
                0
            } else {
                (ahead + interval - self.period_us).max(1)
            },
        }
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): `"key";q=600;w=60`.
    pub fn header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.name,
            self.limit,
            ceil_secs(self.period_us)
        )
    }
}

impl Decision {
    /// `RateLimit` for `policy`: `"key";r=599;t=1`.
    pub fn header(&self, policy: &Policy) -> String {
        format!(
            "\"{}\";r={};t={}",
            policy.name,
            self.remaining,
            ceil_secs(self.reset_us)
        )
    }
}

/// Whole seconds, rounded up (a client waiting for them is never early).
pub fn ceil_secs(us: i64) -> i64 {
    (us.max(0) + 999_999) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn policy(limit: u64, secs: i64) -> Policy {
        Policy {
            name: "key",
            limit,
            period_us: secs * SEC,
        }
    }

    #[test]
    fn a_full_burst_is_admitted_then_one_request_per_interval() {
        let p = policy(5, 10); // one request every 2 s, burst of 5
        let now = 1_000 * SEC;
        let mut tat = None;
        for expected_remaining in [4, 3, 2, 1, 0] {
            let (d, t) = p.check(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = Some(t);
        }
        let (refused, same) = p.check(tat, now);
        assert!(!refused.allowed);
        assert_eq!(same, tat.unwrap(), "a refusal does not consume");
        assert_eq!(refused.retry_after_us, 2 * SEC);
        assert_eq!(refused.reset_us, 10 * SEC);
        // One interval later exactly one more is admitted.
        let (d, t) = p.check(tat, now + 2 * SEC);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!p.check(Some(t), now + 2 * SEC).0.allowed);
    }

    #[test]
    fn an_idle_key_gets_its_whole_quota_back() {
        let p = policy(3, 60);
        let now = 5_000 * SEC;
        let (_, tat) = p.check(None, now);
        let (_, tat) = p.check(Some(tat), now);
        let (d, _) = p.check(Some(tat), now + 3_600 * SEC);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn weighted_steps_probe_take_and_give_back() {
        let p = policy(100, 60); // 100 tokens a minute: 0.6 s each
        let now = 1_000 * SEC;
        // 90 tokens spent, counted whatever the limit.
        let (_, tat) = p.step(None, now, Step::Add(90));
        assert!(p.step(Some(tat), now, Step::Probe(10)).0.allowed);
        let (refused, same) = p.step(Some(tat), now, Step::Probe(11));
        assert!(!refused.allowed);
        assert_eq!(same, tat, "a probe stores nothing");
        // Past the limit by a forced add; then nothing fits until it drains.
        let (_, over) = p.step(Some(tat), now, Step::Add(30));
        assert!(!p.step(Some(over), now, Step::Probe(1)).0.allowed);
        let later = now + 21 * SEC; // 35 tokens drained
        assert!(p.step(Some(over), later, Step::Probe(1)).0.allowed);
        // Giving back never takes the TAT below now.
        let (_, back) = p.step(Some(tat), now, Step::Add(-1_000));
        assert_eq!(back, now);
        let (d, _) = p.step(Some(back), now, Step::Take(100));
        assert!(d.allowed, "the whole minute is free again");
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let p = policy(600, 60);
        assert_eq!(p.header(), "\"key\";q=600;w=60");
        let (d, _) = p.check(None, 0);
        assert_eq!(d.header(&p), "\"key\";r=599;t=1");
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(SEC), 1);
        assert_eq!(ceil_secs(SEC + 1), 2);
    }
}
