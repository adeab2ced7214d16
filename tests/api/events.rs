//! Outbound events: endpoints registered through the admin API, events published in the
//! transaction of their change, deliveries signed per Standard Webhooks, retried on Svix's
//! schedule (a worker clock, no sleeps), disabled on 410 or after failing too long, replayed,
//! signed by both secrets during a rotation, refused on private targets in production.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::config::Config;
use tollgate::domain::events::EventType;
use tollgate::jobs::Runtime;
use tollgate::store::events::{self as store, Outgoing};
use tollgate::store::ledger::{self, Credit, EntryKind, Note};
use tollgate::store::{Db, now_ms, scope};

use crate::credits::{Shop, seed, shop_config};
use crate::fake_receiver::{Received, Receiver};
use crate::helpers::{TestApp, problem, spawn_api_with_runtime};
use crate::python::python_with;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// An API-only app (no background worker) and a worker the test runs itself, at the times it
/// chooses, over the same database and config.
struct Events {
    app: TestApp,
    rt: Runtime,
    shop: Shop,
}

async fn events_app(configure: impl Fn(&mut Config) + Clone + Send + 'static) -> Events {
    let (app, rt) = spawn_api_with_runtime(move |c: &mut Config| {
        c.apps.push(shop_config());
        configure(c);
    })
    .await;
    let shop = seed(&app, "shop").await;
    Events { app, rt, shop }
}

