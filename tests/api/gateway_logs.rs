//! The JSON log lines of AI calls, read from a real `tollgate serve` process: every call's
//! `ai call` line sits in its request's span (request id), streams included — their settle
//! runs in a task of its own.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::idempotency_crash::fixture;
use crate::jobs_processes::terminate;

#[tokio::test]
async fn the_log_line_of_a_streamed_call_carries_its_request_id() {
    let f = fixture().await;
    let vars = crate::cli::db_vars(&f.test_db);
    let mut vars = crate::cli::as_refs(&vars);
    vars.extend_from_slice(&[
        ("TOLLGATE_LISTEN", "127.0.0.1:0"),
        ("TOLLGATE_LOG__FORMAT", "json"),
        ("TOLLGATE_LOG__LEVEL", "info"),
    ]);
    let mut child = crate::cli::tollgate(&["serve", "--role", "api"], &vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // JSON lines put event fields under `fields` or at the top level.
    let field = |v: &Value, k: &str| v["fields"][k].as_str().or(v[k].as_str()).map(String::from);
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if field(&v, "message").as_deref() == Some("tollgate started") {
                return field(&v, "address").map(|a| format!("http://{a}"));
            }
        }
        None
    })
    .await
    .expect("the server starts in time")
    .expect("the server logs its address");
    for (rid, stream) in [("rid-plain-1", false), ("rid-stream-1", true)] {
        let body = json!({ "model": "mock", "stream": stream,
            "messages": [{ "role": "user", "content": "hi" }] });
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&f.user_key)
            .header("x-request-id", rid)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if field(&v, "message").as_deref() == Some("ai call") {
                let spans = v["spans"].to_string() + &v["span"].to_string();
                seen.push(spans);
                if seen.len() == 2 {
                    return;
                }
            }
        }
    })
    .await;
    terminate(child).await;
    assert!(found.is_ok(), "two `ai call` lines: {seen:?}");
    assert!(seen.iter().any(|s| s.contains("rid-plain-1")), "{seen:?}");
    assert!(
        seen.iter().any(|s| s.contains("rid-stream-1")),
        "the stream's line: {seen:?}"
    );
}
