//! Recovery nudges through real Stripe deliveries: the cadence makes each case's due step once,
//! quiet hours in the app's time zone hold a nudge, a case recovered meanwhile sends nothing,
//! the `recovery.nudge` event carries the variant and a link that counts clicks and redirects
//! to a Stripe portal session (or the app's page), and the KPIs count sends, clicks and
//! recoveries per variant. Both databases.

use serde_json::{Value, json};
use tollgate::config::AppConfig;
use tollgate::config::recovery::{Cadence, RecoveryConfig};
use tollgate::store::events as events_store;
use tollgate::store::now_ms;
use tollgate::store::nudges::{self, Link, Sent};
use tollgate::store::recovery;

use crate::billing::{post_stripe, settled, store_config, stripe_event};
use crate::fake_stripe;
use crate::helpers::{TestApp, problem, spawn_app_with};

const HOUR: i64 = 3_600_000;

fn recovery_config(return_url: bool) -> RecoveryConfig {
    serde_json::from_value(json!({
        // UTC+9 all year: 13:00 UTC is 22:00 there, when its quiet hours begin.
        "time_zone": "Asia/Tokyo",
        "quiet_hours": [22, 8],
        "steps": [
            { "after_hours": 0, "variants": [
                { "name": "plain", "weight": 1, "message": "Your card was declined." },
                { "name": "urgent", "weight": 1, "message": "Fix your card to keep Pro." } ] },
            { "after_hours": 24 },
            { "after_hours": 72 }
        ],
        "manage_url": "https://shop.example/billing",
        "return_url": if return_url { json!("https://shop.example/account") } else { Value::Null },
    }))
    .unwrap()
}

async fn shop(return_url: bool) -> (TestApp, fake_stripe::FakeStripe, AppConfig) {
    let (fake, url) = fake_stripe::start(&["price_pro"]).await;
    let mut shop = store_config();
    shop.stripe.as_mut().unwrap().api_base = url;
    shop.recovery = Some(recovery_config(return_url));
    let config = shop.clone();
    let app = spawn_app_with(move |c| c.apps = vec![shop]).await;
    (app, fake, config)
}

/// A failed (or paid) Stripe invoice for `user` with the store time `at_ms`.
async fn deliver(app: &TestApp, event: &str, user: &str, paid: bool, at_ms: i64) {
    let (kind, amount) = if paid {
        ("invoice.paid", "amount_paid")
    } else {
        ("invoice.payment_failed", "amount_due")
    };
    let object = json!({ "id": format!("in_{event}"), "object": "invoice",
        "customer": format!("cus_{user}"), "billing_reason": "subscription_cycle",
        amount: 1999, "currency": "usd",
        "parent": { "subscription_details": { "subscription": format!("sub_{user}"),
            "metadata": { "tollgate_user": user } } },
        "lines": { "data": [{ "period": { "start": 1_600_000_000, "end": 1_600_086_400 },
            "pricing": { "price_details": { "price": "price_pro" } } }] } });
    let r = post_stripe(app, &stripe_event(event, kind, at_ms / 1000, object)).await;
    assert_eq!(r.status(), 200);
    assert!(settled(app).await.iter().all(|r| r.status == "processed"));
}

async fn nudge_events(app: &TestApp, app_id: i64) -> Vec<Value> {
    events_store::events(&app.db, app_id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "recovery.nudge")
        .map(|e| e.payload["data"].clone())
        .collect()
}

/// Noon UTC yesterday, to the second: 21:00 in Tokyo.
fn noon_yesterday() -> i64 {
    let day = 86_400_000;
    (now_ms() / day - 1) * day + 12 * HOUR
}

