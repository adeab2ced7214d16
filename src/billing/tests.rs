//! Each store's signature scheme: a good signature, a bad one, a stale timestamp, a missing
//! header, a body altered by one byte, and two secrets during a rotation. Then normalisation.

use axum::http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde_json::json;

use super::*;

const NOW: i64 = 1_750_000_000;

fn secrets(list: &[&str]) -> Vec<SecretString> {
    list.iter()
        .map(|s| SecretString::from(s.to_string()))
        .collect()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    h
}

fn altered(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let last = b.len() - 2;
    b[last] ^= 0x01;
    b
}

const BODY: &[u8] =
    br#"{"id":"evt_1","type":"invoice.paid","created":1750000000,"data":{"object":{}}}"#;

#[test]
fn stripe_signatures() {
    let key = "whsec_test_one";
    let ok = secrets(&[key]);
    let h = |v: String| headers(&[(stripe::SIGNATURE, v)]);
    let good = h(stripe::sign(key, NOW, BODY));
    assert_eq!(stripe::verify(&ok, 300, &good, BODY, NOW + 10), Ok(()));
    assert_eq!(
        stripe::verify(
            &ok,
            300,
            &h(stripe::sign("whsec_other", NOW, BODY)),
            BODY,
            NOW
        ),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        stripe::verify(&ok, 300, &good, BODY, NOW + 301),
        Err(Rejection::StaleTimestamp)
    );
    assert_eq!(
        stripe::verify(&ok, 300, &HeaderMap::new(), BODY, NOW),
        Err(Rejection::MissingHeader(stripe::SIGNATURE))
    );
    assert_eq!(
        stripe::verify(&ok, 300, &good, &altered(BODY), NOW),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        stripe::verify(&ok, 300, &h("v1=abc".into()), BODY, NOW),
        Err(Rejection::MalformedHeader(stripe::SIGNATURE))
    );
    // Rotation: the endpoint signs with old and new secrets; either configured one verifies,
    // and two configured secrets accept a signature by either.
    let old = stripe::sign("whsec_old", NOW, BODY);
    let new = stripe::sign("whsec_new", NOW, BODY);
    let both = format!("{old},v1={}", new.split("v1=").nth(1).unwrap());
    assert_eq!(
        stripe::verify(&secrets(&["whsec_new"]), 300, &h(both), BODY, NOW),
        Ok(())
    );
    let two = secrets(&["whsec_old", "whsec_new"]);
    assert_eq!(stripe::verify(&two, 300, &h(new), BODY, NOW), Ok(()));
    assert_eq!(stripe::verify(&two, 300, &h(old), BODY, NOW), Ok(()));
}

#[test]
fn stripe_signature_matches_the_documented_construction() {
    // Stripe's docs: HMAC-SHA256 keyed by the endpoint secret over "{t}.{payload}", hex.
    let sig = stripe::sign("whsec_abc", 1_492_774_577, b"{}");
    let expected = signing::mac(b"whsec_abc", &[b"1492774577.{}"]);
    assert_eq!(sig, format!("t=1492774577,v1={}", hex::encode(expected)));
}

#[test]
fn paddle_signatures() {
    let key = "pdl_ntfset_01_secret";
    let ok = secrets(&[key]);
    let h = |v: String| headers(&[(paddle::SIGNATURE, v)]);
    let good = h(paddle::sign(key, NOW, BODY));
    assert_eq!(paddle::verify(&ok, 300, &good, BODY, NOW), Ok(()));
    assert_eq!(
        paddle::verify(
            &ok,
            300,
            &h(paddle::sign("pdl_ntfset_other", NOW, BODY)),
            BODY,
            NOW
        ),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        paddle::verify(&ok, 300, &good, BODY, NOW - 400),
        Err(Rejection::StaleTimestamp)
    );
    assert_eq!(
        paddle::verify(&ok, 300, &HeaderMap::new(), BODY, NOW),
        Err(Rejection::MissingHeader(paddle::SIGNATURE))
    );
    assert_eq!(
        paddle::verify(&ok, 300, &good, &altered(BODY), NOW),
        Err(Rejection::BadSignature)
    );
    let two = secrets(&["pdl_ntfset_old_secret", key]);
    assert_eq!(paddle::verify(&two, 300, &good, BODY, NOW), Ok(()));
    // The documented form: ts=…;h1=HMAC("{ts}:{body}").
    let expected = signing::mac(key.as_bytes(), &[format!("{NOW}:").as_bytes(), BODY]);
    assert_eq!(
        paddle::sign(key, NOW, BODY),
        format!("ts={NOW};h1={}", hex::encode(expected))
    );
}

