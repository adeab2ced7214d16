//! Recovery cases through the app's own API (app secret key) and the operators': lists with
//! cursors and filters, a case's timeline, the CSV export read back, actions (each audited,
//! refused when the case is not open or the store cannot do it, Stripe's cancel through a fake
//! speaking its API), and another app's key seeing none of it. Both databases.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::billing::{post_revenuecat, rc_event, settled, store_config};
use crate::fake_stripe::{self, FakeStripe};
use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::jobs::wait_until;
use crate::recovery::deliver;

const RC_AUTH: &str = crate::billing::RC_AUTH;

/// The shop (Stripe through a fake API, and RevenueCat) with open cases for ann, cy, dee and
/// eve (Stripe) and bob (RevenueCat), and the shop's and a rival app's secret keys.
async fn shop_with_cases() -> (TestApp, FakeStripe, String, String, String) {
    let (fake, url) = fake_stripe::start(&["price_pro"]).await;
    let mut shop = store_config();
    shop.stripe.as_mut().unwrap().api_base = url;
    let app = spawn_app_with(|c| c.apps = vec![shop]).await;
    let t0 = tollgate::store::now_ms() / 1000 - 3600;
    for (i, user) in ["ann", "cy", "dee", "eve"].into_iter().enumerate() {
        deliver(
            &app,
            &format!("evt_fail_{user}"),
            user,
            false,
            t0 + i as i64,
        )
        .await;
        fake.add_subscription(&format!("sub_{user}"), &format!("cus_{user}"));
    }
    let at = (t0 + 10) * 1000;
    let r = post_revenuecat(
        &app,
        RC_AUTH,
        rc_event("rc_bill", "BILLING_ISSUE", at, at - 1000, at + 86_400_000),
    )
    .await;
    assert_eq!(r.status(), 200);
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    let shop = crate::credits::seed(&app, "shop").await;
    let rival = crate::credits::seed(&app, "rival").await;
    (app, fake, shop.app_key, rival.app_key, shop.owner)
}

async fn json_of(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.send_as(Method::GET, path, key, None).await
}

async fn act(app: &TestApp, key: &str, id: i64, action: &str) -> reqwest::Response {
    let path = format!("/v1/recovery/cases/{id}/actions");
    app.send_as(Method::POST, &path, key, Some(json!({ "action": action })))
        .await
}

/// The shop's case of `user`, from the list.
async fn case_of(app: &TestApp, key: &str, user: &str) -> Value {
    let page = json_of(get(app, key, &format!("/v1/recovery/cases?user={user}")).await).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    page["data"][0].clone()
}

