//! Payment recovery with Whop, through real Whop deliveries and a fake Whop API: company A gives
//! 3 free days (`add_free_days`) and 5 credits when a case is recovered, company B nothing —
//! each given once, whatever is redelivered or retried; a nudge's link leads to the membership's
//! `manage_url`; a case cancels its membership (`cancel`) — and without an API key, the app's
//! own page and a clear refusal; one Whop endpoint serves many sellers, each delivery going to
//! its company's app. Both databases.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::store::ledger::{self, Target};
use tollgate::store::recovery;

use crate::billing::settled;
use crate::fake_whop::{self, FakeWhop};
use crate::helpers::{TestApp, spawn_app_with};
use crate::jobs::wait_until;

const WHOP_SECRET: &str = "whsec_dGVzdC13aG9wLXNpZ25pbmcta2V5LTEyMw==";

fn company(slug: &str, whop: Value, recovery: Value) -> tollgate::config::AppConfig {
    let mut app = crate::credits::shop_config();
    let extra: tollgate::config::AppConfig = serde_json::from_value(json!({
        "slug": slug, "whop": whop, "recovery": recovery,
        "products": [{ "provider": "whop", "id": "plan_pro", "plan": "pro" }] }))
    .unwrap();
    app.slug = slug.to_string();
    app.whop = extra.whop;
    app.recovery = extra.recovery;
    app.products = extra.products;
    app
}

