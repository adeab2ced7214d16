//! Extractors whose rejections are our problem+json, so a malformed body looks like every
//! other 4xx: `Json<T>` names the failing field (`items[2].price`) instead of a line/column.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{Error, FieldError};

/// A JSON body; DTOs use `#[serde(deny_unknown_fields)]` so typos are refused, not ignored.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(Error::Status {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: "expected Content-Type: application/json".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_)
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Error::PayloadTooLarge
            }
            other => Error::BadRequest(format!("could not read the request body: {other}")),
        })?;
        parse(&bytes).map(Json)
    }
}

/// Deserializes `bytes`, turning serde's error into a field error or a syntax error. A body is
/// an object: serde would read a struct from an array too (`[5]` as its first field), so
/// anything else is refused before it is read.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    }
    if super::sanitize::json_has_nul(bytes) {
        return Err(Error::BadRequest(
            "the body contains a NUL character (\\u0000), which no field accepts".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            return Error::BadRequest(format!("the body is not valid JSON: {inner}"));
        }
        // serde appends " at line 1 column 9"; the field path already says where.
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        // The path already ends with the name of an unknown field, or of a wrong type's; a
        // missing one is named by serde only in its message: it is appended to the parent's.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'));
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "(body)".to_string(),
            _ => path,
        };
        Error::Validation(vec![FieldError::new(field, message)])
    })
}

/// An optional expiry (ms since the epoch) that must lie in the future: a key or code that is
/// born expired is a mistake in the request, answered 422 rather than stored.
pub fn future_expiry(field: &str, at: Option<i64>) -> Result<Option<i64>, Error> {
    match at {
        Some(ms) if ms <= crate::store::now_ms() => Err(Error::Validation(vec![FieldError::new(
            field,
            "must be in the future (milliseconds since the Unix epoch)",
        )])),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        price: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    fn field_error(body: &str) -> FieldError {
        match parse::<Order>(body.as_bytes()) {
            Err(Error::Validation(mut fields)) => fields.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_before_it_is_read() {
        for body in ["[null,null]", " [5]", "5", "\"x\"", "null"] {
            match parse::<Order>(body.as_bytes()) {
                Err(Error::BadRequest(m)) => assert!(m.contains("JSON object"), "{m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_type_names_the_nested_field() {
        let e = field_error(r#"{"items":[{"name":"a","price":1},{"name":"b","price":"x"}]}"#);
        assert_eq!(e.field, "items[1].price");
        assert!(
            e.message.starts_with("invalid type: string"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_unknown_field_is_named() {
        assert_eq!(field_error(r#"{"items":[],"coupon":"x"}"#).field, "coupon");
        assert_eq!(
            field_error(r#"{"items":[{"name":"a","price":1,"qty":2}]}"#).field,
            "items[0].qty"
        );
    }

    #[test]
    fn a_missing_field_is_named_as_a_wrong_type_is() {
        let e = field_error(r#"{"items":[{"name":"a"}]}"#);
        assert_eq!(e.field, "items[0].price");
        assert_eq!(e.message, "missing field `price`");
        assert_eq!(field_error("{}").field, "items");
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        assert!(matches!(
            parse::<Order>(b"{\"items\": ["),
            Err(Error::BadRequest(_))
        ));
    }
}
