//! The served `/openapi.json` is true: schemathesis (installed by `.ci/run`) generates requests
//! from it — valid, boundary and invalid — with a user key, an app secret key and an owner
//! token in turn, and fails on any 5xx, any status the document does not list, and any answer
//! that does not match its documented schema or content type.

use tollgate::domain::identity::{KeyKind, Role};
use tollgate::store::identity::KeySpec;

use crate::helpers::{new_key, seed_app_user, spawn_app_with};
use crate::python::python_with;

/// Seconds of generated traffic per credential (loopback only).
const SECONDS_PER_CREDENTIAL: &str = "25";

#[tokio::test]
async fn schemathesis_finds_no_server_error_undocumented_status_or_schema_violation() {
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
    let t = seed_app_user(&app.db, "acme", "user_1").await;
    let spec = |user_id, role: Option<Role>| KeySpec {
        app_id: role.is_none().then_some(t.app_id),
        user_id,
        role,
        ..Default::default()
    };
    let credentials = [
        new_key(&app.db, KeyKind::User, spec(Some(t.user_id), None)).await,
        new_key(&app.db, KeyKind::App, spec(None, None)).await,
        // Last: its run may revoke keys, its own included.
        new_key(&app.db, KeyKind::Operator, spec(None, Some(Role::Owner))).await,
    ];
    let schema = app.url("/openapi.json");
    for credential in &credentials {
        let out = python_with("schemathesis")
            .args([
                "-m",
                "schemathesis.cli",
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
                // One worker: CPython 3.11's parser is not thread-safe under schemathesis'
                // coverage phase ("AST constructor recursion depth mismatch" with two).
                "--workers",
                "1",
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
