//! `tollgate migrate [--status]`.

use crate::config::Config;
use crate::store::{Db, migrate};

pub async fn run(config: Config, status_only: bool) -> anyhow::Result<()> {
    let url = config.database_url();
    // Asking for the status only looks: connecting would create a missing SQLite file.
    if let Some(file) = Db::sqlite_file(&url).filter(|f| status_only && !f.exists()) {
        println!("backend: sqlite");
        println!(
            "{} does not exist yet; `tollgate migrate` (or `tollgate serve`) creates it",
            file.display()
        );
        for (version, description) in migrate::embedded_list(crate::store::Backend::Sqlite) {
            println!("pending: {version} {description}");
        }
        return Ok(());
    }
    let db = Db::connect(&url, &config.database).await?;
    let status = migrate::status(&db).await?;
    if status_only {
        println!("backend: {}", db.backend().as_str());
        println!("applied: {:?}", status.applied);
        for (version, description) in &status.pending {
            println!("pending: {version} {description}");
        }
        if let Some(v) = status.dirty {
            println!("failed halfway: {v}");
        }
        if !status.unknown.is_empty() {
            println!("unknown to this binary: {:?}", status.unknown);
        }
        return Ok(());
    }
    let applied = migrate::run(&db).await?;
    if applied.is_empty() {
        println!(
            "the database is up to date ({} migrations applied)",
            status.applied.len()
        );
    } else {
        println!("applied migrations {applied:?}");
    }
    db.close().await;
    Ok(())
}

/// `tollgate migrate-data --from sqlite:… --to postgres://…`.
pub async fn migrate_data(config: Config, from: &str, to: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let moved = crate::ops::migrate_data::run(&config, from, to).await?;
    let rows: i64 = moved.copied.values().sum();
    println!(
        "copied: {rows} rows in {} tables into {} in {:.1} s",
        moved.copied.len(),
        crate::redact::redact_url(to),
        started.elapsed().as_secs_f64()
    );
    for (table, expected, found) in &moved.mismatches {
        println!("row counts: {table}: SQLite has {expected}, PostgreSQL {found}");
    }
    for m in &moved.ledger_mismatches {
        println!(
            "ledger: MISMATCH app {} user {}: {}",
            m.app_id, m.user_id, m.problem
        );
    }
    anyhow::ensure!(
        moved.mismatches.is_empty(),
        "{} tables differ",
        moved.mismatches.len()
    );
    anyhow::ensure!(
        moved.ledger_mismatches.is_empty(),
        "the copied ledger does not verify"
    );
    println!(
        "row counts: every table matches ({} tables)",
        moved.copied.len()
    );
    println!("ledger: {} accounts checked, 0 mismatches", moved.accounts);
    println!(
        "next: point DATABASE_URL at the PostgreSQL database (and DATABASE_OWNER_URL at the owner \
         when the serving role is another), run `tollgate migrate` once (it grants the serving \
         role its rights), then start tollgate"
    );
    Ok(())
}
