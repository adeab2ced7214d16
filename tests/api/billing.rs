//! Billing stores end to end through HTTP: signed webhooks → stored → processed by the worker →
//! subscription, plan, entitlements and credits. Stripe and RevenueCat deliveries are made the
//! way the stores make them (tollgate's signing helpers follow the documented constructions,
//! checked against the official stripe package in `billing_clients`).

use std::time::Duration;
use tollgate::store::ledger::EntryKind;

use serde_json::{Value, json};
use tollgate::config::AppConfig;
use tollgate::store::billing as store;
use tollgate::store::ledger::Target;

use crate::cli::{as_refs, db_vars, run};
use crate::credits::shop_config;
use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::jobs::wait_until;

pub const STRIPE_SECRET: &str = "whsec_test_shop_endpoint";
pub const RC_AUTH: &str = "Bearer rc-shop-webhook-secret";
const CREDIT: i64 = 1_000_000;
const DAY: i64 = 86_400;

/// The shop app (free and pro plans) selling through Stripe and RevenueCat.
pub fn store_config() -> AppConfig {
    let mut app = shop_config();
    let extra: AppConfig = serde_json::from_value(json!({
        "slug": "shop",
        "stripe": { "webhook_secrets": [STRIPE_SECRET], "secret_key": "sk_test_shop" },
        "revenuecat": { "webhook_authorization": RC_AUTH },
        "products": [
            { "provider": "stripe", "id": "price_pro", "plan": "pro" },
            { "provider": "stripe", "id": "price_pack", "credits": "50" },
            { "provider": "revenuecat", "id": "pro_monthly", "plan": "pro" },
            { "provider": "revenuecat", "id": "pack_20", "credits": "20" },
        ]
    }))
    .unwrap();
    app.stripe = extra.stripe;
    app.revenuecat = extra.revenuecat;
    app.products = extra.products;
    app
}

pub async fn spawn_store_app() -> TestApp {
    spawn_app_with(|c| c.apps = vec![store_config()]).await
}

fn now_secs() -> i64 {
    tollgate::store::now_ms() / 1000
}

/// A Stripe event envelope around `object`.
pub fn stripe_event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({ "id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
        "livemode": false, "type": kind, "data": { "object": object } })
}