fn rfc3339(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_app_pages_reads_and_exports_its_cases_and_another_apps_key_sees_none() {
    let (app, _fake, key, rival, _) = shop_with_cases().await;
    // Two pages of two and one of one, newest first, each case once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for expected in [2, 2, 1] {
        let page =
            json_of(get(&app, &key, &format!("/v1/recovery/cases?limit=2{cursor}")).await).await;
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), expected, "{page}");
        seen.extend(data.iter().cloned());
        cursor = page["next_cursor"]
            .as_str()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
    }
    assert!(cursor.is_empty(), "the last page has no cursor");
    // Newest first (by id: the worker applies deliveries side by side), each case once.
    let ids: Vec<i64> = seen.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let mut users: Vec<&str> = seen.iter().map(|c| c["user"].as_str().unwrap()).collect();
    users.sort();
    assert_eq!(users, ["ann", "bob", "cy", "dee", "eve"]);
    assert!(seen.iter().all(|c| c["state"] == "open"));
    assert_eq!(case_of(&app, &key, "bob").await["provider"], "revenuecat");

    let bad = get(&app, &key, "/v1/recovery/cases?state=won").await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "state");
    let bad = get(&app, &key, "/v1/recovery/cases?limit=0").await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "limit");

    // A case's timeline starts with its opening and the store's failed payment.
    let ann = case_of(&app, &key, "ann").await;
    let id = ann["id"].as_i64().unwrap();
    let detail = json_of(get(&app, &key, &format!("/v1/recovery/cases/{id}")).await).await;
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "payment_failed"], "{detail}");
    assert_eq!(detail["timeline"][1]["details"]["amount_minor"], 1999);

    // The CSV reads back to the rows the list gave.
    let csv_response = get(&app, &key, "/v1/recovery/cases.csv").await;
    assert_eq!(csv_response.status(), 200);
    assert_eq!(
        csv_response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let text = csv_response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, tollgate::http::api::recovery::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), seen.len());
    for (row, case) in rows.iter().zip(&seen) {
        assert_eq!(row[0], case["id"].to_string());
        assert_eq!(&row[1], case["user"].as_str().unwrap());
        assert_eq!(&row[2], case["provider"].as_str().unwrap());
        assert_eq!(&row[3], case["subscription_id"].as_str().unwrap());
        assert_eq!(&row[4], case["state"].as_str().unwrap());
        assert_eq!(row[5], rfc3339(&case["first_failure_at"]));
        assert_eq!(row[7], case["attempts"].to_string());
        assert_eq!(
            row[8],
            case["amount_minor"]
                .as_i64()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        assert_eq!(&row[12], "", "open: not closed");
    }
    let from = seen
        .iter()
        .map(|c| c["first_failure_at"].as_i64().unwrap())
        .max()
        .unwrap();
    let narrow = get(&app, &key, &format!("/v1/recovery/cases.csv?from={from}")).await;
    assert_eq!(
        narrow.text().await.unwrap().lines().count(),
        2,
        "a header and the newest case"
    );

    // The rival app's key: no cases, no case by id, no action, an empty export, zero numbers.
    let page = json_of(get(&app, &rival, "/v1/recovery/cases").await).await;
    assert_eq!(page["data"], json!([]));
    problem(
        get(&app, &rival, &format!("/v1/recovery/cases/{id}")).await,
        404,
    )
    .await;
    problem(act(&app, &rival, id, "cancel_case").await, 404).await;
    let export = get(&app, &rival, "/v1/recovery/cases.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(export.lines().count(), 1, "only the header: {export}");
    let k = json_of(
        get(
            &app,
            &rival,
            &format!("/v1/recovery/kpis?from=0&to={}", i64::MAX),
        )
        .await,
    )
    .await;
    assert_eq!(k["opened"], 0);
    let k = json_of(
        get(
            &app,
            &key,
            &format!("/v1/recovery/kpis?from=0&to={}", i64::MAX),
        )
        .await,
    )
    .await;
    assert_eq!(
        (k["opened"].clone(), k["active"].clone()),
        (json!(5), json!(5))
    );
    // And no user key reads them: the app's server does.
    let user_key = crate::credits::seed(&app, "shop").await.user_key;
    problem(get(&app, &user_key, "/v1/recovery/cases").await, 403).await;
}

#[tokio::test]
async fn actions_change_an_open_case_once_are_audited_and_are_refused_when_they_cannot_be() {
    let (app, fake, key, _, owner) = shop_with_cases().await;
    let id_of = |c: Value| c["id"].as_i64().unwrap();
    let ann = id_of(case_of(&app, &key, "ann").await);
    let cy = id_of(case_of(&app, &key, "cy").await);
    let dee = id_of(case_of(&app, &key, "dee").await);
    let eve = id_of(case_of(&app, &key, "eve").await);
    let bob = id_of(case_of(&app, &key, "bob").await);

    // Cancel the case: once; the second time it is not open.
    let done = json_of(act(&app, &key, ann, "cancel_case").await).await;
    assert_eq!(done["state"], "canceled");
    let again = problem(act(&app, &key, ann, "cancel_case").await, 409).await;
    assert!(
        again["detail"]
            .as_str()
            .unwrap()
            .contains("the case is canceled"),
        "{again}"
    );
    let kinds: Vec<String> = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"recovery.case.cancel_case".to_string()),
        "{kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "canceled");
    let shop = tollgate::store::identity::app_by_slug(&app.db, "shop")
        .await
        .unwrap()
        .unwrap();
    let events = tollgate::store::events::events(&app.db, shop.id, None, 100)
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "recovery.canceled")
            .count(),
        1
    );

    // Mark lost, as an operator (support may; a viewer may not).
    let path = |id: i64| format!("/admin/v1/apps/shop/recovery/cases/{id}/actions");
    let lost = app
        .send_as(
            Method::POST,
            &path(cy),
            &owner,
            Some(json!({ "action": "mark_lost" })),
        )
        .await;
    assert_eq!(json_of(lost).await["state"], "lost");
    let audit =
        tollgate::store::identity::audit_of(&app.db, shop.id, &format!("recovery_case:{cy}"), 10)
            .await
            .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "recovery.case.mark_lost");
    assert!(
        audit[0].actor.starts_with("key:"),
        "the operator: {:?}",
        audit[0]
    );

    // Nudge now: the first step goes now, through the worker, once; then the next step.
    let nudged = json_of(act(&app, &key, dee, "nudge_now").await).await;
    assert_eq!(nudged["nudge"]["step"], 0, "{nudged}");
    wait_until(Duration::from_secs(10), || async {
        let d = json_of(get(&app, &key, &format!("/v1/recovery/cases/{dee}")).await).await;
        d["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "nudge_sent")
    })
    .await;
    let next = json_of(act(&app, &key, dee, "nudge_now").await).await;
    assert_eq!(next["nudge"]["step"], 1, "{next}");
    let events = tollgate::store::events::events(&app.db, shop.id, None, 100)
        .await
        .unwrap();
    let nudges = events.iter().filter(|e| e.kind == "recovery.nudge").count();
    assert!((1..=2).contains(&nudges), "one per step: {nudges}");

    // Terminate the Stripe subscription: Stripe's DELETE, once, then the case is canceled.
    let ended = json_of(act(&app, &key, eve, "terminate_subscription").await).await;
    assert_eq!(ended["state"], "canceled");
    assert_eq!(fake.subscription("sub_eve").unwrap()["status"], "canceled");
    assert_eq!(fake.received("DELETE /v1/subscriptions").len(), 1);
    problem(act(&app, &key, eve, "terminate_subscription").await, 409).await;
    assert_eq!(
        fake.received("DELETE /v1/subscriptions").len(),
        1,
        "a closed case calls nothing"
    );

    // RevenueCat has no such call: refused, saying where the user cancels; nothing changes.
    let refused = problem(
        act(&app, &key, bob, "cancel_subscription_at_period_end").await,
        409,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("the user cancels in the store"),
        "{refused}"
    );
    assert_eq!(case_of(&app, &key, "bob").await["state"], "open");

    // Cancel at period end, through Stripe's update, as an admin operator.
    let t = tollgate::store::now_ms() / 1000 - 60;
    deliver(&app, "evt_fail_fay", "fay", false, t).await;
    fake.add_subscription("sub_fay", "cus_fay");
    settled(&app).await;
    let fay = id_of(case_of(&app, &key, "fay").await);
    let r = app
        .send_as(
            Method::POST,
            &path(fay),
            &owner,
            Some(json!({ "action": "cancel_subscription_at_period_end" })),
        )
        .await;
    assert_eq!(json_of(r).await["state"], "canceled");
    let updates = fake.received("POST /v1/subscriptions");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["cancel_at_period_end"], "true");
    assert_eq!(
        fake.subscription("sub_fay").unwrap()["cancel_at_period_end"],
        true
    );

    // An action that does not exist: named field by field.
    let unknown = problem(act(&app, &key, bob, "refund").await, 422).await;
    assert!(unknown.to_string().contains("action"), "{unknown}");
}
