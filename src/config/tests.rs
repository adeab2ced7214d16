use std::io::Write;

use secrecy::ExposeSecret;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keys(result: Result<Config, ConfigErrors>) -> Vec<String> {
    let mut keys: Vec<String> = result
        .expect_err("config should be refused")
        .0
        .into_iter()
        .map(|p| p.key)
        .collect();
    keys.sort();
    keys
}

/// A temporary TOML file removed on drop.
struct TempToml(std::path::PathBuf);

impl TempToml {
    fn new(content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("tollgate-cfg-{}.toml", uuid::Uuid::now_v7()));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .unwrap();
        TempToml(path)
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const KEY64: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const TOKEN32: &str = "m3tr1cs-t0ken-that-is-long-enough";

fn production() -> Vec<(String, String)> {
    vars(&[
        ("TOLLGATE_ENVIRONMENT", "production"),
        ("PUBLIC_URL", "https://api.example.com"),
        ("ENCRYPTION_KEY", KEY64),
        ("METRICS_TOKEN", TOKEN32),
        ("TOLLGATE_DATA_DIR", "/var/lib/tollgate"),
    ])
}

#[test]
fn the_defaults_are_a_valid_development_config() {
    let c = load_from(None, &[]).unwrap();
    assert_eq!(c.environment, Environment::Development);
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.database_url(), "sqlite://./tollgate-data/tollgate.db");
    assert!(c.http.cors_origins.is_empty());
}

#[test]
fn a_complete_production_config_is_accepted() {
    let c = load_from(None, &production()).unwrap();
    assert!(c.is_production());
    assert!(
        !c.api_docs_enabled(),
        "/docs is off in production unless asked for"
    );
    assert_eq!(c.metrics_token.unwrap().expose_secret(), TOKEN32);
    let mut asked = production();
    asked.push(("TOLLGATE_HTTP__API_DOCS".into(), "true".into()));
    assert!(load_from(None, &asked).unwrap().api_docs_enabled());
    assert!(
        load_from(None, &[]).unwrap().api_docs_enabled(),
        "on in development"
    );
}

#[test]
fn a_weak_production_config_names_every_problem_at_once() {
    let mut env = vars(&[
        ("TOLLGATE_ENVIRONMENT", "production"),
        ("PUBLIC_URL", "https://api.example.com"),
        ("ENCRYPTION_KEY", "0123456789"),
        ("CORS_ORIGINS", "*"),
        ("TOLLGATE_DATA_DIR", "/var/lib/tollgate"),
    ]);
    env.push(("TOLLGATE_LISTEN".into(), "127.0.0.1:9000".into()));
    assert_eq!(
        keys(load_from(None, &env)),
        ["encryption_key", "http.cors_origins", "metrics_token"]
    );
}

#[test]
fn production_refuses_a_remote_postgres_without_required_tls() {
    let mut env = production();
    env.push((
        "DATABASE_URL".into(),
        "postgres://app@db.internal/tollgate".into(),
    ));
    let text = load_from(None, &env).unwrap_err().to_string();
    assert!(
        text.contains("database.url: no sslmode reaches db.internal without required TLS"),
        "{text}"
    );
    let mut env = production();
    env.push((
        "DATABASE_URL".into(),
        "postgres://app@db.internal/tollgate?sslmode=require".into(),
    ));
    assert!(load_from(None, &env).is_ok());
    let mut env = production();
    env.push((
        "DATABASE_URL".into(),
        "postgres://app@127.0.0.1/tollgate".into(),
    ));
    assert!(
        load_from(None, &env).is_ok(),
        "a server on this machine needs no TLS"
    );
}

#[test]
fn production_requires_public_url_key_and_token() {
    let env = vars(&[
        ("TOLLGATE_ENVIRONMENT", "production"),
        ("TOLLGATE_DATA_DIR", "/var/lib/tollgate"),
    ]);
    assert_eq!(
        keys(load_from(None, &env)),
        ["encryption_key", "metrics_token", "public_url"]
    );
}

