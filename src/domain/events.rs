//! tollgate's own events, as pure rules: the catalogue of types and their payloads (each a
//! versioned schema in the OpenAPI document), the retry schedule of a delivery, which endpoint
//! wants which event, and which network addresses a delivery may never reach.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

/// Every event type tollgate publishes. A type's payload only ever gains fields; a change that
/// would break a receiver is a new type (`….v2`), never a new meaning of an old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "subscription.updated")]
    SubscriptionUpdated,
    #[serde(rename = "entitlements.updated")]
    EntitlementsUpdated,
    #[serde(rename = "credits.granted")]
    CreditsGranted,
    #[serde(rename = "credits.low")]
    CreditsLow,
    #[serde(rename = "credits.exhausted")]
    CreditsExhausted,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "recovery.case_opened")]
    RecoveryCaseOpened,
    #[serde(rename = "recovery.recovered")]
    RecoveryRecovered,
    #[serde(rename = "recovery.lost")]
    RecoveryLost,
    #[serde(rename = "recovery.canceled")]
    RecoveryCanceled,
    #[serde(rename = "recovery.nudge")]
    RecoveryNudge,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::SubscriptionUpdated,
        EventType::EntitlementsUpdated,
        EventType::CreditsGranted,
        EventType::CreditsLow,
        EventType::CreditsExhausted,
        EventType::PaymentFailed,
        EventType::PaymentSucceeded,
        EventType::UserDeleted,
        EventType::RecoveryCaseOpened,
        EventType::RecoveryRecovered,
        EventType::RecoveryLost,
        EventType::RecoveryCanceled,
        EventType::RecoveryNudge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SubscriptionUpdated => "subscription.updated",
            EventType::EntitlementsUpdated => "entitlements.updated",
            EventType::CreditsGranted => "credits.granted",
            EventType::CreditsLow => "credits.low",
            EventType::CreditsExhausted => "credits.exhausted",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::UserDeleted => "user.deleted",
            EventType::RecoveryCaseOpened => "recovery.case_opened",
            EventType::RecoveryRecovered => "recovery.recovered",
            EventType::RecoveryLost => "recovery.lost",
            EventType::RecoveryCanceled => "recovery.canceled",
            EventType::RecoveryNudge => "recovery.nudge",
        }
    }

    /// The OpenAPI component that describes this type's `data` (its title adds the version).
    pub fn schema(self) -> &'static str {
        match self {
            EventType::SubscriptionUpdated => "SubscriptionUpdated",
            EventType::EntitlementsUpdated => "EntitlementsUpdated",
            EventType::CreditsGranted => "CreditsGranted",
            EventType::CreditsLow | EventType::CreditsExhausted => "CreditsBalance",
            EventType::PaymentFailed | EventType::PaymentSucceeded => "Payment",
            EventType::UserDeleted => "UserDeleted",
            EventType::RecoveryCaseOpened
            | EventType::RecoveryRecovered
            | EventType::RecoveryLost
            | EventType::RecoveryCanceled => "RecoveryCase",
            EventType::RecoveryNudge => "RecoveryNudge",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An endpoint's filter: `None` takes every type.
pub fn wants(filter: Option<&[String]>, kind: &str) -> bool {
    filter.is_none_or(|types| types.iter().any(|t| t == kind))
}

/// Attempts a delivery gets: the first, then one after each wait of [`retry_delay`].
pub const DELIVERY_ATTEMPTS: i64 = 8;

/// The wait before attempt `attempt + 1` after attempt `attempt` failed (1-based), the schedule
/// Svix uses: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — about 28 hours from first to last.
pub fn retry_delay(attempt: i64) -> Duration {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    let secs = match attempt {
        ..=1 => 5,
        2 => 5 * MINUTE,
        3 => 30 * MINUTE,
        4 => 2 * HOUR,
        5 => 5 * HOUR,
        _ => 10 * HOUR,
    };
    Duration::from_secs(secs)
}

/// Why an address may not receive deliveries (outside an explicit allowance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Loopback,
    Private,
    LinkLocal,
    /// Unspecified, multicast, broadcast, documentation, shared (CGNAT) and other special
    /// ranges: nothing a public webhook receiver lives on.
    Special,
}

