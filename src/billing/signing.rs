//! The HMAC-SHA256 arithmetic every store's scheme is built from, compared in constant time.

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use super::{Rejection, header};

/// A "timestamp plus hex HMACs in one header" scheme (Stripe, Paddle): the header lists
/// `{ts_key}=<unix>` and one or more `{sig_key}=<hex>` items, each an HMAC-SHA256 of
/// `{timestamp}{joiner}{raw body}` keyed by a secret's text.
pub struct TimestampedHex {
    pub header: &'static str,
    pub separator: char,
    pub ts_key: &'static str,
    pub sig_key: &'static str,
    pub joiner: &'static [u8],
}

impl TimestampedHex {
    /// The header value for `body` signed at `ts`, as the store sends it.
    pub fn sign(&self, secret: &str, ts: i64, body: &[u8]) -> String {
        let sig = mac(
            secret.as_bytes(),
            &[ts.to_string().as_bytes(), self.joiner, body],
        );
        format!(
            "{}={ts}{}{}={}",
            self.ts_key,
            self.separator,
            self.sig_key,
            hex::encode(sig)
        )
    }

    /// Any configured secret's signature in the header, then a fresh timestamp.
    pub fn verify(
        &self,
        secrets: &[SecretString],
        tolerance_secs: u64,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), Rejection> {
        let value = header(headers, self.header)?;
        let mut ts = None;
        let mut sigs = Vec::new();
        for item in value.split(self.separator) {
            match item.trim().split_once('=') {
                Some((k, x)) if k == self.ts_key => ts = x.parse::<i64>().ok(),
                Some((k, x)) if k == self.sig_key => sigs.push(x),
                _ => {}
            }
        }
        let (Some(ts), false) = (ts, sigs.is_empty()) else {
            return Err(Rejection::MalformedHeader(self.header));
        };
        let signed = ts.to_string();
        let ok = secrets.iter().any(|s| {
            let expected = mac(
                s.expose_secret().as_bytes(),
                &[signed.as_bytes(), self.joiner, body],
            );
            any_matches(&expected, &sigs, hex_decode)
        });
        if !ok {
            return Err(Rejection::BadSignature);
        }
        fresh(ts, now_secs, tolerance_secs)
    }
}

/// HMAC-SHA256 of the concatenated parts.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// Whether any candidate (hex or base64 text, decoded by `decode`) equals `expected`, checked
/// in constant time for each.
pub fn any_matches(
    expected: &[u8],
    candidates: &[&str],
    decode: impl Fn(&str) -> Option<Vec<u8>>,
) -> bool {
    let mut found = false;
    for c in candidates {
        if let Some(given) = decode(c) {
            // Every candidate is compared, whatever an earlier one gave.
            found |= crate::crypto::constant_time_eq(&given, expected);
        }
    }
    found
}

/// Refuses a signature timestamp older (or further in the future) than `tolerance` seconds.
pub fn fresh(timestamp: i64, now_secs: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    if timestamp.abs_diff(now_secs) > tolerance_secs {
        return Err(Rejection::StaleTimestamp);
    }
    Ok(())
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