pub async fn post_stripe(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).unwrap();
    let sig = tollgate::billing::stripe::sign(STRIPE_SECRET, now_secs(), &body);
    app.client
        .post(app.url("/webhooks/shop/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

pub async fn post_revenuecat(app: &TestApp, auth: &str, event: Value) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/shop/revenuecat"))
        .header("authorization", auth)
        .json(&json!({ "api_version": "1.0", "event": event }))
        .send()
        .await
        .unwrap()
}

/// Waits until no delivery is pending, then returns them all (newest first).
pub async fn settled(app: &TestApp) -> Vec<store::WebhookRow> {
    wait_until(Duration::from_secs(20), || async {
        let rows = store::webhooks(&app.db, None, None, 1000).await.unwrap();
        rows.iter().all(|r| r.status != "pending")
    })
    .await;
    store::webhooks(&app.db, None, None, 1000).await.unwrap()
}

fn subscription(id: &str, user: &str, status: &str, start: i64, end: i64, cancel: bool) -> Value {
    json!({ "id": id, "object": "subscription", "customer": format!("cus_{user}"),
        "status": status, "cancel_at_period_end": cancel,
        "items": { "data": [{ "price": { "id": "price_pro" },
            "current_period_start": start, "current_period_end": end }] },
        "metadata": { "tollgate_user": user } })
}

fn invoice(id: &str, user: &str, sub: &str, reason: &str, start: i64, end: i64) -> Value {
    json!({ "id": id, "object": "invoice", "customer": format!("cus_{user}"),
        "billing_reason": reason, "amount_paid": 1999, "currency": "usd",
        "parent": { "subscription_details": { "subscription": sub, "metadata": {} } },
        "lines": { "data": [{ "period": { "start": start, "end": end },
            "pricing": { "price_details": { "price": "price_pro" } } }] } })
}

async fn me(app: &TestApp, key: &str) -> Value {
    app.get_as("/v1/me", key).await.json().await.unwrap()
}

#[tokio::test]
async fn the_billing_smoke_scenario_through_stripe() {
    let app = spawn_store_app().await;
    let now = now_secs();
    let (p1, p2, p3) = (now - 10 * DAY, now + 20 * DAY, now + 50 * DAY);

    // Subscribe: checkout completes, the subscription is created, its first invoice is paid.
    let checkout = json!({ "id": "cs_1", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": "alice", "customer": "cus_alice", "subscription": "sub_A",
        "payment_status": "paid" });
    let events = [
        stripe_event("evt_1", "checkout.session.completed", now - 3, checkout),
        stripe_event(
            "evt_2",
            "customer.subscription.created",
            now - 2,
            subscription("sub_A", "alice", "active", p1, p2, false),
        ),
        stripe_event(
            "evt_3",
            "invoice.paid",
            now - 1,
            invoice("in_1", "alice", "sub_A", "subscription_create", p1, p2),
        ),
    ];
    for e in &events {
        let r = post_stripe(&app, e).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["duplicate"], false);
    }
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    let key = app.user_key("shop", "alice").await;
    let m = me(&app, &key).await;
    assert_eq!(m["plan"]["id"], "pro");
    assert!(
        m["entitlements"]
            .as_array()
            .unwrap()
            .contains(&json!("premium"))
    );
    assert_eq!(m["credits"]["balance_micros"], 100 * CREDIT, "{m}");

    // The same invoice delivered five times: one effect, no further processing.
    let attempts_before = rows
        .iter()
        .find(|r| r.event_id == "evt_3")
        .unwrap()
        .attempts;
    for _ in 0..5 {
        let r = post_stripe(&app, &events[2]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    }
    let rows = settled(&app).await;
    let in1 = rows.iter().find(|r| r.event_id == "evt_3").unwrap();
    assert_eq!(in1.deliveries, 6);
    assert_eq!(in1.attempts, attempts_before);
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        100 * CREDIT
    );

    // Renewal: the next period's credits, once (its invoice delivered twice).
    let renewal = stripe_event(
        "evt_4",
        "invoice.paid",
        now,
        invoice("in_2", "alice", "sub_A", "subscription_cycle", p2, p3),
    );
    post_stripe(&app, &renewal).await;
    post_stripe(&app, &renewal).await;
    settled(&app).await;
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        200 * CREDIT
    );

    // A top-up pack, then its refund: the pack's credits, then none of them.
    let topup = json!({ "id": "cs_2", "object": "checkout.session", "mode": "payment",
        "client_reference_id": "alice", "customer": "cus_alice", "payment_status": "paid",
        "payment_intent": "pi_pack", "amount_total": 500, "currency": "usd",
        "metadata": { "tollgate_product": "price_pack" } });
    post_stripe(
        &app,
        &stripe_event("evt_5", "checkout.session.completed", now, topup),
    )
    .await;
    settled(&app).await;
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        250 * CREDIT
    );
    // Half refunded, then the rest (Stripe's amount_refunded is cumulative): 25, then 25 more.
    let refund = |refunded: i64| {
        json!({ "id": "ch_1", "object": "charge", "customer": "cus_alice",
            "payment_intent": "pi_pack", "amount": 500, "amount_refunded": refunded,
            "currency": "usd", "refunded": refunded == 500 })
    };
    post_stripe(
        &app,
        &stripe_event("evt_6", "charge.refunded", now, refund(250)),
    )
    .await;
    let rows = settled(&app).await;
    let refunded = rows.iter().find(|r| r.event_id == "evt_6").unwrap();
    assert_eq!(refunded.status, "processed", "{refunded:?}");
    assert!(
        refunded
            .outcome
            .as_deref()
            .unwrap()
            .contains("clawed back 25 of 1 grant"),
        "{refunded:?}"
    );
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        225 * CREDIT
    );
    let full = stripe_event("evt_6b", "charge.refunded", now + 1, refund(500));
    post_stripe(&app, &full).await;
    post_stripe(&app, &full).await;
    settled(&app).await;
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        200 * CREDIT
    );

    // Payment outcomes are published for recovery.
    let t = Target {
        app_id: rows[0].app_id,
        user_id: in1.user_id.unwrap(),
    };
    let payments = store::payments(&app.db, t).await.unwrap();
    assert_eq!(payments.len(), 2, "{payments:?}");
    assert!(payments.iter().all(|(k, _)| k == "payment_succeeded"));

    // Cancel at period end: premium until the period ends (here in 2 s), then the free plan.
    let ends = now_secs() + 2;
    let cancel = stripe_event(
        "evt_7",
        "customer.subscription.updated",
        now + 1,
        subscription("sub_A", "alice", "active", p1, ends, true),
    );
    post_stripe(&app, &cancel).await;
    settled(&app).await;
    let m = me(&app, &key).await;
    assert_eq!(m["plan"]["id"], "pro");
    let subs = store::subscriptions(&app.db, t).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert!(subs[0].cancel_at_period_end);
    wait_until(Duration::from_secs(10), || async {
        me(&app, &key).await["plan"]["id"] == "free"
    })
    .await;
    let m = me(&app, &key).await;
    assert!(
        !m["entitlements"]
            .as_array()
            .unwrap()
            .contains(&json!("premium"))
    );
}

