//! Payment recovery for the app's own server (app secret key): its cases with their timelines,
//! actions on a case, its numbers, and a CSV export (docs/recovery.md). The admin API serves the
//! same through [`detail`], [`act`] and [`list`] for operators.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::money::invalid;
use crate::domain::recovery::CaseState;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::AppAuth;
use crate::http::request_id;
use crate::store::case_timeline::{self, TimelineEntry};
use crate::store::identity::NewAudit;
use crate::store::nudges::{self, NudgeNow};
use crate::store::recovery::{self, CaseFilter, CaseRow, Closed, Kpis};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_recovery_cases))
        .routes(routes!(get_recovery_case))
        .routes(routes!(act_on_recovery_case))
        .routes(routes!(get_recovery_kpis))
        .routes(routes!(export_recovery_cases))
}

/// A case and whose it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseOut {
    #[serde(flatten)]
    pub case: CaseRow,
    /// The user's id in the app (none once the user is erased).
    pub user: Option<String>,
}

/// A page of cases, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasesPage {
    pub data: Vec<CaseOut>,
    /// Pass as `cursor` for the next (older) page; none on the last page.
    pub next_cursor: Option<String>,
}

/// A case with everything that happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseRow,
    /// The user's id in the app (none once the user is erased).
    pub user: Option<String>,
    pub timeline: Vec<TimelineEntry>,
    /// The nudge "nudge now" moved up: its step and when it goes (quiet hours still hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nudge: Option<NudgeOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NudgeOut {
    pub step: i64,
    pub send_after: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CasesQuery {
    /// `open`, `recovered`, `lost` or `canceled`.
    pub state: Option<String>,
    /// Only this user's cases (the app's id for them).
    pub user: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `open`, `recovered`, `lost` or `canceled`.
    pub state: Option<String>,
    /// Cases whose first failure is at or after this (ms since the epoch).
    pub from: Option<i64>,
    /// … and before this.
    pub to: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Cases whose first failure is at or after this (ms since the epoch).
    pub from: i64,
    /// … and before this.
    pub to: i64,
}

