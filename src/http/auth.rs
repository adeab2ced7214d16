//! Who is calling: `Authorization: Bearer <key>` checked against the stored hash (in constant
//! time), through a short-lived in-memory cache. Extractors per principal: [`UserAuth`] (user
//! keys), [`AppAuth`] (app secret keys), [`OperatorAuth`] (operator tokens, with roles).
//!
//! Revocation: immediate in the process that revoked; everywhere else within [`CACHE_TTL`]
//! (each process re-reads a key at least that often), so within 5 s across replicas and the CLI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use crate::crypto::constant_time_eq;
use crate::domain::compat::{CompatRules, CompatStatus, Version};
use crate::domain::identity::{ExternalId, KeyKind, PresentedKey, Role, hash_secret, mask};
use crate::domain::plans::BillingSettings;
use crate::error::Error;
use crate::http::jwt::JwtVerifier;
use crate::store::identity::{self, KeyRecord};
use crate::store::{Db, now_ms};

/// How long a verified key is trusted without re-reading it.
pub const CACHE_TTL: Duration = Duration::from_secs(4);
/// Beyond this many cached keys the cache starts over (bounded memory under key-guessing).
const CACHE_MAX: usize = 100_000;

/// A key record (or `None`: no key has this prefix) and when it was read.
type Entry = (Option<Arc<KeyRecord>>, Instant);

/// Presented keys checked against their stored hash, by outcome: `ok`, `unknown` (no such key,
/// or a wrong secret: told apart only in the log), `revoked`, `expired`, `deleted`. Once per
/// request, whatever layers look at the caller.
pub const KEY_CHECKS: &str = "tollgate_api_key_checks_total";

/// Describes the metric (its HELP line), once at start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        KEY_CHECKS,
        "Presented API keys checked, once per request, by outcome (ok, unknown, revoked, expired, deleted)."
    );
}

fn counted<T>(outcome: &'static str, result: Result<T, Error>) -> Result<T, Error> {
    metrics::counter!(KEY_CHECKS, "outcome" => outcome).increment(1);
    result
}

/// Verified keys by prefix, and prefixes known to match no key (so a request with a made-up
/// key, which the rate limiter and the handler both check, costs one database read, not two
/// and not one per retry). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KeyCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl KeyCache {
    /// Checks a presented key; returns what it grants.
    pub async fn verify(&self, db: &Db, presented: &str) -> Result<Arc<KeyRecord>, Error> {
        let Some(key) = PresentedKey::parse(presented) else {
            return Err(Error::Unauthorized(
                "malformed API key: expected tg_user_…, tg_app_… or tg_op_…".into(),
            ));
        };
        let found = match self.cached(key.prefix) {
            Some(found) => found,
            None => {
                let found = identity::key_by_prefix(db, key.prefix)
                    .await
                    .map_err(|e| Error::Internal(e.into()))?
                    .map(Arc::new);
                self.store(key.prefix, found.clone());
                if let Some(r) = &found {
                    // Once per cache period per process; the store writes at most once a minute.
                    let (db, id) = (db.clone(), r.id);
                    tokio::spawn(async move {
                        let _ = identity::touch_key(&db, id).await;
                    });
                }
                found
            }
        };
        let refused = |outcome, why: &str| counted(outcome, Err(Error::Unauthorized(why.into())));
        let Some(record) = found else {
            tracing::info!(key = %masked(presented), "unknown API key");
            return refused("unknown", "unknown API key");
        };
        if !constant_time_eq(
            hash_secret(key.secret).as_bytes(),
            record.secret_hash.as_bytes(),
        ) {
            tracing::info!(key = %masked(presented), "API key with a wrong secret");
            return refused("unknown", "unknown API key");
        }
        if record.revoked_at.is_some() {
            return refused("revoked", "this API key was revoked");
        }
        if record.expires_at.is_some_and(|at| at <= now_ms()) {
            return refused("expired", "this API key has expired");
        }
        if record.user_deleted {
            return refused("deleted", "this key's user was deleted");
        }
        counted("ok", Ok(record))
    }

    /// Drops a key from this process's cache (called on revoke).
    pub fn forget(&self, prefix: &str) {
        self.entries.lock().expect("key cache lock").remove(prefix);
    }

    /// `Some(found)` while the entry is fresh.
    fn cached(&self, prefix: &str) -> Option<Option<Arc<KeyRecord>>> {
        let entries = self.entries.lock().expect("key cache lock");
        entries
            .get(prefix)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(r, _)| r.clone())
    }

    fn store(&self, prefix: &str, found: Option<Arc<KeyRecord>>) {
        let mut entries = self.entries.lock().expect("key cache lock");
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(prefix.to_string(), (found, Instant::now()));
    }
}

/// A key as it may appear in logs: prefix and last four characters.
pub fn masked(presented: &str) -> String {
    match PresentedKey::parse(presented) {
        Some(k) => mask(k.prefix, &presented[presented.len() - 4..]),
        None => "(malformed)".into(),
    }
}