/// The same history delivered in several orders ends in one state.
#[tokio::test]
async fn shuffled_deliveries_end_in_the_same_state() {
    let app = spawn_store_app().await;
    let now = now_secs();
    let (p1, p2) = (now - 5 * DAY, now + 25 * DAY);
    let history = |u: &str| {
        let sub = format!("sub_{u}");
        vec![
            stripe_event(
                &format!("evt_{u}_1"),
                "customer.subscription.created",
                now - 40,
                subscription(&sub, u, "incomplete", p1, p2, false),
            ),
            stripe_event(
                &format!("evt_{u}_2"),
                "invoice.paid",
                now - 30,
                invoice(&format!("in_{u}"), u, &sub, "subscription_create", p1, p2),
            ),
            stripe_event(
                &format!("evt_{u}_3"),
                "customer.subscription.updated",
                now - 30,
                subscription(&sub, u, "active", p1, p2, false),
            ),
            stripe_event(
                &format!("evt_{u}_4"),
                "customer.subscription.updated",
                now - 20,
                subscription(&sub, u, "past_due", p1, p2, false),
            ),
            stripe_event(
                &format!("evt_{u}_5"),
                "customer.subscription.updated",
                now - 10,
                subscription(&sub, u, "active", p1, p2, true),
            ),
        ]
    };
    let orders: [&[usize]; 4] = [
        &[0, 1, 2, 3, 4],
        &[4, 3, 2, 1, 0],
        &[2, 4, 0, 3, 1],
        &[1, 3, 4, 0, 2],
    ];
    for (i, order) in orders.iter().enumerate() {
        let events = history(&format!("u{i}"));
        for &k in *order {
            assert_eq!(post_stripe(&app, &events[k]).await.status(), 200);
        }
    }
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    let mut states = Vec::new();
    for i in 0..orders.len() {
        let key = app.user_key("shop", &format!("u{i}")).await;
        let m = me(&app, &key).await;
        let user_id = m["user"]["id"].as_i64().unwrap();
        let app_id = rows[0].app_id;
        let mut subs = store::subscriptions(&app.db, Target { app_id, user_id })
            .await
            .unwrap();
        for s in &mut subs {
            s.provider_id = "sub".into();
        }
        states.push((
            subs,
            m["plan"]["id"].clone(),
            m["credits"]["balance_micros"].clone(),
        ));
    }
    assert_eq!(states[0].0[0].status, "active");
    assert!(states[0].0[0].cancel_at_period_end);
    assert_eq!(states[0].1, "pro");
    assert_eq!(states[0].2, 100 * CREDIT);
    for s in &states[1..] {
        assert_eq!(s, &states[0]);
    }
}

