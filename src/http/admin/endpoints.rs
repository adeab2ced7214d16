//! An app's outbound event endpoints for operators: register (the secret shown once), list,
//! change, enable/disable, rotate the secret, delete; its deliveries and their attempts; the
//! app's events; replay of one message or of a time range. The same rules as
//! `tollgate endpoints …` (both go through `events::endpoints` and `events::fan_out`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{audit, visible_app};
use crate::domain::identity::Role;
use crate::error::{Error, FieldError, Result};
use crate::events::endpoints::{
    self as service, EndpointChange, EndpointInput, EndpointOut, WithSecret, not_found,
};
use crate::events::fan_out::{self, Replay};
use crate::http::auth::OperatorAuth;
use crate::http::{AppState, extract};
use crate::store::events::{self as store, AttemptRow, DeliveryRow, EventRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(list_attempts))
        .routes(routes!(list_events))
        .routes(routes!(replay_events))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// Where deliveries are POSTed (http or https).
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Event types to receive; omitted or empty: every type.
    pub event_types: Option<Vec<String>>,
    /// `events` (default) or `jobs`: the endpoint the app's HTTP jobs are delivered to (one
    /// per app; it receives no events).
    pub purpose: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchIn {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Empty: every type.
    pub event_types: Option<Vec<String>>,
    /// Enabling clears the failure streak and the reason it was disabled.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageIn {
    /// Rows with a smaller id (the next page).
    pub before: Option<i64>,
    /// Default 50, at most 500.
    pub limit: Option<i64>,
}

impl PageIn {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// One message by its `webhook-id` (`msg_…`) …
    pub msg_id: Option<String>,
    /// … or every event created from `from` (inclusive) to `to` (exclusive), ms since the epoch.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Only to this endpoint (default: every enabled endpoint that wants the event).
    pub endpoint_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOut {
    pub events: usize,
    pub deliveries: usize,
}

type AppPath = Path<String>;
type EndpointPath = Path<(String, i64)>;

/// An app's endpoints.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/endpoints", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, description = "The endpoints", body = [EndpointOut])))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): AppPath,
) -> Result<Json<Vec<EndpointOut>>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    let rows = store::endpoints(&state.db, app.id).await?;
    Ok(Json(rows.into_iter().map(EndpointOut::from).collect()))
}

/// Registers an endpoint; its signing secret is in this answer and never again (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/endpoints", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    request_body = EndpointIn,
    responses((status = 201, description = "Registered", body = WithSecret),
        (status = 422, description = "A field is invalid (an unknown event type, a refused target)")))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): AppPath,
    extract::Json(body): extract::Json<EndpointIn>,
) -> Result<(StatusCode, Json<WithSecret>)> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let for_jobs = match body.purpose.as_deref() {
        None | Some("events") => false,
        Some("jobs") => true,
        Some(_) => {
            return Err(Error::Validation(vec![FieldError::new(
                "purpose",
                "expected events or jobs",
            )]));
        }
    };
    let input = EndpointInput {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        for_jobs,
    };
    let made = service::create(&state.config, &state.db, app.id, input).await?;
    let id = made.endpoint.id;
    let details = json!({ "url": made.endpoint.url, "event_types": made.endpoint.event_types });
    audit(
        &state,
        &op,
        "endpoint.create",
        &format!("endpoint:{id}"),
        Some(app.id),
        Some(details),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// One endpoint.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/endpoints/{id}", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "The endpoint", body = EndpointOut)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
) -> Result<Json<EndpointOut>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    let row = store::endpoint(&state.db, app.id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(row.into()))
}

/// Changes an endpoint: URL, description, event types, enabled (admin).
#[utoipa::path(patch, path = "/admin/v1/apps/{slug}/endpoints/{id}", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    request_body = EndpointPatchIn,
    responses((status = 200, description = "Changed", body = EndpointOut)))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
    extract::Json(body): extract::Json<EndpointPatchIn>,
) -> Result<Json<EndpointOut>> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let details =
        json!({ "url": body.url, "event_types": body.event_types, "enabled": body.enabled });
    let change = EndpointChange {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        enabled: body.enabled,
    };
    let out = service::update(&state.config, &state.db, app.id, id, change).await?;
    audit(
        &state,
        &op,
        "endpoint.update",
        &format!("endpoint:{id}"),
        Some(app.id),
        Some(details),
    )
    .await?;
    Ok(Json(out))
}

