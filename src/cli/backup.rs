//! `tollgate backup PATH` and `tollgate restore PATH` (docs/backups.md).

use std::path::Path;
use std::time::Instant;

use anyhow::bail;

use crate::config::Config;
use crate::ops::backup::{self, manifest_path, take_and_record};
use crate::store::Db;
use crate::store::backup::Trigger;

/// Takes a verified backup while tollgate may be serving, and records it.
pub async fn take(config: Config, file: &Path) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let started = Instant::now();
    let result = take_and_record(&config, &db, file, Trigger::Command).await;
    db.close().await;
    let m = result?;
    println!(
        "backup: {} ({}, {} bytes, {} tables, {} rows, migration {}) in {:.1} s",
        file.display(),
        m.backend,
        m.bytes,
        m.tables.len(),
        m.rows(),
        m.migration,
        started.elapsed().as_secs_f64()
    );
    println!("manifest: {}", manifest_path(file).display());
    println!("sha256: {}", m.sha256);
    Ok(())
}

/// Restores a backup into the configured database, then checks it: row counts against the
/// manifest, and the ledger when the schema is current.
pub async fn restore(config: Config, file: &Path, force: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let restored = backup::restore(&config, file, force).await?;
    let rows: i64 = restored.counts.values().sum();
    println!(
        "restored: {} into {} ({} tables, {rows} rows) in {:.1} s",
        file.display(),
        crate::redact::redact_url(&config.database_url()),
        restored.counts.len(),
        started.elapsed().as_secs_f64()
    );
    match &restored.manifest {
        None => println!(
            "row counts: not compared (no manifest {} beside the file)",
            manifest_path(file).display()
        ),
        Some(_) if restored.mismatches.is_empty() => println!(
            "row counts: every table matches the manifest ({} tables)",
            restored.counts.len()
        ),
        Some(_) => {
            for (table, expected, found) in &restored.mismatches {
                println!("row counts: {table}: the manifest says {expected}, restored {found}");
            }
            bail!(
                "{} tables differ from the manifest",
                restored.mismatches.len()
            );
        }
    }
    let db = Db::connect(&config.database_url(), &config.database).await?;
    let status = crate::store::migrate::status(&db).await?;
    let verified = if status.is_current() {
        let (accounts, mismatches) = crate::store::ledger::verify(&db).await?;
        for m in &mismatches {
            println!(
                "ledger: MISMATCH app {} user {}: {}",
                m.app_id, m.user_id, m.problem
            );
        }
        println!(
            "ledger: {accounts} accounts checked, {} mismatches",
            mismatches.len()
        );
        mismatches.is_empty()
    } else {
        println!(
            "migrations: {:?} pending; run `tollgate migrate`, then `tollgate ledger verify`",
            status.pending_versions()
        );
        true
    };
    db.close().await;
    if !verified {
        bail!("the restored ledger does not verify");
    }
    Ok(())
}
