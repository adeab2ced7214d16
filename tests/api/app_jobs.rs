//! The app's own jobs over HTTP: `POST /v1/jobs` with the app's secret key, each run a signed
//! POST to its jobs endpoint, retried with the queue's backoff (a worker clock, no sleeps), once
//! per unique key and Idempotency-Key, on a schedule, and once across two worker processes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::jobs::Runtime;
use tollgate::store::{migrate, now_ms};

use crate::credits::{Shop, seed};
use crate::fake_receiver::Receiver;
use crate::helpers::{TestApp, TestDb, problem, spawn_api_with_runtime};
use crate::jobs::wait_until;
use crate::jobs_processes::spawn_worker;

struct Jobs {
    app: TestApp,
    rt: Runtime,
    shop: Shop,
    rx: Receiver,
    secret: String,
}

const HOUR: i64 = 3_600_000;

async fn jobs_app(schedules: Value) -> Jobs {
    let (app, rt) = spawn_api_with_runtime(move |c: &mut tollgate::config::Config| {
        let mut shop = crate::credits::shop_config();
        shop.schedules = serde_json::from_value(schedules.clone()).unwrap();
        c.apps.push(shop);
    })
    .await;
    let shop = seed(&app, "shop").await;
    let (rx, url) = Receiver::start().await;
    let r = app
        .send_as(
            Method::POST,
            "/admin/v1/apps/shop/endpoints",
            &shop.owner,
            Some(json!({ "url": url, "purpose": "jobs" })),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["purpose"], "jobs");
    let secret = v["secret"].as_str().unwrap().to_string();
    Jobs {
        app,
        rt,
        shop,
        rx,
        secret,
    }
}

impl Jobs {
    async fn post_job(&self, body: Value) -> reqwest::Response {
        self.app
            .send_as(Method::POST, "/v1/jobs", &self.shop.app_key, Some(body))
            .await
    }

    async fn job(&self, id: i64) -> Value {
        let r = self
            .app
            .get_as(&format!("/v1/jobs/{id}"), &self.shop.app_key)
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn work_at(&self, at: i64) -> usize {
        self.rt.worker().at(at).run_available("app").await.unwrap()
    }
}

#[tokio::test]
async fn an_app_job_is_posted_signed_to_its_jobs_endpoint_and_completes_on_a_2xx() {
    let h = jobs_app(json!([])).await;
    let r = h
        .post_job(json!({ "kind": "feeds.poll", "args": { "feed": 7 } }))
        .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    assert_eq!(
        (made["inserted"].clone(), made["queue"].clone()),
        (json!(true), json!("app"))
    );
    let id = made["id"].as_i64().unwrap();
    assert_eq!(h.job(id).await["state"], "available");
    assert_eq!(h.work_at(now_ms()).await, 1);
    let got = h.rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, format!("job_{id}"));
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "job.run");
    assert_eq!(body["data"]["kind"], "feeds.poll");
    assert_eq!(body["data"]["args"], json!({ "feed": 7 }));
    assert_eq!(body["data"]["attempt"], 1);
    let ts: i64 = got[0].timestamp.parse().unwrap();
    let expected =
        tollgate::events::signing::sign(&h.secret, &got[0].id, ts, got[0].body.as_bytes());
    assert_eq!(Some(got[0].signature.clone()), expected);
    let job = h.job(id).await;
    assert_eq!(
        (job["state"].clone(), job["kind"].clone()),
        (json!("completed"), json!("feeds.poll"))
    );
    // The operators' view names it by app and kind, so stats tell the app's kinds apart.
    let stored = tollgate::store::jobs::admin::get(&h.app.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.kind, "app.shop.feeds.poll");
}

