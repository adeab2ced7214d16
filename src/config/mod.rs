//! Typed configuration: built-in defaults → TOML file → conventional env names → `TOLLGATE_*`.
//!
//! Loading never stops at the first problem: [`load`] returns every problem it found, each with
//! the key path and what is expected, so an operator fixes a config in one pass.

mod apps;
pub mod backup;
pub mod billing;
pub mod database_url;
mod email;
mod env;
mod events;
mod gateway;
mod jobs;
mod ledger;
mod limits;
mod one_app;
pub mod recovery;
mod retention;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::redact::redact_url;

pub use apps::{AppConfig, AppScheduleConfig, validate as validate_apps};
pub use email::{AppEmailConfig, EmailConfig, EmailTemplate};
pub use events::EventsConfig;
pub use gateway::{GatewayConfig, MockConfig, ModelConfig, ModelTable, ProvidersConfig};
pub use jobs::{CatchUp, JobsConfig, QueueConfig, ScheduleConfig};
pub use ledger::{LedgerConfig, PriceTable};
pub use limits::{FailMode, IpNet, LimitConfig, RateLimitsConfig};
pub use retention::RetentionConfig;
pub use validate::validate;

/// The annotated default configuration, printed by `tollgate config example`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Deployment stage; production turns on the strict checks of [`validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    /// The lowercase name, as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// The whole configuration of one tollgate process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub environment: Environment,
    /// Address to bind, validated by [`validate`]; read it with [`Config::listen_addr`].
    pub listen: String,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    #[serde(default, deserialize_with = "env::secret")]
    pub encryption_key: Option<SecretString>,
    #[serde(default, deserialize_with = "env::secret")]
    pub metrics_token: Option<SecretString>,
    #[serde(default, deserialize_with = "env::secret")]
    pub sentry_dsn: Option<SecretString>,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub jobs: JobsConfig,
    pub rate_limits: RateLimitsConfig,
    pub ledger: LedgerConfig,
    /// USD prices by model.
    #[serde(default)]
    pub prices: PriceTable,
    pub gateway: GatewayConfig,
    pub providers: ProvidersConfig,
    /// The models clients may ask for (docs/gateway.md).
    #[serde(default)]
    pub models: ModelTable,
    /// Plans and conversion given to apps created at run time (`tollgate apps create`, the
    /// admin API); apps declared in `[[apps]]` bring their own.
    pub new_app_billing: crate::domain::plans::BillingSettings,
    /// How long records that may carry personal data are kept (docs/privacy.md).
    pub retention: RetentionConfig,
    /// Scheduled backups (docs/backups.md).
    pub backup: backup::BackupConfig,
    /// Delivering tollgate's own events to the apps' endpoints (docs/events.md).
    pub events: EventsConfig,
    /// The SMTP transport (docs/email.md).
    pub email: EmailConfig,
    pub log: LogConfig,
    /// Apps declared here are created or updated at startup.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// Connection settings for SQLite or PostgreSQL. `Debug` hides a password in the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; `None` means a SQLite file in the data directory.
    pub url: Option<String>,
    /// PostgreSQL: the role that owns the schema (`DATABASE_OWNER_URL`). When set, migrations
    /// and the few cross-app statements (key lookup, sweeps) run as it, and `url`'s role —
    /// granted read and write on the tables, owning none — cannot see past row-level security
    /// even by setting `tollgate.all_apps` itself. Unset: `url`'s role does everything.
    pub owner_url: Option<String>,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub busy_timeout_ms: u64,
}

/// Optional Redis, shared by replicas. `Debug` hides a password in the URL.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Option<String>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("owner_url", &self.owner_url.as_deref().map(redact_url))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .finish()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .finish()
    }
}

/// HTTP server limits and CORS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Accepts a TOML list or one comma-separated string (as `CORS_ORIGINS` is written).
    #[serde(deserialize_with = "env::string_list")]
    pub cors_origins: Vec<String>,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub slow_request_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// Proxies (IPs or CIDRs) whose `X-Forwarded-For` is believed. Empty: never.
    #[serde(deserialize_with = "env::string_list")]
    pub trusted_proxies: Vec<String>,
    /// Serve the interactive API reference at `/docs`; unset: on outside production.
    #[serde(default)]
    pub api_docs: Option<bool>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// One thing wrong with the configuration: where, and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every problem found while loading and validating; never empty.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// The built-in development defaults, with no file and no environment.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .expect("the embedded default configuration is valid")
    }

    /// The validated listen address.
    /// Settings of an app created at run time: `[new_app_billing]`, defaults otherwise.
    pub fn new_app_settings(&self) -> crate::domain::identity::AppSettings {
        crate::domain::identity::AppSettings {
            billing: std::sync::Arc::new(self.new_app_billing.clone()),
            ..Default::default()
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .expect("listen is checked by validate() before use")
    }

    /// The database URL in effect: the configured one or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tollgate.db").display()),
        }
    }

    /// Whether `/docs` is served: `http.api_docs`, or outside production when unset.
    pub fn api_docs_enabled(&self) -> bool {
        self.http.api_docs.unwrap_or(!self.is_production())
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// The app declared in `[[apps]]` with this slug.
    pub fn app(&self, slug: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.slug == slug)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    pub fn slow_request(&self) -> Duration {
        Duration::from_millis(self.http.slow_request_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.http.shutdown_timeout_ms)
    }
}

