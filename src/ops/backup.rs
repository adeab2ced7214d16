//! Backups and restores (docs/backups.md). A backup is one file plus a manifest beside it
//! (`<file>.json`: backend, schema, migration, SHA-256, row counts), written only after the file
//! was verified, so a backup with a manifest is one that was readable when taken.
//! - SQLite: `VACUUM INTO` (one consistent snapshot while serving), then `PRAGMA
//!   integrity_check` and the row counts of the copy.
//! - PostgreSQL: `pg_dump --format=custom` of tollgate's schema, reading a snapshot exported by
//!   tollgate, whose row counts go into the manifest; then `pg_restore --list` reads it back.
//!
//! A restore refuses a target that holds tables (unless forced), checks the file against its
//! manifest, and compares the restored row counts with it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::backup::{self as stored, RowCounts, Trigger};
use crate::store::{Backend, Db, migrate, now_ms};

/// The manifest's format name; a restore refuses any other.
const FORMAT: &str = "tollgate-backup/1";

/// What a backup holds, written beside it as `<file>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub backend: String,
    pub tollgate_version: String,
    /// PostgreSQL: the schema dumped (restored under the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The newest migration applied when the backup was taken.
    pub migration: i64,
    pub created_at_ms: i64,
    pub bytes: u64,
    pub sha256: String,
    /// Rows per table in the backup.
    pub tables: RowCounts,
}

impl Manifest {
    pub fn rows(&self) -> i64 {
        self.tables.values().sum()
    }
}

/// The manifest's path for a backup file.
pub fn manifest_path(file: &Path) -> PathBuf {
    with_suffix(file, ".json")
}

