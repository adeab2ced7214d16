//! The app's own server manages its users (app secret key): create, look up, delete (privacy),
//! and mint user keys (license tokens). Everything is scoped to the key's app.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::identity::{ExternalId, KeyKind};
use crate::error::{Error, FieldError, Result};
use crate::http::AppState;
use crate::http::auth::AppAuth;
use crate::http::extract;
use crate::store::identity::{self, KeySpec, UserRow};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// The app's own id for the user (its auth provider's subject, for instance).
    pub external_id: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A label for the key, e.g. the device.
    pub name: Option<String>,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyOut {
    pub id: i64,
    /// The key. Shown once: only its hash is stored.
    pub key: String,
    pub masked: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(create_user_key))
        .routes(routes!(set_user_email))
}

fn external_id(raw: &str, field: &str) -> Result<ExternalId> {
    ExternalId::parse(raw).map_err(|m| Error::Validation(vec![FieldError::new(field, m)]))
}

/// Creates a user (or returns the existing one with that external id).
#[utoipa::path(post, path = "/v1/users", tag = "identity", security(("api_key" = [])),
    request_body = UserIn,
    responses(
        (status = 201, description = "Created", body = UserRow),
        (status = 200, description = "Already existed", body = UserRow),
        (status = 422, description = "Invalid external id", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    auth: AppAuth,
    extract::Json(body): extract::Json<UserIn>,
) -> Result<(StatusCode, Json<UserRow>)> {
    let id = external_id(&body.external_id, "external_id")?;
    let (user, created) =
        identity::find_or_create_user(&state.db, auth.app_id, id.as_str()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(user)))
}

/// One user of the key's app.
#[utoipa::path(get, path = "/v1/users/{external_id}", tag = "identity", security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The app's id for the user")),
    responses(
        (status = 200, description = "The user", body = UserRow),
        (status = 404, description = "No such user in this app", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    auth: AppAuth,
    Path(external): Path<String>,
) -> Result<Json<UserRow>> {
    identity::user_by_external_id(&state.db, auth.app_id, &external)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound("no such user in this app".into()))
}

/// Deletes a user's personal data (privacy request): the external id is forgotten and their
/// keys revoked; amounts in the ledger stay, under the user's anonymous id.
#[utoipa::path(delete, path = "/v1/users/{external_id}", tag = "identity", security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The app's id for the user")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user in this app", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    auth: AppAuth,
    Path(external): Path<String>,
) -> Result<StatusCode> {
    let user = identity::user_by_external_id(&state.db, auth.app_id, &external)
        .await?
        .ok_or_else(|| Error::NotFound("no such user in this app".into()))?;
    identity::delete_user(&state.db, auth.app_id, user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mints a user key (license token) for a user, creating the user if new.
#[utoipa::path(post, path = "/v1/users/{external_id}/keys", tag = "identity", security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The app's id for the user")),
    request_body = KeyIn,
    responses(
        (status = 201, description = "The new key, shown once", body = NewKeyOut),
    ))]
pub async fn create_user_key(
    State(state): State<AppState>,
    auth: AppAuth,
    Path(external): Path<String>,
    extract::Json(body): extract::Json<KeyIn>,
) -> Result<(StatusCode, Json<NewKeyOut>)> {
    let id = external_id(&external, "external_id")?;
    let (user, _) = identity::find_or_create_user(&state.db, auth.app_id, id.as_str()).await?;
    let spec = KeySpec {
        app_id: Some(auth.app_id),
        user_id: Some(user.id),
        name: body.name,
        expires_at: extract::future_expiry("expires_at", body.expires_at)?,
        ..Default::default()
    };
    let (key_id, key) = identity::create_key(&state.db, KeyKind::User, &spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyOut {
            id: key_id,
            masked: crate::domain::identity::mask(&key.prefix, &key.last4),
            key: key.secret,
        }),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailIn {
    /// The user's address; `null` forgets it. Required: a body without it changes nothing.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub email: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EmailOut {
    pub external_id: String,
    /// The address as it is kept, masked (`a***@example.com`); none when forgotten.
    pub email: Option<String>,
}

/// Sets where the user is reached by email (recovery nudges by email, docs/recovery.md), or
/// forgets it. Erased with the user.
#[utoipa::path(put, path = "/v1/users/{external_id}/email", tag = "identity", security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The app's id for the user")),
    request_body = EmailIn,
    responses(
        (status = 200, description = "Kept", body = EmailOut),
        (status = 404, description = "No such user in this app", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an email address", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_user_email(
    State(state): State<AppState>,
    auth: AppAuth,
    Path(external): Path<String>,
    extract::Json(body): extract::Json<EmailIn>,
) -> Result<Json<EmailOut>> {
    let email = body.email.map(|e| e.trim().to_string());
    if let Some(e) = &email
        && (e.len() > 320 || e.parse::<lettre::Address>().is_err())
    {
        return Err(Error::Validation(vec![crate::error::FieldError::new(
            "email",
            "expected an email address",
        )]));
    }
    let user = identity::user_by_external_id(&state.db, auth.app_id, &external)
        .await?
        .ok_or_else(|| Error::NotFound("no such user in this app".into()))?;
    if !identity::set_email(&state.db, auth.app_id, user.id, email.as_deref()).await? {
        return Err(Error::NotFound("no such user in this app".into()));
    }
    Ok(Json(EmailOut {
        external_id: external,
        email: email.as_deref().map(crate::events::email::mask),
    }))
}