#[tokio::test]
async fn a_failing_app_job_is_retried_with_the_queues_backoff_then_discarded() {
    let h = jobs_app(json!([])).await;
    h.rx.answer(&[500, 503, 500]);
    let r = h
        .post_job(json!({ "kind": "sync", "max_attempts": 3 }))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let mut at = now_ms();
    assert_eq!(h.work_at(at).await, 1);
    let job = h.job(id).await;
    assert_eq!(job["state"], "retryable");
    assert!(
        job["last_error"].as_str().unwrap().contains("answered 500"),
        "{job}"
    );
    // 1 s then 2 s (±25 %): not yet at +0.5 s, certainly by +2 s, then by +3 s more.
    assert_eq!(h.work_at(at + 500).await, 0, "retried too early");
    at += 2_000;
    assert_eq!(h.work_at(at).await, 1);
    at += 3_000;
    assert_eq!(h.work_at(at).await, 1);
    assert_eq!(
        h.work_at(at + HOUR).await,
        0,
        "three attempts, then no more"
    );
    let job = h.job(id).await;
    assert_eq!(
        (job["state"].clone(), job["attempt"].clone()),
        (json!("discarded"), json!(3))
    );
    let ids: Vec<String> = h.rx.received().into_iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        vec![format!("job_{id}"); 3],
        "one webhook-id for every attempt"
    );
}

#[tokio::test]
async fn a_unique_key_and_an_idempotency_key_each_give_back_the_first_job() {
    let h = jobs_app(json!([])).await;
    let first = h
        .post_job(json!({ "kind": "digest", "unique_key": "user-9" }))
        .await;
    assert_eq!(first.status(), 201);
    let again = h
        .post_job(json!({ "kind": "digest", "unique_key": "user-9" }))
        .await;
    assert_eq!(again.status(), 200);
    let (a, b): (Value, Value) = (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["inserted"], false);
    let send = |key: &'static str| {
        h.app
            .client
            .post(h.app.url("/v1/jobs"))
            .bearer_auth(&h.shop.app_key)
            .header("Idempotency-Key", key)
            .json(&json!({ "kind": "export" }))
            .send()
    };
    let one: Value = send("export-1").await.unwrap().json().await.unwrap();
    let two: Value = send("export-1").await.unwrap().json().await.unwrap();
    assert_eq!(one["id"], two["id"]);
    assert_eq!(h.work_at(now_ms()).await, 2, "two jobs in all");
}

