//! The job queue in one process: transactional enqueue, unique keys, retries and discards,
//! panics and timeouts, two workers on one database, kill switches, cron slots, pruning.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tollgate::config::{CatchUp, Config};
use tollgate::jobs::cron::CronExpr;
use tollgate::jobs::ops::{self, Action, Applied};
use tollgate::jobs::scheduler::{Schedule, Scheduler};
use tollgate::jobs::switches::{self, Switch};
use tollgate::jobs::worker::WorkerSettings;
use tollgate::jobs::{EnqueueError, EnqueueOptions, Job, JobContext, Runtime, WhenEnqueueOff};
use tollgate::store::jobs::admin;
use tollgate::store::{Db, migrate, now_ms};
use tollgate::tx_run;

use crate::helpers::TestDb;

/// Records every run; flags two runs of one job at the same time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    key: String,
    sleep_ms: u64,
}

#[derive(Default)]
struct Runs {
    count: HashMap<String, usize>,
    active: HashSet<String>,
    overlaps: usize,
}

fn runs() -> &'static Mutex<Runs> {
    static RUNS: OnceLock<Mutex<Runs>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

impl Job for Record {
    const KIND: &'static str = "test.record";
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        {
            let mut r = runs().lock().unwrap();
            *r.count.entry(self.key.clone()).or_default() += 1;
            if !r.active.insert(self.key.clone()) {
                r.overlaps += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        runs().lock().unwrap().active.remove(&self.key);
        Ok(())
    }
}

/// Fails its first `fail_times` attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flaky {
    fail_times: i64,
}

impl Job for Flaky {
    const KIND: &'static str = "test.flaky";
    const MAX_ATTEMPTS: i64 = 3;
    fn backoff(_attempt: i64) -> Duration {
        Duration::ZERO
    }
    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        if ctx.job.attempt <= self.fail_times {
            anyhow::bail!("flaky failure {}", ctx.job.attempt);
        }
        Ok(())
    }
}

/// Fails with the default (exponential) backoff.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AlwaysFails {}

impl Job for AlwaysFails {
    const KIND: &'static str = "test.always_fails";
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        anyhow::bail!("the dependency is down")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Panics {}

impl Job for Panics {
    const KIND: &'static str = "test.panics";
    const MAX_ATTEMPTS: i64 = 1;
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        panic!("boom in a handler")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sleeps {
    ms: u64,
}

impl Job for Sleeps {
    const KIND: &'static str = "test.sleeps";
    const MAX_ATTEMPTS: i64 = 1;
    const TIMEOUT: Duration = Duration::from_millis(300);
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// Parks instead of failing while enqueueing is switched off.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MustNotBeLost {}

impl Job for MustNotBeLost {
    const KIND: &'static str = "test.must_not_be_lost";
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Park;
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        Ok(())
    }
}

pub struct Harness {
    pub db: Db,
    pub rt: Runtime,
    pub _test_db: TestDb,
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub async fn harness_with(configure: impl FnOnce(&mut Config)) -> Harness {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let mut config = test_db.config();
    config.jobs.poll_interval_ms = 50;
    config.jobs.switch_refresh_ms = 100;
    configure(&mut config);
    let mut registry = tollgate::jobs::kinds::builtin().clone();
    registry
        .register::<Record>()
        .register::<Flaky>()
        .register::<AlwaysFails>()
        .register::<Panics>()
        .register::<Sleeps>()
        .register::<MustNotBeLost>();
    let rt = Runtime::new(db.clone(), Arc::new(config), registry).await;
    Harness {
        db,
        rt,
        _test_db: test_db,
    }
}

impl Harness {
    pub async fn enqueue<J: Job>(&self, job: J) -> i64 {
        self.rt
            .client
            .enqueue(&job, EnqueueOptions::default())
            .await
            .unwrap()
            .id
    }

    async fn job(&self, id: i64) -> tollgate::store::jobs::JobRow {
        admin::get(&self.db, id)
            .await
            .unwrap()
            .expect("the job exists")
    }

    /// Runs every due job of the default queue now.
    async fn work(&self) -> usize {
        self.rt.worker().run_available("default").await.unwrap()
    }