/// Headers the AI providers' SDKs put their API key in, read when there is no
/// `Authorization`: Anthropic's (`x-api-key`) and Google's (`x-goog-api-key`). Pointing those
/// SDKs at tollgate with a tollgate key then works without extra configuration.
const SDK_KEY_HEADERS: &[&str] = &["x-api-key", "x-goog-api-key"];

/// The credential of `Authorization: Bearer <credential>` (the scheme is case-insensitive, as
/// RFC 9110 says), else of an SDK key header. The one place every route, the limiter and
/// `/metrics` read it.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let (scheme, credential) = value.to_str().ok()?.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credential.trim())
            .filter(|c| !c.is_empty());
    }
    SDK_KEY_HEADERS
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

fn bearer(parts: &Parts) -> Result<&str, Error> {
    let present = parts.headers.contains_key(header::AUTHORIZATION)
        || SDK_KEY_HEADERS
            .iter()
            .any(|h| parts.headers.contains_key(*h));
    if !present {
        return Err(Error::Unauthorized(
            "missing Authorization: Bearer <API key>".into(),
        ));
    }
    bearer_token(&parts.headers)
        .ok_or_else(|| Error::Unauthorized("expected Authorization: Bearer <API key>".into()))
}

/// A request's key as the first layer that checked it found it: the key's record, or why it
/// was refused. Kept in the request's extensions, so the rate limiter, the Idempotency-Key layer
/// and the route's extractor authenticate a request once, not once each.
#[derive(Clone)]
struct Verified(Result<Arc<KeyRecord>, String>);

/// Checks the request's key once per request: a later call finds the first one's outcome.
/// A failure to read the key (the database down) is not kept: the next layer tries again.
pub async fn verify_once(
    state: &AppState,
    token: &str,
    extensions: &mut axum::http::Extensions,
) -> Result<Arc<KeyRecord>, Error> {
    if let Some(Verified(outcome)) = extensions.get::<Verified>() {
        return outcome.clone().map_err(Error::Unauthorized);
    }
    let outcome = state.keys.verify(&state.db, token).await;
    match &outcome {
        Ok(record) => {
            extensions.insert(Verified(Ok(record.clone())));
        }
        Err(Error::Unauthorized(why)) => {
            extensions.insert(Verified(Err(why.clone())));
        }
        Err(_) => {}
    }
    outcome
}

async fn principal(
    parts: &mut Parts,
    state: &AppState,
    want: KeyKind,
) -> Result<Arc<KeyRecord>, Error> {
    let token = bearer(parts)?.to_string();
    let record = verify_once(state, &token, &mut parts.extensions).await?;
    if record.kind != want {
        let needs = match want {
            KeyKind::User => "a user key (tg_user_…)",
            KeyKind::App => "an app secret key (tg_app_…)",
            KeyKind::Operator => "an operator token (tg_op_…)",
        };
        return Err(Error::Forbidden(format!("this route needs {needs}")));
    }
    Ok(record)
}

/// A request made with a user key, or with an access token of the app's identity provider.
#[derive(Debug, Clone)]
pub struct UserAuth {
    /// The user key's id; 0 for an access token.
    pub key_id: i64,
    pub app_id: i64,
    pub app_slug: String,
    pub user_id: i64,
    pub external_id: String,
    /// The app makes new users redeem an invite code before paid or metered routes.
    pub invites_required: bool,
    /// The app's plans and credit conversion.
    pub billing: Arc<BillingSettings>,
}

impl UserAuth {
    /// The caller's ledger.
    pub fn target(&self) -> crate::store::ledger::Target {
        crate::store::ledger::Target {
            app_id: self.app_id,
            user_id: self.user_id,
        }
    }
}

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        // Authenticated by an earlier layer of this request (an access token's user is found,
        // or created, once).
        if let Some(user) = parts.extensions.get::<UserAuth>() {
            return Ok(user.clone());
        }
        let user = authenticate_user(parts, state).await?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

async fn authenticate_user(parts: &mut Parts, state: &AppState) -> Result<UserAuth, Error> {
    let token = bearer(parts)?;
    if JwtVerifier::looks_like_jwt(token) {
        let token = token.to_string();
        return user_from_jwt(parts, state, &token).await;
    }
    let r = principal(parts, state, KeyKind::User).await?;
    check_client_version(parts, &r.app_settings.compat)?;
    match (r.app_id, &r.app_slug, r.user_id, &r.user_external_id) {
        (Some(app_id), Some(slug), Some(user_id), Some(external_id)) => Ok(UserAuth {
            key_id: r.id,
            app_id,
            app_slug: slug.clone(),
            user_id,
            external_id: external_id.clone(),
            invites_required: r.app_settings.invites.required,
            billing: r.app_settings.billing.clone(),
        }),
        _ => Err(Error::Unauthorized("this key's user was deleted".into())),
    }
}

