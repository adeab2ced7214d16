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
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    out.url = url.to_string();
    Ok(out)
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
}