async fn companies() -> (TestApp, FakeWhop) {
    let (fake, url) = fake_whop::start().await;
    let a = company(
        "company_a",
        json!({ "webhook_secrets": [WHOP_SECRET], "api_key": fake_whop::API_KEY, "api_base": url }),
        json!({ "incentive_days": 3, "incentive_credits": "5" }),
    );
    let b = company(
        "company_b",
        json!({ "webhook_secrets": [WHOP_SECRET] }),
        json!({ "incentive_days": 0, "incentive_credits": "0",
            "manage_url": "https://company-b.example/billing" }),
    );
    let app = spawn_app_with(|c| c.apps = vec![a, b]).await;
    (app, fake)
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A Whop `payment.failed` or `payment.succeeded` delivery for `user`'s membership.
async fn payment(app: &TestApp, slug: &str, msg: &str, user: &str, paid: bool, at: i64) {
    let kind = if paid {
        "payment.succeeded"
    } else {
        "payment.failed"
    };
    let event = json!({ "id": msg, "api_version": "v1", "type": kind, "timestamp": rfc3339(at),
        "company_id": format!("biz_{slug}"),
        "data": { "id": format!("pay_{msg}"), "status": if paid { "paid" } else { "open" },
            "membership": { "id": format!("mem_{user}") }, "user": { "id": format!("user_{user}") },
            "currency": "usd", "total": 19.99, "metadata": { "tollgate_user": user } } });
    let body = serde_json::to_vec(&event).unwrap();
    let ts = tollgate::store::now_ms() / 1000;
    let sig = tollgate::billing::whop::sign(WHOP_SECRET, msg, ts, &body).unwrap();
    let r = app
        .client
        .post(app.url(&format!("/webhooks/{slug}/whop")))
        .header("webhook-id", msg)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The user's one case and the credits its incentive granted.
async fn case_and_incentive_credits(
    app: &TestApp,
    slug: &str,
    user: &str,
) -> (recovery::CaseRow, i64) {
    let t = app.user_target(slug, user).await;
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
    let entries = ledger::entries(&app.db, t, None, 100).await.unwrap();
    let incentive: i64 = entries
        .iter()
        .filter(|e| e.source.as_deref() == Some("incentive"))
        .map(|e| e.amount)
        .sum();
    (cases[0].clone(), incentive)
}

#[tokio::test]
async fn a_recovered_case_gets_its_companys_incentive_once_and_a_company_without_one_gets_none() {
    let (app, fake) = companies().await;
    fake.add_membership("mem_ann");
    fake.add_membership("mem_bob");
    let t0 = tollgate::store::now_ms() / 1000 - 86_400;
    payment(&app, "company_a", "msg_a_fail", "ann", false, t0).await;
    payment(&app, "company_b", "msg_b_fail", "bob", false, t0).await;
    settled(&app).await;
    payment(&app, "company_a", "msg_a_paid", "ann", true, t0 + 3600).await;
    payment(&app, "company_b", "msg_b_paid", "bob", true, t0 + 3600).await;
    let rows = settled(&app).await;
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");

    // Company A: 3 free days at Whop and 5 credits, recorded on the case.
    let a = app.user_target("company_a", "ann").await.app_id;
    let given = |case: i64| {
        let db = app.db.clone();
        async move { recovery::incentive(&db, a, case).await.unwrap() }
    };
    let (ann, _) = case_and_incentive_credits(&app, "company_a", "ann").await;
    assert_eq!(ann.state, "recovered");
    // Whop's `total` (19.99, major units) is the case's amount, exactly, in cents.
    assert_eq!(
        (ann.amount_minor, ann.currency.as_deref()),
        (Some(1999), Some("usd"))
    );
    assert_eq!(ann.recovered_amount_minor, Some(1999));
    wait_until(Duration::from_secs(10), || async {
        given(ann.id).await.is_some()
    })
    .await;
    let recorded = given(ann.id).await.unwrap();
    assert_eq!((recorded.days, recorded.credits_micros), (3, 5_000_000));
    let calls = fake.requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "mem_ann");
    assert_eq!(calls[0].1, json!({ "free_days": 3 }));
    assert_eq!(
        calls[0].2.as_deref(),
        Some(format!("tollgate-incentive-{}", ann.id).as_str())
    );
    assert_eq!(
        case_and_incentive_credits(&app, "company_a", "ann").await.1,
        5_000_000
    );

    // Company B gives nothing: no call, no credits, nothing recorded.
    let (bob, credits) = case_and_incentive_credits(&app, "company_b", "bob").await;
    assert_eq!(bob.state, "recovered");
    assert_eq!(credits, 0);
    let b = app.user_target("company_b", "bob").await.app_id;
    assert!(
        recovery::incentive(&app.db, b, bob.id)
            .await
            .unwrap()
            .is_none()
    );

    // The success redelivered (same id: a duplicate; a new id: Whop's retry of the same
    // payment) and the incentive job run again: nothing is given twice.
    payment(&app, "company_a", "msg_a_paid", "ann", true, t0 + 3600).await;
    payment(
        &app,
        "company_a",
        "msg_a_paid_again",
        "ann",
        true,
        t0 + 3601,
    )
    .await;
    settled(&app).await;
    let client = tollgate::jobs::Client::new(app.db.clone(), Default::default());
    let job = tollgate::jobs::kinds::recovery::ApplyIncentive {
        app: a,
        case: ann.id,
    };
    client.enqueue(&job, Default::default()).await.unwrap();
    // Both incentive jobs (the recovery's and this one) run to completion.
    wait_until(Duration::from_secs(10), || async {
        let filter = tollgate::store::jobs::admin::Filter {
            kind: Some(tollgate::store::recovery::INCENTIVE_KIND.into()),
            state: Some("completed".into()),
            limit: 10,
            ..Default::default()
        };
        let done = tollgate::store::jobs::admin::list(&app.db, &filter)
            .await
            .unwrap();
        done.len() >= 2
    })
    .await;
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.days_added("mem_ann"), 3);
    assert_eq!(
        case_and_incentive_credits(&app, "company_a", "ann").await.1,
        5_000_000
    );
    assert_eq!(given(ann.id).await.unwrap(), recorded);

    // The case's timeline says what was given.
    let detail = app
        .send_as(
            reqwest::Method::GET,
            &format!("/admin/v1/apps/company_a/recovery/cases/{}", ann.id),
            &crate::credits::seed(&app, "company_a").await.owner,
            None,
        )
        .await;
    let detail: Value = detail.json().await.unwrap();
    let incentive = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "incentive")
        .cloned()
        .expect("an incentive entry");
    assert_eq!(
        incentive["details"],
        json!({ "days": 3, "credits_micros": 5_000_000 })
    );
}