impl Events {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let path = format!("/admin/v1/apps/shop{path}");
        self.app
            .send_as(method, &path, &self.shop.owner, body)
            .await
    }

    /// Registers `url`; returns (endpoint id, secret).
    async fn add_endpoint(&self, url: &str, types: Option<&[&str]>) -> (i64, String) {
        let r = self
            .admin(
                Method::POST,
                "/endpoints",
                Some(json!({ "url": url, "event_types": types })),
            )
            .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_i64().unwrap(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Runs every events job due at `at` (ms since the epoch); returns how many ran.
    async fn work_at(&self, at: i64) -> usize {
        self.rt
            .worker()
            .at(at)
            .run_available("events")
            .await
            .unwrap()
    }

    async fn grant(&self, amount: i64, key: &str) {
        let t = ledger::Target {
            app_id: self.shop.app_id,
            user_id: self.shop.user_id,
        };
        let credit = Credit {
            kind: EntryKind::Grant,
            amount,
            source: "promo",
            expires_at: None,
            note: Note {
                reason: Some("welcome"),
                reference: None,
                key: Some(key),
            },
        };
        ledger::credit(&self.app.db, t, &credit, None)
            .await
            .unwrap();
    }

    async fn deliveries(&self, endpoint: i64) -> Vec<Value> {
        let r = self
            .admin(
                Method::GET,
                &format!("/endpoints/{endpoint}/deliveries"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn attempts(&self, delivery: i64) -> Vec<Value> {
        let r = self
            .admin(
                Method::GET,
                &format!("/deliveries/{delivery}/attempts"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn endpoint(&self, id: i64) -> Value {
        let r = self
            .admin(Method::GET, &format!("/endpoints/{id}"), None)
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

async fn count(db: &Db, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let count = async {
        let n: i64 = tollgate::scoped_run!(db, scope::Scope::AllApps, c =>
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(c).await)?;
        Ok::<i64, sqlx::Error>(n)
    };
    count.await.unwrap()
}

/// Verifies a received delivery with the official `standardwebhooks` package; returns its
/// parsed payload (the script fails on a bad signature).
async fn verify_with_python(secret: &str, r: &Received) -> Value {
    const SCRIPT: &str = "import json, sys\n\
from standardwebhooks.webhooks import Webhook\n\
d = json.load(sys.stdin)\n\
headers = {'webhook-id': d['id'], 'webhook-timestamp': d['ts'], 'webhook-signature': d['sig']}\n\
print(json.dumps(Webhook(d['secret']).verify(d['body'], headers)))\n";
    let input = json!({ "secret": secret, "id": r.id, "ts": r.timestamp, "sig": r.signature,
        "body": r.body });
    let mut child = python_with("standardwebhooks")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused the delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_grant_is_delivered_once_and_verifies_with_the_official_standardwebhooks_package() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, secret) = h.add_endpoint(&url, None).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    h.grant(5_000_000, "welcome:alice").await;
    // The same grant applied again (a retried job) is one entry and publishes nothing more.
    h.grant(5_000_000, "welcome:alice").await;
    assert_eq!(count(&h.app.db, "events").await, 1);
    let now = now_ms();
    assert_eq!(h.work_at(now).await, 2, "the fan-out, then the delivery");
    assert_eq!(h.work_at(now).await, 0, "nothing left");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let payload = verify_with_python(&secret, &got[0]).await;
    assert_eq!(payload["type"], "credits.granted");
    assert_eq!(payload["data"]["user_id"], "alice");
    assert_eq!(payload["data"]["amount_micros"], 5_000_000);
    assert_eq!(payload["data"]["source"], "promo");
    assert!(got[0].id.starts_with("msg_"), "{}", got[0].id);
    // A forged body fails the same verification.
    let forged = Received {
        body: got[0].body.replace("5000000", "9000000"),
        ..got[0].clone()
    };
    let script_fails = std::panic::AssertUnwindSafe(verify_with_python(&secret, &forged));
    assert!(
        futures_util::FutureExt::catch_unwind(script_fails)
            .await
            .is_err(),
        "a forged body must not verify"
    );
    let d = h.deliveries(endpoint).await;
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0]["state"].clone(), d[0]["attempts"].clone()),
        (json!("succeeded"), json!(1))
    );
    let a = h.attempts(d[0]["id"].as_i64().unwrap()).await;
    assert_eq!(a[0]["status"], 200);
    assert_eq!(a[0]["response"], "answered 200");
}

#[tokio::test]
async fn a_rolled_back_change_publishes_nothing() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    h.add_endpoint(&url, None).await;
    let mut tx = h.app.db.begin().await.unwrap();
    let e = Outgoing::about(
        EventType::CreditsGranted,
        h.shop.user_id,
        "rolled-back".into(),
        json!({ "amount_micros": 1 }),
    );
    assert!(
        store::publish(&mut tx, h.shop.app_id, &e)
            .await
            .unwrap()
            .is_some()
    );
    tx.rollback().await.unwrap();
    assert_eq!(count(&h.app.db, "events").await, 0);
    assert_eq!(count(&h.app.db, "jobs").await, 0);
    assert_eq!(h.work_at(now_ms()).await, 0);
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_on_svixs_schedule_then_given_up() {
    let h = events_app(|c| c.events.disable_after_hours = 0).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, _) = h.add_endpoint(&url, Some(&["credits.granted"])).await;
    rx.answer(&[500; 8]);
    h.grant(1_000_000, "g1").await;
    let mut at = now_ms();
    assert_eq!(h.work_at(at).await, 2, "fan-out and the first attempt");
    // Each wait of the schedule: nothing runs a second early, the retry runs on time.
    let waits = [
        5_000,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        5 * HOUR,
        10 * HOUR,
        10 * HOUR,
    ];
    for (i, wait) in waits.iter().enumerate() {
        assert_eq!(
            h.work_at(at + wait - 1_500).await,
            0,
            "retry {} ran early",
            i + 1
        );
        at += wait + 1_000;
        assert_eq!(h.work_at(at).await, 1, "retry {} did not run", i + 1);
    }
    assert_eq!(
        h.work_at(at + 100 * HOUR).await,
        0,
        "eight attempts, then no more"
    );
    assert_eq!(rx.received().len(), 8);
    let ids: std::collections::HashSet<String> = rx.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same webhook-id");
    let d = &h.deliveries(endpoint).await[0];
    assert_eq!(
        (d["state"].clone(), d["attempts"].clone()),
        (json!("failed"), json!(8))
    );
    let attempts = h.attempts(d["id"].as_i64().unwrap()).await;
    assert_eq!(attempts.len(), 8);
    assert!(
        attempts
            .iter()
            .all(|a| a["status"] == 500 && a["response"] == "answered 500")
    );
    // The endpoint is still enabled (disabling after days is off here) and now failing.
    let e = h.endpoint(endpoint).await;
    assert_eq!(e["enabled"], true);
    assert!(e["failing_since"].is_i64());
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_later_events_are_not_sent_to_it() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, _) = h.add_endpoint(&url, None).await;
    rx.answer(&[410]);
    h.grant(1_000_000, "g1").await;
    let at = now_ms();
    assert_eq!(h.work_at(at).await, 2);
    let e = h.endpoint(endpoint).await;
    assert_eq!(
        (e["enabled"].clone(), e["disabled_reason"].clone()),
        (json!(false), json!("gone"))
    );
    assert_eq!(h.work_at(at + 10 * HOUR).await, 0, "a 410 is not retried");
    h.grant(1_000_000, "g2").await;
    assert_eq!(
        h.work_at(at + 11 * HOUR).await,
        1,
        "the fan-out finds no enabled endpoint"
    );
    assert_eq!(rx.received().len(), 1);
    // Enabling it again delivers new events.
    let r = h
        .admin(
            Method::PATCH,
            &format!("/endpoints/{endpoint}"),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(r.status(), 200);
    h.grant(1_000_000, "g3").await;
    assert_eq!(h.work_at(now_ms()).await, 2);
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn an_endpoint_failing_for_longer_than_the_limit_is_disabled_and_counted() {
    let h = events_app(|c| c.events.disable_after_hours = 4).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, _) = h.add_endpoint(&url, None).await;
    rx.answer(&[503; 8]);
    h.grant(1_000_000, "g1").await;
    let t0 = now_ms();
    h.work_at(t0).await;
    // Attempts at +5 s, +5 min, +35 min: still under four hours of failing.
    let mut at = t0;
    for wait in [5_000, 5 * MINUTE, 30 * MINUTE] {
        at += wait + 1_000;
        assert_eq!(h.work_at(at).await, 1);
    }
    assert_eq!(h.endpoint(endpoint).await["enabled"], true);
    // The next attempt is 2 h later, 2 h 40 min after the first failure; the one after, 5 h
    // later: past the limit, so it disables the endpoint.
    at += 2 * HOUR + 1_000;
    assert_eq!(h.work_at(at).await, 1);
    assert_eq!(h.endpoint(endpoint).await["enabled"], true);
    at += 5 * HOUR + 1_000;
    assert_eq!(h.work_at(at).await, 1);
    let e = h.endpoint(endpoint).await;
    assert_eq!(
        (e["enabled"].clone(), e["disabled_reason"].clone()),
        (json!(false), json!("failing"))
    );
    // Its remaining retry is skipped, not sent.
    at += 10 * HOUR + 1_000;
    assert_eq!(h.work_at(at).await, 1);
    assert_eq!(
        rx.received().len(),
        6,
        "the attempt past the limit is sent, then no more"
    );
    assert_eq!(h.deliveries(endpoint).await[0]["state"], "skipped");
    let m = h.app.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("tollgate_events_endpoints_disabled_total"),
        "{m}"
    );
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_either_verifies() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, old) = h.add_endpoint(&url, None).await;
    let r = h
        .admin(
            Method::POST,
            &format!("/endpoints/{endpoint}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let new = v["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert!(v["previous_secret_until"].as_i64().unwrap() > now_ms() + 23 * HOUR);
    h.grant(1_000_000, "g1").await;
    h.work_at(now_ms()).await;
    let got = &rx.received()[0];
    assert_eq!(got.signature.split(' ').count(), 2, "{}", got.signature);
    verify_with_python(&old, got).await;
    verify_with_python(&new, got).await;
    // After the overlap only the new secret signs (checked here by signing again: the
    // worker's clock is a day ahead, and the package rightly refuses a timestamp that far off).
    h.grant(1_000_000, "g2").await;
    h.work_at(now_ms() + 25 * HOUR).await;
    let got = &rx.received()[1];
    let ts: i64 = got.timestamp.parse().unwrap();
    let expected = tollgate::events::signing::sign(&new, &got.id, ts, got.body.as_bytes());
    assert_eq!(Some(got.signature.clone()), expected);
}

#[tokio::test]
async fn one_message_and_a_time_range_are_replayed_with_their_ids_and_the_attempts_listed() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    let (endpoint, _) = h.add_endpoint(&url, None).await;
    let t0 = now_ms();
    h.grant(1_000_000, "g1").await;
    h.grant(2_000_000, "g2").await;
    h.work_at(now_ms()).await;
    assert_eq!(rx.received().len(), 2);
    let events: Vec<Value> = h
        .admin(Method::GET, "/events", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let first = events[1]["msg_id"].as_str().unwrap().to_string();
    let r = h
        .admin(
            Method::POST,
            "/events/replay",
            Some(json!({ "msg_id": first })),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "events": 1, "deliveries": 1 })
    );
    h.work_at(now_ms()).await;
    let got = rx.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].id, first, "a replay keeps the message id");
    let r = h
        .admin(
            Method::POST,
            "/events/replay",
            Some(json!({ "from": t0, "to": now_ms() + 1, "endpoint_id": endpoint })),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "events": 2, "deliveries": 2 })
    );
    h.work_at(now_ms()).await;
    assert_eq!(rx.received().len(), 5);
    assert_eq!(h.deliveries(endpoint).await.len(), 5);
    let bad = h
        .admin(Method::POST, "/events/replay", Some(json!({ "from": 5 })))
        .await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "msg_id");
    let missing = h
        .admin(
            Method::POST,
            "/events/replay",
            Some(json!({ "msg_id": "msg_nope" })),
        )
        .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn registering_refuses_unknown_types_and_bad_urls_field_by_field() {
    let h = events_app(|_| {}).await;
    let r = h
        .admin(Method::POST, "/endpoints",
            Some(json!({ "url": "ftp://example.com/x", "event_types": ["credits.low", "credits.gone"] })))
        .await;
    let p = problem(r, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["url", "event_types.1"]);
    assert_eq!(count(&h.app.db, "event_endpoints").await, 0);
    // A viewer may list but not register.
    let viewer = crate::helpers::new_key(
        &h.app.db,
        tollgate::domain::identity::KeyKind::Operator,
        tollgate::store::identity::KeySpec {
            role: Some(tollgate::domain::identity::Role::Viewer),
            ..Default::default()
        },
    )
    .await;
    let r = h
        .app
        .send_as(
            Method::POST,
            "/admin/v1/apps/shop/endpoints",
            &viewer,
            Some(json!({ "url": "https://example.com/hook" })),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = h
        .app
        .send_as(Method::GET, "/admin/v1/apps/shop/endpoints", &viewer, None)
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn in_production_private_and_loopback_targets_are_refused_at_registration_and_delivery() {
    let h = events_app(|c| c.events.block_private_targets = Some(true)).await;
    let (rx, url) = Receiver::start().await;
    for target in [
        url.as_str(),
        "http://localhost:9/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/",
        "http://10.0.0.8/hook",
    ] {
        let r = h
            .admin(Method::POST, "/endpoints", Some(json!({ "url": target })))
            .await;
        let p = problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "url", "{target}");
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{p}"
        );
    }
    // One stored before the guard was on is refused when delivered, and nothing is sent.
    let sealed =
        tollgate::events::secrets::seal(&h.rt.config, "whsec_c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
    store::create_endpoint(
        &h.app.db,
        h.shop.app_id,
        &store::NewEndpoint {
            url: &url,
            purpose: "events",
            description: "",
            event_types: None,
            sealed_secret: &sealed,
        },
    )
    .await
    .unwrap();
    h.grant(1_000_000, "g1").await;
    h.work_at(now_ms()).await;
    assert!(rx.received().is_empty());
    let endpoint = store::endpoints(&h.app.db, h.shop.app_id).await.unwrap()[0].id;
    let d = &h.deliveries(endpoint).await[0];
    let a = h.attempts(d["id"].as_i64().unwrap()).await;
    assert!(a[0]["status"].is_null());
    assert!(
        a[0]["error"].as_str().unwrap().contains("loopback"),
        "{}",
        a[0]
    );
}

#[tokio::test]
async fn an_allowed_network_is_reachable_even_with_the_guard_on() {
    let h = events_app(|c| {
        c.events.block_private_targets = Some(true);
        c.events.allowed_targets = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (rx, url) = Receiver::start().await;
    h.add_endpoint(&url, None).await;
    h.grant(1_000_000, "g1").await;
    h.work_at(now_ms()).await;
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn plan_changes_deletions_and_an_exhausted_balance_publish_their_events() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    h.add_endpoint(
        &url,
        Some(&["entitlements.updated", "user.deleted", "credits.exhausted"]),
    )
    .await;
    let t = ledger::Target {
        app_id: h.shop.app_id,
        user_id: h.shop.user_id,
    };
    h.grant(2_000_000, "g1").await;
    let note = Note {
        reason: Some("used"),
        reference: None,
        key: Some("d1"),
    };
    ledger::charge(&h.app.db, t, EntryKind::Debit, 2_000_000, 0, note, None)
        .await
        .unwrap();
    let pro = ledger::UserPlan {
        plan_id: Some("pro".into()),
        ..Default::default()
    };
    assert!(ledger::set_plan(&h.app.db, t, &pro, None).await.unwrap());
    // Setting the same plan again is no change.
    assert!(ledger::set_plan(&h.app.db, t, &pro, None).await.unwrap());
    let r = h.admin(Method::DELETE, "/users/alice", None).await;
    assert!(r.status().is_success(), "{}", r.status());
    h.work_at(now_ms()).await;
    let types: Vec<String> = rx
        .received()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.len(), 3, "{types:?}");
    for t in ["credits.exhausted", "entitlements.updated", "user.deleted"] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
    let deleted = rx
        .received()
        .into_iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .find(|v| v["type"] == "user.deleted")
        .unwrap();
    assert_eq!(deleted["data"]["user_id"], "alice");
    // After the erasure no stored event but the deletion itself names alice.
    let payloads = async {
        let p: Vec<String> = tollgate::scoped_run!(&h.app.db, scope::Scope::App(h.shop.app_id),
            c => sqlx::query_scalar("SELECT payload FROM events WHERE type <> 'user.deleted'")
                .fetch_all(c).await)?;
        Ok::<Vec<String>, sqlx::Error>(p)
    };
    let payloads = payloads.await.unwrap();
    assert!(
        payloads.iter().all(|p| !p.contains("\"alice\"")),
        "{payloads:?}"
    );
}

/// Reserves `hold` and settles it at `charged` through the group-committed writer (the AI
/// call's path), announcing the app's threshold `low`.
async fn metered_call(h: &Events, batcher: &ledger::Batcher, hold: i64, charged: i64, low: i64) {
    let t = ledger::Target {
        app_id: h.shop.app_id,
        user_id: h.shop.user_id,
    };
    let id = batcher
        .reserve_call(ledger::CallHold {
            t,
            amount: hold,
            overdraft: 0,
            expires_at: now_ms() + 600_000,
            reason: Some("ai call"),
            reference: None,
            key: None,
            plan: None,
            call: None,
        })
        .await
        .unwrap();
    let close =
        ledger::CallClose::of_call(t, id, charged, "ai call", None).announcing_below(Some(low));
    batcher.close(close).await.unwrap();
}

#[tokio::test]
async fn metered_calls_announce_the_low_threshold_then_exhaustion_once_each_on_the_way_down() {
    let h = events_app(|_| {}).await;
    let (rx, url) = Receiver::start().await;
    h.add_endpoint(&url, Some(&["credits.low", "credits.exhausted"]))
        .await;
    h.grant(2_000_000, "g1").await;
    let batcher = ledger::Batcher::start(h.app.db.clone());
    let low = 1_500_000;
    // 2 → 1.4 credits: crosses 1.5 once; 1.4 → 1.0 stays under it: nothing more.
    metered_call(&h, &batcher, 1_000_000, 600_000, low).await;
    metered_call(&h, &batcher, 1_000_000, 400_000, low).await;
    // 1.0 → 0: exhausted.
    metered_call(&h, &batcher, 1_000_000, 1_000_000, low).await;
    h.work_at(now_ms()).await;
    let got: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let types: Vec<&str> = got.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(
        types.contains(&"credits.low") && types.contains(&"credits.exhausted"),
        "{types:?}"
    );
    let low_event = got.iter().find(|v| v["type"] == "credits.low").unwrap();
    assert_eq!(
        (
            low_event["data"]["balance_micros"].clone(),
            low_event["data"]["threshold_micros"].clone()
        ),
        (json!(1_400_000), json!(low))
    );
}
