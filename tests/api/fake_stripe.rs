//! A fake Stripe API on a local port: customers, Checkout Sessions (created open, listed by
//! customer and status) and Customer Portal sessions, form-encoded like Stripe, with Stripe's
//! error body, bearer-key check, and Idempotency-Key replay (the same key answers the first
//! response again). It records every request it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const SECRET_KEY: &str = "sk_test_shop";

#[derive(Clone, Default)]
pub struct FakeStripe {
    state: Arc<Mutex<Books>>,
}

#[derive(Default)]
struct Books {
    /// (method path, form or query) of every request.
    requests: Vec<(String, HashMap<String, String>)>,
    by_key: HashMap<String, Value>,
    customers: Vec<Value>,
    sessions: Vec<Value>,
    /// Prices Stripe knows.
    prices: Vec<String>,
    /// The price each session sold (its line items).
    session_prices: HashMap<String, String>,
    /// Webhook endpoints of the account (`GET /v1/webhook_endpoints`).
    webhook_endpoints: Vec<Value>,
    /// Subscriptions of the account, by id.
    subscriptions: HashMap<String, Value>,
}

impl FakeStripe {
    /// Requests to `path` so far, as their form fields.
    pub fn received(&self, path: &str) -> Vec<HashMap<String, String>> {
        let books = self.state.lock().unwrap();
        books
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, f)| f.clone())
            .collect()
    }

    pub fn customers(&self) -> usize {
        self.state.lock().unwrap().customers.len()
    }

    /// Completes a session: no longer open.
    /// A session Stripe made without tollgate (a Payment Link) for `price`.
    pub fn add_payment_link_session(&self, id: &str, price: &str) {
        let mut books = self.state.lock().unwrap();
        books
            .sessions
            .push(json!({ "id": id, "object": "checkout.session",
            "status": "complete", "mode": "payment", "metadata": {} }));
        books
            .session_prices
            .insert(id.to_string(), price.to_string());
    }

    /// A webhook endpoint in the account, as Stripe lists it (`status`: enabled or disabled).
    pub fn add_webhook_endpoint(&self, url: &str, status: &str) {
        let mut books = self.state.lock().unwrap();
        let id = format!("we_{}", books.webhook_endpoints.len() + 1);
        books
            .webhook_endpoints
            .push(json!({ "id": id, "object": "webhook_endpoint",
            "url": url, "status": status, "enabled_events": ["*"], "livemode": false,
            "api_version": null, "description": null, "metadata": {} }));
    }

    /// A live subscription in the account.
    pub fn add_subscription(&self, id: &str, customer: &str) {
        let sub = json!({ "id": id, "object": "subscription", "customer": customer,
            "status": "past_due", "cancel_at_period_end": false, "canceled_at": null,
            "ended_at": null, "metadata": {} });
        let mut books = self.state.lock().unwrap();
        books.subscriptions.insert(id.to_string(), sub);
    }

    /// A subscription as the fake holds it now.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().subscriptions.get(id).cloned()
    }

    pub fn complete(&self, id: &str) {
        let mut books = self.state.lock().unwrap();
        for s in books.sessions.iter_mut().filter(|s| s["id"] == id) {
            s["status"] = json!("complete");
        }
    }
}

