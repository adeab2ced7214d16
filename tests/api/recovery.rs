//! Payment recovery's cases through real Stripe deliveries: a failed invoice opens a case per
//! user and subscription; a paid invoice whose event time is within 14 days of the first
//! failure recovers it (13.9 days yes, 14.1 days no), whatever order the deliveries arrive in;
//! the sweep loses cases whose window passed. Both databases.

use serde_json::{Value, json};
use tollgate::store::events as events_store;
use tollgate::store::ledger::Target;
use tollgate::store::now_ms;
use tollgate::store::recovery::{self, CaseRow};

use crate::billing::{post_stripe, settled, spawn_store_app, stripe_event};
use crate::helpers::TestApp;

const DAY: f64 = 86_400.0;

fn invoice(id: &str, user: &str, sub: &str, paid: bool) -> Value {
    let amount = if paid { "amount_paid" } else { "amount_due" };
    json!({ "id": id, "object": "invoice", "customer": format!("cus_{user}"),
        "billing_reason": "subscription_cycle", amount: 1999, "currency": "usd",
        "parent": { "subscription_details": { "subscription": sub,
            "metadata": { "tollgate_user": user } } },
        "lines": { "data": [{ "period": { "start": 1_600_000_000, "end": 1_600_086_400 },
            "pricing": { "price_details": { "price": "price_pro" } } }] } })
}