/// What to do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send the case's next nudge now (its pending step, or the next step of the cadence).
    NudgeNow,
    /// Stop recovering: no more nudges; the case counts as neither recovered nor lost.
    CancelCase,
    /// Give up: the case counts as lost.
    MarkLost,
    /// Cancel the store subscription at the end of its paid period (Stripe, Whop, Paddle), and
    /// the case.
    CancelSubscriptionAtPeriodEnd,
    /// End the store subscription now (Stripe, Whop, Paddle), and the case.
    TerminateSubscription,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::NudgeNow => "nudge_now",
            Action::CancelCase => "cancel_case",
            Action::MarkLost => "mark_lost",
            Action::CancelSubscriptionAtPeriodEnd => "cancel_subscription_at_period_end",
            Action::TerminateSubscription => "terminate_subscription",
        }
    }

    /// Whether it acts on the store's subscription (operators need the admin role for these).
    pub fn touches_subscription(self) -> bool {
        matches!(
            self,
            Action::CancelSubscriptionAtPeriodEnd | Action::TerminateSubscription
        )
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionIn {
    pub action: Action,
}

fn parse_state(state: Option<&str>) -> Result<()> {
    match state {
        Some(s) if CaseState::parse(s).is_none() => Err(invalid(
            "state",
            "expected open, recovered, lost or canceled",
        )),
        _ => Ok(()),
    }
}

/// A page of an app's cases (shared with the admin API).
pub async fn list(state: &AppState, app_id: i64, q: &CasesQuery) -> Result<CasesPage> {
    parse_state(q.state.as_deref())?;
    let page = super::money::PageQuery {
        cursor: q.cursor.clone(),
        limit: q.limit,
    };
    let (limit, before) = page.read()?;
    let filter = CaseFilter {
        state: q.state.as_deref(),
        user: q.user.as_deref(),
        ..Default::default()
    };
    let rows =
        recovery::app_cases_with_users(&state.db, app_id, &filter, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<CaseOut> = rows
        .into_iter()
        .take(limit as usize)
        .map(|(case, user)| CaseOut { case, user })
        .collect();
    let next_cursor = more
        .then(|| data.last().map(|c| c.case.id.to_string()))
        .flatten();
    Ok(CasesPage { data, next_cursor })
}

/// Case `id` of the app with its timeline (shared with the admin API).
pub async fn detail(state: &AppState, app_id: i64, id: i64) -> Result<CaseDetail> {
    let case = recovery::case(&state.db, app_id, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no recovery case {id}")))?;
    let user = crate::store::identity::user_by_id(&state.db, app_id, case.user_id)
        .await?
        .and_then(|u| u.external_id);
    let timeline = case_timeline::timeline(&state.db, app_id, &case).await?;
    Ok(CaseDetail {
        case,
        user,
        timeline,
        nudge: None,
    })
}

/// Who acts, as the audit log names them.
pub struct Actor<'a> {
    pub actor: &'a str,
    pub role: Option<&'a str>,
}

/// Does `action` to case `id` of app `slug` (shared with the admin API); each is audited.
pub async fn act(
    state: &AppState,
    app: (i64, &str),
    id: i64,
    action: Action,
    by: &Actor<'_>,
) -> Result<CaseDetail> {
    let (app_id, slug) = app;
    let target = case_timeline::audit_target(id);
    let rid = request_id::current();
    let action_name = format!("recovery.case.{}", action.as_str());
    let audit = |details: Option<&'static str>| NewAudit {
        actor: by.actor,
        actor_role: by.role,
        action: &action_name,
        target: Some(&target),
        app_id: Some(app_id),
        request_id: rid.as_deref(),
        details,
    };
    let not_open = |c: &CaseRow| {
        Error::Conflict(format!(
            "the case is {}; only an open case can be acted on ({})",
            c.state,
            action.as_str()
        ))
    };
    match action {
        Action::NudgeNow => {
            let cad = crate::jobs::kinds::recovery::cadence(&state.config, slug);
            let now = crate::store::now_ms();
            let made = nudges::nudge_now(&state.db, app_id, id, &cad, now, &audit(None)).await?;
            let (nudge, step, send_after) = match made {
                NudgeNow::Ready {
                    nudge,
                    step,
                    send_after,
                } => (nudge, step, send_after),
                NudgeNow::NotFound => {
                    return Err(Error::NotFound(format!("no recovery case {id}")));
                }
                NudgeNow::NotOpen => return Err(not_open(&detail(state, app_id, id).await?.case)),
                NudgeNow::NoStepLeft => {
                    return Err(Error::Conflict(
                        "every step of the app's cadence has been sent for this case".into(),
                    ));
                }
            };
            let job = crate::jobs::kinds::recovery::SendNudge { app: app_id, nudge };
            let options = crate::jobs::EnqueueOptions::default()
                .unique(format!("nudge:{nudge}"))
                .run_at(send_after);
            state.jobs.enqueue(&job, options).await?;
            let mut out = detail(state, app_id, id).await?;
            out.nudge = Some(NudgeOut { step, send_after });
            Ok(out)
        }
        Action::CancelCase | Action::MarkLost => {
            let to = if action == Action::MarkLost {
                CaseState::Lost
            } else {
                CaseState::Canceled
            };
            match recovery::close(&state.db, app_id, id, to, &audit(None)).await? {
                Closed::Closed(_) => detail(state, app_id, id).await,
                Closed::NotOpen(c) => Err(not_open(&c)),
                Closed::NotFound => Err(Error::NotFound(format!("no recovery case {id}"))),
            }
        }
        Action::CancelSubscriptionAtPeriodEnd | Action::TerminateSubscription => {
            let case = detail(state, app_id, id).await?.case;
            if case.state != CaseState::Open.as_str() {
                return Err(not_open(&case));
            }
            let at_period_end = action == Action::CancelSubscriptionAtPeriodEnd;
            cancel_at_store(state, slug, &case, at_period_end).await?;
            let details = if at_period_end {
                r#"{"store":"cancel_at_period_end"}"#
            } else {
                r#"{"store":"canceled_now"}"#
            };
            match recovery::close(
                &state.db,
                app_id,
                id,
                CaseState::Canceled,
                &audit(Some(details)),
            )
            .await?
            {
                // Closed meanwhile (a payment recovered it): the store call stands, told as is.
                Closed::NotOpen(_) | Closed::Closed(_) => detail(state, app_id, id).await,
                Closed::NotFound => Err(Error::NotFound(format!("no recovery case {id}"))),
            }
        }
    }
}

/// Cancels the case's subscription through its store's API, or says why it cannot.
async fn cancel_at_store(
    state: &AppState,
    slug: &str,
    case: &CaseRow,
    at_period_end: bool,
) -> Result<()> {
    use crate::billing::Provider;
    // One key per case and kind of cancellation: a retried request cancels once at the store.
    let key = format!(
        "tollgate-recovery-{}-{}",
        case.id,
        if at_period_end { "period-end" } else { "now" }
    );
    let app = state.config.app(slug);
    let done = match Provider::parse(&case.provider) {
        Some(Provider::Stripe) => {
            let app = app.ok_or_else(super::billing::no_stripe)?;
            let api = super::billing::stripe_api(state, app)?;
            api.cancel_subscription(&case.subscription_id, at_period_end, &key)
                .await
        }
        Some(Provider::Whop) => {
            let api = app
                .and_then(|a| crate::billing::whop_api::WhopApi::of_app(a, &state.stores))
                .ok_or_else(|| {
                    Error::Conflict(
                        "canceling a Whop membership needs [apps.whop] api_key (with the \
                         membership:cancel permission)"
                            .into(),
                    )
                })?;
            api.cancel(&case.subscription_id, at_period_end, &key).await
        }
        Some(Provider::RevenueCat) => {
            return Err(Error::Conflict(
                "App Store and Google Play subscriptions cannot be canceled by the seller's \
                 server: the user cancels in the store's settings"
                    .into(),
            ));
        }
        Some(Provider::Paddle) => {
            let api = app
                .and_then(|a| crate::billing::paddle_api::PaddleApi::of_app(a, &state.stores))
                .ok_or_else(|| {
                    Error::Conflict(
                        "canceling a Paddle subscription needs [apps.paddle] api_key (with the \
                         subscription.write permission)"
                            .into(),
                    )
                })?;
            api.cancel(&case.subscription_id, at_period_end).await
        }
        None => {
            return Err(Error::Conflict(format!(
                "cannot cancel a subscription of the unknown store {:?}",
                case.provider
            )));
        }
    };
    done.map_err(super::billing::store_failed)?;
    Ok(())
}

/// The app's recovery cases, newest first.
#[utoipa::path(get, path = "/v1/recovery/cases", tag = "recovery", security(("api_key" = [])),
    params(CasesQuery),
    responses((status = 200, description = "A page of cases", body = CasesPage)))]
