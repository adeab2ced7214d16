//! Retry delays: exponential with jitter, so a failing dependency is not hammered in lockstep.

use std::time::Duration;

/// First retry after about this long.
const BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const CAP: Duration = Duration::from_secs(3600);

/// The delay before retry number `attempt` (1 after the first failure): 1 s, 2 s, 4 s, …
/// capped at one hour, each ±25% at random.
pub fn exponential(attempt: i64) -> Duration {
    with_jitter(exponential_base(attempt, BASE, CAP), fastrand::f64())
}

/// The delay without jitter.
pub fn exponential_base(attempt: i64, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.clamp(1, 32) as u32 - 1;
    base.saturating_mul(2u32.saturating_pow(exp)).min(cap)
}

/// Scales `delay` by a factor in [0.75, 1.25) chosen by `unit` in [0, 1).
pub fn with_jitter(delay: Duration, unit: f64) -> Duration {
    // Jitter is timing, not money: a float is fine here.
    delay.mul_f64(0.75 + unit.clamp(0.0, 1.0) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_attempt_up_to_the_cap() {
        let d = |a| exponential_base(a, BASE, CAP).as_secs();
        assert_eq!([d(1), d(2), d(3), d(4), d(10)], [1, 2, 4, 8, 512]);
        assert_eq!(d(13), 3600);
        assert_eq!(
            d(1_000),
            3600,
            "huge attempts neither overflow nor exceed the cap"
        );
        assert_eq!(d(0), 1);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let base = Duration::from_secs(100);
        assert_eq!(with_jitter(base, 0.0), Duration::from_secs(75));
        assert_eq!(with_jitter(base, 0.5), Duration::from_secs(100));
        assert!(with_jitter(base, 0.999_999) < Duration::from_secs(125));
        for _ in 0..1000 {
            let d = exponential(3);
            assert!(
                d >= Duration::from_secs(3) && d < Duration::from_secs(5),
                "{d:?}"
            );
        }
    }
}
