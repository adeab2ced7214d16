//! Schema migrations, one directory per dialect, embedded in the binary.
//!
//! sqlx's `Migrator` applies them (with an advisory lock on PostgreSQL, so replicas starting
//! together do not race); the list is built here so the binary needs no `migrate!` macro.

use std::borrow::Cow;

use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::{Backend, Db};

/// (version, description, SQL) for one dialect.
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../migrations/sqlite/0002_jobs.sql"),
    ),
    (
        3,
        "identity",
        include_str!("../../migrations/sqlite/0003_identity.sql"),
    ),
    (
        4,
        "invites",
        include_str!("../../migrations/sqlite/0004_invites.sql"),
    ),
    (
        5,
        "tenant_rls",
        include_str!("../../migrations/sqlite/0005_tenant_rls.sql"),
    ),
    (
        6,
        "ledger",
        include_str!("../../migrations/sqlite/0006_ledger.sql"),
    ),
    (
        7,
        "usage",
        include_str!("../../migrations/sqlite/0007_usage.sql"),
    ),
    (
        8,
        "billing",
        include_str!("../../migrations/sqlite/0008_billing.sql"),
    ),
    (
        9,
        "exactly_once",
        include_str!("../../migrations/sqlite/0009_exactly_once.sql"),
    ),
    (
        10,
        "call_on_hold",
        include_str!("../../migrations/sqlite/0010_call_on_hold.sql"),
    ),
    (
        11,
        "events",
        include_str!("../../migrations/sqlite/0011_events.sql"),
    ),
    (
        12,
        "recovery",
        include_str!("../../migrations/sqlite/0012_recovery.sql"),
    ),
    (
        13,
        "recovery_nudges",
        include_str!("../../migrations/sqlite/0013_recovery_nudges.sql"),
    ),
    (
        14,
        "backups",
        include_str!("../../migrations/sqlite/0014_backups.sql"),
    ),
    (
        15,
        "recovery_incentives",
        include_str!("../../migrations/sqlite/0015_recovery_incentives.sql"),
    ),
    (
        16,
        "user_email",
        include_str!("../../migrations/sqlite/0016_user_email.sql"),
    ),
];
const POSTGRES: Embedded = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../migrations/postgres/0002_jobs.sql"),
    ),
    (
        3,
        "identity",
        include_str!("../../migrations/postgres/0003_identity.sql"),
    ),
    (
        4,
        "invites",
        include_str!("../../migrations/postgres/0004_invites.sql"),
    ),
    (
        5,
        "tenant_rls",
        include_str!("../../migrations/postgres/0005_tenant_rls.sql"),
    ),
    (
        6,
        "ledger",
        include_str!("../../migrations/postgres/0006_ledger.sql"),
    ),
    (
        7,
        "usage",
        include_str!("../../migrations/postgres/0007_usage.sql"),
    ),
    (
        8,
        "billing",
        include_str!("../../migrations/postgres/0008_billing.sql"),
    ),
    (
        9,
        "exactly_once",
        include_str!("../../migrations/postgres/0009_exactly_once.sql"),
    ),
    (
        10,
        "call_on_hold",
        include_str!("../../migrations/postgres/0010_call_on_hold.sql"),
    ),
    (
        11,
        "events",
        include_str!("../../migrations/postgres/0011_events.sql"),
    ),
    (
        12,
        "recovery",
        include_str!("../../migrations/postgres/0012_recovery.sql"),
    ),
    (
        13,
        "recovery_nudges",
        include_str!("../../migrations/postgres/0013_recovery_nudges.sql"),
    ),
    (
        14,
        "backups",
        include_str!("../../migrations/postgres/0014_backups.sql"),
    ),
    (
        15,
        "recovery_incentives",
        include_str!("../../migrations/postgres/0015_recovery_incentives.sql"),
    ),
    (
        16,
        "user_email",
        include_str!("../../migrations/postgres/0016_user_email.sql"),
    ),
];

/// The table sqlx keeps its bookkeeping in.
const TABLE: &str = "_sqlx_migrations";

