//! Invite-only apps: a user must redeem a code before paid or metered routes work; codes have
//! use limits and expiry, enforced under concurrency.

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tollgate::config::AppConfig;
use tollgate::domain::identity::{InviteSettings, KeyKind, Role};
use tollgate::http::auth::InvitedUser;
use tollgate::startup::Role as ServerRole;
use tollgate::store::identity::{self, KeySpec};

use crate::helpers::{TestApp, problem, spawn_app_full};

async fn paid(InvitedUser(user): InvitedUser) -> String {
    format!("paid feature for {}", user.external_id)
}

async fn invite_only_app() -> TestApp {
    spawn_app_full(
        |c| {
            c.apps = vec![AppConfig {
                slug: "club".into(),
                name: None,
                compat: Default::default(),
                jwt: None,
                invites: InviteSettings { required: true },
                ..Default::default()
            }]
        },
        ServerRole::All,
        Router::new().route("/test/paid", get(paid)),
    )
    .await
}

async fn admin(app: &TestApp) -> String {
    let spec = KeySpec {
        role: Some(Role::Admin),
        ..Default::default()
    };
    identity::create_key(&app.db, KeyKind::Operator, &spec)
        .await
        .unwrap()
        .1
        .secret
}

async fn create_code(app: &TestApp, body: Value) -> reqwest::Response {
    let token = admin(app).await;
    app.client
        .post(app.url("/admin/v1/apps/club/invites"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn redeem(app: &TestApp, key: &str, code: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/invites/redeem"))
        .bearer_auth(key)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn paid_routes_wait_for_a_redeemed_code() {
    let app = invite_only_app().await;
    let key = app.user_key("club", "ann").await;
    let me: Value = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["app"]["invite_required"], true);
    assert_eq!(me["user"]["invited"], false);
    let paid = app
        .client
        .get(app.url("/test/paid"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(
        problem(paid, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("invite-only")
    );

    assert_eq!(
        create_code(&app, json!({"code": "WELCOME-1", "max_uses": 1}))
            .await
            .status(),
        201
    );
    let r: Value = redeem(&app, &key, "WELCOME-1").await.json().await.unwrap();
    assert_eq!(r, json!({"invited": true, "redeemed_now": true}));
    let again: Value = redeem(&app, &key, "WELCOME-1").await.json().await.unwrap();
    assert_eq!(again["redeemed_now"], false, "redeeming twice uses nothing");
    let paid = app
        .client
        .get(app.url("/test/paid"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(paid.text().await.unwrap(), "paid feature for ann");

    let other = app.user_key("club", "bo").await;
    let body = problem(redeem(&app, &other, "WELCOME-1").await, 422).await;
    assert_eq!(
        body["errors"][0]["message"],
        "this invite code has been used up"
    );
    let body = problem(redeem(&app, &other, "NOPE-123").await, 422).await;
    assert_eq!(body["errors"][0]["message"], "no such invite code");
    let past = tollgate::store::now_ms() - 1;
    let refused = create_code(
        &app,
        json!({"code": "OLD-CODE", "max_uses": 5, "expires_at": past}),
    )
    .await;
    assert_eq!(
        problem(refused, 422).await["errors"][0]["field"],
        "expires_at",
        "no code is born expired"
    );
    // A code that expired since it was made (written straight to the store).
    let club = tollgate::store::identity::app_by_slug(&app.db, "club")
        .await
        .unwrap()
        .unwrap();
    tollgate::store::invites::create(&app.db, club.id, "OLD-CODE", 5, Some(past))
        .await
        .unwrap();
    let body = problem(redeem(&app, &other, "OLD-CODE").await, 422).await;
    assert_eq!(body["errors"][0]["message"], "this invite code has expired");
}

#[tokio::test]
async fn a_code_is_never_used_more_often_than_allowed_under_concurrency() {
    let app = invite_only_app().await;
    let created: Value = create_code(&app, json!({"max_uses": 3}))
        .await
        .json()
        .await
        .unwrap();
    let code = created["code"].as_str().unwrap().to_string();
    assert!(code.len() >= 8, "a random code: {code}");
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.push(app.user_key("club", &format!("user-{i}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let (client, url, code) = (
            app.client.clone(),
            app.url("/v1/invites/redeem"),
            code.clone(),
        );
        tasks.spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| s.as_u16() == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| s.as_u16() == 422).count(), 7);
    let invites: Value = app
        .client
        .get(app.url("/admin/v1/apps/club/invites"))
        .bearer_auth(admin(&app).await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invites[0]["uses"], 3);
}