impl Forbidden {
    pub fn as_str(self) -> &'static str {
        match self {
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private",
            Forbidden::LinkLocal => "link-local",
            Forbidden::Special => "special-purpose",
        }
    }
}

/// Whether a delivery may reach `ip`: public unicast only. Cloud metadata services
/// (169.254.169.254, fd00:ec2::254) are link-local or private and so refused too. An IPv4
/// address mapped into IPv6 is judged as the IPv4 address it is.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some(Forbidden::Loopback)
            } else if v4.is_private() {
                Some(Forbidden::Private)
            } else if v4.is_link_local() {
                Some(Forbidden::LinkLocal)
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
            {
                Some(Forbidden::Special)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some(Forbidden::Loopback)
            } else if (first & 0xfe00) == 0xfc00 {
                Some(Forbidden::Private)
            } else if (first & 0xffc0) == 0xfe80 {
                Some(Forbidden::LinkLocal)
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || first == 0x2001 && v6.segments()[1] == 0xdb8
            {
                Some(Forbidden::Special)
            } else {
                None
            }
        }
    }
}

/// `data` of `subscription.updated`: a subscription's state changed at its store.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "SubscriptionUpdatedV1")]
pub struct SubscriptionUpdated {
    /// The app's own id for the user.
    pub user_id: String,
    /// `stripe`, `revenuecat`, `paddle` or `whop`.
    pub provider: String,
    /// The store's id for the subscription.
    pub subscription_id: String,
    /// `trialing`, `active`, `past_due`, `canceled`, `expired`, …
    pub status: String,
    pub product_id: Option<String>,
    /// The plan the product gives, when mapped.
    pub plan_id: Option<String>,
    /// End of the paid period, ms since the epoch.
    pub period_end: Option<i64>,
    pub cancel_at_period_end: bool,
}

/// `data` of `entitlements.updated`: the user's plan changed; the full set after the change.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "EntitlementsUpdatedV1")]
pub struct EntitlementsUpdated {
    pub user_id: String,
    pub plan_id: String,
    pub entitlements: Vec<String>,
}

/// `data` of `credits.granted`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "CreditsGrantedV1")]
pub struct CreditsGranted {
    pub user_id: String,
    pub amount_micros: i64,
    /// `subscription`, `top_up`, `admin`, `invite`, …
    pub source: String,
    pub reason: Option<String>,
    /// When the granted credits expire, ms since the epoch.
    pub expires_at: Option<i64>,
}

/// `data` of `credits.low` (the balance fell to the app's `credits_low` or below) and of
/// `credits.exhausted` (it reached zero).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "CreditsBalanceV1")]
pub struct CreditsBalance {
    pub user_id: String,
    /// The balance after the charge that crossed.
    pub balance_micros: i64,
    /// The app's `credits_low` (for `credits.low`), else 0.
    pub threshold_micros: i64,
}

/// `data` of `payment.failed` and `payment.succeeded`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "PaymentV1")]
pub struct Payment {
    pub user_id: String,
    pub provider: String,
    /// The store's id for the invoice, transaction or payment.
    pub reference: Option<String>,
    /// In the currency's minor unit (cents).
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// The store's time for the outcome, ms since the epoch.
    pub event_time: i64,
}

/// `data` of `user.deleted`: the user was erased; forget them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "UserDeletedV1")]
pub struct UserDeleted {
    pub user_id: String,
}

/// `data` of `recovery.case_opened`, `recovery.recovered` and `recovery.lost`: a failed
/// payment's case (docs/recovery.md).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "RecoveryCaseV1")]
pub struct RecoveryCase {
    pub user_id: String,
    pub case_id: i64,
    pub provider: String,
    /// The store's subscription id ('' when the store named none).
    pub subscription_id: String,
    /// `open`, `recovered`, `lost` or `canceled`.
    pub state: String,
    /// The store's time of the first failure, ms since the epoch.
    pub first_failure_at: i64,
    pub attempts: i64,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    /// The store's time of the payment that recovered it.
    pub recovered_at: Option<i64>,
    pub recovered_amount_minor: Option<i64>,
}

