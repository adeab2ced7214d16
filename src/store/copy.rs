//! Copying every row of a SQLite database into a migrated, empty PostgreSQL schema with ids
//! intact (`tollgate migrate-data`, docs/backups.md). The source is read in one transaction (one
//! snapshot); the target is written in one transaction, so a failure leaves it as it was.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, Executor, Postgres, Row, TypeInfo, ValueRef};

use super::Db;

/// Tables never copied: each database keeps its own migration bookkeeping.
const SKIPPED: &[&str] = &["_sqlx_migrations"];
/// Rows per INSERT (PostgreSQL takes at most 65,535 parameters per statement).
const MAX_PARAMS: usize = 60_000;

/// What the copy did: rows per table.
pub type Copied = BTreeMap<String, i64>;

/// A PostgreSQL column's kind, which decides how a SQLite value is bound.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Bool,
    Text,
    Bytes,
}

#[derive(Debug)]
struct Table {
    name: String,
    columns: Vec<(String, Kind)>,
    /// Columns filled by a sequence (`BIGSERIAL`), to move past the copied ids.
    serial: Vec<String>,
}

/// Why the target cannot take the copy.
pub fn refuse_non_empty(counts: &super::backup::RowCounts) -> Option<String> {
    let filled: Vec<String> = counts
        .iter()
        .filter(|(t, n)| !SKIPPED.contains(&t.as_str()) && **n > seeded(t))
        .map(|(t, n)| format!("{t} ({n})"))
        .collect();
    (!filled.is_empty()).then(|| filled.join(", "))
}

/// Rows the migrations themselves insert (the `default` job queue).
fn seeded(table: &str) -> i64 {
    i64::from(table == "job_queues")
}

/// Copies every table of `source` (SQLite) into `target` (PostgreSQL, migrated to the same
/// version, empty but for what the migrations seed).
pub async fn sqlite_to_postgres(source: &Db, target: &Db) -> anyhow::Result<Copied> {
    let (Db::Sqlite(source), Db::Postgres(pool, owner)) = (source, target) else {
        anyhow::bail!("the source must be SQLite and the target PostgreSQL");
    };
    let mut tx = owner.as_ref().unwrap_or(pool).begin().await?;
    super::scope::apply(&mut tx, super::scope::Scope::AllApps).await?;
    let tables = pg_tables(&mut tx).await?;
    let mut read = source.acquire().await?;
    // One read transaction: every table is read from the same snapshot.
    let mut snapshot = read.begin().await?;
    let source_tables: BTreeSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut *snapshot)
    .await?
    .into_iter()
    .filter(|t: &String| !SKIPPED.contains(&t.as_str()))
    .collect();
    let target_names: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    anyhow::ensure!(
        source_tables == target_names,
        "the two schemas differ: only in SQLite {:?}, only in PostgreSQL {:?} (migrate both to the same version)",
        source_tables.difference(&target_names).collect::<Vec<_>>(),
        target_names.difference(&source_tables).collect::<Vec<_>>()
    );
    for seed in tables.iter().filter(|t| seeded(&t.name) > 0) {
        tx.execute(sqlx::AssertSqlSafe(format!("DELETE FROM {}", seed.name)))
            .await?;
    }
    let mut copied = Copied::new();
    for table in &tables {
        let select = format!(
            "SELECT {} FROM \"{}\" ORDER BY rowid",
            quoted(table),
            table.name
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .fetch_all(&mut *snapshot)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", table.name))?;
        let per_batch = (MAX_PARAMS / table.columns.len().max(1)).clamp(1, 1000);
        for batch in rows.chunks(per_batch) {
            insert(&mut tx, table, batch).await?;
        }
        let sequence_floor = sqlite_sequence(&mut snapshot, &table.name).await?;
        for column in &table.serial {
            // Past every copied id and every id SQLite ever handed out: no id is reused.
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{t}', '{column}'), \
                 GREATEST(COALESCE(MAX({column}), 0), $1) + 1, false) FROM {t}",
                t = table.name
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(sequence_floor)
                .execute(&mut *tx)
                .await?;
        }
        copied.insert(table.name.clone(), rows.len() as i64);
    }
    snapshot.rollback().await?;
    tx.commit().await?;
    Ok(copied)
}