/// Follows the link of the nudge "nudge now" sent for `user`'s case; where it redirects.
pub async fn nudge_link_target(app: &TestApp, slug: &str, user: &str) -> String {
    let seeded = crate::credits::seed(app, slug).await;
    let t = app.user_target(slug, user).await;
    let case = recovery::cases(
        &app.db,
        Target {
            app_id: t.app_id,
            user_id: t.user_id,
        },
    )
    .await
    .unwrap()[0]
        .id;
    let path = format!("/v1/recovery/cases/{case}/actions");
    let r = app
        .send_as(
            reqwest::Method::POST,
            &path,
            &seeded.app_key,
            Some(json!({ "action": "nudge_now" })),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let link = || async {
        tollgate::store::events::events(&app.db, t.app_id, None, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.kind == "recovery.nudge")
            .and_then(|e| e.payload["data"]["link"].as_str().map(str::to_string))
    };
    wait_until(Duration::from_secs(10), || async { link().await.is_some() }).await;
    let url = link().await.unwrap();
    let token = url.rsplit('/').next().unwrap();
    let r = app.get(&format!("/r/{token}")).await;
    assert_eq!(r.status(), 302);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_whop_nudge_link_leads_to_the_memberships_manage_url_and_without_a_key_to_the_apps_page()
{
    let (app, fake) = companies().await;
    fake.add_membership("mem_ann");
    let t0 = tollgate::store::now_ms() / 1000 - 3600;
    payment(&app, "company_a", "msg_a_fail", "ann", false, t0).await;
    payment(&app, "company_b", "msg_b_fail", "bob", false, t0).await;
    settled(&app).await;
    assert_eq!(
        nudge_link_target(&app, "company_a", "ann").await,
        "https://whop.com/billing/manage/mem_ann",
        "from Whop's API"
    );
    assert_eq!(
        nudge_link_target(&app, "company_b", "bob").await,
        "https://company-b.example/billing",
        "company B has no Whop API key: its own page"
    );
}

#[tokio::test]
async fn a_whop_case_cancels_its_membership_through_whops_api_and_not_without_a_key() {
    let (app, fake) = companies().await;
    fake.add_membership("mem_ann");
    let t0 = tollgate::store::now_ms() / 1000 - 3600;
    payment(&app, "company_a", "msg_a_fail", "ann", false, t0).await;
    payment(&app, "company_b", "msg_b_fail", "bob", false, t0).await;
    settled(&app).await;
    let act = |slug: &'static str, user: &'static str, action: &'static str| {
        let app = &app;
        async move {
            let key = crate::credits::seed(app, slug).await.app_key;
            let (case, _) = case_and_incentive_credits(app, slug, user).await;
            let path = format!("/v1/recovery/cases/{}/actions", case.id);
            app.send_as(
                reqwest::Method::POST,
                &path,
                &key,
                Some(json!({ "action": action })),
            )
            .await
        }
    };
    let r = act("company_a", "ann", "cancel_subscription_at_period_end").await;
    assert_eq!(r.status(), 200);
    let cancels = fake.cancels();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0].0, "mem_ann");
    assert_eq!(
        cancels[0].1,
        json!({ "cancellation_mode": "at_period_end" })
    );
    assert!(
        cancels[0]
            .2
            .as_deref()
            .is_some_and(|k| k.ends_with("-period-end"))
    );
    assert_eq!(
        case_and_incentive_credits(&app, "company_a", "ann")
            .await
            .0
            .state,
        "canceled"
    );

    let refused =
        crate::helpers::problem(act("company_b", "bob", "terminate_subscription").await, 409).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("[apps.whop] api_key"),
        "{refused}"
    );
    assert_eq!(fake.cancels().len(), 1);
    assert_eq!(
        case_and_incentive_credits(&app, "company_b", "bob")
            .await
            .0
            .state,
        "open"
    );
}

