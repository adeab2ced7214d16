//! Subscription state: statuses, which of them give access, and the order events apply in. Pure
//! rules; the billing job stores the state.

use serde::{Deserialize, Serialize};

use super::plans::Period;

/// A subscription's status, the same for every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Trialing,
    Active,
    /// A renewal payment failed; access continues while the store retries.
    PastDue,
    /// Created but its first payment has not succeeded.
    Incomplete,
    /// Ended by a cancellation.
    Canceled,
    /// Ran out (not renewed, or revoked).
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Incomplete => "incomplete",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Trialing,
            Status::Active,
            Status::PastDue,
            Status::Incomplete,
            Status::Canceled,
            Status::Expired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the subscription's plan applies (until its period ends, when set to cancel).
    pub fn gives_access(self) -> bool {
        matches!(self, Status::Trialing | Status::Active | Status::PastDue)
    }
}

/// Where an event sits in a subscription's history: the provider's event time, then its event
/// id, so that any delivery order ends in the same state (equal times break ties by id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub time_ms: i64,
    pub event_id: String,
}

/// A stored subscription, as far as the user's plan is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub status: Status,
    pub plan_id: Option<String>,
    pub period: Option<Period>,
    pub cancel_at_period_end: bool,
}

impl Standing {
    /// Whether it gives its plan at `now`: a live status, and not past [`Self::until`] — the
    /// end of a period it was set to cancel at, or `grace_ms` past the end of a period whose
    /// renewal never came.
    pub fn live_at(&self, now: i64, grace_ms: i64) -> bool {
        self.status.gives_access()
            && self.plan_id.is_some()
            && self.until(grace_ms).is_none_or(|until| now < until)
    }

    /// When its plan stops applying unless the store says otherwise: the period's end for a
    /// subscription set to cancel; for one that renews, `grace_ms` after it (a renewal moves
    /// the period, and this with it). Access never outlives payment by more than the grace,
    /// even when the store's expiry event is lost. None without a known period.
    pub fn until(&self, grace_ms: i64) -> Option<i64> {
        let end = self.period?.end;
        Some(if self.cancel_at_period_end {
            end
        } else {
            end.saturating_add(grace_ms)
        })
    }
}

/// The subscription that decides the user's plan: of those live at `now`, the one whose period
/// ends last (ties: the last listed). `None`: the app's default plan.
pub fn deciding(subs: &[Standing], now: i64, grace_ms: i64) -> Option<&Standing> {
    subs.iter()
        .filter(|s| s.live_at(now, grace_ms))
        .max_by_key(|s| s.period.map_or(i64::MAX, |p| p.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(status: Status, end: i64, cancel: bool) -> Standing {
        Standing {
            status,
            plan_id: Some(format!("plan-{end}")),
            period: Some(Period { start: 0, end }),
            cancel_at_period_end: cancel,
        }
    }

    #[test]
    fn a_cancellation_at_period_end_keeps_access_until_the_end() {
        let s = standing(Status::Active, 100, true);
        assert!(s.live_at(99, 50));
        assert!(!s.live_at(100, 50));
        assert_eq!(s.until(50), Some(100));
    }

    #[test]
    fn a_renewal_that_never_comes_lapses_after_the_grace() {
        let renewing = standing(Status::Active, 100, false);
        assert!(renewing.live_at(149, 50), "within the grace");
        assert!(!renewing.live_at(150, 50), "past it, with no event");
        assert_eq!(renewing.until(50), Some(150));
        let unknown_period = Standing {
            period: None,
            ..renewing
        };
        assert!(unknown_period.live_at(i64::MAX - 1, 50));
    }

    #[test]
    fn only_trialing_active_and_past_due_give_access() {
        for (status, access) in [
            (Status::Trialing, true),
            (Status::Active, true),
            (Status::PastDue, true),
            (Status::Incomplete, false),
            (Status::Canceled, false),
            (Status::Expired, false),
        ] {
            assert_eq!(
                standing(status, 100, false).live_at(50, 0),
                access,
                "{status:?}"
            );
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn the_live_subscription_ending_last_decides() {
        let subs = [
            standing(Status::Active, 200, false),
            standing(Status::Expired, 900, false),
            standing(Status::Active, 300, false),
            standing(Status::Active, 50, true),
        ];
        assert_eq!(
            deciding(&subs, 60, 0).unwrap().plan_id.as_deref(),
            Some("plan-300")
        );
        assert!(deciding(&subs[1..2], 60, 0).is_none());
    }
}