#[test]
fn production_refuses_short_secrets_http_urls_and_temp_databases() {
    let mut env = production();
    env.extend(vars(&[
        ("METRICS_TOKEN", "short-token"),
        ("PUBLIC_URL", "http://api.example.com"),
        ("DATABASE_URL", "sqlite:///tmp/tollgate.db"),
    ]));
    let errors = load_from(None, &env).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("metrics_token: must be at least 32 characters in production, got 11"),
        "{text}"
    );
    assert!(
        text.contains("public_url: must be https in production"),
        "{text}"
    );
    assert!(
        text.contains(
            "database.url: the database must not live in memory or a temporary directory"
        ),
        "{text}"
    );
    assert!(
        text.starts_with("the configuration has 3 problems:"),
        "{text}"
    );
}

#[test]
fn production_refuses_a_default_data_dir_under_tmp() {
    let mut env = production();
    env.push(("TOLLGATE_DATA_DIR".into(), "/tmp/tg".into()));
    assert_eq!(keys(load_from(None, &env)), ["data_dir"]);
}

#[test]
fn development_accepts_wildcard_cors_and_short_tokens() {
    let env = vars(&[("CORS_ORIGINS", "*"), ("METRICS_TOKEN", "dev")]);
    let c = load_from(None, &env).unwrap();
    assert_eq!(c.http.cors_origins, ["*"]);
}

#[test]
fn cors_origins_are_split_on_commas_and_checked_one_by_one() {
    let env = vars(&[(
        "CORS_ORIGINS",
        "https://app.example.com, http://localhost:3000,ftp://x,https://a.example.com/path",
    )]);
    let errors = load_from(None, &env).unwrap_err();
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.to_string().contains("\"ftp://x\" is not an origin"));
    assert!(
        errors
            .to_string()
            .contains("\"https://a.example.com/path\" is not an origin")
    );
    let ok = vars(&[(
        "CORS_ORIGINS",
        "https://app.example.com, http://localhost:3000",
    )]);
    assert_eq!(
        load_from(None, &ok).unwrap().http.cors_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
}

#[test]
fn an_encryption_key_must_be_64_hex_characters() {
    let not_hex = "z".repeat(64);
    for bad in ["abc", not_hex.as_str(), &KEY64[..63]] {
        let env = vars(&[("ENCRYPTION_KEY", bad)]);
        assert_eq!(keys(load_from(None, &env)), ["encryption_key"], "{bad}");
    }
    assert!(load_from(None, &vars(&[("ENCRYPTION_KEY", KEY64)])).is_ok());
}

#[test]
fn conventional_names_fill_their_keys_and_tollgate_names_win() {
    let env = vars(&[
        ("DATABASE_URL", "postgres://a@localhost/one"),
        ("TOLLGATE_DATABASE__URL", "postgres://a@localhost/two"),
        ("REDIS_URL", "redis://127.0.0.1:6379/1"),
        ("TOLLGATE_DATABASE__MAX_CONNECTIONS", "25"),
        ("TOLLGATE_HTTP__SLOW_REQUEST_MS", "250"),
        ("SENTRY_DSN", "https://abc@o1.ingest.sentry.io/42"),
    ]);
    let c = load_from(None, &env).unwrap();
    assert_eq!(c.database_url(), "postgres://a@localhost/two");
    assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379/1"));
    assert_eq!(c.database.max_connections, 25);
    assert_eq!(c.http.slow_request_ms, 250);
}

#[test]
fn command_line_variables_are_not_taken_for_keys() {
    let env = vars(&[
        ("TOLLGATE_CONFIG", "/etc/tollgate.toml"),
        ("TOLLGATE_ROLE", "worker"),
    ]);
    assert!(load_from(None, &env).is_ok());
    assert_eq!(
        keys(load_from(None, &vars(&[("TOLLGATE_ROLL", "worker")]))),
        ["roll"]
    );
}

#[test]
fn a_secret_made_of_digits_stays_text() {
    let digits = "1234567890".repeat(4);
    let env = vars(&[("METRICS_TOKEN", digits.as_str())]);
    let c = load_from(None, &env).unwrap();
    assert_eq!(c.metrics_token.unwrap().expose_secret(), digits);
}

