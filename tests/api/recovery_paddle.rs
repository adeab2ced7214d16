//! Payment recovery with Paddle Billing, through real Paddle deliveries and a fake Paddle API: a
//! failed renewal opens a case, its nudge's link leads to Paddle's checkout for updating the
//! payment method, and the case cancels its subscription (at period end or now). Both databases.

use serde_json::{Value, json};
use tollgate::store::ledger::Target;
use tollgate::store::recovery;

use crate::billing::{settled, store_config};
use crate::billing_paddle_whop::{PADDLE_SECRET, post_paddle, rfc3339};
use crate::fake_paddle::{self, FakePaddle};
use crate::helpers::{TestApp, spawn_app_with};

async fn shop() -> (TestApp, FakePaddle) {
    let (fake, url) = fake_paddle::start().await;
    let mut shop = store_config();
    let extra: tollgate::config::AppConfig = serde_json::from_value(json!({
        "slug": "shop",
        "paddle": { "webhook_secrets": [PADDLE_SECRET], "api_key": fake_paddle::API_KEY,
            "api_base": url },
        "products": [{ "provider": "paddle", "id": "pri_pro", "plan": "pro" }] }))
    .unwrap();
    shop.paddle = extra.paddle;
    shop.products.extend(extra.products);
    (spawn_app_with(|c| c.apps = vec![shop]).await, fake)
}

/// A `transaction.payment_failed` delivery for `user`'s subscription `sub`.
async fn failed(app: &TestApp, user: &str, sub: &str) {
    let at = tollgate::store::now_ms() / 1000 - 600;
    let event = json!({ "event_id": format!("evt_fail_{user}"), "event_type": "transaction.payment_failed",
        "occurred_at": rfc3339(at), "notification_id": format!("ntf_{user}"),
        "data": { "id": format!("txn_{user}"), "status": "past_due", "customer_id": format!("ctm_{user}"),
            "subscription_id": sub, "origin": "subscription_recurring", "currency_code": "USD",
            "items": [{ "price": { "id": "pri_pro" }, "quantity": 1 }],
            "details": { "totals": { "grand_total": "1999" } },
            "custom_data": { "tollgate_user": user } } });
    assert_eq!(post_paddle(app, &event).await.status(), 200);
}

async fn case_id(app: &TestApp, user: &str) -> i64 {
    let t = app.user_target("shop", user).await;
    let cases = recovery::cases(
        &app.db,
        Target {
            app_id: t.app_id,
            user_id: t.user_id,
        },
    )
    .await
    .unwrap();
    assert_eq!(cases.len(), 1, "{cases:?}");
    cases[0].id
}

#[tokio::test]
async fn a_paddle_case_links_to_paddles_payment_update_and_cancels_through_its_api() {
    let (app, fake) = shop().await;
    fake.add_subscription("sub_01pia");
    fake.add_subscription("sub_01quin");
    failed(&app, "pia", "sub_01pia").await;
    failed(&app, "quin", "sub_01quin").await;
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");

    let target = crate::recovery_whop::nudge_link_target(&app, "shop", "pia").await;
    assert!(
        target.starts_with("https://pay.paddle.io/") && target.contains("sub=sub_01pia"),
        "{target}"
    );

    let key = crate::credits::seed(&app, "shop").await.app_key;
    let act = |id: i64, action: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let path = format!("/v1/recovery/cases/{id}/actions");
            let r = app
                .send_as(
                    reqwest::Method::POST,
                    &path,
                    key,
                    Some(json!({ "action": action })),
                )
                .await;
            assert_eq!(r.status(), 200, "{action}");
            r.json::<Value>().await.unwrap()
        }
    };
    let pia = case_id(&app, "pia").await;
    let quin = case_id(&app, "quin").await;
    assert_eq!(
        act(pia, "cancel_subscription_at_period_end").await["state"],
        "canceled"
    );
    assert_eq!(
        act(quin, "terminate_subscription").await["state"],
        "canceled"
    );
    assert_eq!(
        fake.cancels(),
        [
            (
                "sub_01pia".to_string(),
                json!({ "effective_from": "next_billing_period" })
            ),
            (
                "sub_01quin".to_string(),
                json!({ "effective_from": "immediately" })
            ),
        ]
    );
}