/// A Whop `membership.activated` naming `company`, posted to the shared endpoint.
async fn post_shared(app: &TestApp, msg: &str, company: &str, user: &str) -> reqwest::Response {
    let now = tollgate::store::now_ms() / 1000;
    let event = json!({ "id": msg, "api_version": "v1", "type": "membership.activated",
        "timestamp": rfc3339(now), "company_id": company,
        "data": { "id": format!("mem_{user}"), "status": "active", "cancel_at_period_end": false,
            "user": { "id": format!("user_{user}") }, "plan": { "id": "plan_pro" },
            "renewal_period_start": rfc3339(now - 60), "renewal_period_end": rfc3339(now + 86_400 * 30),
            "metadata": { "tollgate_user": user } } });
    let body = serde_json::to_vec(&event).unwrap();
    let sig = tollgate::billing::whop::sign(WHOP_SECRET, msg, now, &body).unwrap();
    app.client
        .post(app.url("/webhooks/whop"))
        .header("webhook-id", msg)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_whop_endpoint_serves_many_sellers_each_delivery_going_to_its_companys_app() {
    let company_app = |slug: &str, biz: &str| {
        company(
            slug,
            json!({ "webhook_secrets": [WHOP_SECRET], "company_id": biz }),
            json!({}),
        )
    };
    let app = spawn_app_with(|c| {
        c.apps = vec![
            company_app("company_a", "biz_a"),
            company_app("company_b", "biz_b"),
        ]
    })
    .await;
    assert_eq!(
        post_shared(&app, "msg_1", "biz_a", "ann").await.status(),
        200
    );
    assert_eq!(
        post_shared(&app, "msg_2", "biz_b", "bob").await.status(),
        200
    );
    let unknown = post_shared(&app, "msg_3", "biz_nobody", "cy").await;
    let p = crate::helpers::problem(unknown, 404).await;
    assert!(p["detail"].as_str().unwrap().contains("biz_nobody"), "{p}");
    let rows = settled(&app).await;
    assert_eq!(
        rows.len(),
        2,
        "the unknown company's delivery is not stored: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.status == "processed"), "{rows:?}");
    // Each delivery went to its company's app, and only there.
    let a = tollgate::store::identity::app_by_slug(&app.db, "company_a")
        .await
        .unwrap()
        .unwrap();
    let b = tollgate::store::identity::app_by_slug(&app.db, "company_b")
        .await
        .unwrap()
        .unwrap();
    let user = |app_id: i64, id: &'static str| {
        let db = app.db.clone();
        async move {
            tollgate::store::identity::user_by_external_id(&db, app_id, id)
                .await
                .unwrap()
        }
    };
    assert!(user(a.id, "ann").await.is_some() && user(a.id, "bob").await.is_none());
    assert!(user(b.id, "bob").await.is_some() && user(b.id, "ann").await.is_none());
    let plan = |slug: &'static str, who: &'static str| {
        let app = &app;
        async move {
            let key = app.user_key(slug, who).await;
            let me: Value = app
                .send_as(reqwest::Method::GET, "/v1/me", &key, None)
                .await
                .json()
                .await
                .unwrap();
            me["plan"]["id"].clone()
        }
    };
    assert_eq!(plan("company_a", "ann").await, "pro");
    assert_eq!(plan("company_b", "bob").await, "pro");
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"tollgate_billing_webhooks_rejected_total{provider="whop",reason="unknown_company"} 1"#),
        "{metrics}"
    );
}
