//! The served `/openapi.json` is true: schemathesis (installed by `.ci/run`) generates requests
//! from it — valid, boundary and invalid — with a user key, an app secret key and an owner
//! token in turn, and fails on any 5xx, any status the document does not list, and any answer
//! that does not match its documented schema or content type.

use tollgate::domain::identity::{KeyKind, Role};
use tollgate::store::identity::{self, KeySpec};

use crate::gateway_clients::python_has;
use crate::helpers::spawn_app_with;

/// Seconds of generated traffic per credential (loopback only).
const SECONDS_PER_CREDENTIAL: &str = "25";

#[tokio::test]
async fn schemathesis_finds_no_server_error_undocumented_status_or_schema_violation() {
    if !python_has("schemathesis") {
        return;
    }
    // Generated traffic is far above the default per-key budget: the limits are raised so the
    // operations themselves answer (a 429 would be documented, and hide them).
    let app = spawn_app_with(|c| {
        for limit in [
            &mut c.rate_limits.ip,
            &mut c.rate_limits.key,
            &mut c.rate_limits.app,
        ] {
            limit.requests = 1_000_000;
        }
    })
    .await;
    let settings = tollgate::config::Config::defaults().new_app_settings();
    let acme = identity::create_app_with(&app.db, "acme", "Acme", &settings)
        .await
        .unwrap()
        .unwrap();
    let (user, _) = identity::find_or_create_user(&app.db, acme.id, "user_1")
        .await
        .unwrap();
    let key = |kind, spec: KeySpec| {
        let db = app.db.clone();
        async move {
            identity::create_key(&db, kind, &spec)
                .await
                .unwrap()
                .1
                .secret
        }
    };
    let credentials = [
        key(
            KeyKind::User,
            KeySpec {
                app_id: Some(acme.id),
                user_id: Some(user.id),
                ..Default::default()
            },
        )
        .await,
        key(
            KeyKind::App,
            KeySpec {
                app_id: Some(acme.id),
                ..Default::default()
            },
        )
        .await,
        key(
            KeyKind::Operator,
            KeySpec {
                role: Some(Role::Owner),
                ..Default::default()
            },
        )
        .await,
    ];
    let schema = app.url("/openapi.json");
    for credential in &credentials {
        let out = tokio::process::Command::new("schemathesis")
            .args([
                "run",
                &schema,
                "--header",
                &format!("Authorization: Bearer {credential}"),
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "20",
                "--max-time",
                SECONDS_PER_CREDENTIAL,
                "--workers",
                "2",
                "--suppress-health-check",
                "all",
                "--seed",
                "20261201",
            ])
            .env("NO_COLOR", "1")
            .output()
            .await
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found problems with the {} credential:\n{report}\n{}",
            &credential[..8],
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("passed"), "{report}");
    }
}