#[test]
fn port_replaces_only_the_port_of_listen() {
    let env = vars(&[("TOLLGATE_LISTEN", "0.0.0.0:8080"), ("PORT", "9999")]);
    assert_eq!(load_from(None, &env).unwrap().listen, "0.0.0.0:9999");
    assert_eq!(keys(load_from(None, &vars(&[("PORT", "http")]))), ["PORT"]);
    assert_eq!(keys(load_from(None, &vars(&[("PORT", "70000")]))), ["PORT"]);
}

#[test]
fn a_file_overrides_defaults_and_env_overrides_the_file() {
    let file = TempToml::new(
        "environment = \"staging\"\n[database]\nmax_connections = 3\n[log]\nlevel = \"debug\"\n",
    );
    let c = load_from(Some(&file.0), &vars(&[("TOLLGATE_LOG__LEVEL", "warn")])).unwrap();
    assert_eq!(c.environment, Environment::Staging);
    assert_eq!(c.database.max_connections, 3);
    assert_eq!(c.log.level, "warn");
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_path() {
    let file = TempToml::new("[database]\nmax_conections = 3\n");
    let errors = load_from(Some(&file.0), &[]).unwrap_err();
    assert!(errors.to_string().contains("unknown key"), "{errors}");
    assert!(errors.to_string().contains("max_conections"), "{errors}");

    let env = vars(&[("TOLLGATE_DATABASE__MAX_CONNECTIONS", "many")]);
    let errors = load_from(None, &env).unwrap_err();
    assert_eq!(errors.0[0].key, "database.max_connections", "{errors}");
    assert!(
        errors.0[0].message.contains("environment variable"),
        "{errors}"
    );
}

#[test]
fn a_missing_config_file_is_a_problem_not_a_silent_default() {
    let missing = std::path::Path::new("/nonexistent/tollgate.toml");
    assert_eq!(keys(load_from(Some(missing), &[])), ["--config"]);
}

#[test]
fn pool_http_log_and_url_rules_each_report_their_key() {
    let env = vars(&[
        ("TOLLGATE_DATABASE__MAX_CONNECTIONS", "2"),
        ("TOLLGATE_DATABASE__MIN_CONNECTIONS", "5"),
        ("TOLLGATE_DATABASE__ACQUIRE_TIMEOUT_MS", "0"),
        ("TOLLGATE_HTTP__BODY_LIMIT_BYTES", "0"),
        ("TOLLGATE_HTTP__REQUEST_TIMEOUT_MS", "0"),
        ("TOLLGATE_LOG__LEVEL", "info,=[bad"),
        ("REDIS_URL", "http://127.0.0.1"),
        ("SENTRY_DSN", "not a dsn"),
        ("TOLLGATE_LISTEN", "localhost"),
        ("PUBLIC_URL", "api.example.com"),
    ]);
    assert_eq!(
        keys(load_from(None, &env)),
        [
            "database.acquire_timeout_ms",
            "database.min_connections",
            "http.body_limit_bytes",
            "http.request_timeout_ms",
            "listen",
            "log.level",
            "public_url",
            "redis.url",
            "sentry_dsn",
        ]
    );
    let env = vars(&[
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("TOLLGATE_DATABASE__MAX_CONNECTIONS", "0"),
    ]);
    assert_eq!(
        keys(load_from(None, &env)),
        ["database.max_connections", "database.url"]
    );
}

#[test]
fn the_example_file_is_the_default_config() {
    let file = TempToml::new(DEFAULT_TOML);
    let c = load_from(Some(&file.0), &[]).unwrap();
    assert_eq!(c.listen, Config::defaults().listen);
}

#[test]
fn debug_output_never_shows_passwords_or_secrets() {
    let env = vars(&[
        (
            "DATABASE_URL",
            "postgres://app:db-pa55word@db.internal/tollgate",
        ),
        ("REDIS_URL", "redis://:redis-pa55word@cache.internal:6379/0"),
        ("METRICS_TOKEN", TOKEN32),
        ("ENCRYPTION_KEY", KEY64),
    ]);
    let printed = format!("{:?}", load_from(None, &env).unwrap());
    for secret in ["db-pa55word", "redis-pa55word", TOKEN32, KEY64] {
        assert!(!printed.contains(secret), "{secret} leaked in {printed}");
    }
    assert!(printed.contains("db.internal"), "{printed}");
}

#[test]
fn job_schedules_and_queues_are_checked_and_every_problem_is_listed() {
    let file = TempToml::new(
        r#"
[jobs]
lease_ms = 10
[jobs.queues.Mail]
concurrency = 0
[[jobs.schedules]]
name = "report"
cron = "0 3 * * *"
kind = "no.such.kind"
[[jobs.schedules]]
name = "report"
cron = "*/5 * * * *"
kind = "noop"
queue = "undeclared"
args = []
"#,
    );
    let result = load_from(Some(&file.0), &[]);
    assert_eq!(
        keys(result),
        [
            "jobs.lease_ms",
            "jobs.queues.Mail",
            "jobs.queues.Mail.concurrency",
            "jobs.schedules.0.kind",
            "jobs.schedules.1.args",
            "jobs.schedules.1.name",
            "jobs.schedules.1.queue",
        ]
    );
}

#[test]
fn a_bad_cron_expression_is_refused_with_its_key() {
    let result = load_from(None, &vars(&[("TOLLGATE_JOBS__PRUNE_CRON", "every hour")]));
    let problems = result.expect_err("refused").0;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "jobs.prune_cron");
    assert!(
        problems[0].message.contains("invalid cron expression"),
        "{}",
        problems[0].message
    );
}

