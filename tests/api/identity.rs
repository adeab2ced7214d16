//! Apps, users and keys: every key kind accepted and refused as it should be, roles, the audit
//! log, tenant isolation, and the CLI against a running server.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate::domain::identity::{KeyKind, Role};
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::now_ms;

use crate::cli::{as_refs, db_vars, run};
use crate::helpers::{TestApp, problem, spawn_app};

struct Seed {
    a_id: i64,
    b_id: i64,
    user_key: String,
    app_key_a: String,
    app_key_b: String,
    owner: String,
}

async fn key(app: &TestApp, kind: KeyKind, spec: KeySpec) -> (i64, String) {
    let (id, key) = identity::create_key(&app.db, kind, &spec).await.unwrap();
    (id, key.secret)
}

async fn seed(app: &TestApp) -> Seed {
    let a = identity::create_app(&app.db, "app-a", "App A")
        .await
        .unwrap()
        .unwrap();
    let b = identity::create_app(&app.db, "app-b", "App B")
        .await
        .unwrap()
        .unwrap();
    let (alice, _) = identity::find_or_create_user(&app.db, a.id, "alice")
        .await
        .unwrap();
    identity::find_or_create_user(&app.db, b.id, "bob")
        .await
        .unwrap();
    let user_key = key(
        app,
        KeyKind::User,
        KeySpec {
            app_id: Some(a.id),
            user_id: Some(alice.id),
            ..Default::default()
        },
    )
    .await
    .1;
    let app_key_a = key(
        app,
        KeyKind::App,
        KeySpec {
            app_id: Some(a.id),
            ..Default::default()
        },
    )
    .await
    .1;
    let app_key_b = key(
        app,
        KeyKind::App,
        KeySpec {
            app_id: Some(b.id),
            ..Default::default()
        },
    )
    .await
    .1;
    let owner = key(
        app,
        KeyKind::Operator,
        KeySpec {
            role: Some(Role::Owner),
            ..Default::default()
        },
    )
    .await
    .1;
    Seed {
        a_id: a.id,
        b_id: b.id,
        user_key,
        app_key_a,
        app_key_b,
        owner,
    }
}

impl TestApp {
    async fn get_me(&self, key: &str) -> reqwest::Response {
        self.get_as("/v1/me", key).await
    }
}

#[tokio::test]
async fn a_user_key_identifies_its_user_and_app() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let response = app.get_me(&s.user_key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["external_id"], "alice");
    assert_eq!(body["app"]["slug"], "app-a");
    assert_eq!(body["app"]["name"], "App A");
    // The auth scheme is case-insensitive (RFC 9110).
    let lower = app
        .get_with_header(
            "/v1/me",
            "authorization",
            &format!("bearer  {}", s.user_key),
        )
        .await;
    assert_eq!(lower.status(), 200);
}

#[tokio::test]
async fn missing_malformed_unknown_and_wrong_secret_keys_get_401() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let missing = app.get("/v1/me").await;
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"tollgate\""
    );
    let body = problem(missing, 401).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("missing Authorization")
    );

    let body = problem(app.get_me("sk_live_123").await, 401).await;
    assert!(
        body["detail"].as_str().unwrap().contains("malformed"),
        "{body}"
    );
    let unknown = tollgate::domain::identity::NewKey::generate(KeyKind::User).secret;
    problem(app.get_me(&unknown).await, 401).await;
    // The right prefix with another secret.
    let mut forged = s.user_key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let body = problem(app.get_me(&forged).await, 401).await;
    assert_eq!(body["detail"], "unknown API key");
}

#[tokio::test]
async fn revoked_and_expired_keys_get_401_at_once() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    assert_eq!(app.get_me(&s.user_key).await.status(), 200);
    let keys: Value = app
        .get_as("/admin/v1/apps/app-a/keys", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    let user_key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "user")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let revoked = app
        .send_as(
            reqwest::Method::POST,
            &format!("/admin/v1/keys/{user_key_id}/revoke"),
            &s.owner,
            None,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let body = problem(app.get_me(&s.user_key).await, 401).await;
    assert_eq!(
        body["detail"], "this API key was revoked",
        "the revoking process forgets it at once"
    );

    let (alice, _) = identity::find_or_create_user(&app.db, s.a_id, "alice")
        .await
        .unwrap();
    let expired = key(
        &app,
        KeyKind::User,
        KeySpec {
            app_id: Some(s.a_id),
            user_id: Some(alice.id),
            expires_at: Some(now_ms() - 1),
            ..Default::default()
        },
    )
    .await
    .1;
    let body = problem(app.get_me(&expired).await, 401).await;
    assert_eq!(body["detail"], "this API key has expired");
}

#[tokio::test]
async fn a_key_of_the_wrong_kind_gets_403() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let body = problem(app.get_me(&s.app_key_a).await, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("user key"),
        "{body}"
    );
    problem(app.get_as("/admin/v1/apps", &s.user_key).await, 403).await;
    problem(app.get_as("/admin/v1/apps", &s.app_key_a).await, 403).await;
    problem(app.get_as("/v1/users/alice", &s.owner).await, 403).await;
}

