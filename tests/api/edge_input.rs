//! Bad input is refused at the edge with a precise 4xx problem and changes nothing: chat
//! messages item by item, amounts past the documented maximum, NUL bytes anywhere, bodies that
//! are not objects.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::domain::identity::{KeyKind, Role};
use tollgate::store::identity::KeySpec;
use tollgate::store::ledger;
use tollgate::store::ledger::EntryKind;

use crate::gateway::{chat, gateway_app, usage};
use crate::helpers::{TestApp, new_key, problem, seed_app_user, spawn_app};

fn fields(p: &Value) -> Vec<String> {
    p["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|f| f["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_chat_message_without_a_role_is_refused_by_name_and_not_sent_or_charged() {
    let (app, fake) = gateway_app().await;
    let key = app.user_key("ai", "alice").await;
    let body = json!({"model": "gpt", "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hi"},
        {"content": "who am I?"},
        {"role": "user", "content": [{"type": "text"}]},
    ]});
    let p = problem(chat(&app, &key, body).await, 422).await;
    assert_eq!(
        fields(&p),
        ["messages[2].role", "messages[3].content[0].text"]
    );
    assert!(p["request_id"].is_string());
    assert!(fake.received().is_empty(), "nothing was sent upstream");
    assert!(usage(&app, &key).await.is_empty(), "nothing was charged");
    // The native routes check their own shapes.
    let anthropic = app
        .send_as(
            Method::POST,
            "/anthropic/v1/messages",
            &key,
            Some(json!({"model": "gpt", "max_tokens": 10,
                "messages": [{"role": "system", "content": "x"}]})),
        )
        .await;
    assert_eq!(fields(&problem(anthropic, 422).await), ["messages[0].role"]);
}

struct Admin {
    app: TestApp,
    operator: String,
    app_key: String,
    /// `u1` of `acme`.
    t: ledger::Target,
}

async fn admin() -> Admin {
    let app = spawn_app().await;
    let t = seed_app_user(&app.db, "acme", "u1").await;
    let owner = KeySpec {
        role: Some(Role::Owner),
        ..Default::default()
    };
    let operator = new_key(&app.db, KeyKind::Operator, owner).await;
    let of_app = KeySpec {
        app_id: Some(t.app_id),
        ..Default::default()
    };
    let app_key = new_key(&app.db, KeyKind::App, of_app).await;
    Admin {
        app,
        operator,
        app_key,
        t,
    }
}

#[tokio::test]
async fn amounts_past_the_maximum_are_422_and_the_balance_is_untouched() {
    let a = admin().await;
    let user = "/admin/v1/apps/acme/users/u1";
    for (path, body) in [
        (format!("{user}/grants"), json!({"amount_micros": i64::MAX})),
        (
            format!("{user}/refunds"),
            json!({"amount_micros": i64::MAX}),
        ),
        (
            format!("{user}/adjustments"),
            json!({"amount_micros": i64::MAX, "reason": "fix"}),
        ),
        (
            format!("{user}/adjustments"),
            json!({"amount_micros": -i64::MAX, "reason": "fix"}),
        ),
    ] {
        let r = a
            .app
            .send_as(Method::POST, &path, &a.operator, Some(body))
            .await;
        let p = problem(r, 422).await;
        assert_eq!(fields(&p), ["amount_micros"], "{path}: {p}");
    }
    for (path, body) in [
        ("/v1/users/u1/debits", json!({"amount_micros": i64::MAX})),
        ("/v1/users/u1/holds", json!({"amount_micros": i64::MAX})),
    ] {
        let r = a
            .app
            .send_as(Method::POST, path, &a.app_key, Some(body))
            .await;
        assert_eq!(fields(&problem(r, 422).await), ["amount_micros"], "{path}");
    }
    // Past i64 itself (only reachable by many maximal grants): a conflict, never a 500.
    let t = a.t;
    let credit = |amount| ledger::Credit {
        kind: EntryKind::Grant,
        amount,
        source: "manual",
        expires_at: None,
        note: ledger::Note::default(),
    };
    ledger::credit(&a.app.db, t, &credit(i64::MAX - 10), None)
        .await
        .unwrap();
    let over = ledger::credit(&a.app.db, t, &credit(11), None).await;
    assert!(
        matches!(over, Err(ledger::LedgerError::Conflict(_))),
        "{over:?}"
    );
    assert_eq!(
        ledger::balances(&a.app.db, t).await.unwrap().balance,
        i64::MAX - 10
    );
    let (_, mismatches) = ledger::verify(&a.app.db).await.unwrap();
    assert!(mismatches.is_empty());
}

#[tokio::test]
async fn a_nul_byte_in_a_path_query_or_body_is_a_400_problem_on_every_database() {
    let a = admin().await;
    for path in [
        "/admin/v1/apps/acme/users/a%00b",
        "/admin/v1/apps/ac%00me/users/u1",
        "/admin/v1/audit?app=a%00",
    ] {
        let p = problem(a.app.get_as(path, &a.operator).await, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("control character"),
            "{p}"
        );
    }
    let r = a
        .app
        .send_as(
            Method::POST,
            "/v1/users/u1/debits",
            &a.app_key,
            Some(json!({"amount_micros": 5, "reference": "ref\u{0}x"})),
        )
        .await;
    let p = problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("NUL"), "{p}");
    let r = a
        .app
        .send_as(
            Method::POST,
            "/v1/users/u1/debits",
            &a.app_key,
            Some(json!({"amount_micros": 5, "reference": "line\nbreak"})),
        )
        .await;
    assert_eq!(fields(&problem(r, 422).await), ["reference"]);
    let entries: Value = a
        .app
        .get_as("/admin/v1/apps/acme/users/u1/ledger", &a.operator)
        .await
        .json()
        .await
        .unwrap();
    let debits = entries["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "debit")
        .count();
    assert_eq!(debits, 0, "nothing was written");
}

#[tokio::test]
async fn a_body_that_is_a_json_array_is_refused() {
    let a = admin().await;
    for (path, body) in [
        ("/v1/users/u1/keys", "[null,null]"),
        ("/v1/users/u1/quotas/exports", "[5]"),
        ("/v1/users/u1/debits", "[5, null, \"r\"]"),
    ] {
        let r = a
            .app
            .client
            .post(a.app.url(path))
            .bearer_auth(&a.app_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("JSON object"),
            "{path}: {p}"
        );
    }
}
