//! An app's endpoints: where its events (or its HTTP jobs) are POSTed, with their sealed
//! secrets and health.

use crate::scoped_run;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// An endpoint as stored; `secret` and `previous_secret` are sealed (or `plain:`) text.
#[derive(Clone)]
pub struct EndpointRow {
    pub id: i64,
    pub app_id: i64,
    pub url: String,
    pub description: String,
    /// `events` or `jobs` (the app's HTTP jobs).
    pub purpose: String,
    pub event_types: Option<Vec<String>>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

type EndpointTuple = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    bool,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

const ENDPOINT_COLUMNS: &str = "id, app_id, url, description, purpose, event_types, secret, \
     previous_secret, previous_until, enabled, disabled_reason, failing_since, created_at, updated_at";

fn endpoint_row(t: EndpointTuple) -> EndpointRow {
    EndpointRow {
        id: t.0,
        app_id: t.1,
        url: t.2,
        description: t.3,
        purpose: t.4,
        event_types: t.5.and_then(|j| serde_json::from_str(&j).ok()),
        secret: t.6,
        previous_secret: t.7,
        previous_until: t.8,
        enabled: t.9,
        disabled_reason: t.10,
        failing_since: t.11,
        created_at: t.12,
        updated_at: t.13,
    }
}

/// A new endpoint's fields (the secret already sealed).
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    pub url: &'a str,
    /// `events` or `jobs`.
    pub purpose: &'a str,
    pub description: &'a str,
    pub event_types: Option<&'a [String]>,
    pub sealed_secret: &'a str,
}

pub async fn create_endpoint(
    db: &Db,
    app_id: i64,
    e: &NewEndpoint<'_>,
) -> Result<EndpointRow, sqlx::Error> {
    let now = now_ms();
    let types = e
        .event_types
        .map(|t| serde_json::to_string(t).expect("strings serialise"));
    let sql = format!(
        "INSERT INTO event_endpoints (app_id, url, description, purpose, event_types, secret, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ENDPOINT_COLUMNS}"
    );
    let row: EndpointTuple = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(e.url).bind(e.description).bind(e.purpose).bind(types)
        .bind(e.sealed_secret).bind(now)
        .fetch_one(c).await)?;
    Ok(endpoint_row(row))
}

pub async fn endpoints(db: &Db, app_id: i64) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 ORDER BY id");
    let rows: Vec<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).fetch_all(c).await)?;
    Ok(rows.into_iter().map(endpoint_row).collect())
}

pub async fn endpoint(db: &Db, app_id: i64, id: i64) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 AND id = $2");
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// The app's endpoint for its HTTP jobs, if it registered one.
pub async fn jobs_endpoint(db: &Db, app_id: i64) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE app_id = $1 AND purpose = 'jobs'"
    );
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch<'a> {
    pub url: Option<&'a str>,
    pub description: Option<&'a str>,
    /// `Some(None)`: every type.
    pub event_types: Option<Option<&'a [String]>>,
    pub enabled: Option<bool>,
}

pub async fn update_endpoint(
    db: &Db,
    app_id: i64,
    id: i64,
    p: &EndpointPatch<'_>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let types = p
        .event_types
        .map(|t| t.map(|t| serde_json::to_string(t).expect("strings serialise")));
    let sql = format!(
        "UPDATE event_endpoints SET url = COALESCE($3, url), \
         description = COALESCE($4, description), \
         event_types = CASE WHEN $5 THEN $6 ELSE event_types END, \
         enabled = COALESCE($7, enabled), \
         disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason WHEN $7 THEN NULL ELSE 'disabled by an operator' END, \
         failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END, \
         updated_at = $8 WHERE app_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
    );
    let row: Option<EndpointTuple> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).bind(p.url).bind(p.description)
        .bind(types.is_some()).bind(types.flatten()).bind(p.enabled).bind(now_ms())
        .fetch_optional(c).await)?;
    Ok(row.map(endpoint_row))
}

/// Deletes an endpoint with its deliveries and attempts.
pub async fn delete_endpoint(db: &Db, app_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "DELETE FROM event_endpoints WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Puts a new secret in place; the old one keeps signing until `previous_until`.
pub async fn rotate_secret(
    db: &Db,
    app_id: i64,
    id: i64,
    sealed_secret: &str,
    previous_until: i64,
) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE event_endpoints SET previous_secret = secret, previous_until = $3, secret = $4, \
         updated_at = $5 WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(id).bind(previous_until).bind(sealed_secret).bind(now_ms())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Disables an endpoint for `reason`; true if it was enabled.
pub async fn disable_endpoint(
    db: &Db,
    app_id: i64,
    id: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let n = scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE event_endpoints SET enabled = FALSE, disabled_reason = $3, updated_at = $4 \
         WHERE app_id = $1 AND id = $2 AND enabled")
        .bind(app_id).bind(id).bind(reason).bind(now_ms())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}