    async fn count(&self, state: &str) -> i64 {
        let filter = admin::Filter {
            state: Some(state.into()),
            limit: 100_000,
            ..Default::default()
        };
        admin::list(&self.db, &filter).await.unwrap().len() as i64
    }
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_does_not_exist() {
    let h = harness().await;
    let mut tx = h.db.begin().await.unwrap();
    tx_run!(&mut tx, c => sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('business', 'write', 0)")
        .execute(&mut **c).await.map(|_| ())).unwrap();
    let job = Record {
        key: "rolled-back".into(),
        sleep_ms: 0,
    };
    let rolled_back =
        h.rt.client
            .enqueue_tx(&mut tx, &job, EnqueueOptions::default())
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    assert!(admin::get(&h.db, rolled_back.id).await.unwrap().is_none());
    assert_eq!(admin::setting(&h.db, "business").await.unwrap(), None);

    let mut tx = h.db.begin().await.unwrap();
    let committed =
        h.rt.client
            .enqueue_tx(&mut tx, &job, EnqueueOptions::default())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(h.job(committed.id).await.state, "available");
    assert_eq!(h.work().await, 1);
    assert_eq!(h.job(committed.id).await.state, "completed");
}

#[tokio::test]
async fn a_unique_key_returns_the_unfinished_job_and_frees_up_when_it_completes() {
    let h = harness().await;
    let job = Record {
        key: "u".into(),
        sleep_ms: 0,
    };
    let opts = || EnqueueOptions::default().unique("invoice-42");
    let first = h.rt.client.enqueue(&job, opts()).await.unwrap();
    let second = h.rt.client.enqueue(&job, opts()).await.unwrap();
    assert!(first.inserted);
    assert!(!second.inserted);
    assert_eq!(first.id, second.id);
    assert_eq!(h.count("available").await, 1);

    h.work().await;
    let third = h.rt.client.enqueue(&job, opts()).await.unwrap();
    assert!(third.inserted, "a finished job no longer holds its key");
    assert_ne!(third.id, first.id);
}

#[tokio::test]
async fn failures_retry_then_discard_keeping_every_error_and_retry_revives_the_job() {
    let h = harness().await;
    let id = h.enqueue(Flaky { fail_times: 10 }).await;
    h.work().await;
    let job = h.job(id).await;
    assert_eq!(job.state, "discarded");
    assert_eq!(job.attempt, 3);
    assert!(job.finalized_at.is_some());
    assert_eq!(job.last_error.as_deref(), Some("flaky failure 3"));
    let errors = admin::errors(&h.db, id).await.unwrap();
    let texts: Vec<_> = errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (1, "flaky failure 1"),
            (2, "flaky failure 2"),
            (3, "flaky failure 3")
        ]
    );

    assert_eq!(
        ops::apply(&h.db, Action::Retry, id).await.unwrap(),
        Applied::Done
    );
    let revived = h.job(id).await;
    assert_eq!(
        (revived.state.as_str(), revived.max_attempts),
        ("available", 4)
    );
    h.work().await;
    let again = h.job(id).await;
    assert_eq!((again.state.as_str(), again.attempt), ("discarded", 4));