pub async fn start(prices: &[&str]) -> (FakeStripe, String) {
    let fake = FakeStripe::default();
    fake.state.lock().unwrap().prices = prices.iter().map(|p| p.to_string()).collect();
    let app = Router::new()
        .route("/v1/customers", post(create_customer))
        .route("/v1/checkout/sessions", post(create_session))
        .route("/v1/checkout/sessions", get(list_sessions))
        .route("/v1/checkout/sessions/{id}", get(get_session))
        .route(
            "/v1/checkout/sessions/{id}/line_items",
            get(session_line_items),
        )
        .route("/v1/billing_portal/sessions", post(create_portal))
        .route("/v1/webhook_endpoints", get(list_webhook_endpoints))
        .route(
            "/v1/subscriptions/{id}",
            post(update_subscription).delete(cancel_subscription),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
    let body = json!({ "error": { "type": "invalid_request_error", "message": message,
        "param": param, "request_log_url": null } });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A request's form fields and its idempotency key (scoped to the path).
type Admitted = (HashMap<String, String>, Option<String>);

/// Checks the key, parses the form, records the request; answers a replay for a used key.
fn admit(
    fake: &FakeStripe,
    path: &str,
    headers: &HeaderMap,
    form: &[u8],
) -> Result<Admitted, Box<Response>> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {SECRET_KEY}")) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Invalid API Key provided",
            None,
        )));
    }
    let fields: HashMap<String, String> = url::form_urlencoded::parse(form).into_owned().collect();
    let mut books = fake.state.lock().unwrap();
    books.requests.push((path.to_string(), fields.clone()));
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("{path} {k}"));
    if let Some(k) = &key
        && let Some(first) = books.by_key.get(k)
    {
        return Err(Box::new(ok(first)));
    }
    Ok((fields, key))
}

fn remember(fake: &FakeStripe, key: Option<String>, v: &Value) {
    if let Some(k) = key {
        fake.state.lock().unwrap().by_key.insert(k, v.clone());
    }
}

fn metadata(fields: &HashMap<String, String>, prefix: &str) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        if let Some(name) = k.strip_prefix(prefix).and_then(|r| r.strip_suffix(']')) {
            m.insert(name.to_string(), json!(v));
        }
    }
    Value::Object(m)
}

async fn create_customer(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, key) = match admit(&fake, "/v1/customers", &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let n = fake.state.lock().unwrap().customers.len() + 1;
    let customer = json!({ "id": format!("cus_fake{n}"), "object": "customer",
        "metadata": metadata(&fields, "metadata[") });
    fake.state.lock().unwrap().customers.push(customer.clone());
    remember(&fake, key, &customer);
    ok(&customer)
}

async fn create_session(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, key) = match admit(&fake, "/v1/checkout/sessions", &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let price = fields
        .get("line_items[0][price]")
        .cloned()
        .unwrap_or_default();
    if !fake.state.lock().unwrap().prices.contains(&price) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("No such price: '{price}'"),
            Some("line_items[0][price]"),
        );
    }
    for required in ["mode", "success_url", "cancel_url"] {
        if !fields.contains_key(required) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Missing required param: {required}."),
                Some(required),
            );
        }
    }
    // Stripe takes a moment to create a session: concurrent requests overlap here.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let n = fake.state.lock().unwrap().sessions.len() + 1;
    let id = format!("cs_test_fake{n}");
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let session = json!({ "id": id, "object": "checkout.session", "status": "open",
        "expires_at": expires_at,
        "mode": fields["mode"], "customer": fields.get("customer"),
        "client_reference_id": fields.get("client_reference_id"),
        "url": format!("https://checkout.stripe.com/c/pay/{id}"),
        "metadata": metadata(&fields, "metadata[") });
    let mut books = fake.state.lock().unwrap();
    books.sessions.push(session.clone());
    books.session_prices.insert(id.clone(), price);
    drop(books);
    remember(&fake, key, &session);
    ok(&session)
}

async fn list_webhook_endpoints(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if let Err(r) = admit(
        &fake,
        "GET /v1/webhook_endpoints",
        &headers,
        query.as_bytes(),
    ) {
        return *r;
    }
    let data = fake.state.lock().unwrap().webhook_endpoints.clone();
    ok(
        &json!({ "object": "list", "url": "/v1/webhook_endpoints", "has_more": false,
        "data": data }),
    )
}

async fn list_sessions(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let (fields, _) = match admit(
        &fake,
        "GET /v1/checkout/sessions",
        &headers,
        query.as_bytes(),
    ) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let books = fake.state.lock().unwrap();
    let data: Vec<Value> = books
        .sessions
        .iter()
        .filter(|s| {
            fields
                .get("customer")
                .is_none_or(|c| s["customer"] == c.as_str())
        })
        .filter(|s| {
            fields
                .get("status")
                .is_none_or(|st| s["status"] == st.as_str())
        })
        .cloned()
        .collect();
    ok(
        &json!({ "object": "list", "url": "/v1/checkout/sessions", "has_more": false, "data": data }),
    )
}

