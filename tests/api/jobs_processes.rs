//! The job queue across real processes: `tollgate serve --role worker` killed with SIGKILL,
//! two workers and two schedulers on one database, and the `tollgate jobs` CLI against a
//! running server.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;
use tollgate::jobs::kinds::maintenance::Noop;
use tollgate::jobs::switches::Switches;
use tollgate::jobs::{Client, EnqueueOptions};
use tollgate::store::jobs::{JobRow, admin};
use tollgate::store::{Db, migrate};

use crate::cli::{as_refs, db_vars, run, tollgate};
use crate::helpers::{TestDb, spawn_app_with};
use crate::jobs::wait_until;

/// Worker settings short enough for tests: 2 s leases, fast rescue and polling.
pub const FAST: &[(&str, &str)] = &[
    ("TOLLGATE_LISTEN", "127.0.0.1:0"),
    ("TOLLGATE_JOBS__LEASE_MS", "2000"),
    ("TOLLGATE_JOBS__RESCUE_INTERVAL_MS", "300"),
    ("TOLLGATE_JOBS__POLL_INTERVAL_MS", "100"),
    ("TOLLGATE_JOBS__SWITCH_REFRESH_MS", "200"),
    ("TOLLGATE_LOG__FORMAT", "json"),
];

async fn prepared_db() -> (TestDb, Db, Client) {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let client = Client::new(db.clone(), Switches::all_on());
    (test_db, db, client)
}