    let ok = h.enqueue(Flaky { fail_times: 2 }).await;
    h.work().await;
    let done = h.job(ok).await;
    assert_eq!((done.state.as_str(), done.attempt), ("completed", 3));
}

#[tokio::test]
async fn a_failed_attempt_waits_for_its_backoff() {
    let h = harness().await;
    let before = now_ms();
    let id = h.enqueue(AlwaysFails {}).await;
    h.work().await;
    let job = h.job(id).await;
    assert_eq!(job.state, "retryable");
    let wait = job.run_at - before;
    // First retry: 1 s ± 25%.
    assert!((700..=1_400).contains(&wait), "retry in {wait} ms");
    assert_eq!(h.work().await, 0, "not due yet");
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_the_worker_goes_on() {
    let h = harness().await;
    let bad = h.enqueue(Panics {}).await;
    let good = h
        .enqueue(Record {
            key: "after-panic".into(),
            sleep_ms: 0,
        })
        .await;
    assert_eq!(h.work().await, 2);
    let job = h.job(bad).await;
    assert_eq!(job.state, "discarded");
    assert_eq!(
        job.last_error.as_deref(),
        Some("the handler panicked: boom in a handler")
    );
    assert_eq!(h.job(good).await.state, "completed");
}

#[tokio::test]
async fn a_handler_running_past_its_timeout_fails() {
    let h = harness().await;
    let id = h.enqueue(Sleeps { ms: 10_000 }).await;
    h.work().await;
    let job = h.job(id).await;
    assert_eq!(job.state, "discarded");
    assert!(job.last_error.unwrap().starts_with("timed out after 300ms"));
}

#[tokio::test]
async fn two_workers_on_one_database_run_each_job_exactly_once() {
    let h = harness().await;
    let n = 200;
    for i in 0..n {
        h.enqueue(Record {
            key: format!("job-{i}"),
            sleep_ms: 2,
        })
        .await;
    }
    let stop = CancellationToken::new();
    let settings = WorkerSettings {
        queues: vec![("default".into(), 8)],
        ..WorkerSettings::from_config(&h.rt.config)
    };
    let a = h.rt.worker_with(settings.clone());
    let b = h.rt.worker_with(settings);
    assert_ne!(a.id(), b.id());
    let ta = tokio::spawn(a.run(stop.clone()));
    let tb = tokio::spawn(b.run(stop.clone()));
    wait_until(Duration::from_secs(60), || async {
        h.count("completed").await == n
    })
    .await;
    stop.cancel();
    ta.await.unwrap();
    tb.await.unwrap();

    let r = runs().lock().unwrap();
    assert_eq!(r.overlaps, 0, "no job ran twice at once");
    assert_eq!(r.count.len(), n as usize);
    assert!(
        r.count.values().all(|&c| c == 1),
        "every job ran exactly once"
    );
}

#[tokio::test]
async fn kill_switches_and_pauses_take_effect_without_a_restart() {
    let h = harness().await;
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(h.rt.client.switches().clone().keep_fresh(
        h.db.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let worker = tokio::spawn(h.rt.worker().run(stop.clone()));

    // Processing off: nothing starts.
    let seen = h.rt.client.switches().clone();
    switches::set(&h.db, Switch::Processing, false)
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        !seen.is_on(Switch::Processing)
    })
    .await;
    let id = h
        .enqueue(Record {
            key: "held".into(),
            sleep_ms: 0,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.job(id).await.state, "available");
    switches::set(&h.db, Switch::Processing, true)
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        h.job(id).await.state == "completed"
    })
    .await;

    // A paused queue holds its jobs; resuming lets them run.
    admin::set_paused(&h.db, "default", true, now_ms())
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        seen.is_paused("default")
    })
    .await;
    let paused = h
        .enqueue(Record {
            key: "paused".into(),
            sleep_ms: 0,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.job(paused).await.state, "available");
    admin::set_paused(&h.db, "default", false, now_ms())
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        h.job(paused).await.state == "completed"
    })
    .await;

    // Enqueue off: a failing kind is refused, a parking kind is kept and runs once back on.
    switches::set(&h.db, Switch::Enqueue, false).await.unwrap();
    wait_until(Duration::from_secs(10), || async {
        !seen.is_on(Switch::Enqueue)
    })
    .await;
    let refused =
        h.rt.client
            .enqueue(
                &Record {
                    key: "refused".into(),
                    sleep_ms: 0,
                },
                EnqueueOptions::default(),
            )
            .await;
    assert!(
        matches!(refused, Err(EnqueueError::Disabled { .. })),
        "{refused:?}"
    );
    let parked =
        h.rt.client
            .enqueue(&MustNotBeLost {}, EnqueueOptions::default())
            .await
            .unwrap();
    assert!(parked.parked);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.job(parked.id).await.state, "available");
    switches::set(&h.db, Switch::Enqueue, true).await.unwrap();
    wait_until(Duration::from_secs(10), || async {
        h.job(parked.id).await.state == "completed"
    })
    .await;

    stop.cancel();
    worker.await.unwrap();
    refresher.await.unwrap();
}

