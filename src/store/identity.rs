//! Queries for apps, users, API keys and the audit log. Every query on tenant data takes the
//! app id: nothing here reads across apps except the key lookup, which is how the app is found.

use serde::Serialize;

use crate::domain::identity::{AppSettings, KeyKind, NewKey, Role};
use crate::store::scope::{self, Scope};
use crate::store::{Db, now_ms};
use crate::{db_run, scoped_run, tx_run};

/// An app (tenant).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub settings: AppSettings,
    pub created_at: i64,
}

type AppTuple = (i64, String, String, String, i64);

fn app_row((id, slug, name, settings, created_at): AppTuple) -> AppRow {
    AppRow {
        id,
        slug,
        name,
        settings: parse_settings(Some(&settings)),
        created_at,
    }
}

/// Stored settings; rows written before a setting existed read as its default.
fn parse_settings(json: Option<&str>) -> AppSettings {
    json.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

const APP_COLUMNS: &str = "SELECT id, slug, name, settings, created_at FROM apps";

/// Creates an app with default settings (no plans); `Ok(None)` if the slug is taken.
pub async fn create_app(db: &Db, slug: &str, name: &str) -> Result<Option<AppRow>, sqlx::Error> {
    create_app_with(db, slug, name, &AppSettings::default()).await
}

/// Creates an app with `settings`; `Ok(None)` if the slug is taken.
pub async fn create_app_with(
    db: &Db,
    slug: &str,
    name: &str,
    settings: &AppSettings,
) -> Result<Option<AppRow>, sqlx::Error> {
    let now = now_ms();
    let settings = serde_json::to_string(settings).expect("settings serialize");
    let inserted: Option<i64> = db_run!(db, pool => sqlx::query_scalar(
        "INSERT INTO apps (slug, name, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (slug) DO NOTHING RETURNING id")
        .bind(slug).bind(name).bind(&settings).bind(now).fetch_optional(pool).await)?;
    match inserted {
        Some(_) => app_by_slug(db, slug).await,
        None => Ok(None),
    }
}

/// Creates or updates an app declared in the config file.
pub async fn upsert_app(
    db: &Db,
    slug: &str,
    name: &str,
    settings: &str,
) -> Result<(), sqlx::Error> {
    db_run!(db, pool => sqlx::query(
        "INSERT INTO apps (slug, name, settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (slug) DO UPDATE SET name = excluded.name, settings = excluded.settings, \
         updated_at = excluded.updated_at")
        .bind(slug).bind(name).bind(settings).bind(now_ms()).execute(pool).await.map(|_| ()))
}

pub async fn app_by_slug(db: &Db, slug: &str) -> Result<Option<AppRow>, sqlx::Error> {
    let sql = format!("{APP_COLUMNS} WHERE slug = $1");
    let row: Option<AppTuple> = db_run!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(slug).fetch_optional(pool).await)?;
    Ok(row.map(app_row))
}

pub async fn app_by_id(db: &Db, id: i64) -> Result<Option<AppRow>, sqlx::Error> {
    let sql = format!("{APP_COLUMNS} WHERE id = $1");
    let row: Option<AppTuple> = db_run!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id).fetch_optional(pool).await)?;
    Ok(row.map(app_row))
}

pub async fn list_apps(db: &Db) -> Result<Vec<AppRow>, sqlx::Error> {
    let sql = format!("{APP_COLUMNS} ORDER BY slug");
    let rows: Vec<AppTuple> =
        db_run!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(app_row).collect())
}

/// A user of one app.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserRow {
    pub id: i64,
    pub app_id: i64,
    /// `None` once the user was deleted.
    pub external_id: Option<String>,
    pub anonymous_id: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// When the user redeemed an invite code.
    pub invited_at: Option<i64>,
}

type UserTuple = (
    i64,
    i64,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn user_row(t: UserTuple) -> UserRow {
    UserRow {
        id: t.0,
        app_id: t.1,
        external_id: t.2,
        anonymous_id: t.3,
        created_at: t.4,
        last_seen_at: t.5,
        deleted_at: t.6,
        invited_at: t.7,
    }
}

const USER_COLUMNS: &str = "SELECT id, app_id, external_id, anonymous_id, created_at, last_seen_at, deleted_at, \
     invited_at FROM users";

pub async fn user_by_external_id(
    db: &Db,
    app_id: i64,
    external_id: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("{USER_COLUMNS} WHERE app_id = $1 AND external_id = $2");
    let row: Option<UserTuple> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(external_id).fetch_optional(pool).await)?;
    Ok(row.map(user_row))
}

pub async fn user_by_id(db: &Db, app_id: i64, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("{USER_COLUMNS} WHERE app_id = $1 AND id = $2");
    let row: Option<UserTuple> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(app_id).bind(id).fetch_optional(pool).await)?;
    Ok(row.map(user_row))
}

