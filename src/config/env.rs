//! Environment variables as a figment provider, plus the deserializers env values need.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::{Config, Problem};

/// Names platforms and users already set, and the key each one fills.
const CONVENTIONAL: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_OWNER_URL", "database.owner_url"),
    ("REDIS_URL", "redis.url"),
    ("PUBLIC_URL", "public_url"),
    ("CORS_ORIGINS", "http.cors_origins"),
    ("ENCRYPTION_KEY", "encryption_key"),
    ("SENTRY_DSN", "sentry_dsn"),
    ("METRICS_TOKEN", "metrics_token"),
    ("SMTP_URL", "email.smtp_url"),
    ("OPENAI_API_KEY", "providers.openai.api_key"),
    ("ANTHROPIC_API_KEY", "providers.anthropic.api_key"),
    ("GEMINI_API_KEY", "providers.gemini.api_key"),
];

/// Keys whose env value is always text. Parsing them like other values would turn a secret made
/// of digits into a number (and a long one into a lossy float).
const TEXT_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "public_url",
    "encryption_key",
    "metrics_token",
    "sentry_dsn",
    "database.url",
    "redis.url",
    "http.cors_origins",
    "log.level",
    "jobs.prune_cron",
    "backup.cron",
    "backup.dir",
    "http.trusted_proxies",
    "events.allowed_targets",
    "email.smtp_url",
    "email.from",
    "rate_limits.redis_prefix",
    "providers.openai.api_key",
    "providers.openai.base_url",
    "providers.anthropic.api_key",
    "providers.anthropic.base_url",
    "providers.gemini.api_key",
    "providers.gemini.base_url",
];

const PREFIX: &str = "TOLLGATE_";
/// Variables read by the command line itself (the file to load, the role to run), not keys.
const NOT_KEYS: &[&str] = &[
    "TOLLGATE_CONFIG",
    "TOLLGATE_ROLE",
    crate::ops::fault::ENV,
    crate::ops::fault::PAUSE_ENV,
];

pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// The figment provider for `vars`: conventional names first, `TOLLGATE_*` over them.
pub fn provider(vars: &[(String, String)]) -> EnvVars {
    let mut dict = Dict::new();
    for (name, value) in vars {
        if let Some((_, key)) = CONVENTIONAL.iter().find(|(n, _)| n == name) {
            insert(&mut dict, key, value);
        }
    }
    for (name, value) in vars {
        if let Some(rest) = name.strip_prefix(PREFIX)
            && !NOT_KEYS.contains(&name.as_str())
            && !rest.is_empty()
        {
            let key = rest.to_ascii_lowercase().replace("__", ".");
            insert(&mut dict, &key, value);
        }
    }
    EnvVars(dict)
}

fn insert(dict: &mut Dict, key: &str, raw: &str) {
    let value = if TEXT_KEYS.contains(&key) {
        Value::from(raw.to_string())
    } else {
        raw.parse().expect("figment value parsing is infallible")
    };
    let mut parts = key.split('.').peekable();
    let mut node = dict;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_string(), value);
            return;
        }
        let child = node
            .entry(part.to_string())
            .or_insert_with(|| Value::from(Dict::new()));
        if child.as_dict().is_none() {
            *child = Value::from(Dict::new());
        }
        node = match child {
            Value::Dict(_, d) => d,
            _ => unreachable!("replaced by a dict above"),
        };
    }
}

/// How the environment layer is named in figment's metadata.
pub const METADATA_NAME: &str = "environment variable";

/// The variable that set `key` (`a.b`): its `TOLLGATE_` name if that is set, else the
/// conventional name that was. For a whole table, the first variable under it.
pub fn variable_for(key: &str, vars: &[(String, String)]) -> String {
    let own = format!("{PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
    let is_set = |name: &str| vars.iter().any(|(n, _)| n == name);
    if is_set(&own) {
        return own;
    }
    if let Some((name, _)) = CONVENTIONAL.iter().find(|(n, k)| *k == key && is_set(n)) {
        return name.to_string();
    }
    let under = format!("{own}__");
    vars.iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with(&under))
        .cloned()
        .unwrap_or(own)
}

/// Environment variables (already collected) as a figment provider.
pub struct EnvVars(Dict);

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(METADATA_NAME)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// `PORT` replaces the port of `listen`: platforms set it and route traffic to it.
pub fn apply_port(config: &mut Config, vars: &[(String, String)], problems: &mut Vec<Problem>) {
    let Some((_, port)) = vars.iter().find(|(n, _)| n == "PORT") else {
        return;
    };
    let port: u16 = match port.trim().parse() {
        Ok(p) if p > 0 => p,
        _ => {
            problems.push(Problem::new(
                "PORT",
                format!("expected a port number from 1 to 65535, got {port:?}"),
            ));
            return;
        }
    };
    let host = match config.listen.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => config.listen.clone(),
    };
    config.listen = format!("{host}:{port}");
}

/// An optional secret that must be text.
pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|s| !s.is_empty()).map(SecretString::from))
}

/// A list of strings, written either as a list or as one comma-separated string.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    let items = match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(items) => items,
        ListOrCsv::Csv(csv) => csv.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}