#[test]
fn whop_standard_webhooks_signatures() {
    // A Standard Webhooks secret: whsec_ + base64 of the key.
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let ok = secrets(&[key]);
    let h = |sig: String, ts: i64| {
        headers(&[
            (whop::ID, "msg_1".into()),
            (whop::TIMESTAMP, ts.to_string()),
            (whop::SIGNATURE, sig),
        ])
    };
    let sig = whop::sign(key, "msg_1", NOW, BODY).unwrap();
    assert_eq!(
        whop::verify(&ok, 300, &h(sig.clone(), NOW), BODY, NOW),
        Ok("msg_1".into())
    );
    let wrong = whop::sign("whsec_b3RoZXIgc2VjcmV0IGtleQ==", "msg_1", NOW, BODY).unwrap();
    assert_eq!(
        whop::verify(&ok, 300, &h(wrong.clone(), NOW), BODY, NOW),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        whop::verify(&ok, 300, &h(sig.clone(), NOW), BODY, NOW + 600),
        Err(Rejection::StaleTimestamp)
    );
    assert_eq!(
        whop::verify(&ok, 300, &headers(&[(whop::ID, "msg_1".into())]), BODY, NOW),
        Err(Rejection::MissingHeader(whop::TIMESTAMP))
    );
    assert_eq!(
        whop::verify(&ok, 300, &h(sig.clone(), NOW), &altered(BODY), NOW),
        Err(Rejection::BadSignature)
    );
    // Several signatures in one header (space-separated), and two configured secrets.
    assert_eq!(
        whop::verify(&ok, 300, &h(format!("{wrong} {sig}"), NOW), BODY, NOW),
        Ok("msg_1".into())
    );
    let two = secrets(&["whsec_b3RoZXIgc2VjcmV0IGtleQ==", key]);
    assert_eq!(
        whop::verify(&two, 300, &h(sig, NOW), BODY, NOW),
        Ok("msg_1".into())
    );
    // The id is signed too.
    let other_id = headers(&[
        (whop::ID, "msg_2".into()),
        (whop::TIMESTAMP, NOW.to_string()),
        (
            whop::SIGNATURE,
            whop::sign(key, "msg_1", NOW, BODY).unwrap(),
        ),
    ]);
    assert_eq!(
        whop::verify(&ok, 300, &other_id, BODY, NOW),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn revenuecat_authorization() {
    let expected = secrets(&["Bearer rc-webhook-secret-123"]);
    let h = |v: &str| headers(&[(revenuecat::AUTHORIZATION, v.to_string())]);
    assert_eq!(
        revenuecat::verify(&expected, &h("Bearer rc-webhook-secret-123")),
        Ok(())
    );
    assert_eq!(
        revenuecat::verify(&expected, &h("Bearer rc-webhook-secret-124")),
        Err(Rejection::BadSignature)
    );
    assert_eq!(
        revenuecat::verify(&expected, &HeaderMap::new()),
        Err(Rejection::MissingHeader(revenuecat::AUTHORIZATION))
    );
    // A rotation: the old and the new value are both accepted while both are configured.
    let two = secrets(&["Bearer rc-old-value-0000", "Bearer rc-new-value-1111"]);
    assert_eq!(
        revenuecat::verify(&two, &h("Bearer rc-old-value-0000")),
        Ok(())
    );
    assert_eq!(
        revenuecat::verify(&two, &h("Bearer rc-new-value-1111")),
        Ok(())
    );
    assert_eq!(
        revenuecat::verify(&[], &h("Bearer rc-new-value-1111")),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn stripe_subscription_events_normalise_with_the_period_from_either_place() {
    let event = |sub: serde_json::Value| {
        json!({"id": "evt_1", "type": "customer.subscription.updated",
        "created": NOW, "livemode": false, "data": {"object": sub}})
    };
    let old_api = event(
        json!({"id": "sub_1", "customer": "cus_1", "status": "active",
        "cancel_at_period_end": true, "current_period_start": 100, "current_period_end": 200,
        "items": {"data": [{"price": {"id": "price_pro"}}]}, "metadata": {"tollgate_user": "alice"}}),
    );
    let new_api = event(
        json!({"id": "sub_1", "customer": "cus_1", "status": "active",
        "cancel_at_period_end": true,
        "items": {"data": [{"price": {"id": "price_pro"}, "current_period_start": 100, "current_period_end": 200}]},
        "metadata": {"tollgate_user": "alice"}}),
    );
    for e in [old_api, new_api] {
        let n = stripe::normalize(&e).unwrap().unwrap();
        assert_eq!(n.change, Some(Change::SubscriptionCanceled));
        assert_eq!(n.user.as_deref(), Some("alice"));
        assert_eq!(n.customer.as_deref(), Some("cus_1"));
        assert_eq!(n.environment.as_deref(), Some("sandbox"));
        let s = n.subscription.unwrap();
        assert_eq!(s.status, crate::domain::subscriptions::Status::Active);
        assert_eq!(s.product.as_deref(), Some("price_pro"));
        assert_eq!(
            s.period,
            Some(Period {
                start: 100_000,
                end: 200_000
            })
        );
        assert!(s.cancel_at_period_end);
    }
    let unknown =
        json!({"id": "evt_2", "type": "customer.created", "created": NOW, "data": {"object": {}}});
    assert_eq!(stripe::normalize(&unknown), Ok(None));
}

#[test]
fn revenuecat_events_normalise() {
    let e = |kind: &str, extra: serde_json::Value| {
        let mut event = json!({"id": "rc_1", "type": kind, "app_user_id": "bob",
            "product_id": "pro_monthly", "original_transaction_id": "otx_1", "transaction_id": "tx_2",
            "purchased_at_ms": 1000, "expiration_at_ms": 5000, "event_timestamp_ms": 1000,
            "environment": "SANDBOX", "store": "APP_STORE", "period_type": "NORMAL"});
        for (k, v) in extra.as_object().unwrap() {
            event[k] = v.clone();
        }
        revenuecat::normalize(&json!({"api_version": "1.0", "event": event})).unwrap()
    };
    let renewal = e("RENEWAL", json!({})).unwrap();
    assert_eq!(renewal.change, Some(Change::SubscriptionRenewed));
    assert_eq!(
        renewal.paid_period,
        Some(Period {
            start: 1000,
            end: 5000
        })
    );
    assert_eq!(renewal.environment.as_deref(), Some("sandbox"));
    assert_eq!(renewal.subscription.unwrap().id, "otx_1");
    let change = e("PRODUCT_CHANGE", json!({"new_product_id": "max_monthly"})).unwrap();
    assert_eq!(
        change.subscription.unwrap().product.as_deref(),
        Some("max_monthly")
    );
    let cancel = e("CANCELLATION", json!({"cancel_reason": "UNSUBSCRIBE"})).unwrap();
    assert!(cancel.subscription.unwrap().cancel_at_period_end);
    let refund = e("CANCELLATION", json!({"cancel_reason": "CUSTOMER_SUPPORT"})).unwrap();
    assert_eq!(refund.change, Some(Change::Refunded));
    assert_eq!(refund.reference.as_deref(), Some("tx_2"));
    let trial = e("INITIAL_PURCHASE", json!({"period_type": "TRIAL"})).unwrap();
    assert_eq!(
        trial.subscription.unwrap().status,
        crate::domain::subscriptions::Status::Trialing
    );
    assert_eq!(e("TEST", json!({})), None);
}

#[test]
fn whop_memberships_normalise_by_event_and_status() {
    let event = |kind: &str, status: &str, cancel: bool| {
        json!({"id": "msg_1", "type": kind, "timestamp": "2026-11-01T00:00:00.000Z",
            "data": {"id": "mem_1", "status": status, "cancel_at_period_end": cancel,
                "user": {"id": "user_1"}, "plan": {"id": "plan_1"},
                "renewal_period_start": "2026-11-01T00:00:00.000Z",
                "renewal_period_end": "2026-12-01T00:00:00.000Z", "metadata": {}}})
    };
    use crate::domain::subscriptions::Status;
    let cases = [
        (
            "membership.activated",
            "active",
            false,
            Change::SubscriptionStarted,
            Status::Active,
            false,
        ),
        (
            "membership.updated",
            "canceling",
            false,
            Change::SubscriptionCanceled,
            Status::Active,
            true,
        ),
        (
            "membership.cancel_at_period_end_changed",
            "active",
            false,
            Change::SubscriptionUncanceled,
            Status::Active,
            false,
        ),
        (
            "membership.updated",
            "past_due",
            false,
            Change::SubscriptionUpdated,
            Status::PastDue,
            false,
        ),
        (
            "membership.deactivated",
            "trialing",
            false,
            Change::SubscriptionExpired,
            Status::Expired,
            false,
        ),
        (
            "membership.deactivated",
            "canceled",
            false,
            Change::SubscriptionExpired,
            Status::Canceled,
            false,
        ),
    ];
    for (kind, status, cancel, change, want, want_cancel) in cases {
        let n = whop::normalize(&event(kind, status, cancel))
            .unwrap()
            .unwrap();
        assert_eq!(n.change, Some(change), "{kind} {status}");
        let s = n.subscription.unwrap();
        assert_eq!(
            (s.status, s.cancel_at_period_end),
            (want, want_cancel),
            "{kind} {status}"
        );
        assert_eq!(s.product.as_deref(), Some("plan_1"));
        assert!(s.period.is_some());
        assert_eq!(n.customer.as_deref(), Some("user_1"));
    }
}