#[test]
fn queues_and_schedules_come_from_the_file_and_the_environment() {
    let file = TempToml::new(
        "[jobs.queues.mail]\nconcurrency = 3\n[[jobs.schedules]]\nname = \"tick\"\ncron = \"* * * * * *\"\nkind = \"noop\"\nargs = { sleep_ms = 5 }\ncatch_up = \"all\"\n",
    );
    let config = load_from(
        Some(&file.0),
        &vars(&[("TOLLGATE_JOBS__QUEUES__MAIL__CONCURRENCY", "7")]),
    )
    .unwrap();
    assert_eq!(config.jobs.queues["default"].concurrency, 10);
    assert_eq!(config.jobs.queues["mail"].concurrency, 7);
    let tick = &config.jobs.schedules[0];
    assert_eq!(tick.catch_up, CatchUp::All);
    assert_eq!(tick.args["sleep_ms"], 5);
}

#[test]
fn seed_plans_prices_and_an_exact_markup_load_from_toml() {
    let file = TempToml::new(
        r#"
[prices."gpt-4o-mini"]
input = "0.15"
output = 0.60
min_charge = "0.0001"

[[apps]]
slug = "acme"
credit_usd = "0.01"
markup = 1.3
default_plan = "free"
[[apps.plans]]
id = "free"
quotas.requests = { limit = 5 }
[[apps.plans]]
id = "indie"
credits = "100"
quotas.requests = { limit = 100, period = "billing_period" }
[[apps.plans]]
id = "pro"
entitlements = ["premium"]
quotas.requests = { limit = 1000 }
[[apps.plans]]
id = "team"
quotas.requests = { limit = 5000 }
"#,
    );
    let c = load_from(Some(&file.0), &[]).unwrap();
    let billing = c.apps[0].billing();
    assert_eq!(billing.markup, crate::domain::money::Micros(1_300_000));
    assert_eq!(billing.plans.len(), 4);
    assert_eq!(billing.plan(Some("team")).quotas["requests"].limit, 5000);
    assert_eq!(c.prices["gpt-4o-mini"].output.0, 600_000);
}

#[test]
fn bad_plans_and_prices_are_all_reported_at_once() {
    let file = TempToml::new(
        r#"
[ledger]
hold_timeout_secs = 0
[prices.m]
input = "-1"
output = "1"
[[apps]]
slug = "acme"
credit_usd = "0"
default_plan = "gold"
[[apps.plans]]
id = "free"
rate_limit_tier = "gold"
entitlements = ["has space"]
quotas.requests = { limit = -1 }
[[apps.plans]]
id = "free"
overdraft = "-5"
"#,
    );
    let found = keys(load_from(Some(&file.0), &[]));
    for key in [
        "apps.0.credit_usd",
        "apps.0.default_plan",
        "apps.0.plans.0.entitlements",
        "apps.0.plans.0.quotas.requests.limit",
        "apps.0.plans.0.rate_limit_tier",
        "apps.0.plans.1.id",
        "apps.0.plans.1.overdraft",
        "ledger.hold_timeout_secs",
        "prices.m.input",
    ] {
        assert!(
            found.contains(&key.to_string()),
            "{key} missing from {found:?}"
        );
    }
}

