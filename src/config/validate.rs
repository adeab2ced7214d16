//! The rules a configuration must meet. Each rule adds a [`Problem`]; none stops the others.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::database_url::is_postgres;
use super::{Config, Problem};

/// Shortest secret accepted in production.
pub const MIN_SECRET_LEN: usize = 32;

/// Checks the whole configuration and returns every problem found (empty when valid).
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    let prod = c.is_production();

    if c.listen.parse::<SocketAddr>().is_err() {
        p.push(Problem::new(
            "listen",
            format!(
                "expected an IP address and port such as 127.0.0.1:8080, got {:?}",
                c.listen
            ),
        ));
    }
    if c.data_dir.as_os_str().is_empty() {
        p.push(Problem::new("data_dir", "must not be empty"));
    }
    public_url(c, prod, &mut p);
    secrets(c, prod, &mut p);
    database(c, prod, &mut p);
    if let Some(url) = &c.redis.url {
        match Url::parse(url) {
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => {}
            Ok(u) if u.scheme() == "rediss" => p.push(Problem::new(
                "redis.url",
                "rediss:// (TLS) is not supported by this build yet; use redis:// on a private network",
            )),
            _ => p.push(Problem::new(
                "redis.url",
                "expected redis://host:port[/db], e.g. redis://127.0.0.1:6379/0",
            )),
        }
    }
    cors(c, prod, &mut p);
    http_limits(c, &mut p);
    super::jobs::validate(&c.jobs, &mut p);
    super::apps::validate(&c.apps, prod, &mut p);
    super::ledger::validate(&c.ledger, &c.prices, &mut p);
    super::gateway::validate(&c.gateway, &c.providers, &c.models, &c.prices, &mut p);
    super::apps::billing("new_app_billing", &c.new_app_billing, &mut p);
    for (i, app) in c.apps.iter().enumerate() {
        for (j, plan) in app.plans.iter().enumerate() {
            if let Some(tier) = &plan.rate_limit_tier
                && !c.rate_limits.tiers.contains_key(tier)
            {
                p.push(Problem::new(
                    format!("apps.{i}.plans.{j}.rate_limit_tier"),
                    format!("{tier:?} is not declared in [rate_limits.tiers]"),
                ));
            }
        }
    }
    super::limits::validate(&c.rate_limits, &c.http.trusted_proxies, &mut p);
    super::retention::validate(&c.retention, &mut p);
    super::backup::validate(&c.backup, &mut p);
    super::events::validate(&c.events, &mut p);
    super::email::validate(&c.email, &c.apps, c.is_production(), &mut p);
    let queues: Vec<&str> = c.jobs.queues.keys().map(String::as_str).collect();
    super::apps::validate_schedules(&c.apps, &queues, &mut p);
    if tracing_subscriber::EnvFilter::try_new(&c.log.level).is_err() {
        p.push(Problem::new(
            "log.level",
            format!(
                "expected a tracing filter such as \"info\" or \"tollgate=debug,sqlx=warn\", got {:?}",
                c.log.level
            ),
        ));
    }
    p
}

fn public_url(c: &Config, prod: bool, p: &mut Vec<Problem>) {
    match &c.public_url {
        None if prod => p.push(Problem::new(
            "public_url",
            "required in production: the https URL clients reach this server at",
        )),
        None => {}
        Some(raw) => match Url::parse(raw) {
            Ok(u) if prod && u.scheme() != "https" => p.push(Problem::new(
                "public_url",
                format!("must be https in production, got {raw:?}"),
            )),
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => p.push(Problem::new(
                "public_url",
                format!(
                    "expected an absolute http(s) URL such as https://api.example.com, got {raw:?}"
                ),
            )),
        },
    }
}

fn secrets(c: &Config, prod: bool, p: &mut Vec<Problem>) {
    match &c.encryption_key {
        Some(key) => {
            let key = key.expose_secret();
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                p.push(Problem::new(
                    "encryption_key",
                    format!(
                        "must be exactly 64 hex characters (a 256-bit AES-GCM key; `openssl rand -hex 32`), got {} characters",
                        key.chars().count()
                    ),
                ));
            }
        }
        None if prod => p.push(Problem::new(
            "encryption_key",
            "required in production: 64 hex characters (`openssl rand -hex 32`)",
        )),
        None => {}
    }
    match &c.metrics_token {
        Some(token) => secret_strength("metrics_token", token, prod, p),
        None if prod => p.push(Problem::new(
            "metrics_token",
            format!(
                "required in production (at least {MIN_SECRET_LEN} characters) so that /metrics is not public"
            ),
        )),
        None => {}
    }
    if let Some(dsn) = &c.sentry_dsn
        && !crate::ops::sentry::valid_dsn(dsn.expose_secret())
    {
        p.push(Problem::new(
            "sentry_dsn",
            "expected a Sentry DSN such as https://<public key>@o0.ingest.sentry.io/<project id>",
        ));
    }
}