/// Loads the configuration from the defaults, the optional file and the process environment,
/// then validates it. Returns every problem at once.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_from(file, &env::process_env())
}

/// [`load`] with an explicit environment (name, value) list, so tests need not touch the
/// process environment.
/// Decrypts secrets written sealed (`enc:v1:…`, made by `tollgate config seal`) with
/// `ENCRYPTION_KEY`, so the config file and its backups never hold them in clear: provider API
/// keys and every app's billing-store secrets.
fn open_sealed(config: &mut Config, problems: &mut Vec<Problem>) {
    use secrecy::ExposeSecret;
    let key = config
        .encryption_key
        .as_ref()
        .map(|k| k.expose_secret().to_string());
    let mut slots: Vec<(String, &mut SecretString)> = Vec::new();
    let providers = &mut config.providers;
    for (name, slot) in [
        ("openai", &mut providers.openai.api_key),
        ("anthropic", &mut providers.anthropic.api_key),
        ("gemini", &mut providers.gemini.api_key),
    ] {
        if let Some(s) = slot.as_mut() {
            slots.push((format!("providers.{name}.api_key"), s));
        }
    }
    for (i, app) in config.apps.iter_mut().enumerate() {
        slots.extend(
            app.secrets_mut()
                .map(|(at, s)| (format!("apps.{i}.{at}"), s)),
        );
    }
    for (at, slot) in slots {
        let value = slot.expose_secret().to_string();
        if !value.starts_with(crate::crypto::SEALED_PREFIX) {
            continue;
        }
        match &key {
            None => problems.push(Problem::new(
                at,
                "is sealed (enc:v1:…) but ENCRYPTION_KEY is not set",
            )),
            Some(k) => match crate::crypto::open(k, &value) {
                Ok(plain) => *slot = plain.into(),
                Err(e) => problems.push(Problem::new(at, e.to_string())),
            },
        }
    }
}

pub fn load_from(file: Option<&Path>, vars: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigErrors(vec![Problem::new(
                "--config",
                format!("{} does not exist or is not a file", path.display()),
            )]));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment.merge(env::provider(vars));
    let sources = Sources {
        figment: &figment,
        file,
        vars,
    };
    let (config, mut problems) = extract_all(&sources)?;
    let Some(mut config) = config else {
        return Err(ConfigErrors(problems));
    };
    env::apply_port(&mut config, vars, &mut problems);
    let filled = one_app::apply(&mut config, vars, &mut problems);
    open_sealed(&mut config, &mut problems);
    // A rule broken by a value says where that value came from, as a wrong type does.
    for mut problem in validate(&config) {
        let origin = match filled
            .iter()
            .find(|(key, _)| problem.key.starts_with(key.as_str()))
        {
            Some((_, name)) => Some(format!("{} {name}", env::METADATA_NAME)),
            None => sources.exact_origin(&problem.key),
        };
        if let Some(origin) = origin {
            problem.message = format!("{} (from {origin})", problem.message);
        }
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(problems))
    }
}

/// The merged layers, and the file path as the operator gave it, to say where a value came from.
struct Sources<'a> {
    figment: &'a Figment,
    file: Option<&'a Path>,
    vars: &'a [(String, String)],
}