/// A user and the name of their app, in one read (for `GET /v1/me`).
pub async fn user_and_app_name(
    db: &Db,
    app_id: i64,
    id: i64,
) -> Result<Option<(UserRow, String)>, sqlx::Error> {
    let sql = "SELECT u.id, u.app_id, u.external_id, u.anonymous_id, u.created_at, \
         u.last_seen_at, u.deleted_at, u.invited_at, a.name FROM users u \
         JOIN apps a ON a.id = u.app_id WHERE u.app_id = $1 AND u.id = $2";
    type Row = (
        i64,
        i64,
        Option<String>,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
    );
    let row: Option<Row> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_as(sql)
        .bind(app_id).bind(id).fetch_optional(pool).await)?;
    Ok(row.map(|r| (user_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7)), r.8)))
}

/// The user with this external id, created if new. Returns (user, created).
pub async fn find_or_create_user(
    db: &Db,
    app_id: i64,
    external_id: &str,
) -> Result<(UserRow, bool), sqlx::Error> {
    // Almost every call finds the user (a JWT request signs in an existing user): read first,
    // write only for a new one.
    if let Some(user) = user_by_external_id(db, app_id, external_id).await? {
        return Ok((user, false));
    }
    let anonymous_id = format!("anon_{}", uuid::Uuid::now_v7().simple());
    let created = scoped_run!(db, Scope::App(app_id), pool => sqlx::query(
        "INSERT INTO users (app_id, external_id, anonymous_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app_id, external_id) WHERE external_id IS NOT NULL DO NOTHING")
        .bind(app_id).bind(external_id).bind(&anonymous_id).bind(now_ms())
        .execute(pool).await.map(|r| r.rows_affected() == 1))?;
    // Read again: a concurrent request may have created the user first.
    let user = user_by_external_id(db, app_id, external_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((user, created))
}

/// Privacy deletion: forgets the external id, revokes the user's keys, erases the personal data
/// of their stored webhook bodies and their id in the audit log, and keeps the row (and so the
/// ledger's amounts) under the anonymous id. False if there was no such live user.
pub async fn delete_user(db: &Db, app_id: i64, user_id: i64) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(app_id)).await?;
    let ids: Option<(Option<String>, String)> = tx_run!(&mut tx, c => sqlx::query_as(
        "SELECT external_id, anonymous_id FROM users WHERE app_id = $1 AND id = $2 \
         AND deleted_at IS NULL")
        .bind(app_id).bind(user_id).fetch_optional(&mut **c).await)?;
    let Some((external_id, anonymous_id)) = ids else {
        return Ok(false);
    };
    let n = tx_run!(&mut tx, c => sqlx::query(
        "UPDATE users SET external_id = NULL, email = NULL, deleted_at = $1 WHERE app_id = $2 AND id = $3 \
         AND deleted_at IS NULL")
        .bind(now).bind(app_id).bind(user_id)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Ok(false);
    }
    tx_run!(&mut tx, c => sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE app_id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(now).bind(app_id).bind(user_id)
        .execute(&mut **c).await.map(|_| ()))?;
    let external_id = external_id.unwrap_or_default();
    super::privacy::erase_user_tx(&mut tx, app_id, user_id, &external_id, &anonymous_id).await?;
    // Named by the id the app knows them by: the app must find them to forget them.
    let data = crate::domain::events::UserDeleted {
        user_id: external_id.clone(),
    };
    let mut e = super::events::Outgoing::about(
        crate::domain::events::EventType::UserDeleted,
        user_id,
        format!("user.deleted:{user_id}"),
        data,
    );
    e.user_id = None;
    super::events::publish(&mut tx, app_id, &e).await?;
    tx.commit().await?;
    Ok(true)
}

/// What a key grants, with what is needed to check it.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: i64,
    pub kind: KeyKind,
    pub prefix: String,
    pub last4: String,
    pub secret_hash: String,
    pub app_id: Option<i64>,
    pub app_slug: Option<String>,
    pub user_id: Option<i64>,
    pub user_external_id: Option<String>,
    pub user_deleted: bool,
    /// Operators only.
    pub role: Option<Role>,
    /// Operators only: the apps they may see (`None`: all).
    pub app_scope: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The key's app's settings (compatibility rules, …); default for operators.
    pub app_settings: AppSettings,
    /// User keys: the user's plan when it is not the app's default (as of the read; the cache
    /// makes a plan change reach the rate limiter within its TTL).
    pub user_plan_id: Option<String>,
}

type KeyTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Finds a key by its visible prefix (the one lookup that spans apps: it is how a request's
/// app is found).
pub async fn key_by_prefix(db: &Db, prefix: &str) -> Result<Option<KeyRecord>, sqlx::Error> {
    let row: Option<KeyTuple> = scoped_run!(db, Scope::AllApps, pool => sqlx::query_as(
        "SELECT k.id, k.kind, k.prefix, k.last4, k.secret_hash, k.app_id, a.slug, k.user_id, \
         u.external_id, u.deleted_at, k.role, k.app_scope, k.expires_at, k.revoked_at, a.settings, \
         CASE WHEN u.plan_until <= $2 THEN NULL ELSE u.plan_id END \
         FROM api_keys k LEFT JOIN apps a ON a.id = k.app_id LEFT JOIN users u ON u.id = k.user_id \
         WHERE k.prefix = $1")
        .bind(prefix).bind(now_ms()).fetch_optional(pool).await)?;
    // Parsed once here: the record is cached and read on every request.
    let Some(t) = row else { return Ok(None) };
    let bad = |what: &str| sqlx::Error::Decode(format!("api key {}: bad {what}", t.0).into());
    Ok(Some(KeyRecord {
        id: t.0,
        kind: KeyKind::parse(&t.1).ok_or_else(|| bad("kind"))?,
        prefix: t.2,
        last4: t.3,
        secret_hash: t.4,
        app_id: t.5,
        app_slug: t.6,
        user_id: t.7,
        user_external_id: t.8,
        user_deleted: t.9.is_some(),
        role: t
            .10
            .map(|r| r.parse())
            .transpose()
            .map_err(|_| bad("role"))?,
        app_scope: t
            .11
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|_| bad("app scope"))?,
        expires_at: t.12,
        revoked_at: t.13,
        app_settings: parse_settings(t.14.as_deref()),
        user_plan_id: t.15,
    }))
}

/// A key as listed (never its secret or hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    pub id: i64,
    pub kind: String,
    /// Prefix and last four characters, e.g. `tg_user_Ab12Cd34…9xYz`.
    pub masked: String,
    pub user_external_id: Option<String>,
    pub role: Option<String>,
    pub name: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

type KeyListTuple = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The keys of one app, newest first.
pub async fn list_keys(db: &Db, app_id: i64) -> Result<Vec<KeyOut>, sqlx::Error> {
    let rows: Vec<KeyListTuple> = scoped_run!(db, Scope::App(app_id), pool => sqlx::query_as(
        "SELECT k.id, k.kind, k.prefix, k.last4, u.external_id, k.role, k.name, k.created_at, \
         k.expires_at, k.revoked_at, k.last_used_at FROM api_keys k \
         LEFT JOIN users u ON u.id = k.user_id WHERE k.app_id = $1 ORDER BY k.id DESC")
        .bind(app_id).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|t| KeyOut {
            id: t.0,
            kind: t.1,
            masked: crate::domain::identity::mask(&t.2, &t.3),
            user_external_id: t.4,
            role: t.5,
            name: t.6,
            created_at: t.7,
            expires_at: t.8,
            revoked_at: t.9,
            last_used_at: t.10,
        })
        .collect())
}

/// A key found for revocation: its id, prefix and app.
#[derive(Debug, Clone)]
pub struct KeyRef {
    pub id: i64,
    pub prefix: String,
    pub app_id: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Finds a key by id, by visible prefix, or by its full secret's hash.
pub async fn find_key(
    db: &Db,
    id: Option<i64>,
    prefix: Option<&str>,
    hash: Option<&str>,
) -> Result<Option<KeyRef>, sqlx::Error> {
    let row: Option<(i64, String, Option<i64>, Option<i64>)> = scoped_run!(db, Scope::AllApps, pool => sqlx::query_as(
        "SELECT id, prefix, app_id, revoked_at FROM api_keys WHERE id = $1 OR prefix = $2 OR secret_hash = $3")
        .bind(id).bind(prefix).bind(hash).fetch_optional(pool).await)?;
    Ok(row.map(|(id, prefix, app_id, revoked_at)| KeyRef {
        id,
        prefix,
        app_id,
        revoked_at,
    }))
}

pub async fn revoke_key(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    scoped_run!(db, Scope::AllApps, pool => sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms()).bind(id).execute(pool).await.map(|r| r.rows_affected() == 1))
}

/// Records use, at most once a minute per key (a write per request would be wasteful).
pub async fn touch_key(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    let now = now_ms();
    scoped_run!(db, Scope::AllApps, pool => sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
        .bind(now).bind(id).bind(now - 60_000).execute(pool).await.map(|_| ()))
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// `key:<id>` for an operator token, `cli` for the command line.
    pub actor: String,
    pub actor_role: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub app_id: Option<i64>,
    pub request_id: Option<String>,
    pub details: Option<String>,
}

