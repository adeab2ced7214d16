//! A fake Paddle Billing API on a local port: `GET /subscriptions/{id}/update-payment-method-
//! transaction` (a past-due transaction with its `checkout.url`) and `POST
//! /subscriptions/{id}/cancel` (`effective_from`), bearer-key checked, with Paddle's error body
//! (`{"error": {"type", "code", "detail"}}`) for an unknown subscription. It records every
//! cancel request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const API_KEY: &str = "pdl_apikey_test_01hv_shop";

#[derive(Clone, Default)]
pub struct FakePaddle {
    state: Arc<Mutex<Books>>,
}

#[derive(Default)]
struct Books {
    /// Subscriptions by id: their status.
    subscriptions: HashMap<String, String>,
    /// (subscription, body) of every cancel request.
    cancels: Vec<(String, Value)>,
}

impl FakePaddle {
    pub fn add_subscription(&self, id: &str) {
        let mut books = self.state.lock().unwrap();
        books.subscriptions.insert(id.into(), "past_due".into());
    }

    pub fn cancels(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().cancels.clone()
    }
}

pub async fn start() -> (FakePaddle, String) {
    let fake = FakePaddle::default();
    let app = Router::new()
        .route(
            "/subscriptions/{id}/update-payment-method-transaction",
            get(update_payment_method_transaction),
        )
        .route("/subscriptions/{id}/cancel", post(cancel))
        .with_state(fake.clone());
    (fake, crate::helpers::serve_fake(app).await)
}

use crate::helpers::json_answer as answer;

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    answer(
        status,
        &json!({ "error": { "type": "request_error", "code": code, "detail": detail,
            "documentation_url": "https://developer.paddle.com/v1/errors/shared/not_found" },
            "meta": { "request_id": "req_fake" } }),
    )
}

fn refused(headers: &HeaderMap) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    (auth != Some(&format!("Bearer {API_KEY}"))).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "You aren't permitted to perform this request.",
        )
    })
}

async fn update_payment_method_transaction(
    State(fake): State<FakePaddle>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    if !fake.state.lock().unwrap().subscriptions.contains_key(&id) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Entity {id} not found"),
        );
    }
    answer(
        StatusCode::OK,
        &json!({ "data": { "id": "txn_01hv8wptq8987qeep44cyrewp9", "status": "past_due",
            "subscription_id": id, "collection_mode": "automatic",
            "checkout": { "url": format!("https://pay.paddle.io/hsc_01hv8wpt?_ptxn=txn_01hv8wptq8987qeep44cyrewp9&sub={id}") } },
            "meta": { "request_id": "req_fake" } }),
    )
}

async fn cancel(
    State(fake): State<FakePaddle>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut books = fake.state.lock().unwrap();
    books.cancels.push((id.clone(), body.clone()));
    let Some(status) = books.subscriptions.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Entity {id} not found"),
        );
    };
    let scheduled = match body["effective_from"].as_str() {
        Some("immediately") => {
            *status = "canceled".into();
            Value::Null
        }
        Some("next_billing_period") => {
            json!({ "action": "cancel", "effective_at": "2027-01-01T00:00:00Z" })
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "effective_from is required",
            );
        }
    };
    answer(
        StatusCode::OK,
        &json!({ "data": { "id": id, "status": status.clone(), "scheduled_change": scheduled },
            "meta": { "request_id": "req_fake" } }),
    )
}
