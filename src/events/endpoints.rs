//! Registering, changing and rotating an app's endpoints: the one set of rules the admin API
//! and `tollgate endpoints` share. A secret is shown once, when it is made.

use serde::Serialize;

use super::{secrets, signing, target};
use crate::config::Config;
use crate::domain::events::EventType;
use crate::error::{Error, FieldError, Result};
use crate::store::Db;
use crate::store::events::{self as store, EndpointPatch, EndpointRow, NewEndpoint};
use crate::store::now_ms;

/// An endpoint as operators see it (no secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointOut {
    pub id: i64,
    pub url: String,
    pub description: String,
    /// `events` (tollgate's events) or `jobs` (the app's HTTP jobs, docs/jobs.md).
    pub purpose: String,
    /// The event types it receives; absent: every type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    /// Why it is disabled (`gone`: it answered 410; `failing`: it failed for too long).
    pub disabled_reason: Option<String>,
    /// Since when every attempt failed (ms since the epoch); absent while healthy.
    pub failing_since: Option<i64>,
    /// Until when a rotated-out secret still signs beside the current one.
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<EndpointRow> for EndpointOut {
    fn from(r: EndpointRow) -> Self {
        EndpointOut {
            id: r.id,
            url: r.url,
            description: r.description,
            purpose: r.purpose,
            event_types: r.event_types,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since,
            previous_secret_until: r.previous_until.filter(|&t| t > now_ms()),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// What registering an endpoint takes.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: String,
    pub description: Option<String>,
    /// `None` or empty: every type.
    pub event_types: Option<Vec<String>>,
    /// Receives the app's HTTP jobs instead of events (one such endpoint per app).
    pub for_jobs: bool,
}

/// An endpoint and the secret it was just given (shown this once).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// `whsec_…`: verify deliveries with it (docs/events.md). Not shown again.
    pub secret: String,
}

/// Checks a URL: http(s), and — with the target guard on — not a forbidden address.
async fn check_url(config: &Config, url: &str, fields: &mut Vec<FieldError>) {
    if url.len() > 2048 {
        fields.push(FieldError::new("url", "at most 2048 characters"));
        return;
    }
    if let Err(e) = target::Policy::from_config(config).check_url(url).await {
        fields.push(FieldError::new("url", e.to_string()));
    }
}

fn check_types(types: &[String], fields: &mut Vec<FieldError>) {
    for (i, t) in types.iter().enumerate() {
        if EventType::parse(t).is_none() {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            fields.push(FieldError::new(
                format!("event_types.{i}"),
                format!("unknown event type {t:?}; known: {}", known.join(", ")),
            ));
        }
    }
}

fn check_description(d: &str, fields: &mut Vec<FieldError>) {
    if d.chars().count() > 500 {
        fields.push(FieldError::new("description", "at most 500 characters"));
    }
}

/// Empty means every type.
fn type_filter(types: Option<Vec<String>>) -> Option<Vec<String>> {
    types.filter(|t| !t.is_empty())
}

pub async fn create(
    config: &Config,
    db: &Db,
    app_id: i64,
    input: EndpointInput,
) -> Result<WithSecret> {
    let mut fields = Vec::new();
    check_url(config, &input.url, &mut fields).await;
    let types = type_filter(input.event_types);
    check_types(types.as_deref().unwrap_or_default(), &mut fields);
    if input.for_jobs && types.is_some() {
        fields.push(FieldError::new(
            "event_types",
            "an endpoint for jobs receives jobs only; register another for events",
        ));
    }
    let description = input.description.unwrap_or_default();
    check_description(&description, &mut fields);
    if !fields.is_empty() {
        return Err(Error::Validation(fields));
    }
    let secret = signing::new_secret();
    let sealed = secrets::seal(config, &secret).map_err(Error::Internal)?;
    let purpose = if input.for_jobs { "jobs" } else { "events" };
    let made = store::create_endpoint(
        db,
        app_id,
        &NewEndpoint {
            url: &input.url,
            purpose,
            description: &description,
            event_types: types.as_deref(),
            sealed_secret: &sealed,
        },
    )
    .await;
    let row = match made {
        Err(e) if crate::store::is_unique_violation(&e) => {
            return Err(Error::Conflict(
                "the app has an endpoint for jobs already; change its URL instead".into(),
            ));
        }
        other => other?,
    };
    Ok(WithSecret {
        endpoint: row.into(),
        secret,
    })
}

/// Changes to an endpoint (`None` keeps a field).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    /// `Some(empty)`: every type.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

pub async fn update(
    config: &Config,
    db: &Db,
    app_id: i64,
    id: i64,
    change: EndpointChange,
) -> Result<EndpointOut> {
    let mut fields = Vec::new();
    if let Some(url) = &change.url {
        check_url(config, url, &mut fields).await;
    }
    if let Some(types) = &change.event_types {
        check_types(types, &mut fields);
    }
    if let Some(d) = &change.description {
        check_description(d, &mut fields);
    }
    if !fields.is_empty() {
        return Err(Error::Validation(fields));
    }
    let types = change.event_types.map(|t| type_filter(Some(t)));
    let patch = EndpointPatch {
        url: change.url.as_deref(),
        description: change.description.as_deref(),
        event_types: types.as_ref().map(|t| t.as_deref()),
        enabled: change.enabled,
    };
    store::update_endpoint(db, app_id, id, &patch)
        .await?
        .map(EndpointOut::from)
        .ok_or_else(|| not_found(id))
}

/// A new secret; the old one keeps signing for `events.rotation_overlap_hours`.
pub async fn rotate(config: &Config, db: &Db, app_id: i64, id: i64) -> Result<WithSecret> {
    let secret = signing::new_secret();
    let sealed = secrets::seal(config, &secret).map_err(Error::Internal)?;
    let until = now_ms() + (config.events.rotation_overlap_hours * 3_600_000) as i64;
    if !store::rotate_secret(db, app_id, id, &sealed, until).await? {
        return Err(not_found(id));
    }
    let row = store::endpoint(db, app_id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(WithSecret {
        endpoint: row.into(),
        secret,
    })
}

/// The secrets that sign a delivery now: the current one, and a rotated-out one until its
/// overlap ends.
pub fn signing_secrets(config: &Config, e: &EndpointRow, now: i64) -> anyhow::Result<Vec<String>> {
    let mut out = vec![secrets::open(config, &e.secret)?];
    if let (Some(previous), Some(until)) = (&e.previous_secret, e.previous_until)
        && until > now
    {
        out.push(secrets::open(config, previous)?);
    }
    Ok(out)
}

pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no endpoint {id}"))
}