#[test]
fn an_amount_with_more_than_six_decimals_is_refused() {
    let file = TempToml::new("[prices.m]\ninput = \"0.0000001\"\noutput = \"1\"\n");
    let errors = load_from(Some(&file.0), &[]).unwrap_err();
    assert!(errors.to_string().contains("decimal places"), "{errors}");
}

#[test]
fn billing_store_settings_are_checked_all_at_once() {
    let file = TempToml::new(
        r#"
[[apps]]
slug = "shop"
[[apps.plans]]
id = "free"
[apps.stripe]
webhook_secrets = ["not-a-whsec"]
secret_key = "pk_live_publishable"
[apps.revenuecat]
webhook_authorization = "short"
[apps.whop]
webhook_secrets = []
[[apps.products]]
provider = "stripe"
id = "price_1"
plan = "gold"
[[apps.products]]
provider = "paddle"
id = "pri_1"
credits = "5"
[[apps.products]]
provider = "stripe"
id = "price_2"
"#,
    );
    assert_eq!(
        keys(load_from(Some(&file.0), &[])),
        [
            "apps.0.products.0.plan",
            "apps.0.products.1.provider",
            "apps.0.products.2",
            "apps.0.revenuecat.webhook_authorization.0",
            "apps.0.stripe.secret_key",
            "apps.0.stripe.webhook_secrets.0",
            "apps.0.whop.webhook_secrets",
        ]
    );
}

#[test]
fn billing_store_secrets_may_be_sealed() {
    let sealed = crate::crypto::seal(KEY64, "whsec_sealed_secret").unwrap();
    let file = TempToml::new(&format!(
        "[[apps]]\nslug = \"shop\"\n[apps.stripe]\nwebhook_secrets = [\"{sealed}\"]\n"
    ));
    let c = load_from(Some(&file.0), &vars(&[("ENCRYPTION_KEY", KEY64)])).unwrap();
    let stripe = c.apps[0].stripe.as_ref().unwrap();
    assert_eq!(
        stripe.webhook_secrets[0].expose_secret(),
        "whsec_sealed_secret"
    );
    // Without the key, the sealed value is named as the problem.
    assert_eq!(
        keys(load_from(Some(&file.0), &[])),
        ["apps.0.stripe.webhook_secrets.0"]
    );
}

#[test]
fn production_refuses_short_store_secrets_as_it_does_its_own() {
    let file = TempToml::new(
        r#"
[[apps]]
slug = "shop"
[apps.stripe]
webhook_secrets = ["whsec_abcd"]
secret_key = "sk_live_ab"
[apps.revenuecat]
webhook_authorization = "Bearer 20-characters"
[apps.paddle]
webhook_secrets = ["pdl_ntfset_short"]
"#,
    );
    let text = load_from(Some(&file.0), &production())
        .unwrap_err()
        .to_string();
    for key in [
        "apps.0.stripe.webhook_secrets.0: must be at least 32 characters in production, got 10",
        "apps.0.stripe.secret_key: must be at least 32 characters in production, got 10",
        "apps.0.revenuecat.webhook_authorization.0: must be at least 32 characters in production",
        "apps.0.paddle.webhook_secrets.0: must be at least 32 characters in production",
    ] {
        assert!(text.contains(key), "{key} missing in {text}");
    }
    assert!(
        !text.contains("sk_live_ab"),
        "secrets are never printed: {text}"
    );
    // Outside production the same file loads.
    assert!(load_from(Some(&file.0), &[]).is_ok());
}

