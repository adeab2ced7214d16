//! The service error type and its RFC 9457 `application/problem+json` rendering.
//!
//! Every failure a client sees goes through [`Error`], so all of them share one shape:
//! `type`, `title`, `status`, `detail`, `request_id`, and `errors` for validation failures.
//! 5xx bodies stay opaque; their cause chain goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::request_id;

/// `Result` with the service error as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A field that failed validation, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every error the HTTP layer can answer with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad JSON, wrong content type, ...).
    #[error("{0}")]
    BadRequest(String),
    /// One or more fields are invalid.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Fields the chosen model's provider cannot take (400): named, never silently dropped.
    #[error("the request has fields this model's provider does not support")]
    Unsupported(Vec<FieldError>),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("this route does not accept the request method")]
    MethodNotAllowed,
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// An AI call was priced on a plan the user left meanwhile (retried once before a client
    /// sees it).
    #[error("the user's plan changed while the call was being prepared; retry")]
    PlanChanged,
    /// The body exceeds the configured limit.
    #[error("the request body is larger than this server accepts (http.body_limit_bytes)")]
    PayloadTooLarge,
    /// Too many requests; retry after the given number of seconds.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The client is older than the app's minimum version for its platform.
    #[error("this client version ({version}) is no longer supported; the minimum is {min_version}")]
    UpgradeRequired {
        version: String,
        min_version: String,
        latest_version: Option<String>,
        update_url: Option<String>,
    },
    /// The user's credits do not cover the request (402).
    #[error("insufficient credits: {available} available, {needed} needed")]
    InsufficientCredits {
        available: crate::domain::money::Micros,
        needed: crate::domain::money::Micros,
    },
    /// The user's plan allows no more of this metric in the current period (429).
    #[error(
        "the {metric} quota of this plan ({limit} per period) is used up; it resets in {retry_after_secs} s"
    )]
    QuotaExceeded {
        metric: String,
        limit: i64,
        retry_after_secs: u64,
    },
    /// A dependency is down or the request ran out of time.
    #[error("{0}")]
    Unavailable(String),
    /// An AI provider failed or refused the call (nothing is charged): 502 when it failed or
    /// was overloaded on every model tried, 504 when it timed out, its own 4xx when it
    /// refused the request.
    #[error("{detail}")]
    Upstream { status: StatusCode, detail: String },
    /// Any other 4xx the framework produced (e.g. 415), with its own text as detail.
    #[error("{detail}")]
    Status { status: StatusCode, detail: String },
    /// A bug or an unexpected failure; the cause is logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::ledger::LedgerError> for Error {
    fn from(e: crate::store::ledger::LedgerError) -> Self {
        use crate::domain::money::Micros;
        use crate::store::ledger::LedgerError as L;
        match e {
            L::Insufficient { available, needed } => Error::InsufficientCredits {
                available: Micros(available),
                needed: Micros(needed),
            },
            L::NotFound(m) => Error::NotFound(m),
            L::Conflict(m) => Error::Conflict(m),
            L::PlanChanged => Error::PlanChanged,
            L::Db(e) => Error::Internal(e.into()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:tollgate:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// 426 only: the minimum supported client version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// 426 only: the newest client version, when the app declares it (what to update to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// 426 only: where to get a supported client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_url: Option<String>,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unsupported(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) | Error::PlanChanged => StatusCode::CONFLICT,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UpgradeRequired { .. } => StatusCode::UPGRADE_REQUIRED,
            Error::InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
            Error::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Upstream { status, .. } | Error::Status { status, .. } => *status,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short, stable name used in the problem `type` URI.
    fn slug(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad-request",
            Error::Validation(_) => "validation",
            Error::Unsupported(_) => "unsupported-field",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::MethodNotAllowed => "method-not-allowed",
            Error::Conflict(_) | Error::PlanChanged => "conflict",
            Error::PayloadTooLarge => "payload-too-large",
            Error::RateLimited { .. } => "rate-limited",
            Error::UpgradeRequired { .. } => "upgrade-required",
            Error::InsufficientCredits { .. } => "insufficient-credits",
            Error::QuotaExceeded { .. } => "quota-exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Upstream { .. } => "upstream-error",
            Error::Status { .. } => "http",
            Error::Internal(_) => "internal",
        }
    }

    /// The body this error renders to.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            Error::Internal(_) => {
                "an unexpected error occurred; it has been logged with the request id".to_string()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:tollgate:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            request_id: request_id::current(),
            errors: match self {
                Error::Validation(fields) | Error::Unsupported(fields) => fields.clone(),
                _ => Vec::new(),
            },
            min_version: match self {
                Error::UpgradeRequired { min_version, .. } => Some(min_version.clone()),
                _ => None,
            },
            latest_version: match self {
                Error::UpgradeRequired { latest_version, .. } => latest_version.clone(),
                _ => None,
            },
            update_url: match self {
                Error::UpgradeRequired { update_url, .. } => update_url.clone(),
                _ => None,
            },
        }
    }
}

impl Error {
    /// The problem in one line: its detail, then each field's message (for logs and config
    /// problems, where there is no response to carry them).
    pub fn one_line(&self) -> String {
        let p = self.problem();
        let fields: Vec<String> = p
            .errors
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect();
        if fields.is_empty() {
            p.detail
        } else {
            format!("{} ({})", p.detail, fields.join("; "))
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(cause) = &self {
            // `{:#}` prints the whole anyhow chain on one line.
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        self.response()
    }
}

impl Error {
    /// The problem response, for an error its caller has logged already (a handler's panic,
    /// which the panic hook reported with its stack trace).
    pub fn response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("a problem always serializes");
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Error::RateLimited { retry_after_secs }
            | Error::QuotaExceeded {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Error::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate\""),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::Internal(anyhow::anyhow!("password=hunter2 leaked"));
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("hunter2"));
        assert_eq!(p.kind, "urn:tollgate:problem:internal");
    }

    #[test]
    fn validation_errors_list_their_fields_with_422() {
        let e = Error::Validation(vec![FieldError::new("name", "must not be empty")]);
        let p = serde_json::to_value(e.problem()).unwrap();
        assert_eq!(p["status"], 422);
        assert_eq!(p["errors"][0]["field"], "name");
        assert_eq!(p["title"], "Unprocessable Entity");
    }

    #[test]
    fn rate_limited_sets_retry_after() {
        let r = Error::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
