//! Access tokens from an app's own identity provider (WorkOS, Clerk, Auth0, …): RS256, ES256
//! or EdDSA, checked against the issuer's JWKS. Keys are cached; an unknown `kid` refreshes
//! the set, at most once per [`MIN_REFRESH`] per issuer. `exp`, `nbf`, `iss` and `aud` are
//! checked with the app's leeway; `sub` is the user's external id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::domain::identity::JwtSettings;
use crate::error::Error;

/// An unknown `kid` refreshes an issuer's keys at most this often.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Keys are fetched again after this long even when every `kid` is known.
pub const KEYS_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
    refreshed_for_unknown_at: Option<Instant>,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub app_slug: String,
    pub subject: String,
}

/// The verifier of one process, for the apps declared with `[apps.jwt]`. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    issuers: Arc<HashMap<String, (String, JwtSettings)>>,
    keys: Arc<Mutex<HashMap<String, Keys>>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Unauthorized(why.into())
}

impl JwtVerifier {
    pub fn new(config: &Config) -> JwtVerifier {
        let issuers = config
            .apps
            .iter()
            .filter_map(|a| {
                a.jwt
                    .clone()
                    .map(|j| (j.issuer.clone(), (a.slug.clone(), j)))
            })
            .collect();
        JwtVerifier {
            issuers: Arc::new(issuers),
            keys: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client builds"),
        }
    }

    /// Whether a bearer value looks like a JWT (three base64url parts) rather than an API key.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && !token.starts_with("tg_")
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, Error> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refuse("malformed access token"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(refuse(
                "access tokens must be signed with RS256, ES256 or EdDSA",
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| refuse("the access token has no kid"))?;
        // The issuer picks the keys; nothing is trusted until the signature is checked below.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
            .map_err(|_| refuse("malformed access token"))?;
        let issuer = unverified.claims.iss.unwrap_or_default();
        let (slug, settings) = self
            .issuers
            .get(&issuer)
            .ok_or_else(|| refuse("unknown token issuer"))?;
        let (key, alg) = self.key(settings, &kid).await?;
        if alg != header.alg {
            return Err(refuse("the token's alg does not match its key"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&settings.issuer]);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss", "sub"]);
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            refuse(match e.kind() {
                K::ExpiredSignature => "the access token has expired",
                K::ImmatureSignature => "the access token is not valid yet",
                K::InvalidAudience => "the access token is for another audience",
                K::InvalidIssuer => "unknown token issuer",
                K::InvalidSignature => "the access token's signature is invalid",
                _ => "invalid access token",
            })
        })?;
        let subject = data
            .claims
            .sub
            .ok_or_else(|| refuse("the access token has no sub"))?;
        Ok(Verified {
            app_slug: slug.clone(),
            subject,
        })
    }

    /// The key `kid` of an issuer. The set is fetched on first use and after [`KEYS_TTL`]
    /// (so removed keys stop working); an unknown `kid` fetches it again, at most once per
    /// [`MIN_REFRESH`] (so made-up kids cannot make us hammer the issuer).
    async fn key(&self, s: &JwtSettings, kid: &str) -> Result<(DecodingKey, Algorithm), Error> {
        let mut all = self.keys.lock().await;
        let keys = all.entry(s.jwks_url.clone()).or_insert_with(|| Keys {
            by_kid: HashMap::new(),
            fetched_at: None,
            refreshed_for_unknown_at: None,
        });
        let stale = keys.fetched_at.is_none_or(|at| at.elapsed() > KEYS_TTL);
        if !stale && let Some(k) = keys.by_kid.get(kid) {
            return Ok(k.clone());
        }
        if !stale {
            if keys
                .refreshed_for_unknown_at
                .is_some_and(|at| at.elapsed() < MIN_REFRESH)
            {
                return Err(refuse("unknown signing key (kid)"));
            }
            keys.refreshed_for_unknown_at = Some(Instant::now());
        }
        match self.fetch(&s.jwks_url).await {
            Ok(fresh) => {
                keys.by_kid = fresh;
                keys.fetched_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(jwks_url = %s.jwks_url, error = %e, "cannot fetch the issuer's JWKS");
                return Err(Error::Unavailable(
                    "cannot reach the token issuer's keys".into(),
                ));
            }
        }
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| refuse("unknown signing key (kid)"))
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let body = self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let set: JwkSet = serde_json::from_slice(&body)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                // Shared secrets (HS*) are never accepted from a key set.
                AlgorithmParameters::OctetKey(_) => continue,
            };
            if let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                keys.insert(kid.clone(), (key, alg));
            }
        }
        tracing::info!(
            jwks_url = url,
            keys = keys.len(),
            "fetched the issuer's JWKS"
        );
        Ok(keys)
    }
}