pub async fn list_recovery_cases(
    State(state): State<AppState>,
    app: AppAuth,
    Query(q): Query<CasesQuery>,
) -> Result<Json<CasesPage>> {
    Ok(Json(list(&state, app.app_id, &q).await?))
}

/// One case with its timeline: the store's payment outcomes, nudges sent and clicked, actions.
#[utoipa::path(get, path = "/v1/recovery/cases/{id}", tag = "recovery", security(("api_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "The case", body = CaseDetail),
        (status = 404, description = "No such case of this app")))]
pub async fn get_recovery_case(
    State(state): State<AppState>,
    app: AppAuth,
    Path(id): Path<i64>,
) -> Result<Json<CaseDetail>> {
    Ok(Json(detail(&state, app.app_id, id).await?))
}

/// Acts on an open case: nudge now, cancel it, mark it lost, or cancel its subscription at the
/// store (at period end or now; Stripe, Whop, Paddle; RevenueCat has no such call).
#[utoipa::path(post, path = "/v1/recovery/cases/{id}/actions", tag = "recovery", security(("api_key" = [])),
    params(("id" = i64, Path)), request_body = ActionIn,
    responses((status = 200, description = "The case after the action", body = CaseDetail),
        (status = 404, description = "No such case of this app"),
        (status = 409, description = "The case is not open, or the store cannot do this"),
        (status = 502, description = "The store's API failed")))]