/// What to record.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub actor_role: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub app_id: Option<i64>,
    pub request_id: Option<&'a str>,
    pub details: Option<&'a str>,
}

pub async fn record_audit(db: &Db, e: &NewAudit<'_>) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::of(e.app_id), pool => sqlx::query(
        "INSERT INTO audit_log (at, actor, actor_role, action, target, app_id, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(now_ms()).bind(e.actor).bind(e.actor_role).bind(e.action).bind(e.target)
        .bind(e.app_id).bind(e.request_id).bind(e.details)
        .execute(pool).await.map(|_| ()))
}

/// Records an audit row inside the caller's transaction, so the change and its row commit
/// together or not at all. The transaction must be scoped to `e.app_id` (or all apps).
pub async fn record_audit_tx(tx: &mut super::Tx, e: &NewAudit<'_>) -> Result<(), sqlx::Error> {
    tx_run!(tx, c => sqlx::query(
        "INSERT INTO audit_log (at, actor, actor_role, action, target, app_id, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(now_ms()).bind(e.actor).bind(e.actor_role).bind(e.action).bind(e.target)
        .bind(e.app_id).bind(e.request_id).bind(e.details)
        .execute(&mut **c).await.map(|_| ()))
}

type AuditTuple = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Audit entries, newest first; `app_id` limits them to one app.
pub async fn list_audit(
    db: &Db,
    app_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    audit_where(db, app_id, None, limit).await
}

/// The audit entries about one target of an app (`recovery_case:7`), newest first.
pub async fn audit_of(
    db: &Db,
    app_id: i64,
    target: &str,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    audit_where(db, Some(app_id), Some(target), limit).await
}

async fn audit_where(
    db: &Db,
    app_id: Option<i64>,
    target: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows: Vec<AuditTuple> = scoped_run!(db, Scope::of(app_id), pool => sqlx::query_as(
        "SELECT id, at, actor, actor_role, action, target, app_id, request_id, details FROM audit_log \
         WHERE ($1 IS NULL OR app_id = $1) AND ($3 IS NULL OR target = $3) ORDER BY id DESC LIMIT $2")
        .bind(app_id).bind(limit).bind(target).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|t| AuditEntry {
            id: t.0,
            at: t.1,
            actor: t.2,
            actor_role: t.3,
            action: t.4,
            target: t.5,
            app_id: t.6,
            request_id: t.7,
            details: t.8,
        })
        .collect())
}

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub app_id: Option<i64>,
    pub user_id: Option<i64>,
    pub role: Option<Role>,
    /// Operators only: the app slugs they may see (`None`: all).
    pub app_scope: Option<Vec<String>>,
    pub name: Option<String>,
    pub expires_at: Option<i64>,
}

/// Generates a key of `kind` and stores its hash. Returns the row id and the key, whose secret
/// is shown once and never stored.
pub async fn create_key(
    db: &Db,
    kind: KeyKind,
    spec: &KeySpec,
) -> Result<(i64, NewKey), sqlx::Error> {
    let key = NewKey::generate(kind);
    let scope = spec
        .app_scope
        .as_ref()
        .map(|s| serde_json::to_string(s).expect("strings serialise"));
    let id = scoped_run!(db, Scope::of(spec.app_id), pool => sqlx::query_scalar(
        "INSERT INTO api_keys (kind, prefix, last4, secret_hash, app_id, user_id, role, app_scope, \
         name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id")
        .bind(kind.as_str()).bind(&key.prefix).bind(&key.last4).bind(&key.hash).bind(spec.app_id)
        .bind(spec.user_id).bind(spec.role.map(|r| r.as_str())).bind(scope.as_deref())
        .bind(spec.name.as_deref()).bind(now_ms()).bind(spec.expires_at)
        .fetch_one(pool).await)?;
    Ok((id, key))
}

/// Sets (or, with `None`, clears) a user's email address; false for an unknown or erased user.
pub async fn set_email(
    db: &Db,
    app_id: i64,
    user_id: i64,
    email: Option<&str>,
) -> Result<bool, sqlx::Error> {
    scoped_run!(db, Scope::App(app_id), c => sqlx::query(
        "UPDATE users SET email = $3 WHERE app_id = $1 AND id = $2 AND deleted_at IS NULL")
        .bind(app_id).bind(user_id).bind(email).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// A user's email address, when the app has set one.
pub async fn email_of(db: &Db, app_id: i64, user_id: i64) -> Result<Option<String>, sqlx::Error> {
    let email: Option<Option<String>> = scoped_run!(db, Scope::App(app_id), c => sqlx::query_scalar(
        "SELECT email FROM users WHERE app_id = $1 AND id = $2")
        .bind(app_id).bind(user_id).fetch_optional(c).await)?;
    Ok(email.flatten())
}