/// A user known by a verified access token of their app's identity provider; created on first
/// use.
async fn user_from_jwt(parts: &Parts, state: &AppState, token: &str) -> Result<UserAuth, Error> {
    let verified = state.jwt.verify(token).await?;
    let external = ExternalId::parse(&verified.subject).map_err(|_| {
        Error::Unauthorized("the access token's sub is not a usable user id".into())
    })?;
    let app = identity::app_by_slug(&state.db, &verified.app_slug)
        .await?
        .ok_or_else(|| Error::Unauthorized("unknown token issuer".into()))?;
    let settings = &app.settings;
    check_client_version(parts, &settings.compat)?;
    let (user, created) =
        identity::find_or_create_user(&state.db, app.id, external.as_str()).await?;
    if user.deleted_at.is_some() {
        return Err(Error::Unauthorized("this user was deleted".into()));
    }
    if created {
        tracing::info!(app = %app.slug, user_id = user.id, "user created on first sign-in");
    }
    Ok(UserAuth {
        key_id: 0,
        app_id: app.id,
        app_slug: app.slug,
        user_id: user.id,
        external_id: external.as_str().to_string(),
        invites_required: settings.invites.required,
        billing: settings.billing.clone(),
    })
}

/// A user allowed on paid and metered routes: when the app requires invites, one was redeemed.
#[derive(Debug, Clone)]
pub struct InvitedUser(pub UserAuth);

impl FromRequestParts<AppState> for InvitedUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let user = UserAuth::from_request_parts(parts, state).await?;
        if user.invites_required {
            let row = identity::user_by_id(&state.db, user.app_id, user.user_id).await?;
            if row.is_none_or(|u| u.invited_at.is_none()) {
                return Err(Error::Forbidden(
                    "this app is invite-only: redeem an invite code first (POST /v1/invites/redeem)".into(),
                ));
            }
        }
        Ok(InvitedUser(user))
    }
}

/// A request made with an app secret key: the app's own server.
#[derive(Debug, Clone)]
pub struct AppAuth {
    pub key_id: i64,
    pub app_id: i64,
    pub app_slug: String,
    /// The app's plans and credit conversion.
    pub billing: Arc<BillingSettings>,
}

impl FromRequestParts<AppState> for AppAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let r = principal(parts, state, KeyKind::App).await?;
        match (r.app_id, &r.app_slug) {
            (Some(app_id), Some(slug)) => Ok(AppAuth {
                key_id: r.id,
                app_id,
                app_slug: slug.clone(),
                billing: r.app_settings.billing.clone(),
            }),
            _ => Err(Error::Unauthorized("unknown API key".into())),
        }
    }
}

/// A request made with an operator token.
#[derive(Debug, Clone)]
pub struct OperatorAuth {
    pub key_id: i64,
    pub role: Role,
    /// Apps this operator may see; `None` means all.
    pub apps: Option<Vec<String>>,
}

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let r = principal(parts, state, KeyKind::Operator).await?;
        let role = r
            .role
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("operator key {} has no role", r.id)))?;
        Ok(OperatorAuth {
            key_id: r.id,
            role,
            apps: r.app_scope.clone(),
        })
    }
}

impl OperatorAuth {
    /// Refuses (403) unless the operator's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this action needs the {} role; this token has {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }

    /// Refuses (403) unless the operator's role is at least `role` and the operator is not
    /// limited to some apps: for what spans apps (jobs, creating apps, operator tokens).
    pub fn require_unrestricted(&self, role: Role, what: &str) -> Result<(), Error> {
        self.require(role)?;
        if self.apps.is_some() {
            return Err(Error::Forbidden(format!(
                "{what}: this needs an operator not limited to some apps"
            )));
        }
        Ok(())
    }

    /// Whether this operator may see `slug` (an app outside the scope answers 404, so its
    /// existence does not leak).
    pub fn can_see(&self, slug: &str) -> bool {
        self.apps
            .as_ref()
            .is_none_or(|apps| apps.iter().any(|a| a == slug))
    }

    /// How the audit log names this operator.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

/// Refuses (426) a client that sends `X-Client-Version` below its platform's minimum. The
/// platform is `X-Client-Platform`, or the app's only rule when it has just one.
pub fn check_client_version(parts: &Parts, rules: &CompatRules) -> Result<(), Error> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(raw) = header("x-client-version") else {
        return Ok(());
    };
    let version =
        Version::parse(raw).map_err(|m| Error::BadRequest(format!("X-Client-Version: {m}")))?;
    let rule = match header("x-client-platform") {
        Some(p) => rules.get(p),
        None if rules.len() == 1 => rules.values().next(),
        None => None,
    };
    match rule {
        Some(rule) if rule.status(&version) == CompatStatus::UpdateRequired => {
            Err(Error::UpgradeRequired {
                version: version.as_str().to_string(),
                min_version: rule.min_version.clone().unwrap_or_default(),
                latest_version: rule.latest_version.clone(),
                update_url: rule.update_url.clone(),
            })
        }
        _ => Ok(()),
    }
}
