//! What operators see of jobs: metrics on /metrics, and failures in Sentry as the worker's.

use std::time::Duration;

use axum::Router;
use secrecy::SecretString;
use tollgate::jobs::kinds::maintenance::Noop;
use tollgate::jobs::switches::Switches;
use tollgate::jobs::{Client, EnqueueOptions};
use tollgate::startup::Role;
use tollgate::store::jobs::admin;

use crate::helpers::{spawn_app_full, spawn_app_with};
use crate::jobs::wait_until;
use crate::sentry::start_fake_sentry;

#[tokio::test]
async fn job_counters_and_queue_gauges_are_exported() {
    let app = spawn_app_with(|c| c.jobs.poll_interval_ms = 50).await;
    let client = Client::new(app.db.clone(), Switches::all_on());
    for _ in 0..3 {
        client
            .enqueue(&Noop::default(), EnqueueOptions::default())
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(10), || async {
        let done = admin::Filter {
            state: Some("completed".into()),
            // The built-in schedules (pruning, ledger expiry) may complete jobs too.
            kind: Some("noop".into()),
            limit: 10,
            ..Default::default()
        };
        admin::list(&app.db, &done).await.unwrap().len() == 3
    })
    .await;
    // The completer writes in batches; the counters are bumped before it.
    let text = app.get_metrics(None).await.text().await.unwrap();
    for line in [
        r#"tollgate_jobs_enqueued_total{queue="default",kind="noop"} 3"#,
        r#"tollgate_jobs_started_total{queue="default",kind="noop"} 3"#,
        r#"tollgate_jobs_completed_total{queue="default",kind="noop"} 3"#,
        r#"tollgate_jobs_run_duration_seconds_count{queue="default",kind="noop"} 3"#,
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    // The gauges are sampled by the worker (at start, then every 10 s).
    let mut text = text;
    for _ in 0..100 {
        if text.contains(r#"tollgate_jobs_queue_depth{queue="default",state="#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = app.get_metrics(None).await.text().await.unwrap();
    }
    assert!(
        text.contains(r#"tollgate_jobs_queue_depth{queue="default",state="#),
        "{text}"
    );
    assert!(
        text.contains(r#"tollgate_jobs_oldest_available_age_seconds{queue="default"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_job_is_reported_to_sentry_as_the_worker_with_its_kind() {
    let (fake, port) = start_fake_sentry().await;
    let dsn = format!("http://k@127.0.0.1:{port}/7");
    let app = spawn_app_full(
        |c| {
            c.sentry_dsn = Some(SecretString::from(dsn));
            c.jobs.poll_interval_ms = 50;
        },
        Role::All,
        Router::new(),
    )
    .await;
    // A job of a kind this build does not have: its attempt fails with a clear error.
    let mut tx = app.db.begin().await.unwrap();
    tollgate::tx_run!(&mut tx, c => sqlx::query(
        "INSERT INTO jobs (queue, kind, args, state, priority, attempt, max_attempts, timeout_ms, run_at, created_at, parked) \
         VALUES ('default', 'retired.kind', '{}', 'available', 1, 0, 1, 1000, 0, 0, FALSE)")
        .execute(&mut **c).await.map(|_| ())).unwrap();
    tx.commit().await.unwrap();
    wait_until(Duration::from_secs(10), || async {
        !fake.received.lock().unwrap().is_empty()
    })
    .await;
    tollgate::ops::sentry::flush(Duration::from_secs(5)).await;

    let events = crate::sentry::events(&fake);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["message"], "job failed", "{event}");
    assert_eq!(
        event["tags"]["service"], "worker",
        "reported as the worker even in role all"
    );
    assert_eq!(event["tags"]["job_kind"], "retired.kind");
    assert!(
        event["contexts"]["Rust Tracing Fields"]["error"]
            .as_str()
            .unwrap()
            .contains("no handler for job kind"),
        "{event}"
    );
}