/// Deserializes the merged layers, collecting every unknown key and wrongly typed value rather
/// than stopping at the first (serde stops at one): each offending value is set back to its
/// default (or dropped, where there is none) and the rest is read again. Returns the config
/// only when nothing was wrong. A file that is not TOML at all is one problem.
fn extract_all(sources: &Sources) -> Result<(Option<Config>, Vec<Problem>), ConfigErrors> {
    /// More problems than this in one file is a wrong file; the list stays readable.
    const MAX_PROBLEMS: usize = 50;
    let mut value = sources.figment.find_value("").map_err(|e| {
        ConfigErrors(
            e.into_iter()
                .map(|e| Problem::new(error_key(&e), format!("{}", e.kind)))
                .collect(),
        )
    })?;
    let defaults = Figment::from(Toml::string(DEFAULT_TOML))
        .find_value("")
        .expect("the embedded default configuration is valid");
    let mut problems = Vec::new();
    let mut dropped: Vec<Vec<String>> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let read = Figment::from(figment::providers::Serialized::defaults(&value)).extract();
        let error = match read {
            Ok(config) if problems.is_empty() => return Ok((Some(config), problems)),
            Ok(_) => break,
            Err(e) => e,
        };
        let path = error.path.clone();
        // A field made missing by dropping a bad value: already reported as that value.
        if let figment::error::Kind::MissingField(name) = &error.kind {
            let mut full = path.clone();
            full.push(name.to_string());
            if dropped.contains(&full) {
                break;
            }
        }
        problems.push(Problem::new(error_key(&error), sources.message(&error)));
        if path.is_empty() || !replace_with_default(&mut value, &defaults, &path) {
            break;
        }
        if lookup(&defaults, &path).is_none() {
            dropped.push(path);
        }
    }
    Ok((None, problems))
}

/// Sets the value at `path` to the default's value there, or removes it when there is none.
/// False when `path` does not lead to a value (nothing more can be learned).
fn replace_with_default(
    value: &mut figment::value::Value,
    defaults: &figment::value::Value,
    path: &[String],
) -> bool {
    use figment::value::Value;
    let (last, parents) = path.split_last().expect("path is not empty");
    let mut node = value;
    for key in parents {
        node = match node {
            Value::Dict(_, dict) => match dict.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            Value::Array(_, items) => {
                match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(child) => child,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    let default = lookup(defaults, path).cloned();
    match node {
        Value::Dict(_, dict) => match default {
            Some(d) => dict.insert(last.clone(), d).is_some(),
            None => dict.remove(last).is_some(),
        },
        Value::Array(_, items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                match default {
                    Some(d) => items[i] = d,
                    None => {
                        items.remove(i);
                    }
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn lookup<'v>(
    value: &'v figment::value::Value,
    path: &[String],
) -> Option<&'v figment::value::Value> {
    use figment::value::Value;
    path.iter().try_fold(value, |node, key| match node {
        Value::Dict(_, dict) => dict.get(key),
        Value::Array(_, items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn error_key(e: &figment::Error) -> String {
    if e.path.is_empty() {
        "(top level)".into()
    } else {
        e.path.join(".")
    }
}

/// figment's wording, except an unknown key, which gets the nearest known one and the list.
fn describe(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownField(found, expected) => {
            let nearest = expected
                .iter()
                .map(|known| (edit_distance(found, known), *known))
                .filter(|(d, known)| *d <= 2.max(known.len() / 4))
                .min()
                .map(|(_, known)| format!("did you mean `{known}`? "))
                .unwrap_or_default();
            format!("unknown key; {nearest}known here: {}", expected.join(", "))
        }
        other => other.to_string(),
    }
}

/// Levenshtein distance, for suggesting the key a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Sources<'_> {
    /// Every layer merged, each value still tagged with the layer it came from.
    fn merged(&self) -> Option<figment::value::Value> {
        // The empty path is the whole tree.
        self.figment.find_value("").ok()
    }

    /// The error's kind and where the value came from: the file as given, or the environment
    /// variable by name. (figment's Display repeats the key, so only the kind is kept.)
    fn message(&self, e: &figment::Error) -> String {
        let from = self
            .origin(&e.path)
            .map(|o| format!(" (from {o})"))
            .unwrap_or_default();
        format!("{}{from}", describe(&e.kind))
    }

    /// Where the value at `key` (`a.b.0`) came from, if a file or the environment set that very
    /// value (a default's origin says nothing worth reading).
    fn exact_origin(&self, key: &str) -> Option<String> {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let merged = self.merged()?;
        let meta = lookup(&merged, &path).and_then(|v| self.figment.get_metadata(v.tag()))?;
        match &meta.source {
            Some(figment::Source::File(_)) => self.origin(&path),
            _ if meta.name == env::METADATA_NAME => self.origin(&path),
            _ => None,
        }
    }

    fn origin(&self, path: &[String]) -> Option<String> {
        let merged = self.merged()?;
        // The deepest value some layer set: an unknown key's own, or the table it sits in.
        let mut at = path;
        let meta = loop {
            if let Some(meta) = lookup(&merged, at).and_then(|v| self.figment.get_metadata(v.tag()))
            {
                break meta;
            }
            at = at.split_last()?.1;
        };
        Some(match &meta.source {
            Some(figment::Source::File(_)) => match self.file {
                Some(given) => given.display().to_string(),
                None => meta.name.to_string(),
            },
            _ if meta.name == env::METADATA_NAME => {
                format!(
                    "{} {}",
                    env::METADATA_NAME,
                    env::variable_for(&at.join("."), self.vars)
                )
            }
            _ => meta.name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
