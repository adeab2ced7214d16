//! Payment recovery as pure rules: a case's states, and which payment a case's window
//! attributes to it. Times are the stores' event times (ms): events arrive late and out of
//! order, so processing time never decides anything here.

/// The window of an app that sets none: a payment within 14 days of the first failure counts.
pub const DEFAULT_WINDOW_DAYS: u32 = 14;

pub const DAY_MS: i64 = 86_400_000;

/// A case's state: open → recovered | lost | canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseState {
    Open,
    Recovered,
    Lost,
    Canceled,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Recovered => "recovered",
            CaseState::Lost => "lost",
            CaseState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<CaseState> {
        [
            CaseState::Open,
            CaseState::Recovered,
            CaseState::Lost,
            CaseState::Canceled,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Whether a payment at `paid_at` recovers a case whose first failure was at `first_failure_at`:
/// at or after it, and no later than the window's end (inclusive).
pub fn attributes(first_failure_at: i64, window_ms: i64, paid_at: i64) -> bool {
    paid_at >= first_failure_at && paid_at <= first_failure_at.saturating_add(window_ms)
}

/// Whether a case's window has passed by `now` (the only rule that reads the clock: a case is
/// lost once no payment can recover it any more).
pub fn window_passed(first_failure_at: i64, window_ms: i64, now: i64) -> bool {
    now > first_failure_at.saturating_add(window_ms)
}

/// Whether a failure at `failed_at` belongs to a closed case (a late retry of the same
/// payment): inside the case's span, from its first failure to its recovery (or its window's
/// end when it was not recovered).
pub fn belongs_to_closed(
    first_failure_at: i64,
    window_ms: i64,
    recovered_at: Option<i64>,
    failed_at: i64,
) -> bool {
    let end = recovered_at.unwrap_or(first_failure_at.saturating_add(window_ms));
    failed_at >= first_failure_at && failed_at <= end
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = DEFAULT_WINDOW_DAYS as i64 * DAY_MS;

    fn days(d: f64) -> i64 {
        (d * DAY_MS as f64) as i64
    }

    #[test]
    fn a_payment_recovers_up_to_fourteen_days_after_the_first_failure_and_not_after() {
        let t0 = 1_800_000_000_000;
        assert!(attributes(t0, WINDOW, t0 + days(13.9)));
        assert!(
            attributes(t0, WINDOW, t0 + WINDOW),
            "the last moment counts"
        );
        assert!(!attributes(t0, WINDOW, t0 + days(14.1)));
        assert!(
            !attributes(t0, WINDOW, t0 - 1),
            "a payment before the failure does not"
        );
    }

    #[test]
    fn a_case_is_lost_only_once_its_window_has_passed() {
        let t0 = 1_800_000_000_000;
        assert!(!window_passed(t0, WINDOW, t0 + WINDOW));
        assert!(window_passed(t0, WINDOW, t0 + WINDOW + 1));
    }

    #[test]
    fn a_late_retry_belongs_to_the_case_it_failed_in() {
        let t0 = 1_800_000_000_000;
        assert!(belongs_to_closed(
            t0,
            WINDOW,
            Some(t0 + days(3.0)),
            t0 + days(2.0)
        ));
        assert!(!belongs_to_closed(
            t0,
            WINDOW,
            Some(t0 + days(3.0)),
            t0 + days(4.0)
        ));
        assert!(belongs_to_closed(t0, WINDOW, None, t0 + days(10.0)));
        assert!(!belongs_to_closed(t0, WINDOW, None, t0 + days(20.0)));
    }

    #[test]
    fn states_parse_back() {
        for s in ["open", "recovered", "lost", "canceled"] {
            assert_eq!(CaseState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(CaseState::parse("won"), None);
    }
}