/// Deletes an endpoint with its delivery history (admin).
#[utoipa::path(delete, path = "/admin/v1/apps/{slug}/endpoints/{id}", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
) -> Result<StatusCode> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    if !store::delete_endpoint(&state.db, app.id, id).await? {
        return Err(not_found(id));
    }
    audit(
        &state,
        &op,
        "endpoint.delete",
        &format!("endpoint:{id}"),
        Some(app.id),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once; the old one keeps signing beside it for
/// `events.rotation_overlap_hours` (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/endpoints/{id}/rotate-secret", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "Rotated", body = WithSecret)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
) -> Result<Json<WithSecret>> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let out = service::rotate(&state.config, &state.db, app.id, id).await?;
    audit(
        &state,
        &op,
        "endpoint.rotate_secret",
        &format!("endpoint:{id}"),
        Some(app.id),
        None,
    )
    .await?;
    Ok(Json(out))
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/endpoints/{id}/deliveries", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path), PageIn),
    responses((status = 200, description = "Deliveries", body = [DeliveryRow])))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
    Query(q): Query<PageIn>,
) -> Result<Json<Vec<DeliveryRow>>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(
        store::deliveries(&state.db, app.id, id, q.before, q.limit()).await?,
    ))
}

/// A delivery's attempts: status, latency, the first 1 KiB of each answer.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/deliveries/{id}/attempts", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "Attempts, first first", body = [AttemptRow])))]
pub async fn list_attempts(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path((slug, id)): EndpointPath,
) -> Result<Json<Vec<AttemptRow>>> {
    op.require(Role::Viewer)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(store::attempts(&state.db, app.id, id).await?))
}

/// The app's events, newest first, with the body every endpoint receives.
#[utoipa::path(get, path = "/admin/v1/apps/{slug}/events", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path), PageIn),
    responses((status = 200, description = "Events", body = [EventRow])))]
pub async fn list_events(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): AppPath,
    Query(q): Query<PageIn>,
) -> Result<Json<Vec<EventRow>>> {
    op.require(Role::Support)?;
    let app = visible_app(&state, &op, &slug).await?;
    Ok(Json(
        store::events(&state.db, app.id, q.before, q.limit()).await?,
    ))
}

/// Sends one message, or every event of a time range, again: a new round of deliveries with
/// the same `webhook-id`s, so receivers that already have them can tell (admin).
#[utoipa::path(post, path = "/admin/v1/apps/{slug}/events/replay", tag = "events", security(("operator_token" = [])),
    params(("slug" = String, Path)),
    request_body = ReplayIn,
    responses((status = 202, description = "Deliveries enqueued", body = ReplayOut)))]
pub async fn replay_events(
    State(state): State<AppState>,
    op: OperatorAuth,
    Path(slug): AppPath,
    extract::Json(body): extract::Json<ReplayIn>,
) -> Result<(StatusCode, Json<ReplayOut>)> {
    op.require(Role::Admin)?;
    let app = visible_app(&state, &op, &slug).await?;
    let what = match (&body.msg_id, body.from, body.to) {
        (Some(m), None, None) => Replay::Message(m),
        (None, Some(from), Some(to)) if from < to => Replay::Range { from, to },
        (None, Some(_), Some(_)) => {
            return Err(Error::Validation(vec![FieldError::new(
                "to",
                "must be after from",
            )]));
        }
        _ => {
            return Err(Error::Validation(vec![FieldError::new(
                "msg_id",
                "give either msg_id, or both from and to",
            )]));
        }
    };
    if let Some(id) = body.endpoint_id
        && store::endpoint(&state.db, app.id, id).await?.is_none()
    {
        return Err(not_found(id));
    }
    let (events, deliveries) =
        fan_out::replay(&state.db, &state.jobs, app.id, what, body.endpoint_id)
            .await
            .map_err(Error::Internal)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no message {:?}",
                    body.msg_id.clone().unwrap_or_default()
                ))
            })?;
    let details = json!({ "msg_id": body.msg_id, "from": body.from, "to": body.to,
        "endpoint_id": body.endpoint_id, "deliveries": deliveries });
    audit(
        &state,
        &op,
        "events.replay",
        &format!("app:{slug}"),
        Some(app.id),
        Some(details),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayOut { events, deliveries })))
}
