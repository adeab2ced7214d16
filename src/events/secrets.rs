//! Endpoint secrets at rest: sealed with `ENCRYPTION_KEY` (AES-256-GCM) when one is
//! configured — always in production — else stored as `plain:…` (development only).

use secrecy::ExposeSecret;

use crate::config::Config;

const PLAIN: &str = "plain:";

/// The stored form of `secret`.
pub fn seal(config: &Config, secret: &str) -> anyhow::Result<String> {
    match &config.encryption_key {
        Some(key) => Ok(crate::crypto::seal(key.expose_secret(), secret)?),
        None => Ok(format!("{PLAIN}{secret}")),
    }
}

/// The secret a stored value holds.
pub fn open(config: &Config, stored: &str) -> anyhow::Result<String> {
    if let Some(plain) = stored.strip_prefix(PLAIN) {
        return Ok(plain.to_string());
    }
    let key = config.encryption_key.as_ref().ok_or_else(|| {
        anyhow::anyhow!("an endpoint secret is sealed, and ENCRYPTION_KEY is not set")
    })?;
    Ok(crate::crypto::open(key.expose_secret(), stored)?)
}