/// The highest id SQLite's AUTOINCREMENT gave out for `table` (0 when none).
async fn sqlite_sequence(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
) -> Result<i64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .or_else(|e| match &e {
            // No AUTOINCREMENT table at all: SQLite has no sqlite_sequence.
            sqlx::Error::Database(d) if d.message().contains("no such table") => Ok(None),
            _ => Err(e),
        })?;
    Ok(seq.unwrap_or(0))
}

/// The target's tables in an order where every referenced table comes first.
async fn pg_tables(tx: &mut sqlx::PgConnection) -> anyhow::Result<Vec<Table>> {
    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, column_default::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for (table, column, data_type, default) in columns {
        if SKIPPED.contains(&table.as_str()) {
            continue;
        }
        let kind = match data_type.as_str() {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "boolean" => Kind::Bool,
            "text" | "character varying" => Kind::Text,
            "bytea" => Kind::Bytes,
            other => anyhow::bail!("{table}.{column}: type {other} is not one tollgate uses"),
        };
        let entry = tables.entry(table.clone()).or_insert_with(|| Table {
            name: table.clone(),
            columns: Vec::new(),
            serial: Vec::new(),
        });
        if default.is_some_and(|d| d.starts_with("nextval(")) {
            entry.serial.push(column.clone());
        }
        entry.columns.push((column, kind));
    }
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT ch.relname::text, pa.relname::text FROM pg_constraint c \
         JOIN pg_class ch ON ch.oid = c.conrelid JOIN pg_class pa ON pa.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut ordered = Vec::new();
    let mut placed = BTreeSet::new();
    while !tables.is_empty() {
        let ready: Vec<String> = tables
            .keys()
            .filter(|t| {
                edges
                    .iter()
                    .filter(|(child, parent)| child == *t && parent != *t)
                    .all(|(_, parent)| placed.contains(parent))
            })
            .cloned()
            .collect();
        anyhow::ensure!(
            !ready.is_empty(),
            "foreign keys form a cycle among {:?}",
            tables.keys().collect::<Vec<_>>()
        );
        for t in ready {
            placed.insert(t.clone());
            ordered.extend(tables.remove(&t));
        }
    }
    Ok(ordered)
}

/// The table's column list, each name quoted (`trigger` is a keyword to SQLite). Names come
/// from the catalog, never from a user.
fn quoted(table: &Table) -> String {
    let names: Vec<String> = table
        .columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect();
    names.join(", ")
}

/// One multi-row INSERT of `rows`, each SQLite value bound as its PostgreSQL column's type.
async fn insert(
    tx: &mut sqlx::PgConnection,
    table: &Table,
    rows: &[SqliteRow],
) -> anyhow::Result<()> {
    let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, quoted(table));
    let width = table.columns.len();
    for r in 0..rows.len() {
        if r > 0 {
            sql.push(',');
        }
        let placeholders: Vec<String> =
            (1..=width).map(|c| format!("${}", r * width + c)).collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
    let mut query = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for (i, (column, kind)) in table.columns.iter().enumerate() {
            query = bind(query, row, i, *kind)
                .map_err(|e| anyhow::anyhow!("{}.{column}: {e}", table.name))?;
        }
    }
    query
        .execute(&mut *tx)
        .await
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", table.name))?;
    Ok(())
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind<'q>(
    query: PgQuery<'q>,
    row: &SqliteRow,
    i: usize,
    kind: Kind,
) -> Result<PgQuery<'q>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    let stored = raw.type_info().name().to_string();
    let null = raw.is_null();
    Ok(match kind {
        Kind::Int => query.bind(if null {
            None
        } else {
            Some(row.try_get::<i64, _>(i)?)
        }),
        Kind::Bool => query.bind(if null {
            None
        } else {
            Some(row.try_get::<i64, _>(i)? != 0)
        }),
        Kind::Text => query.bind(if null {
            None
        } else {
            Some(row.try_get::<String, _>(i)?)
        }),
        Kind::Bytes => query.bind(match (null, stored.as_str()) {
            (true, _) => None,
            (false, "TEXT") => Some(row.try_get::<String, _>(i)?.into_bytes()),
            (false, _) => Some(row.try_get::<Vec<u8>, _>(i)?),
        }),
    })
}