#[tokio::test]
async fn shutdown_releases_jobs_that_outlive_the_grace_period() {
    let h = harness_with(|c| c.jobs.shutdown_timeout_ms = 200).await;
    let id = h
        .enqueue(tollgate::jobs::kinds::maintenance::Noop { sleep_ms: 30_000 })
        .await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(h.rt.worker().run(stop.clone()));
    wait_until(Duration::from_secs(10), || async {
        h.job(id).await.state == "running"
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops within its grace")
        .unwrap();
    let job = h.job(id).await;
    assert_eq!(job.state, "available", "released for another worker");
    assert_eq!(job.attempt, 0, "a release is not a failed attempt");
}

#[tokio::test]
async fn an_operator_cancel_stops_a_running_job() {
    let h = harness_with(|c| c.jobs.lease_ms = 1_000).await;
    let id = h
        .enqueue(tollgate::jobs::kinds::maintenance::Noop { sleep_ms: 30_000 })
        .await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(h.rt.worker().run(stop.clone()));
    wait_until(Duration::from_secs(10), || async {
        h.job(id).await.state == "running"
    })
    .await;
    assert_eq!(
        ops::apply(&h.db, Action::Cancel, id).await.unwrap(),
        Applied::Done
    );
    // The heartbeat (every lease/3) notices and stops the handler; the worker is free again.
    let next = h
        .enqueue(Record {
            key: "after-cancel".into(),
            sleep_ms: 0,
        })
        .await;
    wait_until(Duration::from_secs(10), || async {
        h.job(next).await.state == "completed"
    })
    .await;
    assert_eq!(h.job(id).await.state, "cancelled");
    assert_eq!(
        ops::apply(&h.db, Action::Cancel, id).await.unwrap(),
        Applied::Skipped("it is cancelled".into())
    );
    stop.cancel();
    worker.await.unwrap();
}

/// A cron test with a fixed clock: two schedulers, the same instants, one job per slot.
#[tokio::test]
async fn two_schedulers_enqueue_one_job_per_slot_and_catch_up_once() {
    let h = harness().await;
    let every_minute = |name: &str, catch_up| Schedule {
        name: name.into(),
        cron: CronExpr::parse("* * * * *").unwrap(),
        kind: "noop".into(),
        args: "{}".into(),
        queue: None,
        catch_up,
    };
    let schedules = vec![
        every_minute("once", CatchUp::Once),
        every_minute("all", CatchUp::All),
        every_minute("none", CatchUp::None),
    ];
    let tick = Duration::from_secs(1);
    let mut a = Scheduler::new(
        h.rt.client.clone(),
        h.rt.registry.clone(),
        schedules.clone(),
        tick,
    );
    let mut b = Scheduler::new(h.rt.client.clone(), h.rt.registry.clone(), schedules, tick);
    let t0 = 1_795_341_600_000; // a minute boundary
    // Ten minutes, both schedulers at every second.
    let mut total = 0;
    for s in 0..600 {
        total += a.run_due(t0 + s * 1000).await;
        total += b.run_due(t0 + s * 1000).await;
    }
    assert_eq!(
        total, 30,
        "10 slots × 3 schedules, whatever the number of schedulers"
    );
    // Ten minutes down, then back.
    let back = t0 + 20 * 60_000 + 5_000;
    let caught_up = a.run_due(back).await + b.run_due(back).await;
    // Slots 10..=20 were missed (11). once: 1 job for all of them; all: 11 jobs; none: 0
    // (the latest slot is already 5 s old).
    assert_eq!(caught_up, 1 + 11);
    let jobs = admin::list(
        &h.db,
        &admin::Filter {
            kind: Some("noop".into()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(jobs.len(), 42);
    let keys: HashSet<_> = jobs.iter().map(|j| j.unique_key.clone().unwrap()).collect();
    assert_eq!(keys.len(), 42, "one job per slot");
}

#[tokio::test]
async fn pruning_deletes_old_finished_jobs_and_keeps_recent_ones() {
    let h = harness().await;
    let old = h
        .enqueue(Record {
            key: "old".into(),
            sleep_ms: 0,
        })
        .await;
    let recent = h
        .enqueue(Record {
            key: "recent".into(),
            sleep_ms: 0,
        })
        .await;
    let dead = h.enqueue(Flaky { fail_times: 99 }).await;
    h.work().await;
    let two_days_ago = now_ms() - 48 * 3_600_000;
    tollgate::db_run!(&h.db, pool => sqlx::query("UPDATE jobs SET finalized_at = $1 WHERE id IN ($2, $3)")
        .bind(two_days_ago).bind(old).bind(dead).execute(pool).await.map(|_| ())).unwrap();
    h.enqueue(tollgate::jobs::kinds::maintenance::Prune {})
        .await;
    let ran = h.rt.worker().run_available("maintenance").await.unwrap();
    assert_eq!(ran, 1, "upkeep runs on its own queue");
    assert!(
        admin::get(&h.db, old).await.unwrap().is_none(),
        "completed 2 days ago: pruned"
    );
    assert!(admin::get(&h.db, recent).await.unwrap().is_some());
    assert!(
        admin::get(&h.db, dead).await.unwrap().is_some(),
        "discarded jobs are kept 7 days"
    );
    assert!(admin::errors(&h.db, dead).await.unwrap().len() == 3);
}

/// Polls `check` every 50 ms until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A schedule does not starve behind a backlog: its slot's job is the next one claimed on its
/// queue, however many ordinary jobs wait there.
#[tokio::test]
async fn a_cron_slot_runs_before_a_backlog_on_its_queue() {
    use tollgate::jobs::kinds::maintenance::Noop;
    let h = harness().await;
    for _ in 0..500 {
        h.enqueue(Noop { sleep_ms: 0 }).await;
    }
    let schedule = Schedule {
        name: "every-5s".into(),
        cron: CronExpr::parse("*/5 * * * * *").unwrap(),
        kind: "noop".into(),
        args: "{}".into(),
        queue: None,
        catch_up: CatchUp::Once,
    };
    let mut s = Scheduler::new(
        h.rt.client.clone(),
        h.rt.registry.clone(),
        vec![schedule],
        Duration::from_secs(1),
    );
    let now = now_ms() / 5_000 * 5_000 + 1;
    assert_eq!(s.run_due(now).await, 1);
    let queue = tollgate::jobs::DEFAULT_QUEUE;
    let later = now_ms() + 1_000;
    let next = tollgate::store::jobs::queue::claim(&h.db, queue, "test", 1, later, later + 60_000)
        .await
        .unwrap();
    let job = admin::get(&h.db, next[0].id).await.unwrap().unwrap();
    assert!(
        job.unique_key
            .as_deref()
            .is_some_and(|k| k.starts_with("cron:every-5s:")),
        "the slot's job first, not backlog job {}",
        job.id
    );
}