#[test]
fn database_url_parameters_that_cannot_be_honoured_are_each_refused() {
    let env = vars(&[(
        "DATABASE_URL",
        "postgres://a@db/app?connection_limit=20&connect_timeout=5&pgbouncer=true",
    )]);
    let text = load_from(None, &env).unwrap_err().to_string();
    assert!(
        text.contains("database.url: connect_timeout is not supported"),
        "{text}"
    );
    assert!(
        text.contains("database.url: unknown parameter \"pgbouncer\""),
        "{text}"
    );
    assert!(
        text.starts_with("the configuration has 2 problems:"),
        "{text}"
    );
    let ok = vars(&[(
        "DATABASE_URL",
        "postgres://a@db/app?connection_limit=20&pool_timeout=3",
    )]);
    assert!(
        load_from(None, &ok).is_ok(),
        "connection_limit and pool_timeout are honoured"
    );
}

#[test]
fn every_unknown_key_and_bad_type_in_a_file_is_listed_at_once() {
    let file = TempToml::new(
        "[databse]\nurl = \"sqlite://x.db\"\n\n[http]\ncors_origin = [\"https://a.example\"]\nbody_limit_bytes = \"big\"\n\n[log]\nlevel = 3\n",
    );
    // The path as the operator typed it, not made absolute.
    let given = std::path::Path::new(&file.0);
    let errors = load_from(Some(given), &[]).expect_err("refused");
    let mut keys: Vec<&str> = errors.0.iter().map(|p| p.key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "databse",
            "http.body_limit_bytes",
            "http.cors_origin",
            "log.level"
        ],
        "{errors}"
    );
    let typo = errors.0.iter().find(|p| p.key == "databse").unwrap();
    assert!(
        typo.message.contains("did you mean `database`?"),
        "{typo:?}"
    );
    for problem in &errors.0 {
        assert!(
            problem
                .message
                .contains(&format!("(from {})", given.display())),
            "{problem:?}"
        );
    }
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let env = vars(&[
        ("TOLLGATE_DATABASE__MAX_CONNECTIONS", "many"),
        ("TOLLGATE_HTTP__BODY_LIMIT_BYTES", "-4"),
        ("TOLLGATE_LOG__COLOUR", "yes"),
    ]);
    let errors = load_from(None, &env).expect_err("refused");
    let found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|p| (p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(found.len(), 3, "{errors}");
    for (key, var) in [
        (
            "database.max_connections",
            "TOLLGATE_DATABASE__MAX_CONNECTIONS",
        ),
        ("http.body_limit_bytes", "TOLLGATE_HTTP__BODY_LIMIT_BYTES"),
        ("log.colour", "TOLLGATE_LOG__COLOUR"),
    ] {
        let (_, message) = found
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("{key} not reported: {errors}"));
        assert!(
            message.contains(&format!("(from environment variable {var})")),
            "{key}: {message}"
        );
    }
}

#[test]
fn a_value_is_traced_to_the_variable_that_set_it() {
    assert_eq!(
        env::variable_for("database.url", &vars(&[("DATABASE_URL", "x")])),
        "DATABASE_URL"
    );
    assert_eq!(
        env::variable_for(
            "database.url",
            &vars(&[("DATABASE_URL", "x"), ("TOLLGATE_DATABASE__URL", "y")])
        ),
        "TOLLGATE_DATABASE__URL"
    );
}