pub async fn act_on_recovery_case(
    State(state): State<AppState>,
    app: AppAuth,
    Path(id): Path<i64>,
    body: crate::http::extract::Json<ActionIn>,
) -> Result<Json<CaseDetail>> {
    let actor = format!("app_key:{}", app.key_id);
    let by = Actor {
        actor: &actor,
        role: None,
    };
    let out = act(&state, (app.app_id, &app.app_slug), id, body.0.action, &by).await?;
    Ok(Json(out))
}

/// Recovery's numbers over the cases whose first failure is in `[from, to)`.
#[utoipa::path(get, path = "/v1/recovery/kpis", tag = "recovery", security(("api_key" = [])),
    params(WindowQuery),
    responses((status = 200, description = "The numbers", body = Kpis)))]
pub async fn get_recovery_kpis(
    State(state): State<AppState>,
    app: AppAuth,
    Query(q): Query<WindowQuery>,
) -> Result<Json<Kpis>> {
    Ok(Json(kpis(&state, app.app_id, &q).await?))
}

/// The numbers over a window, checked (shared with the admin API).
pub async fn kpis(state: &AppState, app_id: i64, q: &WindowQuery) -> Result<Kpis> {
    if q.to <= q.from {
        return Err(invalid("to", "must be after from"));
    }
    Ok(recovery::kpis(&state.db, app_id, q.from, q.to).await?)
}

/// The columns of the CSV export, in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "id",
    "user",
    "provider",
    "subscription_id",
    "state",
    "first_failure_at",
    "last_failure_at",
    "attempts",
    "amount_minor",
    "currency",
    "recovered_at",
    "recovered_amount_minor",
    "closed_at",
];

/// The app's cases as CSV (RFC 4180, a header row, times as RFC 3339 UTC), newest first,
/// streamed a page at a time.
#[utoipa::path(get, path = "/v1/recovery/cases.csv", tag = "recovery", security(("api_key" = [])),
    params(ExportQuery),
    responses((status = 200, description = "The cases", content_type = "text/csv", body = String)))]
pub async fn export_recovery_cases(
    State(state): State<AppState>,
    app: AppAuth,
    Query(q): Query<ExportQuery>,
) -> Result<Response> {
    export(state, app.app_id, q)
}

/// The CSV export (shared with the admin API).
pub fn export(state: AppState, app_id: i64, q: ExportQuery) -> Result<Response> {
    parse_state(q.state.as_deref())?;
    const PAGE: i64 = 500;
    let stream = futures_util::stream::unfold((Some(None::<i64>), true), move |(cursor, first)| {
        let (state, q) = (state.clone(), (q.state.clone(), q.from, q.to));
        async move {
            let before = cursor?;
            let filter = CaseFilter {
                state: q.0.as_deref(),
                from: q.1,
                to: q.2,
                ..Default::default()
            };
            let rows = match recovery::app_cases_with_users(
                &state.db, app_id, &filter, before, PAGE,
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => return Some((Err(std::io::Error::other(e)), (None, false))),
            };
            let next = (rows.len() as i64 == PAGE).then(|| rows.last().map(|(c, _)| c.id));
            Some((
                csv_page(first, &rows).map_err(std::io::Error::other),
                (next, false),
            ))
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"recovery-cases.csv\""),
    );
    Ok(response)
}

fn csv_page(
    header: bool,
    rows: &[(CaseRow, Option<String>)],
) -> std::result::Result<Vec<u8>, csv::Error> {
    let time = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_COLUMNS)?;
    }
    for (c, user) in rows {
        w.write_record([
            c.id.to_string(),
            user.clone().unwrap_or_default(),
            c.provider.clone(),
            c.subscription_id.clone(),
            c.state.clone(),
            time(Some(c.first_failure_at)),
            time(Some(c.last_failure_at)),
            c.attempts.to_string(),
            num(c.amount_minor),
            c.currency.clone().unwrap_or_default(),
            time(c.recovered_at),
            num(c.recovered_amount_minor),
            time(c.closed_at),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
