//! Client compatibility: `/v1/compat` and the 426 for clients below the minimum version, with
//! the app declared in the config file.

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate::config::AppConfig;
use tollgate::domain::compat::CompatRule;
use tollgate::store::identity;

use crate::helpers::{TestApp, problem, spawn_app_with};

async fn acme() -> TestApp {
    spawn_app_with(|c| {
        c.apps = vec![AppConfig {
            slug: "acme".into(),
            name: Some("Acme".into()),
            compat: BTreeMap::from([(
                "desktop".into(),
                CompatRule {
                    min_version: Some("1.2.0".into()),
                    latest_version: Some("1.5.0".into()),
                    update_url: Some("https://acme.example/download".into()),
                },
            )]),
            jwt: None,
            invites: Default::default(),
            ..Default::default()
        }]
    })
    .await
}

#[tokio::test]
async fn compat_says_required_below_min_available_below_latest_and_ok_after() {
    let app = acme().await;
    for (version, status) in [
        ("1.1.9", "update_required"),
        ("1.2.0", "update_available"),
        ("1.4.2", "update_available"),
        ("1.5.0", "ok"),
        ("2.0.0-beta.1", "ok"),
    ] {
        let r = app
            .get(&format!(
                "/v1/compat?app=acme&platform=desktop&version={version}"
            ))
            .await;
        let code = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], status, "{version}");
        assert_eq!(body["min_version"], "1.2.0");
        assert_eq!(body["latest_version"], "1.5.0");
        assert_eq!(body["update_url"], "https://acme.example/download");
    }
    let other: Value = app
        .get("/v1/compat?app=acme&platform=ios&version=0.1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["status"], "ok", "no rule for the platform");
    let bad = problem(
        app.get("/v1/compat?app=acme&platform=desktop&version=banana")
            .await,
        422,
    )
    .await;
    assert_eq!(bad["errors"][0]["field"], "version");
    problem(
        app.get("/v1/compat?app=nope&platform=desktop&version=1.0")
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn a_client_below_the_minimum_gets_426_with_the_update_url() {
    let app = acme().await;
    let a = identity::app_by_slug(&app.db, "acme")
        .await
        .unwrap()
        .expect("declared apps are created at start");
    assert_eq!(a.name, "Acme");
    let key = app.user_key("acme", "u").await;
    let me = |version: &'static str| {
        app.client
            .get(app.url("/v1/me"))
            .bearer_auth(&key)
            .header("x-client-version", version)
            .header("x-client-platform", "desktop")
            .send()
    };
    let body = problem(me("1.1.0").await.unwrap(), 426).await;
    assert_eq!(body["type"], "urn:tollgate:problem:upgrade-required");
    assert_eq!(body["update_url"], "https://acme.example/download");
    assert_eq!(body["min_version"], "1.2.0");
    assert_eq!(body["latest_version"], "1.5.0", "what to update to: {body}");
    assert_eq!(
        me("1.3.0").await.unwrap().status(),
        200,
        "an update is available, not required"
    );
    problem(me("not-a-version").await.unwrap(), 400).await;
    // Without X-Client-Platform the app's only rule applies.
    let r = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&key)
        .header("x-client-version", "1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    let with_key: Value = app
        .client
        .get(app.url("/v1/compat?platform=desktop&version=1.0"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        with_key["status"], "update_required",
        "the key names the app"
    );
}
