//! Logging: JSON lines in staging and production, human-readable in development; the request id
//! rides on the request span so every line of a request carries it. Plus the redaction helper
//! that keeps secrets out of logs.

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use secrecy::ExposeSecret;

use crate::config::{Config, Environment, LogFormat};
use crate::ops::sentry;

/// Installs the global subscriber, and the Sentry reporter when `sentry_dsn` is set (`service`
/// names the role in its tags). `RUST_LOG`, when set, overrides `log.level`. Call inside a
/// Tokio runtime. A second call (several apps in one test process) is a no-op.
pub fn init(config: &Config, service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => config.environment != Environment::Development,
    };
    let sentry = config
        .sentry_dsn
        .as_ref()
        .filter(|dsn| sentry::init(dsn.expose_secret(), service, config.environment.as_str()))
        .map(|_| sentry::layer());
    let registry = tracing_subscriber::registry().with(filter).with(sentry);
    let _ = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours only on a terminal; a log file or a collector gets plain text.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
}

/// Shows a secret as its visible prefix and last four characters, e.g. `tg_user_…9f2c`,
/// enough to tell keys apart in a log and never enough to use one.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…****".to_string();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    // A key prefix such as `tg_user_` or `sk_live_` is meant to be seen; it ends at the last
    // underscore within the first 12 characters and never covers more than half the secret.
    let head_len = chars[..12]
        .iter()
        .rposition(|c| *c == '_')
        .map(|i| i + 1)
        .filter(|n| *n <= chars.len() / 2)
        .unwrap_or(4);
    let head: String = chars[..head_len].iter().collect();
    format!("{head}…{tail}")
}

pub use crate::redact::redact_url;

/// Displays a secret masked, for use in log fields: `info!(key = %Masked(&key))`.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0))
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_keys_keep_prefix_and_last_four() {
        assert_eq!(mask("tg_user_0123456789abcdef"), "tg_user_…cdef");
        assert_eq!(mask("sk_live_51HxYzAbCdEf0000"), "sk_live_…0000");
    }

    #[test]
    fn unprefixed_secrets_show_four_and_four() {
        assert_eq!(mask("0123456789abcdefXYZW"), "0123…XYZW");
    }

    #[test]
    fn urls_lose_their_password_only() {
        assert_eq!(
            redact_url("postgres://app:s3cr3t@db.internal:5432/tollgate"),
            "postgres://app:****@db.internal:5432/tollgate"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("postgres//app:s3cr3t@db"),
            "(unparsable URL hidden)"
        );
    }

    #[test]
    fn short_secrets_show_nothing() {
        assert_eq!(mask("hunter2"), "…****");
        assert_eq!(mask(""), "…****");
        assert!(
            !Masked("tg_op_supersecretvalue1234")
                .to_string()
                .contains("supersecret")
        );
    }
}
