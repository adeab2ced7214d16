//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/openapi.json`. Each domain's router registers its routes here so the spec cannot drift.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, api, health, metrics, webhooks};
use crate::startup::Role;

#[derive(OpenApi)]
#[openapi(
    info(title = "tollgate", description = "Users, billing, credits, a metered AI proxy and jobs for a paid app."),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "ops", description = "Health, readiness and metrics"),
        (name = "identity", description = "Users, keys and the caller (user keys, app secret keys)"),
        (name = "admin", description = "Apps, keys, users and the audit log (operator tokens)"),
        (name = "jobs", description = "Queue operations and kill switches (operator tokens)"),
        (name = "billing", description = "Billing stores' webhooks (signed by the store), subscriptions"),
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
    let json = serde_json::to_string_pretty(&spec).expect("the OpenAPI document serializes");
    router.route(
        "/openapi.json",
        get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                json,
            )
        }),
    )
}
