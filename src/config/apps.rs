//! `[[apps]]`: apps declared in the config file, created or updated at startup.

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use super::Problem;
use crate::domain::compat::{CompatRules, Version};
use crate::domain::identity::{AppSettings, AppSlug, InviteSettings, JwtSettings};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub slug: String,
    pub name: Option<String>,
    #[serde(default)]
    pub compat: CompatRules,
    pub jwt: Option<JwtSettings>,
    #[serde(default)]
    pub invites: InviteSettings,
}

impl AppConfig {
    pub fn settings(&self) -> AppSettings {
        AppSettings {
            compat: self.compat.clone(),
            jwt: self.jwt.clone(),
            invites: self.invites.clone(),
        }
    }
}

pub fn validate(apps: &[AppConfig], prod: bool, p: &mut Vec<Problem>) {
    let mut slugs = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, a) in apps.iter().enumerate() {
        let key = format!("apps.{i}");
        if let Err(m) = AppSlug::parse(&a.slug) {
            p.push(Problem::new(format!("{key}.slug"), m));
        } else if !slugs.insert(a.slug.as_str()) {
            p.push(Problem::new(
                format!("{key}.slug"),
                format!("{:?} is declared twice", a.slug),
            ));
        }
        for (platform, rule) in &a.compat {
            for (field, v) in [
                ("min_version", &rule.min_version),
                ("latest_version", &rule.latest_version),
            ] {
                if let Some(v) = v
                    && let Err(m) = Version::parse(v)
                {
                    p.push(Problem::new(format!("{key}.compat.{platform}.{field}"), m));
                }
            }
            if let Some(u) = &rule.update_url
                && !Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                p.push(Problem::new(
                    format!("{key}.compat.{platform}.update_url"),
                    "expected an http(s) URL",
                ));
            }
        }
        if let Some(jwt) = &a.jwt {
            if !issuers.insert(jwt.issuer.as_str()) {
                p.push(Problem::new(
                    format!("{key}.jwt.issuer"),
                    "two apps cannot share an issuer",
                ));
            }
            match Url::parse(&jwt.jwks_url) {
                Ok(u) if u.scheme() == "https" || (!prod && u.scheme() == "http") => {}
                _ => p.push(Problem::new(
                    format!("{key}.jwt.jwks_url"),
                    "expected an https URL (http is accepted outside production)",
                )),
            }
            if jwt.audience.as_deref() == Some("") {
                p.push(Problem::new(
                    format!("{key}.jwt.audience"),
                    "must not be empty when set",
                ));
            }
            if jwt.leeway_secs > 300 {
                p.push(Problem::new(
                    format!("{key}.jwt.leeway_secs"),
                    "at most 300",
                ));
            }
        }
    }
}
