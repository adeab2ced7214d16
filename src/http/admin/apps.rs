//! Apps, their keys and users, and the audit log, for operators.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{audit, visible_app};
use crate::domain::identity::{AppSlug, ExternalId, KeyKind, Role, mask};
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::api::users::NewKeyOut;
use crate::http::auth::OperatorAuth;
use crate::http::extract;
use crate::store::identity::{self, AppRow, AuditEntry, KeyOut, KeySpec, UserRow};
use crate::store::invites::{self, InviteRow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppIn {
    /// 2-63 characters of a-z, 0-9 and '-', starting with a letter, not ending with '-'.
    #[schema(min_length = 2, max_length = 63, pattern = "^[a-z][a-z0-9-]*[a-z0-9]$")]
    pub slug: String,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyIn {
    /// `user` (needs `external_id`) or `app`.
    pub kind: String,
    pub external_id: Option<String>,
    pub name: Option<String>,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this app's entries.
    pub app: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedOut {
    pub id: i64,
    pub revoked: bool,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(list_audit))
        .routes(routes!(list_invites, create_invite))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteIn {
    /// The code; a random one when omitted.
    pub code: Option<String>,
    /// How many users may redeem it (default 1).
    pub max_uses: Option<i64>,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<i64>,
}

/// An app's invite codes (support).
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/invites", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, description = "Invite codes", body = [InviteRow])))]
pub async fn list_invites(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
) -> Result<Json<Vec<InviteRow>>> {
    op.require(Role::Support)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(invites::list(&state.db, app.id).await?))
}

/// Creates an invite code (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/invites", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    request_body = InviteIn,
    responses((status = 201, description = "Created", body = InviteRow)))]
pub async fn create_invite(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    extract::Json(body): extract::Json<InviteIn>,
) -> Result<(StatusCode, Json<InviteRow>)> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let max_uses = body.max_uses.unwrap_or(1);
    if !(1..=1_000_000).contains(&max_uses) {
        return Err(invalid("max_uses", "expected 1 to 1000000"));
    }
    let code = match body.code {
        Some(c)
            if (4..=64).contains(&c.len())
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            c
        }
        Some(_) => return Err(invalid("code", "4-64 characters of A-Z, a-z, 0-9 and '-'")),
        None => {
            crate::domain::identity::NewKey::generate(KeyKind::User).secret[8..20].to_uppercase()
        }
    };
    let expires_at = extract::future_expiry("expires_at", body.expires_at)?;
    let invite = invites::create(&state.db, app.id, &code, max_uses, expires_at)
        .await?
        .ok_or_else(|| Error::Conflict(format!("the code {code} already exists")))?;
    audit(
        &state,
        &op,
        "invites.create",
        &code,
        Some(app.id),
        Some(json!({ "max_uses": max_uses })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Validation(vec![FieldError::new(field, message)])
}

/// Apps this operator may see.
#[utoipa::path(get, path = "/admin/v1/apps", tag = "admin", security(("operator_token" = [])),
    responses((status = 200, description = "Apps", body = [AppRow])))]
pub async fn list_apps(
    State(state): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<Vec<AppRow>>> {
    op.require(Role::Viewer)?;
    let apps = identity::list_apps(&state.db).await?;
    Ok(Json(
        apps.into_iter().filter(|a| op.can_see(&a.slug)).collect(),
    ))
}

/// Creates an app (admin).
#[utoipa::path(post, path = "/admin/v1/apps", tag = "admin", security(("operator_token" = [])),
    request_body = AppIn,
    responses(
        (status = 201, description = "Created", body = AppRow),
        (status = 409, description = "Slug taken", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_app(
    State(state): State<AppState>,
    op: OperatorAuth,
    extract::Json(body): extract::Json<AppIn>,
) -> Result<(StatusCode, Json<AppRow>)> {
    op.require_unrestricted(Role::Admin, "creating an app")?;
    let slug = AppSlug::parse(&body.slug).map_err(|m| invalid("slug", m))?;
    let name = body.name.unwrap_or_else(|| slug.to_string());
    let settings = state.config.new_app_settings();
    let app = identity::create_app_with(&state.db, slug.as_str(), &name, &settings)
        .await?
        .ok_or_else(|| Error::Conflict(format!("an app {slug} already exists")))?;
    audit(
        &state,
        &op,
        "apps.create",
        slug.as_str(),
        Some(app.id),
        Some(json!({ "name": name })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(app)))
}

/// An app's keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/keys", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, description = "Keys", body = [KeyOut])))]
pub async fn list_keys(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
) -> Result<Json<Vec<KeyOut>>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(identity::list_keys(&state.db, app.id).await?))
}

/// Creates a user key or an app secret key (admin). The secret is in the answer, once.
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/keys", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    request_body = AdminKeyIn,
    responses((status = 201, description = "The new key, shown once", body = NewKeyOut)))]
