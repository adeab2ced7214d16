//! The HMAC-SHA256 arithmetic every store's scheme is built from, compared in constant time.

use aws_lc_rs::hmac;

use super::Rejection;

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