/// What the database has applied compared with what this binary embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub applied: Vec<i64>,
    /// Embedded but not applied: (version, description).
    pub pending: Vec<(i64, String)>,
    /// Applied but unknown to this binary: the database is newer than the code.
    pub unknown: Vec<i64>,
    /// A migration that failed halfway.
    pub dirty: Option<i64>,
    /// Applied with a different checksum: the migration file was edited after release.
    pub modified: Vec<i64>,
}

impl Status {
    /// True when the schema is exactly what this binary expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.damage().is_none()
    }

    /// The versions not applied yet.
    pub fn pending_versions(&self) -> Vec<i64> {
        self.pending.iter().map(|(v, _)| *v).collect()
    }

    /// What no automatic step may repair: a migration that failed halfway, or one edited after
    /// it was applied. Shared by startup (which refuses) and readiness (which fails).
    pub fn damage(&self) -> Option<String> {
        if let Some(version) = self.dirty {
            return Some(format!(
                "migration {version} failed halfway; repair the database by hand, then run `tollgate migrate`"
            ));
        }
        if !self.modified.is_empty() {
            return Some(format!(
                "applied migrations {:?} differ from this binary's copies; was a released migration edited?",
                self.modified
            ));
        }
        None
    }
}

/// The migrations this binary embeds for `backend`: (version, description).
pub fn embedded_list(backend: Backend) -> Vec<(i64, &'static str)> {
    embedded(backend).iter().map(|(v, d, _)| (*v, *d)).collect()
}

fn embedded(backend: Backend) -> Embedded {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        embedded(backend)
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies every pending migration, as the schema's owner when one is configured, then grants
/// the serving role what it needs on the tables (read and write, never ownership). Returns
/// the versions applied now.
pub async fn run(db: &Db) -> anyhow::Result<Vec<i64>> {
    let before = status(db).await?;
    let owner = db.as_owner();
    let m = migrator(db.backend());
    crate::db_run!(&owner, pool => m.run(pool).await)?;
    grant_to_serving_role(db).await?;
    Ok(before.pending.into_iter().map(|(v, _)| v).collect())
}

/// With a separate owner: lets `database.url`'s role read and write every table and sequence
/// of the schema (idempotent; run after each migration).
async fn grant_to_serving_role(db: &Db) -> Result<(), sqlx::Error> {
    let Db::Postgres(serving, Some(owner)) = db else {
        return Ok(());
    };
    let role: String = sqlx::query_scalar("SELECT quote_ident(current_user)")
        .fetch_one(serving)
        .await?;
    let (owner_role, schema): (String, String) =
        sqlx::query_as("SELECT quote_ident(current_user), quote_ident(current_schema())")
            .fetch_one(owner)
            .await?;
    if role == owner_role {
        return Ok(());
    }
    // Identifiers come quoted from the server itself (quote_ident), never from input.
    for grant in [
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(grant))
            .execute(owner)
            .await?;
    }
    Ok(())
}

/// Compares the database with the embedded migrations without changing anything (read as the
/// owner when one is configured: the serving role may not be granted anything yet).
pub async fn status(db: &Db) -> Result<Status, sqlx::Error> {
    let db = &db.as_owner();
    let exists: bool = match db {
        Db::Sqlite(pool) => {
            sqlx::query("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(TABLE)
                .fetch_one(pool)
                .await?
                .try_get(0)?
        }
        Db::Postgres(pool, _) => sqlx::query("SELECT to_regclass($1) IS NOT NULL")
            .bind(TABLE)
            .fetch_one(pool)
            .await?
            .try_get(0)?,
    };
    let rows: Vec<(i64, bool, Vec<u8>)> = if exists {
        crate::db_run!(db, pool => {
            sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(pool)
                .await?
        })
    } else {
        Vec::new()
    };
    let m = migrator(db.backend());
    let mut status = Status::default();
    for (version, success, checksum) in &rows {
        match m.iter().find(|e| e.version == *version) {
            None => status.unknown.push(*version),
            Some(_) if !success => status.dirty = Some(*version),
            Some(e) if e.checksum.as_ref() != checksum.as_slice() => status.modified.push(*version),
            Some(_) => status.applied.push(*version),
        }
    }
    status.pending = m
        .iter()
        .filter(|e| !rows.iter().any(|(v, _, _)| *v == e.version))
        .map(|e| (e.version, e.description.to_string()))
        .collect();
    Ok(status)
}
