//! Outbound events benchmark: signed deliveries per second from the outbox to a local
//! receiver, through the real worker (fan-out job, delivery job, attempt recorded) with the
//! `events` queue's default concurrency — against the same number of signed POSTs sent
//! directly with the same concurrency (the floor: HTTP and signing alone), in the same run.
//! SQLite (a temp file) by default; PostgreSQL when BENCH_DATABASE_URL is set.
//!
//!     cargo bench --bench events
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench events
//!
//! BENCH_EVENTS (default 2000).

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use tokio_util::sync::CancellationToken;
use tollgate::events::signing;
use tollgate::store::events::{self as store, NewEndpoint, Outgoing};
use tollgate::store::{identity, now_ms};

use support::env_usize;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_usize("BENCH_EVENTS", 2000);
    let bench = support::BenchDb::new("events_bench").await?;
    let (db, config) = (bench.db.clone(), bench.config.clone());
    let concurrency = config
        .jobs
        .queues
        .get(store::QUEUE)
        .map_or(20, |q| q.concurrency);
    println!(
        "backend: {}  events: {n}  concurrency: {concurrency}",
        db.backend().as_str()
    );

    // A receiver that answers 200 at once and counts.
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The floor: the same signed POSTs, sent directly.
    let secret = signing::new_secret();
    let body = r#"{"type":"credits.granted","timestamp":"2026-12-02T00:00:00.000Z","data":{"user_id":"u","amount_micros":1}}"#;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, secret, next) =
            (client.clone(), url.clone(), secret.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
                let ts = now_ms() / 1000;
                let sig = signing::sign_all([secret.as_str()], &id, ts, body.as_bytes());
                let r = client
                    .post(&url)
                    .header(signing::ID, &id)
                    .header(signing::TIMESTAMP, ts.to_string())
                    .header(signing::SIGNATURE, sig)
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success());
            }
            anyhow::Ok(())
        });
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    let direct = started.elapsed();
    let direct_rate = n as f64 / direct.as_secs_f64();
    println!(
        "direct signed POSTs:      {direct_rate:>8.0} /s  ({n} in {:.2} s)",
        direct.as_secs_f64()
    );
    received.store(0, Ordering::Relaxed);

    // tollgate: the events written to the outbox beforehand (not timed), then the worker.
    let app = identity::create_app(&db, "bench", "Bench")
        .await?
        .expect("new app");
    let (user, _) = identity::find_or_create_user(&db, app.id, "user").await?;
    let sealed = tollgate::events::secrets::seal(&config, &secret)?;
    store::create_endpoint(
        &db,
        app.id,
        &NewEndpoint {
            url: &url,
            purpose: "events",
            description: "",
            event_types: None,
            sealed_secret: &sealed,
        },
    )
    .await?;
    let mut tx = db.begin().await?;
    for i in 0..n {
        let e = Outgoing::about(
            tollgate::domain::events::EventType::CreditsGranted,
            user.id,
            format!("bench:{i}"),
            serde_json::json!({ "amount_micros": 1 }),
        );
        store::publish(&mut tx, app.id, &e).await?;
    }
    tx.commit().await?;
    let rt = tollgate::jobs::Runtime::new(
        db.clone(),
        Arc::new(config),
        tollgate::jobs::kinds::builtin().clone(),
    )
    .await;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(rt.worker().run(stop.clone()));
    while received.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "deliveries did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let through = started.elapsed();
    stop.cancel();
    let _ = worker.await;
    let rate = n as f64 / through.as_secs_f64();
    println!(
        "through the outbox:       {rate:>8.0} /s  ({n} in {:.2} s; a fan-out and a delivery job each)",
        through.as_secs_f64()
    );
    println!("ratio outbox / direct:    {:.3}", rate / direct_rate);
    let done = store::deliveries(&db, app.id, 1, None, 1).await?;
    anyhow::ensure!(
        done.first().is_some_and(|d| d.state == "succeeded"),
        "the last delivery is recorded"
    );
    bench.remove().await?;
    Ok(())
}
