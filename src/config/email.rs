//! `[email]`: the one SMTP transport (SMTP_URL) and the sender; `[apps.email]`: an app's
//! templates (docs/email.md).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::Problem;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://user:pass@host:587` (STARTTLS, required), `smtps://user:pass@host:465` (TLS from
    /// the first byte), `smtp://host:25?tls=none` (a local relay; refused in production).
    #[serde(default, deserialize_with = "super::env::secret")]
    pub smtp_url: Option<SecretString>,
    /// The sender of every message unless the app names its own: `Acme <billing@acme.example>`.
    pub from: Option<String>,
    /// Connecting and each SMTP exchange give up after this long.
    pub timeout_ms: u64,
}

/// `[apps.email]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEmailConfig {
    /// This app's sender (default `email.from`).
    pub from: Option<String>,
    /// Templates by name: `[apps.email.templates.payment_failed]`.
    #[serde(default)]
    pub templates: BTreeMap<String, EmailTemplate>,
}

/// A message's parts, each a template (`{{ name }}`, `{% if %}`…) over the variables the
/// sender passes; the HTML part escapes every variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

pub fn validate(c: &EmailConfig, apps: &[super::AppConfig], prod: bool, p: &mut Vec<Problem>) {
    if let Some(url) = &c.smtp_url {
        if let Err(m) = crate::events::email::Transport::parse(url.expose_secret()) {
            p.push(Problem::new("email.smtp_url", m));
        } else if prod && url.expose_secret().contains("tls=none") {
            p.push(Problem::new(
                "email.smtp_url",
                "tls=none sends passwords and messages in the clear; refused in production",
            ));
        }
        if c.from.is_none()
            && apps
                .iter()
                .any(|a| a.email.as_ref().is_none_or(|e| e.from.is_none()))
        {
            p.push(Problem::new(
                "email.from",
                "required with SMTP_URL (the sender of messages whose app names none)",
            ));
        }
    }
    if let Some(from) = &c.from
        && from.parse::<lettre::message::Mailbox>().is_err()
    {
        p.push(Problem::new(
            "email.from",
            "expected an address: Name <user@example.com>",
        ));
    }
    if !(100..=120_000).contains(&c.timeout_ms) {
        p.push(Problem::new("email.timeout_ms", "expected 100 to 120000"));
    }
    for (i, a) in apps.iter().enumerate() {
        let Some(e) = &a.email else { continue };
        let key = format!("apps.{i}.email");
        if let Some(from) = &e.from
            && from.parse::<lettre::message::Mailbox>().is_err()
        {
            p.push(Problem::new(
                format!("{key}.from"),
                "expected an address: Name <user@example.com>",
            ));
        }
        for (name, t) in &e.templates {
            if !crate::jobs::is_valid_queue_name(name) {
                p.push(Problem::new(
                    format!("{key}.templates.{name}"),
                    "template names are 1-64 characters of a-z, 0-9, '_', '-' and '.'",
                ));
            }
            for (part, source) in [
                ("subject", Some(&t.subject)),
                ("text", Some(&t.text)),
                ("html", t.html.as_ref()),
            ] {
                if let Some(source) = source
                    && let Err(m) = crate::events::email::check_template(source)
                {
                    p.push(Problem::new(format!("{key}.templates.{name}.{part}"), m));
                }
            }
        }
    }
}
