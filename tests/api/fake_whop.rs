//! A fake Whop API on a local port: `GET /api/v1/memberships/{id}` (with its `manage_url`),
//! `POST /api/v1/memberships/{id}/add_free_days` with
//! `{"free_days": n}`, bearer-key checked, answering the membership with its renewal period
//! moved by those days, replaying the first answer for a repeated `Idempotency-Key`, and Whop's
//! error body for an unknown membership. It records every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const API_KEY: &str = "whop_test_api_key_company_a";

#[derive(Clone, Default)]
pub struct FakeWhop {
    state: Arc<Mutex<Books>>,
}

#[derive(Default)]
struct Books {
    /// (membership, body, idempotency key) of every add_free_days request.
    requests: Vec<(String, Value, Option<String>)>,
    by_key: HashMap<String, Value>,
    /// Memberships by id: days added so far.
    memberships: HashMap<String, i64>,
    /// (membership, body, idempotency key) of every cancel request.
    cancels: Vec<(String, Value, Option<String>)>,
}

impl FakeWhop {
    pub fn add_membership(&self, id: &str) {
        self.state.lock().unwrap().memberships.insert(id.into(), 0);
    }

    /// Requests so far: (membership, body, idempotency key).
    pub fn requests(&self) -> Vec<(String, Value, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Cancel requests so far: (membership, body, idempotency key).
    pub fn cancels(&self) -> Vec<(String, Value, Option<String>)> {
        self.state.lock().unwrap().cancels.clone()
    }

    /// Free days the membership has been given, counted once per distinct request.
    pub fn days_added(&self, id: &str) -> i64 {
        self.state
            .lock()
            .unwrap()
            .memberships
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

pub async fn start() -> (FakeWhop, String) {
    let fake = FakeWhop::default();
    let app = Router::new()
        .route(
            "/api/v1/memberships/{id}/add_free_days",
            post(add_free_days),
        )
        .route("/api/v1/memberships/{id}", get(get_membership))
        .route("/api/v1/memberships/{id}/cancel", post(cancel_membership))
        .with_state(fake.clone());
    let url = crate::helpers::serve_fake(app).await;
    (fake, format!("{url}/api/v1"))
}

use crate::helpers::json_answer as answer;

fn error(status: StatusCode, message: &str) -> Response {
    answer(
        status,
        &json!({ "error": { "type": "invalid_request_error", "message": message } }),
    )
}

fn membership(id: &str, added: i64) -> Value {
    json!({ "id": id, "status": "past_due", "cancel_at_period_end": false,
        "manage_url": format!("https://whop.com/billing/manage/{id}"),
        "renewal_period_end": 1_800_000_000 + added * 86_400 })
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {API_KEY}"))
}

async fn get_membership(
    State(fake): State<FakeWhop>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    match fake.state.lock().unwrap().memberships.get(&id) {
        Some(added) => answer(StatusCode::OK, &membership(&id, *added)),
        None => error(StatusCode::NOT_FOUND, "Membership not found"),
    }
}

async fn add_free_days(
    State(fake): State<FakeWhop>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "The body is not JSON");
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut books = fake.state.lock().unwrap();
    books.requests.push((id.clone(), body.clone(), key.clone()));
    if let Some(first) = key.as_ref().and_then(|k| books.by_key.get(k)) {
        return answer(StatusCode::OK, first);
    }
    let Some(days) = body["free_days"]
        .as_i64()
        .filter(|d| (1..=1095).contains(d))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "free_days must be between 1 and 1095",
        );
    };
    let Some(added) = books.memberships.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Membership not found");
    };
    *added += days;
    let changed = membership(&id, *added);
    if let Some(k) = key {
        books.by_key.insert(k, changed.clone());
    }
    answer(StatusCode::OK, &changed)
}

/// `POST /api/v1/memberships/{id}/cancel` with `{"cancellation_mode": …}` (default at period end).
async fn cancel_membership(
    State(fake): State<FakeWhop>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut books = fake.state.lock().unwrap();
    books.cancels.push((id.clone(), body.clone(), key));
    let Some(added) = books.memberships.get(&id).copied() else {
        return error(StatusCode::NOT_FOUND, "Membership not found");
    };
    let mut m = membership(&id, added);
    match body["cancellation_mode"]
        .as_str()
        .unwrap_or("at_period_end")
    {
        "at_period_end" => m["cancel_at_period_end"] = json!(true),
        "immediate" => m["status"] = json!("canceled"),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "cancellation_mode must be at_period_end or immediate",
            );
        }
    }
    answer(StatusCode::OK, &m)
}