/// Delivers a failed (or paid) invoice whose Stripe event time is `at` (unix seconds).
pub async fn deliver(app: &TestApp, event_id: &str, user: &str, paid: bool, at: i64) {
    let kind = if paid {
        "invoice.paid"
    } else {
        "invoice.payment_failed"
    };
    let object = invoice(
        &format!("in_{event_id}"),
        user,
        &format!("sub_{user}"),
        paid,
    );
    let r = post_stripe(app, &stripe_event(event_id, kind, at, object)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

pub async fn cases(app: &TestApp, user: &str) -> Vec<CaseRow> {
    let t = app.user_target("shop", user).await;
    recovery::cases(
        &app.db,
        Target {
            app_id: t.app_id,
            user_id: t.user_id,
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_payment_within_fourteen_days_of_the_first_failure_recovers_in_any_delivery_order() {
    let app = spawn_store_app().await;
    let t0 = now_ms() / 1000 - 20 * 86_400;
    let at = |days: f64| t0 + (days * DAY) as i64;
    // In order: failure, then payment 13.9 days later (recovered) or 14.1 days later (not).
    deliver(&app, "evt_a_fail", "ann", false, t0).await;
    deliver(&app, "evt_a_paid", "ann", true, at(13.9)).await;
    deliver(&app, "evt_b_fail", "bob", false, t0).await;
    deliver(&app, "evt_b_paid", "bob", true, at(14.1)).await;
    // Reversed: the payment is delivered before the failure it recovers (or does not).
    deliver(&app, "evt_c_paid", "cy", true, at(13.9)).await;
    deliver(&app, "evt_c_fail", "cy", false, t0).await;
    deliver(&app, "evt_d_paid", "dee", true, at(14.1)).await;
    deliver(&app, "evt_d_fail", "dee", false, t0).await;
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    for (user, state) in [
        ("ann", "recovered"),
        ("bob", "open"),
        ("cy", "recovered"),
        ("dee", "open"),
    ] {
        let c = cases(&app, user).await;
        assert_eq!(c.len(), 1, "{user}: {c:?}");
        assert_eq!(c[0].state, state, "{user}");
        assert_eq!(
            c[0].first_failure_at,
            t0 * 1000,
            "{user}: the store's time, not ours"
        );
        assert_eq!(c[0].subscription_id, format!("sub_{user}"));
    }
    let ann = &cases(&app, "ann").await[0];
    assert_eq!(
        (ann.recovered_at, ann.recovered_amount_minor),
        (Some(at(13.9) * 1000), Some(1999))
    );
    // The window has passed for the open ones: the sweep loses them, once.
    assert_eq!(recovery::sweep(&app.db, now_ms(), 100).await.unwrap(), 2);
    assert_eq!(recovery::sweep(&app.db, now_ms(), 100).await.unwrap(), 0);
    assert_eq!(cases(&app, "bob").await[0].state, "lost");
    assert_eq!(cases(&app, "ann").await[0].state, "recovered");
    let shop = app.user_target("shop", "ann").await.app_id;
    let events = events_store::events(&app.db, shop, None, 100)
        .await
        .unwrap();
    let count = |t: &str| events.iter().filter(|e| e.kind == t).count();
    assert_eq!(
        (
            count("recovery.case_opened"),
            count("recovery.recovered"),
            count("recovery.lost")
        ),
        (4, 2, 2)
    );
    // The numbers, computed by hand: four cases, two recovered (1999 cents each), two lost.
    let owner = crate::credits::seed(&app, "shop").await.owner;
    let get = |path: String| {
        let (app, owner) = (&app, &owner);
        async move { app.send_as(reqwest::Method::GET, &path, owner, None).await }
    };
    let kpis = |from: i64, to: i64| {
        get(format!(
            "/admin/v1/apps/shop/recovery/kpis?from={from}&to={to}"
        ))
    };
    let k: Value = kpis(t0 * 1000, now_ms()).await.json().await.unwrap();
    assert_eq!(
        (
            k["opened"].clone(),
            k["active"].clone(),
            k["recovered"].clone(),
            k["lost"].clone(),
            k["recovery_rate_bps"].clone()
        ),
        (json!(4), json!(0), json!(2), json!(2), json!(5000)),
        "{k}"
    );
    assert_eq!(
        k["recovered_revenue"],
        json!([{ "currency": "usd", "amount_minor": 3998 }])
    );
    let k: Value = kpis(t0 * 1000 + 1, now_ms()).await.json().await.unwrap();
    assert_eq!(
        (k["opened"].clone(), k["recovery_rate_bps"].clone()),
        (json!(0), Value::Null),
        "by first failure time"
    );
    let lost: Vec<Value> = get("/admin/v1/apps/shop/recovery/cases?state=lost".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lost.len(), 2);
    let bad = get("/admin/v1/apps/shop/recovery/cases?state=won".into()).await;
    assert_eq!(
        crate::helpers::problem(bad, 422).await["errors"][0]["field"],
        "state"
    );
    // The counters agree with the numbers: once per transition, revenue by currency.
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    for line in [
        r#"tollgate_recovery_cases_total{transition="recovery.case_opened"} 4"#,
        r#"tollgate_recovery_cases_total{transition="recovery.recovered"} 2"#,
        r#"tollgate_recovery_cases_total{transition="recovery.lost"} 2"#,
        r#"tollgate_recovery_recovered_revenue_minor_total{currency="usd"} 3998"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn retried_failures_are_one_case_counted_from_the_earliest_and_a_redelivery_changes_nothing()
{
    let app = spawn_store_app().await;
    let t0 = now_ms() / 1000 - 3 * 86_400;
    // The second failure of the invoice arrives first.
    deliver(&app, "evt_f2", "eve", false, t0 + 86_400).await;
    deliver(&app, "evt_f1", "eve", false, t0).await;
    deliver(&app, "evt_f1", "eve", false, t0).await;
    settled(&app).await;
    let c = cases(&app, "eve").await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(
        (c[0].attempts, c[0].first_failure_at, c[0].state.as_str()),
        (2, t0 * 1000, "open")
    );
    // Paid: recovered; the same payment delivered again recovers nothing twice.
    deliver(&app, "evt_p", "eve", true, t0 + 2 * 86_400).await;
    deliver(&app, "evt_p", "eve", true, t0 + 2 * 86_400).await;
    settled(&app).await;
    let c = cases(&app, "eve").await;
    assert_eq!((c.len(), c[0].state.as_str()), (1, "recovered"));
    // A failure after the recovery is a new case.
    deliver(&app, "evt_f3", "eve", false, t0 + (2.5 * DAY) as i64).await;
    settled(&app).await;
    let c = cases(&app, "eve").await;
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[0].state, "open");
}

#[tokio::test]
async fn a_failure_and_its_payment_processed_at_the_same_moment_still_recover() {
    // The worker processes deliveries concurrently: the failure's transaction and the payment's
    // may run side by side, each unable to see the other's uncommitted row. Many pairs at once
    // make that overlap certain; every pair must end recovered, with one case each.
    let app = spawn_store_app().await;
    let t0 = now_ms() / 1000 - 86_400;
    let users: Vec<String> = (0..24).map(|i| format!("u{i}")).collect();
    let deliveries = users
        .iter()
        .flat_map(|u| [(u, false), (u, true)])
        .map(|(u, paid)| {
            let (event, at) = if paid {
                ("paid", t0 + 3600)
            } else {
                ("fail", t0)
            };
            let id = format!("evt_{u}_{event}");
            let app = &app;
            async move { deliver(app, &id, u, paid, at).await }
        });
    futures_util::future::join_all(deliveries).await;
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    for u in &users {
        let c = cases(&app, u).await;
        assert_eq!(c.len(), 1, "{u}: {c:?}");
        assert_eq!(c[0].state, "recovered", "{u}: {c:?}");
    }
}
