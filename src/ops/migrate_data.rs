//! `tollgate migrate-data`: the move from one machine's SQLite to PostgreSQL for several
//! replicas. Migrates the target, refuses one that holds data, copies every table with its ids
//! and sequences, then proves the copy: the same row count in every table and a ledger that
//! verifies on the target.

use anyhow::{Context, bail, ensure};

use crate::config::Config;
use crate::store::backup::{self as stored, RowCounts};
use crate::store::{Db, copy, migrate};

/// What the move did and what the checks found.
#[derive(Debug)]
pub struct Moved {
    pub copied: copy::Copied,
    /// Tables whose count differs: (table, in SQLite, in PostgreSQL).
    pub mismatches: Vec<(String, i64, i64)>,
    pub accounts: u64,
    pub ledger_mismatches: Vec<crate::store::ledger::Mismatch>,
}

pub async fn run(config: &Config, from: &str, to: &str) -> anyhow::Result<Moved> {
    let Some(file) = Db::sqlite_file(from) else {
        bail!("--from must be a SQLite file URL (sqlite:///path/tollgate.db)");
    };
    ensure!(
        file.is_file(),
        "{} does not exist (--from names the SQLite database to copy)",
        file.display()
    );
    ensure!(
        crate::config::database_url::is_postgres(to),
        "--to must be a PostgreSQL URL (postgres://…)"
    );
    let source = Db::connect(from, &config.database)
        .await
        .context("cannot open the SQLite database")?;
    let result = move_into(config, &source, to).await;
    source.close().await;
    result
}

async fn move_into(config: &Config, source: &Db, to: &str) -> anyhow::Result<Moved> {
    let status = migrate::status(source).await?;
    ensure!(
        status.is_current() && status.damage().is_none(),
        "the SQLite database is not at this binary's schema (pending {:?}); run `tollgate migrate` on it first",
        status.pending_versions()
    );
    // The target URL is the schema's owner: it runs the migrations and writes past RLS.
    let mut cfg = config.database.clone();
    cfg.owner_url = None;
    let target = Db::connect(to, &cfg)
        .await
        .context("cannot connect to the PostgreSQL database")?;
    let result = copy_checked(source, &target).await;
    target.close().await;
    result
}

async fn copy_checked(source: &Db, target: &Db) -> anyhow::Result<Moved> {
    if stored::pg_current_schema(target).await?.is_none() {
        bail!(
            "the target's search_path names no existing schema; create it first (CREATE SCHEMA …)"
        );
    }
    refuse_non_empty(target).await?;
    migrate::run(target)
        .await
        .context("cannot migrate the target")?;
    refuse_non_empty(target).await?;
    let copied = copy::sqlite_to_postgres(source, target).await?;
    let without_bookkeeping = |mut c: RowCounts| {
        c.remove("_sqlx_migrations");
        c
    };
    let expected = without_bookkeeping(stored::row_counts(source).await?);
    let found = without_bookkeeping(stored::row_counts(target).await?);
    let mismatches = super::backup::compare(&expected, &found);
    let (accounts, ledger_mismatches) = crate::store::ledger::verify(target).await?;
    Ok(Moved {
        copied,
        mismatches,
        accounts,
        ledger_mismatches,
    })
}

async fn refuse_non_empty(target: &Db) -> anyhow::Result<()> {
    if let Some(filled) = copy::refuse_non_empty(&stored::row_counts(target).await?) {
        bail!("the target is not empty: {filled}; migrate-data copies only into an empty schema");
    }
    Ok(())
}