/// `data` of `recovery.nudge`: a step of a case's cadence is due; the app reminds the user
/// (push, in-app, email, DM) with `message` and `link`, which leads to where they fix the
/// payment and counts the click (docs/recovery.md).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(title = "RecoveryNudgeV1")]
pub struct RecoveryNudge {
    pub user_id: String,
    pub case_id: i64,
    pub nudge_id: i64,
    /// The cadence step, from 0 (at the first failure).
    pub step: i64,
    /// The copy variant this case got at this step (recorded, for A/B results).
    pub variant: String,
    /// The variant's text, when the app configured one.
    pub message: Option<String>,
    /// tollgate's link for this user (`…/r/{token}`): counts the click, then redirects.
    pub link: String,
    /// When the link stops working (ms): the end of the case's window.
    pub link_expires_at: i64,
    pub provider: String,
    pub subscription_id: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub first_failure_at: i64,
    pub attempts: i64,
}

/// Which threshold a change of available credits from `before` to `after` crosses downwards,
/// if any: exhausted at zero (or below, with overdraft), low at `low` (when the app set one).
/// Only a crossing publishes, so a user hovering under the threshold is told once per descent.
pub fn crossed(before: i64, after: i64, low: Option<i64>) -> Option<EventType> {
    if after >= before {
        return None;
    }
    if after <= 0 && before > 0 {
        return Some(EventType::CreditsExhausted);
    }
    match low {
        Some(low) if after <= low && before > low => Some(EventType::CreditsLow),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(EventType::parse("credits.gone"), None);
    }

    #[test]
    fn the_retry_schedule_is_svixs() {
        let waits: Vec<u64> = (1..DELIVERY_ATTEMPTS)
            .map(|a| retry_delay(a).as_secs())
            .collect();
        assert_eq!(waits, [5, 300, 1800, 7200, 18000, 36000, 36000]);
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_forbidden() {
        let cases = [
            ("127.0.0.1", Some(Forbidden::Loopback)),
            ("::1", Some(Forbidden::Loopback)),
            ("10.1.2.3", Some(Forbidden::Private)),
            ("172.16.0.1", Some(Forbidden::Private)),
            ("192.168.1.1", Some(Forbidden::Private)),
            ("fd00:ec2::254", Some(Forbidden::Private)),
            ("169.254.169.254", Some(Forbidden::LinkLocal)),
            ("fe80::1", Some(Forbidden::LinkLocal)),
            ("::ffff:127.0.0.1", Some(Forbidden::Loopback)),
            ("::ffff:10.0.0.1", Some(Forbidden::Private)),
            ("0.0.0.0", Some(Forbidden::Special)),
            ("100.64.0.1", Some(Forbidden::Special)),
            ("224.0.0.1", Some(Forbidden::Special)),
            ("::", Some(Forbidden::Special)),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ];
        for (ip, want) in cases {
            assert_eq!(forbidden(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn only_a_downward_crossing_publishes() {
        assert_eq!(crossed(10, 5, Some(5)), Some(EventType::CreditsLow));
        assert_eq!(crossed(5, 4, Some(5)), None, "already below");
        assert_eq!(crossed(10, 0, Some(5)), Some(EventType::CreditsExhausted));
        assert_eq!(crossed(3, -2, Some(5)), Some(EventType::CreditsExhausted));
        assert_eq!(crossed(0, -2, Some(5)), None);
        assert_eq!(crossed(10, 6, None), None);
        assert_eq!(crossed(4, 10, Some(5)), None, "a grant");
    }

    #[test]
    fn a_filter_of_none_takes_everything() {
        assert!(wants(None, "credits.low"));
        let only = ["payment.failed".to_string()];
        assert!(wants(Some(&only), "payment.failed"));
        assert!(!wants(Some(&only), "credits.low"));
    }
}