#[test]
fn one_app_deployments_configure_their_stores_with_the_conventional_names() {
    let file = TempToml::new(
        "[[apps]]\nslug = \"shop\"\n[apps.stripe]\nsecret_key = \"sk_test_from_the_file\"\n",
    );
    let env = vars(&[
        ("STRIPE_SECRET_KEY", "sk_test_from_the_environment"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
        ("REVENUECAT_WEBHOOK_SECRET", "Bearer rc-value,with-a-comma"),
        ("REVENUECAT_API_KEY", "sk_revenuecat"),
        ("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_1"),
        (
            "WHOP_WEBHOOK_SECRET",
            "ws_first_0123456789,ws_second_0123456789",
        ),
    ]);
    let config = load_from(Some(&file.0), &env).expect("loads");
    let app = &config.apps[0];
    let text = |s: &SecretString| s.expose_secret().to_string();
    let stripe = app.stripe.as_ref().expect("stripe configured");
    assert_eq!(
        stripe.secret_key.as_ref().map(text).as_deref(),
        Some("sk_test_from_the_environment"),
        "the environment wins over the file"
    );
    assert_eq!(
        stripe.webhook_secrets.iter().map(text).collect::<Vec<_>>(),
        ["whsec_old", "whsec_new"]
    );
    assert_eq!(stripe.api_base, "https://api.stripe.com");
    let revenuecat = app.revenuecat.as_ref().expect("revenuecat configured");
    assert_eq!(
        revenuecat
            .webhook_authorization
            .iter()
            .map(text)
            .collect::<Vec<_>>(),
        ["Bearer rc-value,with-a-comma"]
    );
    assert_eq!(
        revenuecat.api_key.as_ref().map(text).as_deref(),
        Some("sk_revenuecat")
    );
    let paddle = app.paddle.as_ref().expect("paddle configured");
    assert_eq!(paddle.webhook_secrets.len(), 1);
    assert_eq!(paddle.tolerance_secs, 300);
    assert_eq!(app.whop.as_ref().expect("whop").webhook_secrets.len(), 2);
}

#[test]
fn the_conventional_store_names_are_refused_without_exactly_one_app() {
    let env = vars(&[
        ("STRIPE_SECRET_KEY", "sk_test_x"),
        ("WHOP_WEBHOOK_SECRET", "ws"),
    ]);
    assert_eq!(
        keys(load_from(None, &env)),
        ["STRIPE_SECRET_KEY", "WHOP_WEBHOOK_SECRET"]
    );
    let two = TempToml::new("[[apps]]\nslug = \"a\"\n[[apps]]\nslug = \"b\"\n");
    let errors = load_from(Some(&two.0), &env).expect_err("refused");
    assert!(
        errors.to_string().contains("2 apps are declared"),
        "{errors}"
    );
    // In production the usual length rule applies to them too.
    let one = TempToml::new("[[apps]]\nslug = \"shop\"\n");
    let mut env = production();
    env.push(("STRIPE_SECRET_KEY".into(), "sk_live_ab".into()));
    let refused = keys(load_from(Some(&one.0), &env));
    assert!(
        refused.contains(&"apps.0.stripe.secret_key".to_string()),
        "{refused:?}"
    );
}

#[test]
fn an_owner_url_beside_a_sqlite_database_is_refused_by_name() {
    // SQLite has no roles: an owner URL there is a configuration mistake.
    let env = vars(&[("DATABASE_OWNER_URL", "postgres://owner@127.0.0.1/db")]);
    assert_eq!(keys(load_from(None, &env)), ["database.owner_url"]);
}

#[test]
fn a_broken_rule_names_where_its_value_came_from() {
    let file = TempToml::new("[database]\nmax_connections = 0\n");
    let mut env = production();
    env.push(("TOLLGATE_HTTP__BODY_LIMIT_BYTES".into(), "0".into()));
    env.push(("STRIPE_SECRET_KEY".into(), "sk_live_ab".into()));
    let one = TempToml::new("[[apps]]\nslug = \"shop\"\n[database]\nmax_connections = 0\n");
    let errors = load_from(Some(&one.0), &env).expect_err("refused");
    let message = |key: &str| {
        errors
            .0
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{key} not reported: {errors}"))
            .message
            .clone()
    };
    assert!(
        message("http.body_limit_bytes")
            .ends_with("(from environment variable TOLLGATE_HTTP__BODY_LIMIT_BYTES)"),
        "{errors}"
    );
    assert!(
        message("apps.0.stripe.secret_key")
            .ends_with("(from environment variable STRIPE_SECRET_KEY)"),
        "{errors}"
    );
    assert!(
        message("database.max_connections").ends_with(&format!("(from {})", one.0.display())),
        "{errors}"
    );
    // A rule about a missing value has no origin to name.
    let missing = load_from(
        Some(&file.0),
        &vars(&[("TOLLGATE_ENVIRONMENT", "production")]),
    )
    .expect_err("refused");
    let token = missing.0.iter().find(|p| p.key == "metrics_token").unwrap();
    assert!(!token.message.contains("(from"), "{token:?}");
}

#[test]
fn the_delivery_target_guard_is_on_in_production_unless_turned_off() {
    let dev = load_from(None, &[]).unwrap();
    assert!(!dev.events.guard_targets(dev.environment));
    let prod = load_from(None, &production()).unwrap();
    assert!(prod.events.guard_targets(prod.environment));
    let mut env = production();
    env.push((
        "TOLLGATE_EVENTS__BLOCK_PRIVATE_TARGETS".into(),
        "false".into(),
    ));
    let off = load_from(None, &env).unwrap();
    assert!(!off.events.guard_targets(off.environment));
}

#[test]
fn email_and_event_settings_name_every_problem_at_once() {
    let file = TempToml::new(
        r#"
[events]
allowed_targets = ["10.0.0.0/33"]
attempt_timeout_ms = 5
[email]
smtp_url = "http://mail.example.com"
from = "not an address"
[[apps]]
slug = "acme"
credits_low = "0"
[apps.email.templates.broken]
subject = "Hi {{ name"
text = "ok"
[[apps.schedules]]
name = "n"
cron = "* * * * *"
kind = "k"
queue = "maintenance"
"#,
    );
    assert_eq!(
        keys(load_from(Some(&file.0), &[])),
        [
            "apps.0.credits_low",
            "apps.0.email.templates.broken.subject",
            "apps.0.schedules.0.queue",
            "email.from",
            "email.smtp_url",
            "events.allowed_targets.0",
            "events.attempt_timeout_ms",
        ]
    );
    let mut env = production();
    env.push(("SMTP_URL".into(), "smtp://relay:25?tls=none".into()));
    env.push(("TOLLGATE_EMAIL__FROM".into(), "ops@example.com".into()));
    assert_eq!(keys(load_from(None, &env)), ["email.smtp_url"]);
}

#[test]
fn recovery_incentives_are_bounded_and_free_days_need_a_whop_api_key() {
    let file = TempToml::new(
        r#"
[[apps]]
slug = "shop"
[apps.whop]
webhook_secrets = ["whsec_dGVzdC13aG9wLXNpZ25pbmcta2V5LTEyMw=="]
[apps.recovery]
incentive_days = 2000
incentive_credits = "-1"
"#,
    );
    assert_eq!(
        keys(load_from(Some(&file.0), &[])),
        [
            "apps.0.recovery.incentive_credits",
            "apps.0.recovery.incentive_days",
            "apps.0.whop.api_key",
        ]
    );
}

#[test]
fn a_nudge_email_template_must_exist_and_use_only_the_nudges_variables() {
    let file = TempToml::new(
        r#"
[[apps]]
slug = "shop"
[apps.email.templates.nudge]
subject = "Hi {{ name }}"
text = "{{ link }}"
[apps.recovery]
email_template = "nudge"

[[apps]]
slug = "other"
[apps.recovery]
email_template = "missing"
"#,
    );
    let errors = load_from(Some(&file.0), &[]).unwrap_err().to_string();
    assert!(
        errors.contains("apps.0.recovery.email_template"),
        "{errors}"
    );
    assert!(
        errors.contains("(subject)"),
        "the part that fails is named: {errors}"
    );
    assert!(
        errors.contains("apps.1.recovery.email_template"),
        "{errors}"
    );
    assert!(errors.contains("\"missing\" is not a template"), "{errors}");
}

#[test]
fn a_whop_company_belongs_to_one_app_and_only_whop_names_one() {
    let file = TempToml::new(
        r#"
[[apps]]
slug = "shop-a"
[apps.whop]
webhook_secrets = ["whsec_dGVzdC13aG9wLXNpZ25pbmcta2V5LTEyMw=="]
company_id = "biz_same"

[[apps]]
slug = "shop-b"
[apps.whop]
webhook_secrets = ["whsec_dGVzdC13aG9wLXNpZ25pbmcta2V5LTEyMw=="]
company_id = "biz_same"
[apps.paddle]
webhook_secrets = ["pdl_ntfset_01hv_test_secret_key"]
company_id = "biz_x"
"#,
    );
    assert_eq!(
        keys(load_from(Some(&file.0), &[])),
        ["apps.1.paddle.company_id", "apps.1.whop.company_id"]
    );
}