#[tokio::test]
async fn each_step_goes_once_outside_quiet_hours_and_never_after_the_case_recovered() {
    let (app, _stripe, config) = shop(true).await;
    let cadence = Cadence::of(config.recovery.as_ref());
    let link = Link {
        base: "https://tollgate.example",
    };
    let t0 = noon_yesterday();
    deliver(&app, "evt_fail_1", "ann", false, t0).await;
    let ann = app.user_target("shop", "ann").await;
    let case = recovery::cases(&app.db, ann).await.unwrap()[0].clone();

    // One hour later it is 22:00 in Tokyo: step 0 is made, held until 08:00 there (23:00 UTC).
    let plan = |now| {
        let (db, cfg) = (app.db.clone(), config.clone());
        async move {
            nudges::plan(&db, now, |_| Cadence::of(cfg.recovery.as_ref()), 100)
                .await
                .unwrap()
        }
    };
    assert_eq!(plan(t0 + HOUR).await, 1);
    assert_eq!(plan(t0 + HOUR).await, 0, "a step is made once");
    let rows = nudges::of_case(&app.db, ann.app_id, case.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].step, rows[0].state.as_str()), (0, "pending"));
    assert_eq!(rows[0].send_after, t0 + 11 * HOUR, "08:00 in Tokyo");
    assert!(
        nudges::ready(&app.db, t0 + 10 * HOUR, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let ready = nudges::ready(&app.db, t0 + 11 * HOUR, 100).await.unwrap();
    assert_eq!(ready, vec![(ann.app_id, rows[0].id)]);

    // Sent once, however often its job runs.
    let send = |id, now| {
        let (db, c) = (app.db.clone(), cadence.clone());
        let base = link.base.to_string();
        async move {
            nudges::send(&db, ann.app_id, id, now, &c, &Link { base: &base }, None)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        send(rows[0].id, t0 + 11 * HOUR).await,
        Sent::Sent { emailed: false }
    );
    assert_eq!(send(rows[0].id, t0 + 11 * HOUR).await, Sent::AlreadyDone);
    let events = nudge_events(&app, ann.app_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["user_id"], "ann");
    assert_eq!(e["case_id"], case.id);
    assert_eq!(e["step"], 0);
    let variant = e["variant"].as_str().unwrap().to_string();
    let message = match variant.as_str() {
        "plain" => "Your card was declined.",
        "urgent" => "Fix your card to keep Pro.",
        other => panic!("unknown variant {other}"),
    };
    assert_eq!(e["message"], message, "the variant's copy");
    assert_eq!(e["link_expires_at"], t0 + 14 * 24 * HOUR);
    let url = e["link"].as_str().unwrap();
    let token = url
        .strip_prefix("https://tollgate.example/r/")
        .expect("a link to tollgate's /r/");

    // Seen late (80 hours on), the case gets step 2 only; step 1 is skipped.
    assert_eq!(plan(t0 + 80 * HOUR).await, 2);
    let rows = nudges::of_case(&app.db, ann.app_id, case.id).await.unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["sent", "skipped", "pending"]);

    // The user pays (store time t0 + 30 h): the pending nudge sends nothing.
    deliver(&app, "evt_paid_1", "ann", true, t0 + 30 * HOUR).await;
    assert_eq!(send(rows[2].id, t0 + 81 * HOUR).await, Sent::Canceled);
    assert_eq!(nudge_events(&app, ann.app_id).await.len(), 1);
    assert_eq!(
        plan(t0 + 200 * HOUR).await,
        0,
        "a recovered case gets no new step"
    );

    // The link counts the click and leads to a Stripe portal session for the customer.
    let r = app.get(&format!("/r/{token}")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://billing.stripe.com/p/session/test_cus_ann"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(app.get(&format!("/r/{token}")).await.status(), 302);
    let rows = nudges::of_case(&app.db, ann.app_id, case.id).await.unwrap();
    assert_eq!(rows[0].clicks, 2);
    problem(app.get("/r/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, 404).await;
    problem(app.get("/r/short").await, 404).await;

    // The numbers per variant: one sent, clicked (twice, counted once), its case recovered.
    let owner = crate::credits::seed(&app, "shop").await.owner;
    let k: Value = app
        .send_as(
            reqwest::Method::GET,
            &format!("/admin/v1/apps/shop/recovery/kpis?from={t0}&to={}", t0 + 1),
            &owner,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        k["variants"],
        json!([{ "step": 0, "variant": variant, "sent": 1, "clicked": 1, "ctr_bps": 10000,
                 "recovered": 1 }]),
        "{k}"
    );
}

#[tokio::test]
async fn a_link_leads_to_the_apps_page_without_a_portal_and_stops_when_the_window_ends() {
    let (app, _stripe, config) = shop(false).await;
    let mut cadence = Cadence::of(config.recovery.as_ref());
    cadence.quiet = None; // this test runs at the wall clock's hour
    let base = "http://127.0.0.1:1";
    let link = Link { base };
    // A case whose window (14 days) ends three seconds from now, and a fresh one.
    let old = now_ms() - 14 * 24 * HOUR + 3_000;
    deliver(&app, "evt_old", "old", false, old).await;
    let fresh = noon_yesterday();
    deliver(&app, "evt_new", "new", false, fresh).await;
    let app_id = app.user_target("shop", "old").await.app_id;
    // And one whose window ended a day ago: the sweep's to lose, never nudged.
    deliver(&app, "evt_gone", "gone", false, now_ms() - 15 * 24 * HOUR).await;
    let gone = recovery::cases(&app.db, app.user_target("shop", "gone").await)
        .await
        .unwrap()[0]
        .id;
    // A case past its window gets no nudge: the sweep loses it instead.
    // Now both get their due step.
    let now = now_ms();
    nudges::plan(&app.db, now, |_| cadence.clone(), 100)
        .await
        .unwrap();
    for (a, id) in nudges::ready(&app.db, now, 100).await.unwrap() {
        assert_eq!(
            nudges::send(&app.db, a, id, now, &cadence, &link, None)
                .await
                .unwrap(),
            Sent::Sent { emailed: false }
        );
    }
    let events = nudge_events(&app, app_id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        nudges::of_case(&app.db, app_id, gone)
            .await
            .unwrap()
            .is_empty()
    );
    let token_of = |user: &str| {
        let e = events.iter().find(|e| e["user_id"] == user).unwrap();
        e["link"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    };
    let r = app.get(&format!("/r/{}", token_of("new"))).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://shop.example/billing");
    assert_eq!(
        app.get(&format!("/r/{}", token_of("old"))).await.status(),
        302
    );
    // The old case's window ends: its link with it.
    tokio::time::sleep(std::time::Duration::from_millis(
        (old + 14 * 24 * HOUR - now_ms()).max(0) as u64 + 100,
    ))
    .await;
    problem(app.get(&format!("/r/{}", token_of("old"))).await, 404).await;
}

/// The jobs end to end, by the worker's clock: the sweep makes the due step and enqueues its
/// job; the job publishes `recovery.nudge` once; a second sweep enqueues nothing more.
/// A shop whose user `jo` failed a payment an hour ago, swept by the recovery job into one
/// nudge job, which the worker sent: the path every recovery counter sits on.
pub struct NudgedShop {
    pub app: TestApp,
    pub rt: tollgate::jobs::Runtime,
    pub jo: tollgate::store::ledger::Target,
    _stripe: fake_stripe::FakeStripe,
}

impl NudgedShop {
    /// Enqueues a sweep and runs the maintenance queue; returns how many jobs ran.
    pub async fn sweep(&self) -> usize {
        self.rt
            .client
            .enqueue(
                &tollgate::jobs::kinds::recovery::Sweep {},
                Default::default(),
            )
            .await
            .unwrap();
        self.rt.worker().run_available("maintenance").await.unwrap()
    }
}

pub async fn a_shop_that_sent_a_nudge() -> NudgedShop {
    let (fake, url) = fake_stripe::start(&["price_pro"]).await;
    let mut shop = store_config();
    shop.stripe.as_mut().unwrap().api_base = url;
    let mut rc = recovery_config(true);
    rc.quiet_hours = None; // the worker's clock is the wall clock here
    shop.recovery = Some(rc);
    let (app, rt) =
        crate::helpers::spawn_api_with_runtime(move |c| c.apps = vec![shop.clone()]).await;
    let t0 = now_ms() - HOUR;
    let object = json!({ "id": "in_job", "object": "invoice", "customer": "cus_jo",
        "billing_reason": "subscription_cycle", "amount_due": 1999, "currency": "usd",
        "parent": { "subscription_details": { "subscription": "sub_jo",
            "metadata": { "tollgate_user": "jo" } } },
        "lines": { "data": [{ "period": { "start": 1_600_000_000, "end": 1_600_086_400 },
            "pricing": { "price_details": { "price": "price_pro" } } }] } });
    let event = stripe_event("evt_job", "invoice.payment_failed", t0 / 1000, object);
    assert_eq!(post_stripe(&app, &event).await.status(), 200);
    assert_eq!(
        rt.worker().run_available("default").await.unwrap(),
        1,
        "the webhook"
    );
    let jo = app.user_target("shop", "jo").await;
    assert_eq!(recovery::cases(&app.db, jo).await.unwrap().len(), 1);
    let fan_outs = rt.worker().run_available("events").await.unwrap();
    assert_eq!(fan_outs, 2, "payment.failed and recovery.case_opened");
    let shop = NudgedShop {
        app,
        rt,
        jo,
        _stripe: fake,
    };
    assert_eq!(shop.sweep().await, 1);
    assert_eq!(
        shop.sweep().await,
        1,
        "a second sweep finds the nudge queued already"
    );
    // The nudge job, then the event's fan-out (no endpoint: nothing to deliver).
    assert_eq!(shop.rt.worker().run_available("events").await.unwrap(), 2);
    shop
}

#[tokio::test]
async fn the_sweep_job_enqueues_a_nudge_job_that_sends_it_once() {
    let shop = a_shop_that_sent_a_nudge().await;
    let (app, jo) = (&shop.app, shop.jo);
    let events = nudge_events(app, jo.app_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], "jo");
    assert_eq!(events[0]["step"], 0);
    assert_eq!(shop.sweep().await, 1);
    assert_eq!(
        shop.rt.worker().run_available("events").await.unwrap(),
        0,
        "sent once"
    );
}