pub fn spawn_worker(test_db: &TestDb, extra: &[(&str, &str)]) -> Child {
    let vars = db_vars(test_db);
    let mut vars: Vec<(&str, &str)> = as_refs(&vars);
    vars.extend_from_slice(FAST);
    vars.extend_from_slice(extra);
    tollgate(&["serve", "--role", "worker"], &vars)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// A `serve --role api` process (with `args` before `serve`) on a free port, answering /health;
/// returns it and its base URL.
pub async fn spawn_api(test_db: &TestDb, args: &[&str]) -> (Child, String) {
    spawn_api_env(test_db, args, &[]).await
}

/// [`spawn_api`] with more environment variables.
pub async fn spawn_api_env(
    test_db: &TestDb,
    args: &[&str],
    extra: &[(&str, &str)],
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let vars = db_vars(test_db);
    let mut vars = as_refs(&vars);
    vars.extend_from_slice(FAST);
    vars.push(("TOLLGATE_LISTEN", &listen));
    vars.extend_from_slice(extra);
    let mut argv = args.to_vec();
    argv.extend(["serve", "--role", "api"]);
    let api = tollgate(&argv, &vars)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the API process starts");
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    wait_until(Duration::from_secs(20), || async {
        client.get(format!("{base}/health")).send().await.is_ok()
    })
    .await;
    (api, base)
}

pub async fn terminate(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

async fn job(db: &Db, id: i64) -> JobRow {
    admin::get(db, id).await.unwrap().expect("the job exists")
}

async fn all_jobs(db: &Db, kind: &str) -> Vec<JobRow> {
    let filter = admin::Filter {
        kind: Some(kind.into()),
        limit: 100_000,
        ..Default::default()
    };
    admin::list(db, &filter).await.unwrap()
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_is_rescued_after_its_lease_and_completes_once() {
    let (test_db, db, client) = prepared_db().await;
    let id = client
        .enqueue(&Noop { sleep_ms: 3_000 }, EnqueueOptions::default())
        .await
        .unwrap()
        .id;
    let mut doomed = spawn_worker(&test_db, &[]);
    wait_until(Duration::from_secs(30), || async {
        job(&db, id).await.state == "running"
    })
    .await;
    doomed.start_kill().unwrap(); // SIGKILL: no shutdown, no release
    doomed.wait().await.unwrap();
    assert_eq!(job(&db, id).await.state, "running", "nobody released it");

    let survivor = spawn_worker(&test_db, &[]);
    wait_until(Duration::from_secs(40), || async {
        job(&db, id).await.state == "completed"
    })
    .await;
    terminate(survivor).await;
    let done = job(&db, id).await;
    assert_eq!(done.attempt, 2, "one lost attempt, one that completed");
    let errors = admin::errors(&db, id).await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].error.starts_with("lease expired"),
        "{}",
        errors[0].error
    );
    assert!(errors[0].worker.is_none(), "recorded by the rescuer");
}

#[tokio::test]
async fn two_worker_processes_never_run_the_same_job_twice() {
    let (test_db, db, client) = prepared_db().await;
    let n = 400;
    for _ in 0..n {
        client
            .enqueue(&Noop { sleep_ms: 50 }, EnqueueOptions::default())
            .await
            .unwrap();
    }
    let a = spawn_worker(&test_db, &[]);
    let b = spawn_worker(&test_db, &[]);
    wait_until(Duration::from_secs(60), || async {
        all_jobs(&db, "noop")
            .await
            .iter()
            .all(|j| j.state == "completed")
    })
    .await;
    terminate(a).await;
    terminate(b).await;
    let jobs = all_jobs(&db, "noop").await;
    assert_eq!(jobs.len(), n);
    // A second claim of a job would have raised its attempt: none did.
    assert!(
        jobs.iter().all(|j| j.attempt == 1),
        "every job was claimed once"
    );
    let workers: std::collections::HashSet<_> =
        jobs.iter().filter_map(|j| j.attempted_by.clone()).collect();
    assert_eq!(workers.len(), 2, "both processes took part");
}

#[tokio::test]
async fn two_scheduler_processes_produce_exactly_one_job_per_slot() {
    let (test_db, db, _client) = prepared_db().await;
    let config = test_db.data_dir.join("cron.toml");
    std::fs::write(
        &config,
        "[[jobs.schedules]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"noop\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let seconds: u64 = std::env::var("TEST_CRON_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let extra = [("TOLLGATE_CONFIG", config.as_str())];
    let a = spawn_worker(&test_db, &extra);
    let b = spawn_worker(&test_db, &extra);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    terminate(a).await;
    terminate(b).await;

    let jobs = all_jobs(&db, "noop").await;
    let mut keys: Vec<String> = jobs.iter().map(|j| j.unique_key.clone().unwrap()).collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "no slot produced two jobs");
    assert!(
        total as u64 >= seconds - 5,
        "about one job per second: {total} in {seconds} s"
    );
    assert!(
        total as u64 <= seconds + 1,
        "never more than one per slot: {total} in {seconds} s"
    );
    let slots: i64 = tollgate::db_run!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM cron_slots WHERE name = 'every-second' AND job_id IS NOT NULL")
        .fetch_one(pool).await)
    .unwrap();
    assert_eq!(slots as usize, total);
}

#[tokio::test]
async fn kill_switches_flipped_from_the_cli_reach_a_running_server() {
    let mut app = spawn_app_with(|c| {
        c.jobs.switch_refresh_ms = 200;
        c.jobs.poll_interval_ms = 100;
    })
    .await;
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let client = Client::new(app.db.clone(), Switches::all_on());

    let (code, out, err) = run(&["jobs", "switch", "processing", "off"], &vars).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("switch processing is off"), "{out}");
    // Five refreshes of the switches (200 ms each).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let id = client
        .enqueue(&Noop::default(), EnqueueOptions::default())
        .await
        .unwrap()
        .id;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        job(&app.db, id).await.state,
        "available",
        "processing is off"
    );

    let (_, out, _) = run(&["jobs", "switch"], &vars).await;
    assert!(
        out.contains("processing off") && out.contains("scheduler on"),
        "{out}"
    );
    let (code, _, err) = run(&["jobs", "switch", "processing", "on"], &vars).await;
    assert_eq!(code, 0, "{err}");
    wait_until(Duration::from_secs(10), || async {
        job(&app.db, id).await.state == "completed"
    })
    .await;

    let (code, _, _) = run(&["jobs", "pause", "default"], &vars).await;
    assert_eq!(code, 0);
    // Five refreshes of the switches (200 ms each).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let held = client
        .enqueue(&Noop::default(), EnqueueOptions::default())
        .await
        .unwrap()
        .id;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        job(&app.db, held).await.state,
        "available",
        "the queue is paused"
    );
    let (_, stats, _) = run(&["jobs", "stats", "--json"], &vars).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let default = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    assert_eq!(default["paused"], true);
    assert_eq!(default["counts"]["available"], 1);
    assert_eq!(default["counts"]["completed"], 1);
    run(&["jobs", "resume", "default"], &vars).await;
    let (code, out, _) = run(&["jobs", "drain", "default", "--timeout-secs", "20"], &vars).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("queue default is drained"), "{out}");
    assert_eq!(job(&app.db, held).await.state, "completed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_cli_lists_shows_and_retries_dead_jobs_only_when_told_how_many() {
    let (test_db, db, _client) = prepared_db().await;
    let vars = db_vars(&test_db);
    let vars = as_refs(&vars);
    // Jobs of a kind this build does not know fail, and with one attempt they are discarded.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut tx = db.begin().await.unwrap();
        tollgate::tx_run!(&mut tx, c => sqlx::query(
            "INSERT INTO jobs (queue, kind, args, state, priority, attempt, max_attempts, timeout_ms, run_at, created_at, parked) \
             VALUES ('default', 'retired.kind', '{}', 'discarded', 1, 1, 1, 1000, 0, 0, FALSE)")
            .execute(&mut **c).await.map(|_| ())).unwrap();
        tx.commit().await.unwrap();
    }
    for j in all_jobs(&db, "retired.kind").await {
        ids.push(j.id);
    }

    let (code, out, _) = run(&["jobs", "list", "--state", "discarded"], &vars).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("retired.kind")).count(),
        3,
        "{out}"
    );
    let (code, out, _) = run(&["jobs", "show", &ids[0].to_string()], &vars).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("kind retired.kind") && out.contains("state discarded"),
        "{out}"
    );

    let (code, _, err) = run(
        &[
            "jobs",
            "retry",
            "--state",
            "discarded",
            "--kind",
            "retired.kind",
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("needs --limit"), "{err}");
    let (code, out, _) = run(
        &[
            "jobs",
            "retry",
            "--state",
            "discarded",
            "--kind",
            "retired.kind",
            "--limit",
            "2",
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("retry 2 job(s)") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(
        all_jobs(&db, "retired.kind")
            .await
            .iter()
            .filter(|j| j.state == "discarded")
            .count(),
        3
    );
    let (code, out, _) = run(
        &[
            "jobs",
            "retry",
            "--state",
            "discarded",
            "--kind",
            "retired.kind",
            "--limit",
            "2",
            "--yes",
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("2 of 2 job(s) made available again"), "{out}");
    let states: Vec<String> = all_jobs(&db, "retired.kind")
        .await
        .into_iter()
        .map(|j| j.state)
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "available").count(), 2);

    let (code, out, _) = run(
        &[
            "jobs",
            "cancel",
            &ids[0].to_string(),
            &ids[1].to_string(),
            &ids[2].to_string(),
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("2 of 3 job(s) cancelled"), "{out}");
    assert!(out.contains("skipped (it is discarded)"), "{out}");
}
