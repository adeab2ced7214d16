//! The query parameters of a PostgreSQL `DATABASE_URL`. Deploy checklists write pool settings
//! there (`connection_limit`, `pool_timeout`, Prisma's names): they are honoured — they win
//! over `[database]` — and taken out before the URL reaches the driver. The driver's own
//! parameters pass through. Anything else is refused by name rather than silently ignored.

use url::Url;

/// Parameters the PostgreSQL driver itself reads.
const DRIVER: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Whether `url` names a PostgreSQL server (`postgres://` or `postgresql://`).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A PostgreSQL URL with the pool settings it carried taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    /// What the driver gets.
    pub url: String,
    /// `connection_limit`: the pool's size.
    pub max_connections: Option<u32>,
    /// `pool_timeout` (seconds): how long a request waits for a connection.
    pub acquire_timeout_ms: Option<u64>,
}

/// Splits `raw`; every parameter it cannot honour or pass on is named in the error.
pub fn split(raw: &str) -> Result<PgUrl, Vec<String>> {
    let Ok(mut url) = Url::parse(raw) else {
        return Err(vec!["not a URL".into()]);
    };
    let mut out = PgUrl {
        url: String::new(),
        max_connections: None,
        acquire_timeout_ms: None,
    };
    let mut problems = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in url.query_pairs() {
        let number = || value.parse::<u64>().ok().filter(|n| *n > 0);
        match name.as_ref() {
            "connection_limit" => match number().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => out.max_connections = Some(n),
                None => problems.push(format!(
                    "connection_limit={value}: expected a positive integer"
                )),
            },
            "pool_timeout" => match number() {
                Some(secs) => out.acquire_timeout_ms = Some(secs.saturating_mul(1000)),
                None => problems.push(format!(
                    "pool_timeout={value}: expected a positive number of seconds"
                )),
            },
            "connect_timeout" => problems.push(
                "connect_timeout is not supported: connecting is bounded by pool_timeout \
                 (database.acquire_timeout_ms); remove it"
                    .into(),
            ),
            n if DRIVER.contains(&n) || n.starts_with("options[") => {
                kept.push((name.to_string(), value.to_string()));
            }
            n => problems.push(format!(
                "unknown parameter {n:?} (honoured: connection_limit, pool_timeout, {})",
                DRIVER.join(", ")
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // TLS to a server on this machine costs ~100 ms per new connection and protects nothing:
    // unless told otherwise, loopback and socket connections go without (docs/configuration.md).
    if ssl_mode(&kept).is_none() && is_local(&url, &kept) {
        kept.push(("sslmode".into(), "disable".into()));
    }
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    out.url = url.to_string();
    Ok(out)
}

/// The `sslmode` the parameters set, if any.
fn ssl_mode(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .find(|(n, _)| n == "sslmode" || n == "ssl-mode")
        .map(|(_, v)| v.as_str())
}

/// Whether the server is on this machine: a loopback host, or a Unix socket (no host, or a
/// `host` that is a path).
fn is_local(url: &Url, params: &[(String, String)]) -> bool {
    if let Some((_, host)) = params.iter().find(|(n, _)| n == "host") {
        return host.starts_with('/');
    }
    match url.host() {
        None => true,
        // `postgres:` is not a special scheme: its IPv4 hosts come as names.
        Some(url::Host::Domain(d)) => {
            d.is_empty()
                || d.eq_ignore_ascii_case("localhost")
                || d.starts_with("%2F")
                || d.parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    }
}

/// In production, a server elsewhere must be reached over TLS that cannot be downgraded:
/// `sslmode=require`, `verify-ca` or `verify-full`. The problem, if `raw` does not say so.
pub fn production_tls_problem(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    let params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if is_local(&url, &params) {
        return None;
    }
    match ssl_mode(&params) {
        Some("require" | "verify-ca" | "verify-full") => None,
        other => Some(format!(
            "{} reaches {} without required TLS; add sslmode=require (or verify-full) — \
             a server on this machine (loopback or a socket) needs none",
            match other {
                Some(mode) => format!("sslmode={mode}"),
                None => "no sslmode".to_string(),
            },
            url.host_str().unwrap_or("the server")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_settings_are_taken_out_and_honoured() {
        let u =
            split("postgres://a:b@db:5432/app?sslmode=require&connection_limit=20&pool_timeout=10")
                .unwrap();
        assert_eq!(u.url, "postgres://a:b@db:5432/app?sslmode=require");
        assert_eq!(u.max_connections, Some(20));
        assert_eq!(u.acquire_timeout_ms, Some(10_000));
        let plain = split("postgres://a@db/app").unwrap();
        assert_eq!(plain.url, "postgres://a@db/app");
        assert_eq!(
            (plain.max_connections, plain.acquire_timeout_ms),
            (None, None)
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let problems =
            split("postgres://a@db/app?connect_timeout=5&conection_limit=3&connection_limit=0")
                .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("connect_timeout"));
        assert!(problems[1].contains("\"conection_limit\""));
        assert!(problems[2].starts_with("connection_limit=0"));
    }

    #[test]
    fn a_server_on_this_machine_is_reached_without_tls_unless_told_otherwise() {
        for local in [
            "postgres://a@127.0.0.1:5432/app",
            "postgres://a@localhost/app",
            "postgres://a@[::1]/app",
            "postgres:///app?host=/var/run/postgresql",
        ] {
            assert!(
                split(local).unwrap().url.ends_with("sslmode=disable"),
                "{local}"
            );
            assert_eq!(production_tls_problem(local), None, "{local}");
        }
        let told = split("postgres://a@127.0.0.1/app?sslmode=require").unwrap();
        assert!(told.url.ends_with("sslmode=require"), "{}", told.url);
        assert_eq!(
            split("postgres://a@db/app").unwrap().url,
            "postgres://a@db/app"
        );
    }

    #[test]
    fn production_requires_tls_that_cannot_be_downgraded_to_a_remote_server() {
        let problem = production_tls_problem("postgres://a@db.internal/app").unwrap();
        assert!(
            problem.contains("no sslmode reaches db.internal"),
            "{problem}"
        );
        assert!(production_tls_problem("postgres://a@db/app?sslmode=prefer").is_some());
        assert_eq!(
            production_tls_problem("postgres://a@db/app?sslmode=verify-full"),
            None
        );
    }
}