/// A secret is long enough in production; anywhere, it must not be blank.
fn secret_strength(key: &str, secret: &SecretString, prod: bool, p: &mut Vec<Problem>) {
    let len = secret.expose_secret().chars().count();
    if secret.expose_secret().trim().is_empty() {
        p.push(Problem::new(key, "must not be blank"));
    } else if prod && len < MIN_SECRET_LEN {
        p.push(Problem::new(
            key,
            format!("must be at least {MIN_SECRET_LEN} characters in production, got {len}"),
        ));
    }
}

fn database(c: &Config, prod: bool, p: &mut Vec<Problem>) {
    let url = c.database_url();
    if url.starts_with("sqlite:") {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or_default();
        if prod
            && (path.is_empty()
                || path == ":memory:"
                || url.contains("mode=memory")
                || is_temp(Path::new(path)))
        {
            p.push(Problem::new(
                if c.database.url.is_some() { "database.url" } else { "data_dir" },
                format!("the database must not live in memory or a temporary directory in production, got {path:?}"),
            ));
        }
    } else if !is_postgres(&url) {
        p.push(Problem::new(
            "database.url",
            "unsupported scheme: expected sqlite://path/to/file.db or postgres://user:pass@host/db",
        ));
    }
    let d = &c.database;
    for (key, u) in [
        ("database.url", Some(url.as_str())),
        ("database.owner_url", d.owner_url.as_deref()),
    ] {
        if let Some(u) = u.filter(|u| is_postgres(u)) {
            if let Err(problems) = super::database_url::split(u) {
                for m in problems {
                    p.push(Problem::new(key, m));
                }
            }
            if c.is_production()
                && let Some(m) = super::database_url::production_tls_problem(u)
            {
                p.push(Problem::new(key, m));
            }
        }
    }
    if let Some(owner) = &d.owner_url
        && !(is_postgres(owner) && is_postgres(&url))
    {
        p.push(Problem::new(
            "database.owner_url",
            "only for PostgreSQL: a postgres:// URL beside a postgres:// database.url",
        ));
    }
    if d.max_connections == 0 {
        p.push(Problem::new(
            "database.max_connections",
            "must be at least 1",
        ));
    }
    if d.min_connections > d.max_connections {
        p.push(Problem::new(
            "database.min_connections",
            format!(
                "must not exceed database.max_connections ({})",
                d.max_connections
            ),
        ));
    }
    if d.acquire_timeout_ms == 0 {
        p.push(Problem::new(
            "database.acquire_timeout_ms",
            "must be at least 1",
        ));
    }
}

/// Temporary directories are wiped on reboot; a production database there loses everything.
fn is_temp(path: &Path) -> bool {
    let temp_roots = [
        std::env::temp_dir(),
        "/tmp".into(),
        "/var/tmp".into(),
        "/dev/shm".into(),
    ];
    temp_roots.iter().any(|root| path.starts_with(root))
}

fn cors(c: &Config, prod: bool, p: &mut Vec<Problem>) {
    let origins = &c.http.cors_origins;
    if origins.iter().any(|o| o == "*") {
        if prod {
            p.push(Problem::new(
                "http.cors_origins",
                "\"*\" is not allowed in production; list each origin, e.g. https://app.example.com",
            ));
        } else if origins.len() > 1 {
            p.push(Problem::new("http.cors_origins", "\"*\" must stand alone"));
        }
    }
    for origin in origins.iter().filter(|o| *o != "*") {
        let valid = Url::parse(origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && !origin.ends_with('/')
        });
        if !valid {
            p.push(Problem::new(
                "http.cors_origins",
                format!("{origin:?} is not an origin: expected scheme://host[:port] with no path"),
            ));
        }
    }
}

fn http_limits(c: &Config, p: &mut Vec<Problem>) {
    let h = &c.http;
    for (key, value) in [
        ("http.body_limit_bytes", h.body_limit_bytes as u64),
        ("http.request_timeout_ms", h.request_timeout_ms),
        ("http.slow_request_ms", h.slow_request_ms),
    ] {
        if value == 0 {
            p.push(Problem::new(key, "must be at least 1"));
        }
    }
}
