//! Outbound to Stripe, against the fake Stripe: Checkout for a subscription or a top-up pack
//! (the customer created once, the open session reused), the Customer Portal, and Stripe's
//! refusals as clear problems.

use serde_json::{Value, json};

use crate::billing::store_config;
use crate::fake_stripe::{self, FakeStripe};
use crate::helpers::{TestApp, problem, spawn_app_with};

async fn app_with_fake_stripe() -> (TestApp, FakeStripe) {
    let (fake, url) = fake_stripe::start(&["price_pro", "price_pack"]).await;
    let mut shop = store_config();
    let stripe = shop.stripe.as_mut().unwrap();
    stripe.api_base = url;
    shop.products.push(
        serde_json::from_value(json!({ "provider": "stripe", "id": "price_gone", "credits": "5" }))
            .unwrap(),
    );
    let app = spawn_app_with(|c| c.apps = vec![shop]).await;
    (app, fake)
}

async fn checkout(app: &TestApp, key: &str, product: &str) -> reqwest::Response {
    app.send_as(
        reqwest::Method::POST,
        "/v1/billing/checkout",
        key,
        Some(
            json!({ "product": product, "success_url": "https://app.example/ok",
            "cancel_url": "https://app.example/back" }),
        ),
    )
    .await
}

#[tokio::test]
async fn checkout_creates_the_customer_once_and_reuses_the_open_session() {
    let (app, fake) = app_with_fake_stripe().await;
    let key = app.user_key("shop", "alice").await;

    let r = checkout(&app, &key, "price_pro").await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["mode"], "subscription");
    assert_eq!(first["reused"], false);
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    let customer = &fake.received("/v1/customers")[0];
    assert_eq!(customer["metadata[tollgate_user]"], "alice");
    let created = &fake.received("/v1/checkout/sessions")[0];
    assert_eq!(created["mode"], "subscription");
    assert_eq!(created["customer"], "cus_fake1");
    assert_eq!(created["client_reference_id"], "alice");
    assert_eq!(created["line_items[0][price]"], "price_pro");
    assert_eq!(
        created["subscription_data[metadata][tollgate_user]"],
        "alice"
    );

    // Again: the open session, no second customer, no second session.
    let again: Value = checkout(&app, &key, "price_pro")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["reused"], true);
    assert_eq!(fake.customers(), 1);
    assert_eq!(fake.received("/v1/checkout/sessions").len(), 1);

    // A top-up pack is a one-time payment carrying the user on the payment.
    let pack: Value = checkout(&app, &key, "price_pack")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pack["mode"], "payment");
    assert_ne!(pack["id"], first["id"]);
    let created = &fake.received("/v1/checkout/sessions")[1];
    assert_eq!(
        created["payment_intent_data[metadata][tollgate_user]"],
        "alice"
    );
    assert_eq!(created["metadata[tollgate_product]"], "price_pack");

    // Once the first session completed, a new checkout makes a new session.
    fake.complete(first["id"].as_str().unwrap());
    let next: Value = checkout(&app, &key, "price_pro")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["reused"], false);
    assert_ne!(next["id"], first["id"]);
    assert_eq!(fake.customers(), 1);
    // Every write carried an idempotency key (the fake replays by it; see the customer count).

    // The portal for her customer.
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/billing/portal",
            &key,
            Some(json!({ "return_url": "https://app.example/account" })),
        )
        .await;
    assert_eq!(r.status(), 200);
    let portal: Value = r.json().await.unwrap();
    assert!(
        portal["url"].as_str().unwrap().contains("cus_fake1"),
        "{portal}"
    );
}

#[tokio::test]
async fn checkout_problems_are_named_and_stripe_refusals_are_502() {
    let (app, fake) = app_with_fake_stripe().await;
    let key = app.user_key("shop", "bob").await;
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/billing/checkout",
            &key,
            Some(json!({ "product": "price_nope", "success_url": "ftp://x",
                "cancel_url": "https://app.example/back" })),
        )
        .await;
    let p = problem(r, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["product", "success_url"], "{p}");
    assert_eq!(fake.customers(), 0, "nothing was created at Stripe");

    // A product the app maps but Stripe does not know: Stripe's own message, 502.
    let p = problem(checkout(&app, &key, "price_gone").await, 502).await;
    assert!(
        p["detail"].as_str().unwrap().contains("No such price"),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().starts_with("Stripe refused"),
        "{p}"
    );

    // No customer yet: no portal.
    let carol = app.user_key("shop", "carol").await;
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/billing/portal",
            &carol,
            Some(json!({ "return_url": "https://app.example/account" })),
        )
        .await;
    problem(r, 409).await;

    // An app that does not sell through Stripe.
    let other = app.user_key("elsewhere", "dan").await;
    problem(checkout(&app, &other, "price_pro").await, 404).await;
}