#[tokio::test]
async fn an_app_key_sees_nothing_of_another_app() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    assert_eq!(
        app.get_as("/v1/users/alice", &s.app_key_a).await.status(),
        200
    );
    problem(app.get_as("/v1/users/bob", &s.app_key_a).await, 404).await;
    problem(app.get_as("/v1/users/alice", &s.app_key_b).await, 404).await;
    problem(
        app.send_as(reqwest::Method::DELETE, "/v1/users/bob", &s.app_key_a, None)
            .await,
        404,
    )
    .await;
    // Minting a key for "bob" through app A creates A's own bob, never B's.
    let minted = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/bob/keys",
            &s.app_key_a,
            Some(json!({})),
        )
        .await;
    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    let me: Value = app
        .get_me(minted["key"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["app"]["slug"], "app-a");
    let b_bob = identity::user_by_external_id(&app.db, s.b_id, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(me["user"]["id"], b_bob.id);
    // An operator limited to app A sees only A.
    let scoped = key(
        &app,
        KeyKind::Operator,
        KeySpec {
            role: Some(Role::Admin),
            app_scope: Some(vec!["app-a".into()]),
            ..Default::default()
        },
    )
    .await
    .1;
    let apps: Value = app
        .get_as("/admin/v1/apps", &scoped)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1);
    problem(app.get_as("/admin/v1/apps/app-b/keys", &scoped).await, 404).await;
    problem(
        app.get_as("/admin/v1/apps/app-b/users/bob", &scoped).await,
        404,
    )
    .await;
    problem(app.get_as("/admin/v1/jobs/stats", &scoped).await, 403).await;
}

#[tokio::test]
async fn a_viewer_cannot_mutate_and_every_admin_change_is_audited() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let viewer = key(
        &app,
        KeyKind::Operator,
        KeySpec {
            role: Some(Role::Viewer),
            ..Default::default()
        },
    )
    .await
    .1;
    assert_eq!(app.get_as("/admin/v1/apps", &viewer).await.status(), 200);
    let body = problem(
        app.send_as(
            reqwest::Method::POST,
            "/admin/v1/apps",
            &viewer,
            Some(json!({"slug": "app-c"})),
        )
        .await,
        403,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("admin role"),
        "{body}"
    );
    problem(
        app.send_as(
            reqwest::Method::POST,
            "/admin/v1/jobs/1/retry",
            &viewer,
            None,
        )
        .await,
        403,
    )
    .await;
    problem(app.get_as("/admin/v1/audit", &viewer).await, 403).await;

    let created = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/apps",
            &s.owner,
            Some(json!({"slug": "app-c", "name": "App C"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let request_id = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    problem(
        app.send_as(
            reqwest::Method::POST,
            "/admin/v1/apps",
            &s.owner,
            Some(json!({"slug": "app-c"})),
        )
        .await,
        409,
    )
    .await;
    let minted = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/apps/app-c/keys",
            &s.owner,
            Some(json!({"kind": "user", "external_id": "carol"})),
        )
        .await;
    assert_eq!(minted.status(), 201);
    let bad = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/apps/app-c/keys",
            &s.owner,
            Some(json!({"kind": "user"})),
        )
        .await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "external_id");
    let born_expired = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/apps/app-c/keys",
            &s.owner,
            Some(json!({"kind": "app", "expires_at": 1})),
        )
        .await;
    assert_eq!(
        problem(born_expired, 422).await["errors"][0]["field"],
        "expires_at"
    );

    let audit: Value = app
        .get_as("/admin/v1/audit", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["keys.create", "apps.create"],
        "only the successful changes, newest first"
    );
    let create = &audit[1];
    assert_eq!(create["target"], "app-c");
    assert_eq!(create["actor_role"], "owner");
    assert_eq!(create["request_id"], request_id.as_str());
    assert!(create["actor"].as_str().unwrap().starts_with("key:"));
}

#[tokio::test]
async fn operators_run_queue_operations_over_http() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let stats: Value = app
        .get_as("/admin/v1/jobs/stats", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["switches"]["processing"], true);
    let paused = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/jobs/queues/default/pause",
            &s.owner,
            None,
        )
        .await;
    assert_eq!(paused.status(), 204);
    let stats: Value = app
        .get_as("/admin/v1/jobs/stats", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    let default = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["paused"], true);
    let off = app
        .send_as(
            reqwest::Method::PUT,
            "/admin/v1/jobs/switches/scheduler",
            &s.owner,
            Some(json!({"on": false})),
        )
        .await;
    assert_eq!(off.status(), 204);
    let stats: Value = app
        .get_as("/admin/v1/jobs/stats", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["switches"]["scheduler"], false);
    problem(app.get_as("/admin/v1/jobs/999999", &s.owner).await, 404).await;
    let audit: Value = app
        .get_as("/admin/v1/audit", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["jobs.switch", "jobs.pause"]);
}