#[tokio::test]
async fn bad_job_requests_are_refused_field_by_field_and_other_apps_cannot_see_a_job() {
    let h = jobs_app(json!([])).await;
    let r = h
        .post_job(
            json!({ "kind": "Bad Kind!", "args": [1], "queue": "maintenance",
            "priority": 99, "max_attempts": 0 }),
        )
        .await;
    let p = problem(r, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["kind", "args", "queue", "priority", "max_attempts"]
    );
    let r = h.post_job(json!({ "kind": "x", "queue": "nowhere" })).await;
    assert_eq!(problem(r, 422).await["errors"][0]["field"], "queue");
    let r = h.post_job(json!({ "kind": "x" })).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let other = seed(&h.app, "other").await;
    let r = h
        .app
        .get_as(&format!("/v1/jobs/{id}"), &other.app_key)
        .await;
    assert_eq!(r.status(), 404);
    // A user's key is not the app's server.
    let r = h
        .app
        .send_as(
            Method::POST,
            "/v1/jobs",
            &h.shop.user_key,
            Some(json!({ "kind": "x" })),
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn an_apps_schedule_runs_its_kind_once_per_slot() {
    let h = jobs_app(
        json!([{ "name": "nightly", "cron": "0 3 * * *", "kind": "report.nightly",
        "args": { "format": "pdf" } }]),
    )
    .await;
    let mut scheduler = h.rt.scheduler();
    let slot = {
        let day = now_ms() - now_ms() % (24 * HOUR);
        day + 3 * HOUR + 24 * HOUR
    };
    // The built-in schedules are due too; the app's is one job of its own kind.
    assert!(scheduler.run_due(slot + 1_000).await >= 1);
    assert_eq!(
        h.rt.scheduler().run_due(slot + 2_000).await,
        0,
        "a second scheduler finds the slots taken"
    );
    let filter = tollgate::store::jobs::admin::Filter {
        kind: Some("app.shop.report.nightly".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        tollgate::store::jobs::admin::list(&h.app.db, &filter)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.work_at(slot + 3_000).await, 1);
    let body: Value = serde_json::from_str(&h.rx.received()[0].body).unwrap();
    assert_eq!(body["data"]["kind"], "report.nightly");
    assert_eq!(body["data"]["args"], json!({ "format": "pdf" }));
}

#[tokio::test]
async fn app_jobs_run_once_each_across_two_worker_processes() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let config = Arc::new(test_db.config());
    let app = tollgate::store::identity::create_app(&db, "shop", "shop")
        .await
        .unwrap()
        .unwrap();
    let (rx, url) = Receiver::start().await;
    rx.hold(Duration::from_millis(20));
    tollgate::events::endpoints::create(
        &config,
        &db,
        app.id,
        tollgate::events::endpoints::EndpointInput {
            url,
            for_jobs: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let jobs = tollgate::jobs::Client::new(db.clone(), Default::default());
    const N: usize = 40;
    let mut ids = Vec::new();
    for i in 0..N {
        let job = tollgate::events::app_jobs::NewAppJob {
            kind: "poll".into(),
            args: Some(json!({ "n": i })),
            ..Default::default()
        };
        ids.push(
            tollgate::events::app_jobs::enqueue(&config, &jobs, "shop", job, None)
                .await
                .unwrap()
                .id,
        );
    }
    let workers = [spawn_worker(&test_db, &[]), spawn_worker(&test_db, &[])];
    let all_done = || async {
        let mut done = 0;
        for &id in &ids {
            let job = tollgate::store::jobs::admin::get(&db, id)
                .await
                .unwrap()
                .unwrap();
            done += usize::from(job.state == "completed");
        }
        done == N
    };
    wait_until(Duration::from_secs(30), all_done).await;
    for mut w in workers {
        w.start_kill().unwrap();
        let _ = w.wait().await;
    }
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        *per_id.entry(r.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), N);
    assert!(
        per_id.values().all(|&n| n == 1),
        "a job ran twice: {per_id:?}"
    );
}

#[tokio::test]
async fn a_schedule_made_through_the_admin_api_runs_until_deleted() {
    let h = jobs_app(json!([{ "name": "nightly", "cron": "0 3 * * *", "kind": "report.nightly" }]))
        .await;
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let path = format!("/admin/v1/apps/shop/schedules{path}");
        let (app, owner) = (&h.app, &h.shop.owner);
        async move { app.send_as(method, &path, owner, body).await }
    };
    let r = admin(
        Method::POST,
        "",
        Some(json!({ "name": "hourly", "cron": "0 * * * *",
        "kind": "feeds.sync", "args": { "all": true } })),
    )
    .await;
    assert_eq!(r.status(), 201);
    let bad = admin(
        Method::POST,
        "",
        Some(json!({ "name": "x y", "cron": "every hour",
        "kind": "k", "queue": "events" })),
    )
    .await;
    let p = problem(bad, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "queue", "cron"]);
    let taken = admin(
        Method::POST,
        "",
        Some(json!({ "name": "nightly", "cron": "0 4 * * *", "kind": "k" })),
    )
    .await;
    assert_eq!(taken.status(), 409);
    let list: Vec<Value> = admin(Method::GET, "", None).await.json().await.unwrap();
    let names: Vec<(&str, &str)> = list
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("nightly", "config"), ("hourly", "api")]);
    let hour = now_ms() - now_ms() % HOUR + HOUR;
    let mut scheduler = h.rt.scheduler();
    assert!(scheduler.run_due(hour + 500).await >= 1);
    assert_eq!(h.work_at(hour + 1_000).await, 1);
    let body: Value = serde_json::from_str(&h.rx.received()[0].body).unwrap();
    assert_eq!(
        (body["data"]["kind"].clone(), body["data"]["args"].clone()),
        (json!("feeds.sync"), json!({ "all": true }))
    );
    assert_eq!(admin(Method::DELETE, "/hourly", None).await.status(), 204);
    assert_eq!(
        admin(Method::DELETE, "/nightly", None).await.status(),
        409,
        "the config's stays"
    );
    let mut later = h.rt.scheduler();
    later.run_due(hour + HOUR + 500).await;
    assert_eq!(
        h.work_at(hour + HOUR + 1_000).await,
        0,
        "deleted: no more slots"
    );
}
