//! Ledger benchmark: reserve + settle pairs per second with 64 users working concurrently (one
//! task per user, each pair a reserve of 10 credits then a settle of 7), and the latency of one
//! pair. SQLite (a temp file) by default; PostgreSQL when BENCH_DATABASE_URL is set (a fresh
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

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in targets {
        let db = db.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(pairs);
            for _ in 0..pairs {
                let at = Instant::now();
                let hold =
                    ledger::reserve(&db, t, 10 * CREDIT, 0, now_ms() + 600_000, Note::default())
                        .await?
                        .into_inner();
                ledger::settle(&db, t.app_id, hold.id, 7 * CREDIT, None).await?;
                latencies.push(at.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all: Vec<Duration> = Vec::with_capacity(users * pairs);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "reserve+settle: {} pairs in {:.2} s = {:.0} pairs/s; pair latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
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
