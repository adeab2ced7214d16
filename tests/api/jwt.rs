//! Access tokens from an app's identity provider, checked against a local fake issuer's JWKS:
//! good tokens (EdDSA and ES256) sign the user in; expired, wrong-audience, tampered, unknown
//! and `alg: none` tokens are refused; an unknown `kid` refreshes the key set once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tollgate::config::AppConfig;
use tollgate::domain::identity::JwtSettings;

use crate::helpers::{TestApp, problem, spawn_app_with};

const ISSUER: &str = "https://auth.acme.test";
const AUDIENCE: &str = "acme-api";

/// A signing key and its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn ed25519(kid: &str) -> SigningKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                    "x": B64.encode(pair.public_key().as_ref())}),
    }
}

fn p256(kid: &str) -> SigningKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
    }
}

#[derive(Clone)]
struct FakeIssuer {
    keys: Arc<std::sync::Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks(State(f): State<FakeIssuer>) -> axum::Json<Value> {
    f.fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({ "keys": f.keys.lock().unwrap().clone() }))
}

async fn start_issuer(keys: Vec<Value>) -> (FakeIssuer, String) {
    let fake = FakeIssuer {
        keys: Arc::new(std::sync::Mutex::new(keys)),
        fetches: Arc::default(),
    };
    let app = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

async fn app_trusting(jwks_url: String) -> TestApp {
    spawn_app_with(move |c| {
        c.apps = vec![AppConfig {
            slug: "acme".into(),
            name: None,
            compat: Default::default(),
            jwt: Some(JwtSettings {
                issuer: ISSUER.into(),
                audience: Some(AUDIENCE.into()),
                jwks_url,
                leeway_secs: 5,
            }),
            invites: Default::default(),
            ..Default::default()
        }]
    })
    .await
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn token(key: &SigningKey, claims: Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 300})
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_good_token_signs_the_user_in_and_creates_them_once() {
    let ed = ed25519("ed-1");
    let ec = p256("ec-1");
    let (_issuer, url) = start_issuer(vec![ed.jwk.clone(), ec.jwk.clone()]).await;
    let app = app_trusting(url).await;
    for key in [&ed, &ec] {
        let r = me(&app, &token(key, claims("user_2abc"))).await;
        assert_eq!(r.status(), 200, "{:?}", key.alg);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["user"]["external_id"], "user_2abc");
        assert_eq!(body["app"]["slug"], "acme");
    }
    let count = async {
        use tollgate::store::scope::Scope;
        let n: Result<i64, sqlx::Error> = tollgate::scoped_run!(&app.db, Scope::AllApps, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await);
        n
    };
    let users = count.await.unwrap();
    assert_eq!(users, 1, "the second sign-in finds the same user");
}

#[tokio::test]
async fn expired_wrong_audience_tampered_and_unsigned_tokens_are_refused() {
    let ed = ed25519("ed-1");
    let (_issuer, url) = start_issuer(vec![ed.jwk.clone()]).await;
    let app = app_trusting(url).await;

    let mut expired = claims("u");
    expired["exp"] = json!(now() - 60);
    let body = problem(me(&app, &token(&ed, expired)).await, 401).await;
    assert_eq!(body["detail"], "the access token has expired");

    let mut within_leeway = claims("u");
    within_leeway["exp"] = json!(now() - 2);
    assert_eq!(
        me(&app, &token(&ed, within_leeway)).await.status(),
        200,
        "5 s of leeway"
    );

    let mut other_aud = claims("u");
    other_aud["aud"] = json!("someone-else");
    let body = problem(me(&app, &token(&ed, other_aud)).await, 401).await;
    assert_eq!(body["detail"], "the access token is for another audience");

    let mut not_yet = claims("u");
    not_yet["nbf"] = json!(now() + 600);
    problem(me(&app, &token(&ed, not_yet)).await, 401).await;

    let mut other_issuer = claims("u");
    other_issuer["iss"] = json!("https://evil.test");
    let body = problem(me(&app, &token(&ed, other_issuer)).await, 401).await;
    assert_eq!(body["detail"], "unknown token issuer");

    // Change the payload, keep the signature.
    let good = token(&ed, claims("u"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = B64.encode(claims("admin").to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let body = problem(me(&app, &tampered).await, 401).await;
    assert_eq!(body["detail"], "the access token's signature is invalid");

    let none_header = B64.encode(json!({"alg": "none", "typ": "JWT", "kid": "ed-1"}).to_string());
    let unsigned = format!("{none_header}.{}.", B64.encode(claims("u").to_string()));
    problem(me(&app, &unsigned).await, 401).await;
    let hs_header = B64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "ed-1"}).to_string());
    let hs = format!("{hs_header}.{}.c2ln", B64.encode(claims("u").to_string()));
    problem(me(&app, &hs).await, 401).await;
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys_once() {
    let old = ed25519("2025-key");
    let new = ed25519("2026-key");
    let (issuer, url) = start_issuer(vec![old.jwk.clone()]).await;
    let app = app_trusting(url).await;
    assert_eq!(me(&app, &token(&old, claims("u"))).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(me(&app, &token(&old, claims("u"))).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // The issuer rotates: a token with the new kid makes tollgate fetch the set again.
    issuer.keys.lock().unwrap().push(new.jwk.clone());
    assert_eq!(me(&app, &token(&new, claims("u"))).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);

    // A kid the issuer does not have: refused, and no fetch storm.
    let stranger = ed25519("nobody-has-this");
    for _ in 0..5 {
        let body = problem(me(&app, &token(&stranger, claims("u"))).await, 401).await;
        assert_eq!(body["detail"], "unknown signing key (kid)");
    }
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        2,
        "refreshes are rate-limited"
    );
}
