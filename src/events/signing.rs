//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), for the deliveries
//! tollgate sends and the ones Whop sends it. Headers `webhook-id`, `webhook-timestamp` (unix
//! seconds) and `webhook-signature: v1,<base64> [v1,<base64>…]`, each signature an HMAC-SHA256
//! of `{id}.{timestamp}.{raw body}`. A `whsec_…` secret is base64 after its prefix.

use crate::billing::signing::{base64_decode, base64_encode, mac};

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

/// The HMAC key of a secret; `None` when it cannot be one. A secret without the `whsec_`
/// prefix (some senders' own format) is used as its bytes when it is long enough.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64_decode(b64).filter(|k| !k.is_empty()),
        None => (secret.len() >= 16).then(|| secret.as_bytes().to_vec()),
    }
}

/// The `webhook-signature` value of one secret for a delivery.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> Option<String> {
    let key = key_of(secret)?;
    let sig = mac(
        &key,
        &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
    );
    Some(format!("v1,{}", base64_encode(&sig)))
}

/// The header value signed by every secret in use (two during a rotation's overlap), space
/// separated as the specification lists them: a receiver that knows either secret verifies.
pub fn sign_all<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    ts: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(|s| sign(s, id, ts, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new endpoint secret: `whsec_` + base64 of 24 random bytes (192 bits), the size Svix uses.
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    getrandom::fill(&mut key).expect("the operating system's random source works");
    format!("whsec_{}", base64_encode(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' tests.
    #[test]
    fn signs_the_reference_example() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn both_secrets_sign_during_a_rotation() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(key_of(&a).unwrap().len(), 24);
        let header = sign_all([a.as_str(), b.as_str()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&a, "msg_1", 1, b"{}").unwrap());
        assert_eq!(parts[1], sign(&b, "msg_1", 1, b"{}").unwrap());
    }
}