/// `GET /v1/checkout/sessions/{id}`: the session, or Stripe's 404 for an unknown id.
async fn get_session(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let path = format!("GET /v1/checkout/sessions/{id}");
    if let Err(r) = admit(&fake, &path, &headers, b"") {
        return *r;
    }
    let books = fake.state.lock().unwrap();
    match books.sessions.iter().find(|s| s["id"] == id.as_str()) {
        Some(s) => ok(s),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("No such checkout.session: '{id}'"),
            Some("id"),
        ),
    }
}

/// `GET /v1/checkout/sessions/{id}/line_items`: a list of the session's one item.
async fn session_line_items(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let path = format!("GET /v1/checkout/sessions/{id}/line_items");
    if let Err(r) = admit(&fake, &path, &headers, b"") {
        return *r;
    }
    let books = fake.state.lock().unwrap();
    let Some(price) = books.session_prices.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No such checkout.session: '{id}'"),
            Some("id"),
        );
    };
    let item = json!({ "id": format!("li_{id}"), "object": "item", "quantity": 1,
        "price": { "id": price, "object": "price" } });
    ok(
        &json!({ "object": "list", "url": format!("/v1/checkout/sessions/{id}/line_items"),
        "has_more": false, "data": [item] }),
    )
}

async fn create_portal(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, key) = match admit(&fake, "/v1/billing_portal/sessions", &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(customer) = fields.get("customer") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing required param: customer.",
            Some("customer"),
        );
    };
    let session = json!({ "id": "bps_fake", "object": "billing_portal.session",
        "customer": customer, "return_url": fields.get("return_url"),
        "url": format!("https://billing.stripe.com/p/session/test_{customer}") });
    remember(&fake, key, &session);
    ok(&session)
}

/// `POST /v1/subscriptions/{id}`: only `cancel_at_period_end` is understood.
async fn update_subscription(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_subscription(&fake, "POST", &id, &headers, &body, |fields, sub| {
        if let Some(v) = fields.get("cancel_at_period_end") {
            sub["cancel_at_period_end"] = json!(v == "true");
        }
        Ok(())
    })
}

/// `DELETE /v1/subscriptions/{id}`: canceled now; a canceled one cannot be canceled again.
async fn cancel_subscription(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_subscription(&fake, "DELETE", &id, &headers, &body, |_, sub| {
        if sub["status"] == "canceled" {
            let message = format!(
                "A canceled subscription can only update its cancellation_details and metadata. ({})",
                sub["id"]
            );
            return Err(Box::new(error(StatusCode::BAD_REQUEST, &message, None)));
        }
        sub["status"] = json!("canceled");
        sub["canceled_at"] = json!(1_700_000_000);
        sub["ended_at"] = json!(1_700_000_000);
        Ok(())
    })
}

/// Admits a request about subscription `id` (recorded as `METHOD /v1/subscriptions`), applies
/// `change` to it, and answers it as Stripe does (404 for an unknown id).
fn change_subscription(
    fake: &FakeStripe,
    method: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    change: impl FnOnce(&HashMap<String, String>, &mut Value) -> Result<(), Box<Response>>,
) -> Response {
    let (fields, key) = match admit(fake, &format!("{method} /v1/subscriptions"), headers, body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let changed = {
        let mut books = fake.state.lock().unwrap();
        match books.subscriptions.get_mut(id) {
            None => Err(Box::new(error(
                StatusCode::NOT_FOUND,
                &format!("No such subscription: '{id}'"),
                Some("id"),
            ))),
            Some(sub) => change(&fields, sub).map(|()| sub.clone()),
        }
    };
    match changed {
        Ok(sub) => {
            remember(fake, key, &sub);
            ok(&sub)
        }
        Err(r) => *r,
    }
}