#[tokio::test]
async fn revenuecat_purchases_renewals_top_ups_and_expiry() {
    let app = spawn_store_app().await;
    let now = tollgate::store::now_ms();
    let event = |id: &str, kind: &str, at: i64, extra: Value| {
        let mut e = json!({ "id": id, "type": kind, "app_user_id": "bob",
            "original_app_user_id": "bob", "product_id": "pro_monthly",
            "original_transaction_id": "otx_bob", "transaction_id": format!("tx_{id}"),
            "purchased_at_ms": now - 1000, "expiration_at_ms": now + 30 * DAY * 1000,
            "event_timestamp_ms": at, "environment": "SANDBOX", "store": "APP_STORE",
            "period_type": "NORMAL", "entitlement_ids": ["pro"] });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    // A wrong Authorization value is refused and stores nothing.
    let r = post_revenuecat(
        &app,
        "Bearer wrong",
        event("rc_0", "INITIAL_PURCHASE", now, json!({})),
    )
    .await;
    let p = problem(r, 401).await;
    assert!(p["request_id"].is_string());
    assert!(
        store::webhooks(&app.db, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let r = post_revenuecat(
        &app,
        RC_AUTH,
        event("rc_1", "INITIAL_PURCHASE", now, json!({})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let pack = event(
        "rc_2",
        "NON_RENEWING_PURCHASE",
        now + 1,
        json!({ "product_id": "pack_20" }),
    );
    post_revenuecat(&app, RC_AUTH, pack).await;
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    let key = app.user_key("shop", "bob").await;
    let m = me(&app, &key).await;
    assert_eq!(m["plan"]["id"], "pro");
    assert_eq!(m["credits"]["balance_micros"], 120 * CREDIT);

    // Expiration puts bob back on the free plan (whose own credits he then gets).
    post_revenuecat(
        &app,
        RC_AUTH,
        event("rc_3", "EXPIRATION", now + 2, json!({})),
    )
    .await;
    settled(&app).await;
    let m = me(&app, &key).await;
    assert_eq!(m["plan"]["id"], "free");
    let user_id = m["user"]["id"].as_i64().unwrap();
    let subs = store::subscriptions(
        &app.db,
        Target {
            app_id: rows[0].app_id,
            user_id,
        },
    )
    .await
    .unwrap();
    assert_eq!(subs[0].status, "expired");
    assert_eq!(subs[0].environment.as_deref(), Some("sandbox"));
    assert_eq!(subs[0].store.as_deref(), Some("APP_STORE"));
}

#[tokio::test]
async fn bad_deliveries_are_refused_counted_and_not_stored() {
    let app = spawn_store_app().await;
    let event = stripe_event("evt_x", "invoice.paid", now_secs(), json!({}));
    let body = serde_json::to_vec(&event).unwrap();
    let send = |sig: Option<String>, body: Vec<u8>, path: &'static str| {
        let mut req = app.client.post(app.url(path)).body(body);
        if let Some(sig) = sig {
            req = req.header("stripe-signature", sig);
        }
        req.send()
    };
    let sign = |secret: &str, t: i64, b: &[u8]| tollgate::billing::stripe::sign(secret, t, b);

    let r = send(
        Some(sign("whsec_wrong", now_secs(), &body)),
        body.clone(),
        "/webhooks/shop/stripe",
    )
    .await
    .unwrap();
    let p = problem(r, 401).await;
    assert!(p["request_id"].is_string(), "{p}");
    let r = send(None, body.clone(), "/webhooks/shop/stripe")
        .await
        .unwrap();
    assert!(
        problem(r, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("stripe-signature")
    );
    let r = send(
        Some(sign(STRIPE_SECRET, now_secs() - 301, &body)),
        body.clone(),
        "/webhooks/shop/stripe",
    )
    .await
    .unwrap();
    problem(r, 400).await;
    let mut altered = body.clone();
    altered[5] ^= 1;
    let r = send(
        Some(sign(STRIPE_SECRET, now_secs(), &body)),
        altered,
        "/webhooks/shop/stripe",
    )
    .await
    .unwrap();
    problem(r, 401).await;
    // A store the app does not enable, an unknown app, an unknown store.
    for path in [
        "/webhooks/shop/paddle",
        "/webhooks/nope/stripe",
        "/webhooks/shop/paypal",
    ] {
        let r = send(
            Some(sign(STRIPE_SECRET, now_secs(), &body)),
            body.clone(),
            path,
        )
        .await
        .unwrap();
        problem(r, 404).await;
    }
    assert!(
        store::webhooks(&app.db, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    for reason in ["bad_signature", "missing_header", "stale_timestamp"] {
        let line = format!(
            "tollgate_billing_webhooks_rejected_total{{provider=\"stripe\",reason=\"{reason}\"}}"
        );
        assert!(metrics.contains(&line), "{line} missing");
    }
}

#[tokio::test]
async fn an_event_for_an_unmapped_product_fails_visibly_and_names_the_fix() {
    let app = spawn_store_app().await;
    let now = now_secs();
    let mut sub = subscription("sub_Z", "zed", "active", now - DAY, now + DAY, false);
    sub["items"]["data"][0]["price"]["id"] = json!("price_unknown");
    post_stripe(
        &app,
        &stripe_event("evt_z", "customer.subscription.created", now, sub),
    )
    .await;
    let rows = settled(&app).await;
    assert_eq!(rows[0].status, "failed");
    let error = rows[0].last_error.as_deref().unwrap();
    assert!(
        error.contains("price_unknown") && error.contains("replay"),
        "{error}"
    );
    let failed = store::webhooks(&app.db, Some("failed"), None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);

    // Operators see it from the command line, and can replay it.
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let (code, out, err) = run(&["webhooks", "list", "--status", "failed"], &vars).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("evt_z") && out.contains("price_unknown"),
        "{out}"
    );
    let id = failed[0].id.to_string();
    let (code, out, _) = run(&["webhooks", "show", &id], &vars).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("last error:") && out.contains("\"tollgate_user\":\"zed\""),
        "{out}"
    );
    let (code, out, _) = run(&["webhooks", "replay", &id], &vars).await;
    assert_eq!(code, 0);
    assert!(out.contains("pending again"), "{out}");
    // Processed again by the running worker: it fails the same way, a second attempt.
    wait_until(Duration::from_secs(20), || async {
        let row = store::webhook(&app.db, failed[0].id)
            .await
            .unwrap()
            .unwrap();
        row.status == "failed" && row.attempts == 2
    })
    .await;
    let (code, _, err) = run(&["webhooks", "replay", "999999"], &vars).await;
    assert_eq!(code, 1);
    assert!(err.contains("no webhook delivery 999999"), "{err}");
}

/// Stores deliver in bursts from few addresses: webhooks have their own per-IP limit, so a
/// burst is not refused by the tight limit on other unauthenticated requests (and the reverse).
#[tokio::test]
async fn webhooks_have_their_own_per_ip_limit() {
    let app = spawn_app_with(|c| {
        c.apps = vec![store_config()];
        c.rate_limits.ip.requests = 2;
        c.rate_limits.webhooks.requests = 5;
    })
    .await;
    let now = now_secs();
    for i in 0..5 {
        let e = stripe_event(
            &format!("evt_burst_{i}"),
            "customer.created",
            now,
            json!({}),
        );
        assert_eq!(post_stripe(&app, &e).await.status(), 200, "delivery {i}");
    }
    let e = stripe_event("evt_burst_5", "customer.created", now, json!({}));
    let r = post_stripe(&app, &e).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The other unauthenticated routes keep their own, tighter budget.
    for _ in 0..2 {
        assert_ne!(
            app.get("/v1/compat?platform=desktop&version=1.0.0")
                .await
                .status(),
            429
        );
    }
    assert_eq!(
        app.get("/v1/compat?platform=desktop&version=1.0.0")
            .await
            .status(),
        429
    );
}

/// A refunded subscription invoice takes back its period's credits, even when the user's first
/// request granted them before the invoice's webhook arrived; what was spent stays spent.
#[tokio::test]
async fn a_refunded_invoice_claws_back_its_periods_credits_whoever_granted_them() {
    let app = spawn_store_app().await;
    let now = now_secs();
    let (p1, p2) = (now - DAY, now + 29 * DAY);
    post_stripe(
        &app,
        &stripe_event(
            "evt_r1",
            "customer.subscription.created",
            now - 5,
            subscription("sub_R", "rita", "active", p1, p2, false),
        ),
    )
    .await;
    settled(&app).await;
    // Her first request grants the period's credits (lazily, before the invoice).
    let key = app.user_key("shop", "rita").await;
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        100 * CREDIT
    );
    let mut paid = invoice("in_R", "rita", "sub_R", "subscription_create", p1, p2);
    paid["payment_intent"] = json!("pi_R");
    post_stripe(&app, &stripe_event("evt_r2", "invoice.paid", now - 4, paid)).await;
    let rows = settled(&app).await;
    let r2 = rows.iter().find(|r| r.event_id == "evt_r2").unwrap();
    assert!(
        r2.outcome.as_deref().unwrap().contains("already granted"),
        "{r2:?}"
    );
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        100 * CREDIT
    );

    // She spends 30 credits; then the invoice's charge is refunded in full.
    let t = Target {
        app_id: rows[0].app_id,
        user_id: r2.user_id.unwrap(),
    };
    tollgate::store::ledger::charge(
        &app.db,
        t,
        EntryKind::Debit,
        30 * CREDIT,
        0,
        tollgate::store::ledger::Note::default(),
        None,
    )
    .await
    .unwrap();
    let charge = json!({ "id": "ch_R", "object": "charge", "customer": "cus_rita",
        "payment_intent": "pi_R", "invoice": "in_R", "amount": 1999, "amount_refunded": 1999,
        "currency": "usd", "refunded": true });
    post_stripe(
        &app,
        &stripe_event("evt_r3", "charge.refunded", now, charge),
    )
    .await;
    let rows = settled(&app).await;
    let r3 = rows.iter().find(|r| r.event_id == "evt_r3").unwrap();
    assert!(
        r3.outcome
            .as_deref()
            .unwrap()
            .contains("clawed back 70 of 1 grant(s); 30 already spent"),
        "{r3:?}"
    );
    assert_eq!(me(&app, &key).await["credits"]["balance_micros"], 0);
}

/// A RevenueCat subscription event for bob's `pro_monthly` over `[start, end]`.
pub fn rc_event(id: &str, kind: &str, at: i64, start: i64, end: i64) -> Value {
    json!({ "id": id, "type": kind, "app_user_id": "bob", "original_app_user_id": "bob",
        "product_id": "pro_monthly", "original_transaction_id": "otx_bob",
        "transaction_id": format!("tx_{id}"), "purchased_at_ms": start, "expiration_at_ms": end,
        "event_timestamp_ms": at, "environment": "SANDBOX", "store": "APP_STORE",
        "period_type": "NORMAL", "entitlement_ids": ["pro"] })
}

#[tokio::test]
async fn a_subscription_whose_renewal_never_comes_lapses_after_the_grace() {
    let app = spawn_store_app().await;
    let now = tollgate::store::now_ms();
    let hour = 3_600_000;
    // Renewing, paid until 4 days ago; the expiry (or the renewal) was never delivered.
    let lost = rc_event(
        "rc_old",
        "RENEWAL",
        now - 34 * 24 * hour,
        now - 34 * 24 * hour,
        now - 96 * hour,
    );
    assert_eq!(post_revenuecat(&app, RC_AUTH, lost).await.status(), 200);
    settled(&app).await;
    let key = app.user_key("shop", "bob").await;
    assert_eq!(
        me(&app, &key).await["plan"]["id"],
        "free",
        "past the 72 h grace"
    );

    // Paid until an hour ago: still pro, until 72 h after that end with no further event.
    let late = rc_event(
        "rc_late",
        "RENEWAL",
        now - 30 * 24 * hour,
        now - 30 * 24 * hour,
        now - hour,
    );
    post_revenuecat(&app, RC_AUTH, late).await;
    settled(&app).await;
    assert_eq!(
        me(&app, &key).await["plan"]["id"],
        "pro",
        "within the grace"
    );
    let t = app.user_target("shop", "bob").await;
    let (_, _, _, until) = tollgate::store::ledger::plan_columns(&app.db, t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        until,
        Some(now - hour + 72 * hour),
        "the plan lapses by itself then"
    );
}

#[tokio::test]
async fn a_late_renewal_grants_its_paid_period_once_and_no_calendar_month_beside_it() {
    let app = spawn_store_app().await;
    let now = tollgate::store::now_ms();
    let hour = 3_600_000;
    let first = rc_event(
        "rc_p1",
        "INITIAL_PURCHASE",
        now - 30 * 24 * hour,
        now - 30 * 24 * hour,
        now - hour,
    );
    post_revenuecat(&app, RC_AUTH, first).await;
    settled(&app).await;
    let key = app.user_key("shop", "bob").await;
    // Between the period's end and its renewal webhook: the user calls in.
    let m = me(&app, &key).await;
    assert_eq!(m["plan"]["id"], "pro");
    assert_eq!(
        m["credits"]["balance_micros"], 0,
        "no calendar month granted meanwhile"
    );
    let renewal = rc_event("rc_p2", "RENEWAL", now, now - hour, now + 30 * 24 * hour);
    post_revenuecat(&app, RC_AUTH, renewal).await;
    settled(&app).await;
    let m = me(&app, &key).await;
    assert_eq!(
        m["credits"]["balance_micros"],
        100 * CREDIT,
        "the paid period, once: {m}"
    );
    // Read again (and refreshed again): still once.
    assert_eq!(
        me(&app, &key).await["credits"]["balance_micros"],
        100 * CREDIT
    );
}

/// `GET /v1/plans`: what a paywall shows — each plan with the store products that give it, the
/// credit packs, and the caller's current plan, which follows a plan change at once. An app
/// key is not a user and gets 403.
#[tokio::test]
async fn the_plans_list_names_each_plans_products_the_packs_and_the_callers_plan() {
    let app = spawn_store_app().await;
    let shop = crate::credits::seed(&app, "shop").await;
    let key = shop.user_key.clone();
    let plans = app.get_as("/v1/plans", &key).await;
    assert_eq!(plans.status(), 200);
    let plans: Value = plans.json().await.unwrap();
    assert_eq!(plans["current"], "free");
    assert_eq!(plans["default_plan"], "free");
    let ids: Vec<&str> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free", "pro"]);
    assert_eq!(plans["data"][0]["products"], json!([]));
    assert_eq!(
        plans["data"][1]["products"],
        json!([{ "provider": "stripe", "id": "price_pro" },
               { "provider": "revenuecat", "id": "pro_monthly" }])
    );
    assert_eq!(
        plans["data"][1]["quotas"],
        json!([{ "metric": "requests", "limit": 1000, "period": "billing_period" }])
    );
    assert_eq!(plans["data"][1]["credits_micros"], 100 * CREDIT);
    assert_eq!(
        plans["packs"],
        json!([
            { "provider": "stripe", "id": "price_pack", "credits_micros": 50 * CREDIT, "credits": "50" },
            { "provider": "revenuecat", "id": "pack_20", "credits_micros": 20 * CREDIT, "credits": "20" }
        ])
    );

    let set = app
        .send_as(
            reqwest::Method::PUT,
            "/admin/v1/apps/shop/users/alice/plan",
            &shop.owner,
            Some(json!({ "plan_id": "pro" })),
        )
        .await;
    assert_eq!(set.status(), 200);
    let after: Value = app.get_as("/v1/plans", &key).await.json().await.unwrap();
    assert_eq!(after["current"], "pro");

    problem(app.get_as("/v1/plans", &shop.app_key).await, 403).await;
}
