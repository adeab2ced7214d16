//! Ledger benchmark: reserve + settle pairs per second with 64 users working concurrently (one
//! task per user, each pair a reserve of 10 credits then a settle of 7), and the latency of one
//! pair — through the batch writer (the path of the gateway and the holds API), then one
//! transaction per write (its fallback, a quarter of the pairs), and their ratio. SQLite (a temp file) by default; PostgreSQL when BENCH_DATABASE_URL is set (a fresh
//! schema, dropped afterwards).
//!
//!     cargo bench --bench ledger
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench ledger
//!
//! BENCH_USERS (default 64) and BENCH_PAIRS (pairs per user, default 200).

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};
use tollgate::store::ledger::EntryKind;

use tollgate::store::identity;
use tollgate::store::ledger::{self, Credit, Note, Target};
use tollgate::store::now_ms;

use support::env_usize;

const CREDIT: i64 = 1_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = env_usize("BENCH_USERS", 64);
    let pairs = env_usize("BENCH_PAIRS", 200);
    let bench = support::BenchDb::new("ledger_bench").await?;
    let (db, config) = (bench.db.clone(), bench.config.clone());
    println!(
        "backend: {}  users: {users}  pairs per user: {pairs}  pool: {}",
        db.backend().as_str(),
        config.database.max_connections
    );

    let app = identity::create_app(&db, "bench", "Bench")
        .await?
        .expect("new app");
    let mut targets = Vec::with_capacity(users);
    for i in 0..users {
        let (u, _) = identity::find_or_create_user(&db, app.id, &format!("user-{i}")).await?;
        let t = Target {
            app_id: app.id,
            user_id: u.id,
        };
        let credit = Credit {
            kind: EntryKind::Grant,
            amount: (pairs as i64) * 10 * CREDIT,
            source: "top_up",
            expires_at: None,
            note: Note::default(),
        };
        ledger::credit(&db, t, &credit, None).await?;
        targets.push(t);
    }

    // The path the gateway and the holds API use (group commit), then one transaction per
    // write (the batch writer's fallback), in the same run.
    let batcher = ledger::Batcher::start(db.clone());
    let grouped = run(&targets, pairs, |t| {
        let batcher = batcher.clone();
        async move {
            let hold = ledger::CallHold {
                t,
                amount: 10 * CREDIT,
                overdraft: 0,
                expires_at: now_ms() + 600_000,
                reason: None,
                reference: None,
                key: None,
                plan: None,
                call: None,
            };
            let id = batcher.reserve(hold).await?.into_inner();
            let settle = ledger::CallClose {
                t,
                hold_id: id,
                charged: 7 * CREDIT,
                ends: ledger::HoldState::Settled,
                reason: None,
                usage: None,
                credits_low: None,
            };
            batcher.close(settle).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    report("group-committed (gateway, holds API)", &grouped);
    let alone = run(&targets, pairs.div_ceil(4), |t| {
        let db = db.clone();
        async move {
            let hold = ledger::reserve(&db, t, 10 * CREDIT, 0, now_ms() + 600_000, Note::default())
                .await?
                .into_inner();
            ledger::settle(&db, t.app_id, hold.id, 7 * CREDIT, None).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    report("one transaction per write (fallback)", &alone);
    println!(
        "ratio group-committed / one transaction per write: {:.1}",
        grouped.per_sec() / alone.per_sec()
    );

    let verify_started = Instant::now();
    let (checked, mismatches) = ledger::verify(&db).await?;
    println!(
        "ledger verify: {checked} accounts, {} mismatches, {:.0} ms",
        mismatches.len(),
        verify_started.elapsed().as_secs_f64() * 1e3
    );
    anyhow::ensure!(
        mismatches.is_empty(),
        "the ledger does not verify: {mismatches:?}"
    );

    bench.remove().await?;
    Ok(())
}

/// Pair latencies of a run and how long it took.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `pairs` pairs per user, every user working concurrently.
async fn run<F, Fut>(targets: &[Target], pairs: usize, pair: F) -> anyhow::Result<Run>
where
    F: Fn(Target) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for &t in targets {
        let pairs: Vec<Fut> = (0..pairs).map(|_| pair(t)).collect();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(pairs.len());
            for p in pairs {
                let at = Instant::now();
                p.await?;
                latencies.push(at.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    latencies.sort();
    Ok(Run {
        latencies,
        elapsed: started.elapsed(),
    })
}

fn report(what: &str, run: &Run) {
    let all = &run.latencies;
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{what}: {} pairs in {:.2} s = {:.0} pairs/s; pair latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        run.elapsed.as_secs_f64(),
        run.per_sec(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );
}