pub async fn create_key(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): Path<String>,
    extract::Json(body): extract::Json<AdminKeyIn>,
) -> Result<(StatusCode, Json<NewKeyOut>)> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let mut spec = KeySpec {
        app_id: Some(app.id),
        name: body.name,
        expires_at: extract::future_expiry("expires_at", body.expires_at)?,
        ..Default::default()
    };
    let kind = match (body.kind.as_str(), body.external_id.as_deref()) {
        ("user", Some(raw)) => {
            let id = ExternalId::parse(raw).map_err(|m| invalid("external_id", m))?;
            let (user, _) = identity::find_or_create_user(&state.db, app.id, id.as_str()).await?;
            spec.user_id = Some(user.id);
            KeyKind::User
        }
        ("user", None) => {
            return Err(invalid(
                "external_id",
                "a user key needs the user's external_id",
            ));
        }
        ("app", None) => KeyKind::App,
        ("app", Some(_)) => return Err(invalid("external_id", "an app key belongs to no user")),
        _ => return Err(invalid("kind", "expected \"user\" or \"app\"")),
    };
    let (id, key) = identity::create_key(&state.db, kind, &spec).await?;
    let masked = mask(&key.prefix, &key.last4);
    audit(
        &state,
        &op,
        "keys.create",
        &masked,
        Some(app.id),
        Some(json!({ "kind": kind.as_str(), "id": id })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyOut {
            id,
            key: key.secret,
            masked,
        }),
    ))
}

/// Revokes a key (admin): refused at once by this process, within 5 s by every other.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/revoke", tag = "admin", security(("operator_token" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "Revoked (or already was)", body = RevokedOut)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<i64>,
) -> Result<Json<RevokedOut>> {
    op.require(Role::Admin)?;
    let key = identity::find_key(&state.db, Some(id), None, None)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no key {id}")))?;
    // Operator tokens belong to no app: only an owner limited to no app revokes them (one
    // limited to an app would otherwise revoke the global owner's token).
    match key.app_id {
        Some(app_id) => {
            let app = identity::app_by_id(&state.db, app_id).await?;
            if !app.is_some_and(|a| op.can_see(&a.slug)) {
                return Err(Error::NotFound(format!("no key {id}")));
            }
        }
        None => op.require_unrestricted(Role::Owner, "revoking an operator token")?,
    }
    let revoked = identity::revoke_key(&state.db, key.id).await?;
    state.keys.forget(&key.prefix);
    audit(
        &state,
        &op,
        "keys.revoke",
        &key.prefix,
        key.app_id,
        Some(json!({ "id": key.id })),
    )
    .await?;
    Ok(Json(RevokedOut {
        id: key.id,
        revoked: revoked || key.revoked_at.is_some(),
    }))
}

/// One user (support).
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/users/{external_id}", operation_id = "admin_get_user", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    responses((status = 200, description = "The user", body = UserRow)))]
pub async fn get_user(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external)): Path<(String, String)>,
) -> Result<Json<UserRow>> {
    op.require(Role::Support)?;
    let app = visible_app(&state, &op, &slug).await?;
    identity::user_by_external_id(&state.db, app.id, &external)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound("no such user in this app".into()))
}

/// Deletes a user's personal data (admin).
#[utoipa::path(delete, path = "/admin/v1/apps/{slug}/users/{external_id}", operation_id = "admin_delete_user", tag = "admin", security(("operator_token" = [])),
    params(("slug" = String, Path), ("external_id" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_user(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, external)): Path<(String, String)>,
) -> Result<StatusCode> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let user = identity::user_by_external_id(&state.db, app.id, &external)
        .await?
        .ok_or_else(|| Error::NotFound("no such user in this app".into()))?;
    identity::delete_user(&state.db, app.id, user.id).await?;
    // The audit names the anonymous id: the external id is what was just erased.
    audit(
        &state,
        &op,
        "users.delete",
        &user.anonymous_id,
        Some(app.id),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", security(("operator_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Entries", body = [AuditEntry]),
        (status = 404, description = "No app of that slug visible to this operator", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    State(state): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>> {
    op.require(Role::Admin)?;
    let app_id = match (&q.app, &op.apps) {
        (Some(slug), _) => Some(visible_app(&state, &op, slug).await?.id),
        (None, Some(_)) => {
            return Err(invalid(
                "app",
                "an operator limited to some apps must name one",
            ));
        }
        (None, None) => None,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(identity::list_audit(&state.db, app_id, limit).await?))
}
