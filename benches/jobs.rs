//! Job queue benchmark: enqueue throughput, enqueue→complete throughput of no-op jobs, and
//! enqueue→start latency. SQLite (a temp file) by default; PostgreSQL when
//! BENCH_DATABASE_URL is set (a fresh schema, dropped afterwards).
//!
//!     cargo bench --bench jobs
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench jobs
//!
//! BENCH_JOBS (default 20000) sets the job count; BENCH_CONCURRENCY (default 100) the
//! worker's concurrency.

#[path = "support.rs"]
mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tollgate::jobs::worker::WorkerSettings;
use tollgate::jobs::{EnqueueOptions, Job, JobContext, Runtime};

use support::env_usize;

#[derive(Serialize, Deserialize)]
struct Bench {
    /// Microseconds since the epoch when enqueued; 0 when latency is not measured.
    enqueued_us: i64,
}

fn latencies() -> &'static Mutex<Vec<i64>> {
    static L: OnceLock<Mutex<Vec<i64>>> = OnceLock::new();
    L.get_or_init(Mutex::default)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

impl Job for Bench {
    const KIND: &'static str = "bench.noop";
    async fn run(self, _ctx: JobContext) -> anyhow::Result<()> {
        if self.enqueued_us > 0 {
            latencies()
                .lock()
                .unwrap()
                .push(now_us() - self.enqueued_us);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_usize("BENCH_JOBS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 100);
    let bench = support::BenchDb::new("bench").await?;
    let (db, config) = (bench.db.clone(), bench.config.clone());
    println!(
        "backend: {}  jobs: {n}  worker concurrency: {concurrency}",
        db.backend().as_str()
    );

    let mut registry = tollgate::jobs::Registry::new();
    registry.register::<Bench>();
    let rt = Runtime::new(db.clone(), Arc::new(config.clone()), registry).await;
    let settings = WorkerSettings {
        queues: vec![("default".into(), concurrency)],
        poll_interval: Duration::from_millis(100),
        ..WorkerSettings::from_config(&config)
    };

    // 1. Enqueue: 8 concurrent callers, one transaction per job.
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..8 {
        let client = rt.client.clone();
        let share = n / 8 + usize::from(c < n % 8);
        callers.spawn(async move {
            for _ in 0..share {
                client
                    .enqueue(&Bench { enqueued_us: 0 }, EnqueueOptions::default())
                    .await
                    .unwrap();
            }
        });
    }
    while callers.join_next().await.is_some() {}
    let took = started.elapsed();
    println!(
        "enqueue (8 callers, 1 job per transaction): {:>8.0} jobs/s",
        n as f64 / took.as_secs_f64()
    );

    // 2. Work the backlog: enqueue → complete.
    let stop = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(rt.worker_with(settings.clone()).run(stop.clone()));
    loop {
        let done: i64 = tollgate::db_run!(&db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'completed'").fetch_one(pool).await)?;
        if done as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    println!(
        "work a backlog of no-op jobs (enqueued → completed): {:>8.0} jobs/s",
        n as f64 / took.as_secs_f64()
    );

    // 3. Latency: the worker is idle and waiting; enqueue at a steady rate.
    let samples = (n / 10).clamp(500, 5_000);
    let rate = 1_000.0; // jobs per second
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for _ in 0..samples {
        tick.tick().await;
        rt.client
            .enqueue(
                &Bench {
                    enqueued_us: now_us(),
                },
                EnqueueOptions::default(),
            )
            .await?;
    }
    while latencies().lock().unwrap().len() < samples {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    worker.await?;
    let mut l = latencies().lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0;
    println!(
        "enqueue → start latency at {rate:.0} jobs/s ({samples} jobs): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );

    bench.remove().await?;
    Ok(())
}