#[tokio::test]
async fn the_cli_creates_apps_keys_and_tokens_and_its_revocation_reaches_a_running_server() {
    let mut app = spawn_app().await;
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let (code, out, err) = run(&["apps", "create", "acme", "--name", "Acme"], &vars).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created app acme (Acme)"), "{out}");
    let (code, _, err) = run(&["apps", "create", "acme"], &vars).await;
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    let (code, out, err) = run(
        &["keys", "create", "--app", "acme", "--user", "user_123"],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let user_key = out.lines().last().unwrap().to_string();
    assert!(user_key.starts_with("tg_user_"), "{out}");
    let me: Value = app.get_me(&user_key).await.json().await.unwrap();
    assert_eq!(me["user"]["external_id"], "user_123");

    let (_, out, _) = run(&["keys", "create", "--app", "acme", "--secret"], &vars).await;
    let app_key = out.lines().last().unwrap().to_string();
    assert!(app_key.starts_with("tg_app_"), "{out}");
    assert_eq!(
        app.get_as("/v1/users/user_123", &app_key).await.status(),
        200
    );

    let (_, out, _) = run(&["keys", "list", "--app", "acme"], &vars).await;
    assert_eq!(
        out.lines().filter(|l| l.contains("active")).count(),
        2,
        "{out}"
    );
    assert!(!out.contains(&user_key), "listings never show secrets");

    let (_, out, _) = run(&["operators", "create-token", "--role", "viewer"], &vars).await;
    let viewer = out.lines().last().unwrap().to_string();
    assert!(viewer.starts_with("tg_op_"));
    assert_eq!(app.get_as("/admin/v1/apps", &viewer).await.status(), 200);
    problem(
        app.send_as(
            reqwest::Method::POST,
            "/admin/v1/apps",
            &viewer,
            Some(json!({"slug": "x1"})),
        )
        .await,
        403,
    )
    .await;

    // Revoked by another process: the server's cache lets it through for at most 5 s.
    let (code, out, err) = run(&["keys", "revoke", &user_key], &vars).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked key"), "{out}");
    let start = std::time::Instant::now();
    while app.get_me(&user_key).await.status() == 200 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "revocation took effect within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, out, _) = run(
        &["users", "show", "--app", "acme", "--user", "user_123"],
        &vars,
    )
    .await;
    assert!(out.contains("\"external_id\": \"user_123\""), "{out}");
    let (code, out, _) = run(
        &["users", "delete", "--app", "acme", "--user", "user_123"],
        &vars,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("external id erased"), "{out}");
    problem(app.get_as("/v1/users/user_123", &app_key).await, 404).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_owner_limited_to_one_app_cannot_revoke_operator_tokens_or_act_across_apps() {
    let app = spawn_app().await;
    let s = seed(&app).await;
    let operator = |role, scope: Option<Vec<String>>| {
        key(
            &app,
            KeyKind::Operator,
            KeySpec {
                role: Some(role),
                app_scope: scope,
                ..Default::default()
            },
        )
    };
    let (global_id, global) = operator(Role::Owner, None).await;
    let (_, scoped) = operator(Role::Owner, Some(vec!["app-a".into()])).await;
    let revoke = |id: i64, token: String| {
        let app = &app;
        async move {
            app.send_as(
                reqwest::Method::POST,
                &format!("/admin/v1/keys/{id}/revoke"),
                &token,
                None,
            )
            .await
        }
    };
    let p = problem(revoke(global_id, scoped.clone()).await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("not limited"), "{p}");
    assert_eq!(
        app.get_as("/admin/v1/apps", &global).await.status(),
        200,
        "the global owner's token still works"
    );
    // Nor anything else that spans apps.
    let body = json!({"slug": "app-z"});
    problem(
        app.send_as(reqwest::Method::POST, "/admin/v1/apps", &scoped, Some(body))
            .await,
        403,
    )
    .await;
    problem(app.get_as("/admin/v1/jobs", &scoped).await, 403).await;
    problem(app.get_as("/admin/v1/audit", &scoped).await, 422).await;
    problem(app.get_as("/admin/v1/audit?app=app-b", &scoped).await, 404).await;
    // Its own app's keys it may revoke; the other app's it cannot see.
    let (a_key, _) = key(
        &app,
        KeyKind::App,
        KeySpec {
            app_id: Some(s.a_id),
            ..Default::default()
        },
    )
    .await;
    let (b_key, _) = key(
        &app,
        KeyKind::App,
        KeySpec {
            app_id: Some(s.b_id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(revoke(a_key, scoped.clone()).await.status(), 200);
    problem(revoke(b_key, scoped.clone()).await, 404).await;
    // The unrestricted owner may revoke operator tokens.
    assert_eq!(revoke(global_id, global.clone()).await.status(), 200);
}
