//! "Sync now" against a fake RevenueCat REST API: the subscriber's subscription and purchases
//! applied as the webhooks would, once between the sync and the webhooks.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::billing::{RC_AUTH, settled, store_config};
use crate::helpers::{TestApp, problem, spawn_app_with};

const RC_KEY: &str = "sk_rc_fake_secret";

type Subscribers = Arc<Mutex<Value>>;

async fn subscriber(
    State(subs): State<Subscribers>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {RC_KEY}"))
    {
        let body = json!({ "code": 7225, "message": "Invalid API key." });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let now = tollgate::store::now_ms();
    let subscriber = subs.lock().unwrap().get(&id).cloned().unwrap_or_else(|| {
        json!({ "original_app_user_id": id, "entitlements": {}, "subscriptions": {},
            "non_subscriptions": {} })
    });
    axum::Json(
        json!({ "request_date": "2026-11-22T00:00:00Z", "request_date_ms": now,
        "subscriber": subscriber }),
    )
    .into_response()
}

async fn app_with_fake_revenuecat(api_key: &str) -> (TestApp, Subscribers) {
    let subs: Subscribers = Arc::new(Mutex::new(json!({})));
    let router = Router::new()
        .route("/v1/subscribers/{id}", get(subscriber))
        .with_state(subs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut shop = store_config();
    let rc = shop.revenuecat.as_mut().unwrap();
    rc.api_base = url;
    rc.api_key = Some(api_key.to_string().into());
    let app = spawn_app_with(|c| c.apps = vec![shop]).await;
    (app, subs)
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn sync(app: &TestApp, key: &str) -> Value {
    let r = app
        .send_as(reqwest::Method::POST, "/v1/billing/sync", key, None)
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn sync_applies_what_revenuecat_knows_once_with_the_webhooks() {
    let (app, subs) = app_with_fake_revenuecat(RC_KEY).await;
    let now = tollgate::store::now_ms();
    *subs.lock().unwrap() = json!({ "bob": {
        "original_app_user_id": "bob",
        "entitlements": { "pro": { "product_identifier": "pro_monthly",
            "expires_date": iso(now + 30 * 86_400_000) } },
        "subscriptions": { "pro_monthly": {
            "purchase_date": iso(now - 60_000), "expires_date": iso(now + 30 * 86_400_000),
            "period_type": "normal", "store": "app_store", "is_sandbox": true,
            "unsubscribe_detected_at": null, "billing_issues_detected_at": null,
            "refunded_at": null } },
        "non_subscriptions": { "pack_20": [ { "id": "rc_np_1", "store_transaction_id": "tx_pack_1",
            "purchase_date": iso(now - 30_000), "store": "app_store", "is_sandbox": true } ] }
    }});
    let key = app.user_key("shop", "bob").await;
    let out = sync(&app, &key).await;
    assert_eq!(out["plan_id"], "pro", "{out}");
    assert_eq!(out["subscriptions"][0]["status"], "active");
    assert_eq!(out["subscriptions"][0]["environment"], "sandbox");
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(me["credits"]["balance_micros"], 120_000_000, "{me}");

    // The webhook for the same pack arrives later: no second grant. Syncing again: nothing new.
    let event = json!({ "api_version": "1.0", "event": { "id": "rc_evt_pack", "type": "NON_RENEWING_PURCHASE",
        "app_user_id": "bob", "product_id": "pack_20", "transaction_id": "tx_pack_1",
        "event_timestamp_ms": now, "environment": "SANDBOX", "store": "APP_STORE" } });
    let r = app
        .client
        .post(app.url("/webhooks/shop/revenuecat"))
        .header("authorization", RC_AUTH)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rows = settled(&app).await;
    assert_eq!(rows[0].status, "processed", "{rows:?}");
    sync(&app, &key).await;
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(me["credits"]["balance_micros"], 120_000_000, "{me}");

    // Expired at RevenueCat: the sync puts bob back on the free plan.
    subs.lock().unwrap()["bob"]["subscriptions"]["pro_monthly"]["expires_date"] =
        json!(iso(now - 1000));
    let out = sync(&app, &key).await;
    assert!(out["plan_id"].is_null(), "{out}");
    assert_eq!(out["subscriptions"][0]["status"], "expired");
}

#[tokio::test]
async fn sync_needs_an_api_key_and_reports_revenuecat_refusals() {
    let (app, _) = app_with_fake_revenuecat("sk_rc_wrong_key").await;
    // RevenueCat refuses the key: a 502 naming its message; nothing changes.
    let key = app.user_key("shop", "bob").await;
    let r = app
        .send_as(reqwest::Method::POST, "/v1/billing/sync", &key, None)
        .await;
    let p = problem(r, 502).await;
    assert!(
        p["detail"].as_str().unwrap().contains("Invalid API key"),
        "{p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("RevenueCat refused"),
        "{p}"
    );
    // An app without RevenueCat at all.
    let other = app.user_key("elsewhere", "eve").await;
    let r = app
        .send_as(reqwest::Method::POST, "/v1/billing/sync", &other, None)
        .await;
    problem(r, 404).await;
}

#[tokio::test]
async fn a_purchase_seen_by_the_sync_and_then_by_the_webhooks_is_one_subscription() {
    let (app, subs) = app_with_fake_revenuecat(RC_KEY).await;
    let now = tollgate::store::now_ms();
    let end = now + 30 * 86_400_000;
    *subs.lock().unwrap() = json!({ "bob": {
        "original_app_user_id": "bob", "entitlements": {},
        "subscriptions": { "pro_monthly": {
            "purchase_date": iso(now - 60_000), "expires_date": iso(end),
            "period_type": "normal", "store": "app_store", "is_sandbox": true,
            "unsubscribe_detected_at": null, "billing_issues_detected_at": null,
            "refunded_at": null } },
        "non_subscriptions": {} }});
    let key = app.user_key("shop", "bob").await;
    assert_eq!(sync(&app, &key).await["plan_id"], "pro");
    let post = |event: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/webhooks/shop/revenuecat"))
                .header("authorization", RC_AUTH)
                .json(&json!({ "api_version": "1.0", "event": event }))
                .send()
                .await
                .unwrap()
        }
    };
    let event = |id: &str, kind: &str, at: i64| {
        json!({ "id": id, "type": kind, "app_user_id": "bob", "product_id": "pro_monthly",
            "original_transaction_id": "otx_bob", "transaction_id": format!("tx_{id}"),
            "purchased_at_ms": now - 60_000, "expiration_at_ms": end, "event_timestamp_ms": at,
            "environment": "SANDBOX", "store": "APP_STORE", "period_type": "NORMAL" })
    };
    // The purchase's own webhook arrives after the sync: the same subscription.
    post(event("rc_buy", "INITIAL_PURCHASE", now + 1)).await;
    settled(&app).await;
    let out = sync(&app, &key).await;
    assert_eq!(out["subscriptions"].as_array().unwrap().len(), 1, "{out}");
    // Its expiry through the webhook ends the one row: the user is not entitled for ever.
    let later = tollgate::store::now_ms() + 1_000;
    post(event("rc_end", "EXPIRATION", later)).await;
    settled(&app).await;
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(me["plan"]["id"], "free", "{me}");
}

#[tokio::test]
async fn a_revenuecat_nudge_link_leads_to_the_subscribers_store_management_page() {
    let (app, subs) = app_with_fake_revenuecat(RC_KEY).await;
    let manage = "https://apps.apple.com/account/subscriptions";
    subs.lock().unwrap()["bob"] = json!({ "original_app_user_id": "bob", "entitlements": {},
        "subscriptions": {}, "non_subscriptions": {}, "management_url": manage });
    let at = tollgate::store::now_ms() - 3_600_000;
    let issue =
        crate::billing::rc_event("rc_bill", "BILLING_ISSUE", at, at - 1000, at + 86_400_000);
    let r = crate::billing::post_revenuecat(&app, RC_AUTH, issue).await;
    assert_eq!(r.status(), 200);
    settled(&app).await;
    assert_eq!(
        crate::recovery_whop::nudge_link_target(&app, "shop", "bob").await,
        manage
    );
}
