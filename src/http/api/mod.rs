//! The public API under `/v1`: what end users' clients (user keys) and the app's own server
//! (app secret keys) call.

pub mod billing;
pub mod compat;
pub mod credits;
pub mod email;
pub mod gateway;
pub mod invites;
pub mod jobs;
pub mod me;
pub mod money;
pub mod nudge_links;
pub mod plans;
pub mod recovery;
pub mod users;

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(billing::router())
        .merge(compat::router())
        .merge(credits::router())
        .merge(email::router())
        .merge(gateway::router())
        .merge(invites::router())
        .merge(jobs::router())
        .merge(me::router())
        .merge(nudge_links::router())
        .merge(plans::router())
        .merge(recovery::router())
        .merge(users::router())
}
