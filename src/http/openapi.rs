//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`. Each domain's router registers its routes here so the spec cannot drift.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, api, health, metrics, webhooks};
use crate::role::Role;

#[derive(OpenApi)]
#[openapi(
    info(title = "tollgate", description = "Users, billing, credits, a metered AI proxy and jobs for a paid app."),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::Problem, crate::error::FieldError,
        // The events delivered to the apps' endpoints (docs/events.md): the body is
        // {"type", "timestamp", "data"}, `data` one of these by type.
        crate::domain::events::EventType, crate::domain::events::SubscriptionUpdated,
        crate::domain::events::EntitlementsUpdated, crate::domain::events::CreditsGranted,
        crate::domain::events::CreditsBalance, crate::domain::events::Payment,
        crate::domain::events::UserDeleted, crate::domain::events::RecoveryCase,
        crate::domain::events::RecoveryNudge)),
    tags(
        (name = "ops", description = "Health, readiness and metrics"),
        (name = "identity", description = "Users, keys and the caller (user keys, app secret keys)"),
        (name = "admin", description = "Apps, keys, users and the audit log (operator tokens)"),
        (name = "jobs", description = "Queue operations and kill switches (operator tokens)"),
        (name = "events", description = "Outbound event endpoints, deliveries and replays (operator tokens)"),
        (name = "billing", description = "Billing stores' webhooks (signed by the store), subscriptions"),
        (name = "recovery", description = "Payment recovery cases, actions, numbers and export (app secret keys)"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme("metrics_token", bearer("METRICS_TOKEN"));
        components.add_security_scheme(
            "api_key",
            bearer("A user key (tg_user_…) or an app secret key (tg_app_…)"),
        );
        components.add_security_scheme("operator_token", bearer("An operator token (tg_op_…)"));
    }
}

/// Every route this role serves, documented: health, readiness and metrics for every role; the
/// API (and `/openapi.json`, which describes it) only for roles that serve the API. Domain
/// routers are `OpenApiRouter`s merged here, so a route cannot exist undocumented.
pub fn routes(role: Role) -> Router<AppState> {
    let probes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::get_health))
        .routes(routes!(health::get_ready))
        .routes(routes!(metrics::get_metrics));
    if !role.serves_api() {
        return probes.split_for_parts().0;
    }
    let (router, spec) = probes
        .merge(api::router())
        .merge(admin::router())
        .merge(webhooks::router())
        .split_for_parts();
    let mut doc = serde_json::to_value(&spec).expect("the OpenAPI document serializes");
    document_common_answers(&mut doc);
    document_events(&mut doc);
    let json = serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes");
    router.merge(super::docs::router()).route(
        "/openapi.json",
        get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                json,
            )
        }),
    )
}

/// The events tollgate POSTs to the apps' endpoints, as OpenAPI 3.1 `webhooks`: one entry per
/// type, its body `{type, timestamp, data}` with `data` the type's schema, and the Standard
/// Webhooks headers. Typed clients generate their event union from this.
fn document_events(doc: &mut serde_json::Value) {
    use crate::domain::events::EventType;
    use serde_json::json;
    let header = |name: &str, description: &str| {
        json!({ "name": name, "in": "header", "required": true, "description": description,
                "schema": { "type": "string" } })
    };
    let mut webhooks = serde_json::Map::new();
    for kind in EventType::ALL {
        let body = json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": { "type": "string", "const": kind.as_str() },
                "timestamp": { "type": "string", "format": "date-time",
                               "description": "When the change happened (RFC 3339, UTC)" },
                "data": { "$ref": format!("#/components/schemas/{}", kind.schema()) }
            }
        });
        webhooks.insert(kind.as_str().into(), json!({ "post": {
            "operationId": format!("event_{}", kind.as_str().replace('.', "_")),
            "summary": format!("The {} event (docs/events.md)", kind.as_str()),
            "tags": ["events"],
            "parameters": [
                header("webhook-id", "The message id (msg_…), the same on every retry and replay"),
                header("webhook-timestamp", "Unix seconds when this attempt was signed"),
                header("webhook-signature", "v1,<base64 HMAC-SHA256> of {id}.{timestamp}.{body}; two during a rotation, space-separated"),
            ],
            "requestBody": { "required": true,
                             "content": { "application/json": { "schema": body } } },
            "responses": { "2XX": { "description": "Received; any other answer is retried" } }
        }}));
    }
    doc["webhooks"] = serde_json::Value::Object(webhooks);
}

/// A problem+json answer with `description`.
fn problem(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": { "application/problem+json": {
            "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

/// Adds, to every operation, the answers the middleware and extractors give whatever the
/// handler (so the document lists every status a route can return, as a client and
/// schemathesis check it): 400, 401 and 429 everywhere (a malformed request; a credential that
/// is sent must be valid, even where none is needed; the rate limit); 403 where a credential
/// is required; 404 where the path names something; 413, 415 and
/// 422 for bodies and queries; and, on every POST, the `Idempotency-Key` header with its 409
/// (the first request with the key still runs) and 422 (the key was used with another
/// request). A handler's own description of a status is kept.
fn document_common_answers(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let params: Vec<Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |place: &str| params.iter().any(|p| p["in"] == place);
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let body = op.contains_key("requestBody");
            // Webhooks are signed by the store, not keyed by the client.
            let post = method == "post" && !path.starts_with("/webhooks/");
            let mut add: Vec<(&str, &str)> = vec![
                (
                    "400",
                    "Malformed request: a control character in the path or query, a body that is not a JSON object, a bad header",
                ),
                ("401", "Missing, unknown, expired or revoked credential"),
                ("429", "Rate limited; Retry-After says when to try again"),
            ];
            if secured {
                add.push((
                    "403",
                    "The credential may not do this (role, app, plan or invite)",
                ));
            }
            if path.contains('{') {
                add.push((
                    "404",
                    "Nothing of that name here (or not visible to this caller)",
                ));
            }
            if body {
                add.push(("413", "The body is larger than http.body_limit_bytes"));
                add.push(("415", "The body is not application/json"));
            }
            if body || has("query") || post {
                add.push((
                    "422",
                    "Invalid fields, each named; or an Idempotency-Key reused with another request",
                ));
            }
            if post {
                add.push(("409", "A request with this Idempotency-Key is still running, or a conflict with the current state"));
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            for (status, description) in add {
                responses
                    .entry(status)
                    .or_insert_with(|| problem(description));
            }
            if post {
                let params = op
                    .entry("parameters")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("parameters is an array");
                params.push(json!({
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "Makes a retry replay the first answer instead of acting again (1-255 visible ASCII characters)",
                    "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
                }));
            }
        }
    }
}