#[tokio::test]
async fn concurrent_checkouts_for_one_user_and_price_share_one_session() {
    let (app, fake) = app_with_fake_stripe().await;
    let key = app.user_key("shop", "erin").await;
    let answers =
        futures_util::future::join_all((0..5).map(|_| checkout(&app, &key, "price_pro"))).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for r in answers {
        assert_eq!(r.status(), 200);
        let out: Value = r.json().await.unwrap();
        ids.insert(out["id"].as_str().unwrap().to_string());
        if out["reused"] == false {
            created += 1;
        }
    }
    assert_eq!(ids.len(), 1, "one session: {ids:?}");
    assert_eq!(created, 1, "created once, reused by the other four");
    assert_eq!(fake.received("/v1/checkout/sessions").len(), 1);
    assert_eq!(fake.customers(), 1);
}

#[tokio::test]
async fn a_live_subscriber_is_sent_to_the_portal_instead_of_a_second_subscription() {
    use tollgate::billing::{Provider, SubscriptionFacts};
    use tollgate::domain::plans::Period;
    use tollgate::domain::subscriptions::{Status, Version};
    use tollgate::store::billing::{SubscriptionWrite, put_subscription};
    let (app, fake) = app_with_fake_stripe().await;
    let key = app.user_key("shop", "fay").await;
    let t = app.user_target("shop", "fay").await;
    let now = tollgate::store::now_ms();
    let facts = SubscriptionFacts {
        id: "sub_live".into(),
        status: Status::Active,
        product: Some("price_pro".into()),
        period: Some(Period {
            start: now - 1_000,
            end: now + 30 * 86_400_000,
        }),
        cancel_at_period_end: false,
    };
    let version = Version {
        time_ms: now,
        event_id: "evt_1".into(),
    };
    let write = SubscriptionWrite {
        provider: Provider::Stripe,
        facts: &facts,
        plan_id: Some("pro"),
        environment: None,
        store: None,
        version: &version,
    };
    assert!(put_subscription(&app.db, t, &write).await.unwrap());
    let p = problem(checkout(&app, &key, "price_pro").await, 409).await;
    assert!(
        p["detail"].as_str().unwrap().contains("/v1/billing/portal"),
        "{p}"
    );
    assert!(fake.received("/v1/checkout/sessions").is_empty());
    // A top-up pack is still for sale to a subscriber.
    assert_eq!(checkout(&app, &key, "price_pack").await.status(), 200);
}

/// A Payment Link's `checkout.session.completed`: paid, with no tollgate metadata.
fn payment_link_paid(session: &str) -> Value {
    let now = tollgate::store::now_ms() / 1000;
    crate::billing::stripe_event(
        &format!("evt_{session}"),
        "checkout.session.completed",
        now,
        json!({ "id": session, "object": "checkout.session", "mode": "payment",
            "payment_status": "paid", "status": "complete", "client_reference_id": "gus",
            "customer": "cus_gus", "payment_intent": format!("pi_{session}"),
            "amount_total": 500, "currency": "usd", "metadata": {} }),
    )
}

#[tokio::test]
async fn a_payment_link_purchase_is_read_from_its_line_items_and_granted() {
    let (app, fake) = app_with_fake_stripe().await;
    let key = app.user_key("shop", "gus").await;
    fake.add_payment_link_session("cs_link_1", "price_pack");
    let r = crate::billing::post_stripe(&app, &payment_link_paid("cs_link_1")).await;
    assert_eq!(r.status(), 200);
    let rows = crate::billing::settled(&app).await;
    assert_eq!(rows[0].status, "processed", "{rows:?}");
    assert_eq!(
        fake.received("GET /v1/checkout/sessions/cs_link_1/line_items")
            .len(),
        1
    );
    let me: Value = app.get_as("/v1/me", &key).await.json().await.unwrap();
    let packs = me["credits"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["source"] == "top_up")
        .count();
    assert_eq!(packs, 1, "the pack's credits: {me}");
}

#[tokio::test]
async fn a_payment_link_purchase_without_a_secret_key_fails_visibly_with_the_reason() {
    let mut shop = crate::billing::store_config();
    shop.stripe.as_mut().unwrap().secret_key = None;
    let app = spawn_app_with(|c| c.apps = vec![shop]).await;
    let r = crate::billing::post_stripe(&app, &payment_link_paid("cs_link_2")).await;
    assert_eq!(r.status(), 200, "stored, then processed by the job");
    let rows = crate::billing::settled(&app).await;
    assert_eq!(rows[0].status, "failed");
    let error = rows[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("secret_key"), "{error}");
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains("tollgate_billing_unresolved_checkouts_total{reason=\"no_secret_key\"} 1"),
        "{metrics}"
    );
}
