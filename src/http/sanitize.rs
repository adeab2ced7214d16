//! Control characters are refused at the edge: a path or query that decodes to one (`%00`,
//! `%0A`, …) is a 400 problem before any route sees it. No id, slug, code or cursor contains
//! one, PostgreSQL cannot store a NUL in text at all, and a newline in an id is a log forgery.
//! Bodies are checked where they are read ([`super::extract::parse`] refuses a `\u0000`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

pub async fn middleware(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let path_bad = has_encoded_control(uri.path());
    let query_bad = uri.query().is_some_and(has_encoded_control);
    if path_bad || query_bad {
        let part = if path_bad { "path" } else { "query" };
        return Error::BadRequest(format!(
            "the {part} contains a control character (such as %00): ids, codes and references never do"
        ))
        .into_response();
    }
    next.run(req).await
}

/// Whether `text` holds a control character, raw or percent-encoded.
fn has_encoded_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        is_control(b)
            || (b == b'%'
                && bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .is_some_and(is_control))
    })
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Whether a JSON text holds an escaped NUL (`\u0000`) in a string: a backslash-u escape is
/// one when an odd number of backslashes precedes the `u`.
pub fn json_has_nul(json: &[u8]) -> bool {
    let needle = b"u0000";
    json.windows(needle.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(needle)
            && json[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_control_characters_are_found_and_ordinary_escapes_are_not() {
        assert!(has_encoded_control("/v1/users/a%00b"));
        assert!(has_encoded_control("/v1/users/a%0ab"));
        assert!(has_encoded_control("cursor=%7F"));
        assert!(!has_encoded_control("/v1/users/a%20b%2Fc"));
        assert!(!has_encoded_control("/v1/users/100%"));
    }

    #[test]
    fn only_a_real_nul_escape_counts() {
        assert!(json_has_nul(br#"{"reference":"a\u0000b"}"#));
        assert!(json_has_nul(br#"{"reference":"a\\\u0000b"}"#));
        assert!(
            !json_has_nul(br#"{"reference":"a\\u0000b"}"#),
            "an escaped backslash"
        );
        assert!(!json_has_nul(br#"{"reference":"u0000"}"#));
    }
}
