//! Paddle Billing and Whop through HTTP: signed as each documents (Paddle-Signature;
//! Standard Webhooks), normalised, applied — a subscription puts the user on its plan, a
//! one-time purchase grants its pack, a cancellation or deactivation ends the plan.

use serde_json::{Value, json};

use crate::billing::{settled, store_config};
use crate::helpers::{TestApp, problem, spawn_app_with};

pub const PADDLE_SECRET: &str = "pdl_ntfset_01hv_test_secret_key";
const WHOP_SECRET: &str = "whsec_dGVzdC13aG9wLXNpZ25pbmcta2V5LTEyMw==";

async fn app() -> TestApp {
    let mut shop = store_config();
    let extra: tollgate::config::AppConfig = serde_json::from_value(json!({
        "slug": "shop",
        "paddle": { "webhook_secrets": [PADDLE_SECRET] },
        "whop": { "webhook_secrets": [WHOP_SECRET] },
        "products": [
            { "provider": "paddle", "id": "pri_pro", "plan": "pro" },
            { "provider": "paddle", "id": "pri_pack", "credits": "30" },
            { "provider": "whop", "id": "plan_pro", "plan": "pro" },
        ]
    }))
    .unwrap();
    shop.paddle = extra.paddle;
    shop.whop = extra.whop;
    shop.products.extend(extra.products);
    spawn_app_with(|c| c.apps = vec![shop]).await
}

fn now_secs() -> i64 {
    tollgate::store::now_ms() / 1000
}

pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub async fn post_paddle(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).unwrap();
    let sig = tollgate::billing::paddle::sign(PADDLE_SECRET, now_secs(), &body);
    app.client
        .post(app.url("/webhooks/shop/paddle"))
        .header("paddle-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn post_whop(app: &TestApp, id: &str, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).unwrap();
    let ts = now_secs();
    let sig = tollgate::billing::whop::sign(WHOP_SECRET, id, ts, &body).unwrap();
    app.client
        .post(app.url("/webhooks/shop/whop"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn plan_and_balance(app: &TestApp, user: &str) -> (Value, Value) {
    let key = app.user_key("shop", user).await;
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    (
        me["plan"]["id"].clone(),
        me["credits"]["balance_micros"].clone(),
    )
}

#[tokio::test]
async fn paddle_subscriptions_purchases_and_cancellation() {
    let app = app().await;
    let now = now_secs();
    let sub = |status: &str, at: i64| {
        json!({ "event_id": format!("evt_sub_{status}"), "event_type": if status == "canceled" { "subscription.canceled" } else { "subscription.created" },
            "occurred_at": rfc3339(at), "notification_id": "ntf_1",
            "data": { "id": "sub_01paddle", "status": status, "customer_id": "ctm_01",
                "items": [{ "price": { "id": "pri_pro" }, "quantity": 1 }],
                "current_billing_period": { "starts_at": rfc3339(now - 3600), "ends_at": rfc3339(now + 86_400 * 30) },
                "scheduled_change": null, "custom_data": { "tollgate_user": "pia" } } })
    };
    assert_eq!(
        post_paddle(&app, &sub("active", now - 10)).await.status(),
        200
    );
    let pack = json!({ "event_id": "evt_txn_pack", "event_type": "transaction.completed",
        "occurred_at": rfc3339(now - 5),
        "data": { "id": "txn_01pack", "status": "completed", "customer_id": "ctm_01",
            "subscription_id": null, "origin": "web", "currency_code": "USD",
            "items": [{ "price": { "id": "pri_pack" }, "quantity": 1 }],
            "details": { "totals": { "grand_total": "500" } },
            "custom_data": { "tollgate_user": "pia" } } });
    assert_eq!(post_paddle(&app, &pack).await.status(), 200);
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    assert_eq!(
        plan_and_balance(&app, "pia").await,
        (json!("pro"), json!(130_000_000))
    );

    assert_eq!(post_paddle(&app, &sub("canceled", now)).await.status(), 200);
    settled(&app).await;
    assert_eq!(plan_and_balance(&app, "pia").await.0, json!("free"));

    // A body altered after signing is refused.
    let body = serde_json::to_vec(&pack).unwrap();
    let sig = tollgate::billing::paddle::sign(PADDLE_SECRET, now_secs(), &body);
    let mut altered = body.clone();
    altered[3] ^= 1;
    let r = app
        .client
        .post(app.url("/webhooks/shop/paddle"))
        .header("paddle-signature", sig)
        .body(altered)
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
}

#[tokio::test]
async fn whop_memberships_activate_and_deactivate_the_plan() {
    let app = app().await;
    let now = now_secs();
    let membership = |kind: &str, status: &str, at: i64| {
        json!({ "id": format!("msg_{kind}"), "api_version": "v1", "type": kind,
            "timestamp": rfc3339(at), "company_id": "biz_1",
            "data": { "id": "mem_01", "status": status, "cancel_at_period_end": false,
                "user": { "id": "user_w1", "username": "wes" }, "plan": { "id": "plan_pro" },
                "product": { "id": "prod_1" },
                "renewal_period_start": rfc3339(now - 60), "renewal_period_end": rfc3339(now + 86_400 * 30),
                "metadata": { "tollgate_user": "wes" } } })
    };
    let on = membership("membership.activated", "active", now - 5);
    assert_eq!(post_whop(&app, "msg_on", &on).await.status(), 200);
    // The same delivery again: 200, stored once.
    let again: Value = post_whop(&app, "msg_on", &on).await.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    settled(&app).await;
    assert_eq!(
        plan_and_balance(&app, "wes").await,
        (json!("pro"), json!(100_000_000))
    );

    let off = membership("membership.deactivated", "expired", now);
    assert_eq!(post_whop(&app, "msg_off", &off).await.status(), 200);
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    assert_eq!(plan_and_balance(&app, "wes").await.0, json!("free"));
}