/// Takes a verified backup of `db` into `file`, which must not exist yet. The file appears only
/// once verified (it is written as `<file>.partial` first).
pub async fn take(config: &Config, db: &Db, file: &Path) -> anyhow::Result<Manifest> {
    ensure!(
        !file.exists() && !manifest_path(file).exists(),
        "{} already exists; a backup never overwrites a file",
        file.display()
    );
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let partial = with_suffix(file, ".partial");
    let _ = std::fs::remove_file(&partial);
    let status = migrate::status(db).await?;
    ensure!(
        status.damage().is_none(),
        "the migrations are damaged: {}",
        status.damage().unwrap_or_default()
    );
    let migration = status.applied.iter().copied().max().unwrap_or(0);
    let result = match db.backend() {
        Backend::Sqlite => sqlite_copy(db, &partial).await,
        Backend::Postgres => pg_dump(config, db, &partial).await,
    };
    let (schema, tables) = match result {
        Ok(found) => found,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let (bytes, sha256) = digest(&partial)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        backend: db.backend().as_str().into(),
        tollgate_version: env!("CARGO_PKG_VERSION").into(),
        schema,
        migration,
        created_at_ms: crate::store::now_ms(),
        bytes,
        sha256,
        tables,
    };
    durable_rename(&partial, file)?;
    write_atomically(&manifest_path(file), &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

pub const BACKUPS: &str = "tollgate_backups_total";
pub const LAST_SUCCESS: &str = "tollgate_backup_last_success_timestamp_seconds";
pub const SIZE: &str = "tollgate_backup_size_bytes";

pub fn describe_metrics() {
    metrics::describe_counter!(
        BACKUPS,
        "Backups attempted, by trigger (schedule, command) and outcome (ok, failed)."
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "When the newest verified backup finished (Unix time), as recorded in the database."
    );
    metrics::describe_gauge!(
        SIZE,
        metrics::Unit::Bytes,
        "Size of the newest backup this process took."
    );
}

/// Publishes the newest verified backup's time (from the database, so every replica and a
/// restarted worker agree). 0 when there is none, so an age alert fires.
pub async fn publish_gauge(db: &Db) -> Result<(), sqlx::Error> {
    let newest = stored::newest_ok(db).await?.unwrap_or(0);
    metrics::gauge!(LAST_SUCCESS).set(newest as f64 / 1000.0);
    Ok(())
}

/// Takes a backup and records its outcome, in the `backups` table and the metrics, whether it
/// worked or not. Used by the job and by `tollgate backup`.
pub async fn take_and_record(
    config: &Config,
    db: &Db,
    file: &Path,
    trigger: Trigger,
) -> anyhow::Result<Manifest> {
    let started_at = now_ms();
    let result = take(config, db, file).await;
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let path = file.display().to_string();
    let recorded = stored::Recorded {
        trigger,
        path: &path,
        bytes: result.as_ref().ok().map(|m| m.bytes as i64),
        error: error.as_deref(),
        started_at,
        finished_at: now_ms(),
    };
    if let Err(e) = stored::record(db, &recorded).await {
        tracing::warn!(error = %e, "cannot record the backup in the database");
    }
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!(BACKUPS, "trigger" => trigger.as_str(), "outcome" => outcome).increment(1);
    if let Ok(m) = &result {
        metrics::gauge!(SIZE).set(m.bytes as f64);
        metrics::gauge!(LAST_SUCCESS).set(recorded.finished_at as f64 / 1000.0);
    }
    result
}

async fn sqlite_copy(db: &Db, partial: &Path) -> anyhow::Result<(Option<String>, RowCounts)> {
    stored::sqlite_vacuum_into(db, partial)
        .await
        .context("VACUUM INTO failed")?;
    let mut copy = stored::SqliteFile::open(partial).await?;
    let integrity = copy.integrity().await?;
    ensure!(
        integrity == "ok",
        "the copy failed its integrity check: {integrity}"
    );
    let counts = copy.row_counts().await?;
    copy.close().await?;
    Ok((None, counts))
}

async fn pg_dump(
    config: &Config,
    db: &Db,
    partial: &Path,
) -> anyhow::Result<(Option<String>, RowCounts)> {
    let snapshot = stored::pg_snapshot(db)
        .await
        .context("cannot export a snapshot")?;
    let target = PgTarget::of(config)?;
    let mut command = target.command("pg_dump")?;
    command
        .arg("--format=custom")
        .arg(format!("--schema={}", snapshot.schema))
        .arg(format!("--snapshot={}", snapshot.id))
        // The dump runs as the schema's owner, which FORCE'd row-level security would filter:
        // with row security on and every app asked for, it reads every row, as the counts did.
        .arg("--enable-row-security")
        .arg(format!("--file={}", partial.display()));
    let dumped = run(command, "pg_dump").await;
    let (schema, counts) = (snapshot.schema.clone(), snapshot.counts.clone());
    snapshot.release().await?;
    dumped?;
    let list = run_output(
        {
            let mut c = target.command("pg_restore")?;
            c.arg("--list").arg(partial);
            c
        },
        "pg_restore --list",
    )
    .await?;
    for table in counts.keys() {
        ensure!(
            list.lines()
                .any(|l| l.contains(&format!("TABLE DATA {schema} {table} "))),
            "the dump has no data entry for table {table}"
        );
    }
    Ok((Some(schema), counts))
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Option<Manifest>,
    pub counts: RowCounts,
    /// The manifest's counts, for the tables whose restored count differs (none when it matched).
    pub mismatches: Vec<(String, i64, i64)>,
}

/// Restores `file` into the configured database. Refuses a target that holds any table unless
/// `force`; checks the file against its manifest first (size and SHA-256), and compares the
/// restored row counts with it afterwards.
pub async fn restore(config: &Config, file: &Path, force: bool) -> anyhow::Result<Restored> {
    ensure!(file.is_file(), "{} is not a file", file.display());
    let manifest = read_manifest(file)?;
    let url = config.database_url();
    let backend = if Db::sqlite_file(&url).is_some() {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    if let Some(m) = &manifest {
        ensure!(
            m.backend == backend.as_str(),
            "this is a {} backup and the configured database is {}; a backup restores into the \
             backend it was taken from; `tollgate migrate-data` moves SQLite into PostgreSQL",
            m.backend,
            backend.as_str()
        );
    }
    let counts = match backend {
        Backend::Sqlite => sqlite_restore(config, file, force).await?,
        Backend::Postgres => pg_restore(config, file, manifest.as_ref(), force).await?,
    };
    let mismatches = match &manifest {
        Some(m) => compare(&m.tables, &counts),
        None => Vec::new(),
    };
    Ok(Restored {
        manifest,
        counts,
        mismatches,
    })
}

/// Tables whose count differs: (table, in the manifest, restored).
pub fn compare(expected: &RowCounts, found: &RowCounts) -> Vec<(String, i64, i64)> {
    let mut names: Vec<&String> = expected.keys().chain(found.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|t| {
            let (a, b) = (
                expected.get(t).copied().unwrap_or(-1),
                found.get(t).copied().unwrap_or(-1),
            );
            (a != b).then(|| (t.clone(), a, b))
        })
        .collect()
}

fn read_manifest(file: &Path) -> anyhow::Result<Option<Manifest>> {
    let path = manifest_path(file);
    if !path.exists() {
        return Ok(None);
    }
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    ensure!(
        manifest.format == FORMAT,
        "{}: unknown format {:?}",
        path.display(),
        manifest.format
    );
    let (bytes, sha256) = digest(file)?;
    ensure!(
        bytes == manifest.bytes && sha256 == manifest.sha256,
        "{} does not match its manifest ({bytes} bytes, SHA-256 {sha256}; the manifest says {} \
         bytes, {}): the file is damaged or not the one backed up",
        file.display(),
        manifest.bytes,
        manifest.sha256
    );
    Ok(Some(manifest))
}

async fn sqlite_restore(config: &Config, file: &Path, force: bool) -> anyhow::Result<RowCounts> {
    let url = config.database_url();
    let target = Db::sqlite_file(&url).context("the database is not a SQLite file")?;
    let mut source = stored::SqliteFile::open(file)
        .await
        .with_context(|| format!("{} is not a SQLite database", file.display()))?;
    let integrity = source.integrity().await?;
    source.close().await?;
    ensure!(
        integrity == "ok",
        "{} failed its integrity check: {integrity}",
        file.display()
    );
    if target.exists() {
        let mut existing = stored::SqliteFile::open(&target).await?;
        let tables = existing.row_counts().await?.len();
        existing.close().await?;
        if tables > 0 && !force {
            bail!(
                "{} is not empty ({tables} tables); stop tollgate, and pass --force to replace it",
                target.display()
            );
        }
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let staged = with_suffix(&target, ".restoring");
    std::fs::copy(file, &staged)
        .with_context(|| format!("cannot copy into {}", staged.display()))?;
    // The old database's write-ahead log must not be replayed onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(&target, suffix));
    }
    durable_rename(&staged, &target)?;
    let mut restored = stored::SqliteFile::open(&target).await?;
    let counts = restored.row_counts().await?;
    restored.close().await?;
    Ok(counts)
}

async fn pg_restore(
    config: &Config,
    file: &Path,
    manifest: Option<&Manifest>,
    force: bool,
) -> anyhow::Result<RowCounts> {
    let target = PgTarget::of(config)?;
    let db = Db::connect(&target.raw, &config.database)
        .await
        .context("cannot connect to the target database")?;
    let result = pg_restore_into(config, &target, &db, file, manifest, force).await;
    db.close().await;
    result
}

async fn pg_restore_into(
    config: &Config,
    target: &PgTarget,
    db: &Db,
    file: &Path,
    manifest: Option<&Manifest>,
    force: bool,
) -> anyhow::Result<RowCounts> {
    let list = run_output(
        {
            let mut c = target.command("pg_restore")?;
            c.arg("--list").arg(file);
            c
        },
        "pg_restore --list",
    )
    .await
    .with_context(|| format!("{} is not a pg_dump archive", file.display()))?;
    let schema = match manifest.and_then(|m| m.schema.clone()) {
        Some(s) => s,
        None => schema_in_list(&list).context("the archive names no schema")?,
    };
    let current = stored::pg_current_schema(db).await?;
    if let Some(current) = &current {
        ensure!(
            current == &schema,
            "the backup holds schema {schema:?} and the target's search_path resolves to \
             {current:?}; the schema is restored under its own name"
        );
    }
    let tables = stored::tables(db, &schema).await?;
    if !tables.is_empty() && !force {
        bail!(
            "schema {schema:?} of the target is not empty ({} tables); pass --force to replace \
             the objects the backup holds",
            tables.len()
        );
    }
    let schema_exists = current.is_some() || !tables.is_empty();
    let mut restore = target.command("pg_restore")?;
    restore
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg(format!("--dbname={}", target.url));
    if force && !tables.is_empty() {
        restore.arg("--clean").arg("--if-exists");
    }
    let _list_file;
    if schema_exists {
        // The schema is there already: restore what is in it, not the schema itself.
        let kept: Vec<&str> = list
            .lines()
            .filter(|l| !names_the_schema_itself(l, &schema))
            .collect();
        let path = with_suffix(file, &format!(".list-{}", std::process::id()));
        std::fs::write(&path, kept.join("\n"))?;
        restore.arg(format!("--use-list={}", path.display()));
        _list_file = RemoveOnDrop(path);
    }
    restore.arg(file);
    run(restore, "pg_restore").await?;
    // A new connection: the schema may not have existed when `db` resolved its search_path.
    let restored = Db::connect(&target.raw, &config.database).await?;
    let counts = stored::row_counts(&restored).await;
    restored.close().await;
    Ok(counts?)
}

/// The archive's `SCHEMA - name` entry, when the manifest is missing.
fn schema_in_list(list: &str) -> Option<String> {
    list.lines().find_map(|l| {
        let rest = l.split_once(" SCHEMA - ")?.1;
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// TOC lines that create, comment on or grant on the schema itself (not its objects).
fn names_the_schema_itself(line: &str, schema: &str) -> bool {
    [
        format!(" SCHEMA - {schema} "),
        format!(" COMMENT - SCHEMA {schema} "),
        format!(" ACL - SCHEMA {schema} "),
    ]
    .iter()
    .any(|pattern| line.contains(pattern.as_str()))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The PostgreSQL database the client tools reach: the owner's URL when set (the dump reads and
/// the restore creates as the schema's owner), without its password, which goes in
/// `PGPASSWORD` so it never shows in the process list.
struct PgTarget {
    /// The URL as configured (for tollgate's own connection).
    raw: String,
    /// The URL for libpq, without pool settings or password.
    url: String,
    password: Option<String>,
}

impl PgTarget {
    fn of(config: &Config) -> anyhow::Result<PgTarget> {
        let raw = config
            .database
            .owner_url
            .clone()
            .unwrap_or_else(|| config.database_url());
        let split = crate::config::database_url::split(&raw)
            .map_err(|p| anyhow::anyhow!("DATABASE_URL: {}", p.join("; ")))?;
        let mut url = url::Url::parse(&split.url).context("invalid PostgreSQL URL")?;
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = url.set_password(None);
        // Every app's rows (migration 0009's policies let the owner see them with this set),
        // added to the connection's own `options`: libpq reads PGOPTIONS only without them.
        let mut options = "-c tollgate.all_apps=on".to_string();
        let mut query = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == "options" {
                options = format!("{v} {options}");
            } else {
                query.push(format!("{}={}", encode(&k), encode(&v)));
            }
        }
        query.push(format!("options={}", encode(&options)));
        // libpq decodes %XX only, never `+`: the query is written by hand, not by `url`.
        url.set_query(None);
        Ok(PgTarget {
            raw,
            url: format!("{url}?{}", query.join("&")),
            password,
        })
    }

    fn command(&self, program: &str) -> anyhow::Result<tokio::process::Command> {
        let mut c = tokio::process::Command::new(program);
        c.arg("--no-password").kill_on_drop(true);
        if program == "pg_dump" {
            c.arg(format!("--dbname={}", self.url));
        }
        match &self.password {
            Some(p) => c.env("PGPASSWORD", p),
            None => c.env_remove("PGPASSWORD"),
        };
        Ok(c)
    }
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn run(command: tokio::process::Command, what: &str) -> anyhow::Result<()> {
    run_output(command, what).await.map(|_| ())
}

/// Runs a PostgreSQL client tool; a missing one is named with the package that brings it.
async fn run_output(mut command: tokio::process::Command, what: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let output = match command.output().await {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{what}: not found on PATH; PostgreSQL backups need the PostgreSQL client tools \
             (Debian/Ubuntu: apt-get install postgresql-client; Alpine: apk add \
             postgresql-client; macOS: brew install libpq), of the server's major version or newer"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {what}")),
    };
    tracing::debug!(
        tool = what,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ran"
    );
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{what} failed ({}): {}", output.status, stderr.trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Size and SHA-256 (hex) of a file.
fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames after syncing the file, then syncs the directory, so a crash leaves either no file
/// or the whole one under its final name.
fn durable_rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::File::open(from)?.sync_all()?;
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = with_suffix(path, ".partial");
    std::fs::write(&tmp, bytes)?;
    durable_rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compare_table_by_table() {
        let a: RowCounts = [("users".to_string(), 3), ("jobs".to_string(), 2)].into();
        let b: RowCounts = [("users".to_string(), 3), ("holds".to_string(), 1)].into();
        assert_eq!(
            compare(&a, &b),
            vec![("holds".to_string(), -1, 1), ("jobs".to_string(), 2, -1)]
        );
        assert!(compare(&a, &a).is_empty());
    }

    #[test]
    fn the_schema_entries_are_told_from_its_objects() {
        let list = "6; 2615 16387 SCHEMA - tg_a postgres\n\
                    216; 1259 16389 TABLE tg_a users postgres\n\
                    7; 0 0 COMMENT - SCHEMA tg_a postgres\n";
        assert_eq!(schema_in_list(list).as_deref(), Some("tg_a"));
        let kept: Vec<&str> = list
            .lines()
            .filter(|l| !names_the_schema_itself(l, "tg_a"))
            .collect();
        assert_eq!(kept, ["216; 1259 16389 TABLE tg_a users postgres"]);
    }
}
