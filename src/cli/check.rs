//! `tollgate check`: the deploy checklist. Validates the configuration, then checks every
//! dependency live and every setting production needs, one line each (`pass`, `warn`, `FAIL`,
//! `skip`, `info`), or one JSON document with `--json`. Exits 0 unless a line fails; 2 when the
//! configuration itself is invalid. `--production` applies production's rules whatever the
//! configured environment, to check a config before it is deployed.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, Environment};
use crate::ops::checklist::{self, Item, Status};
use crate::ops::checks;
use crate::store::Db;

/// How `check` was asked to run.
pub struct Options {
    pub production: bool,
    pub json: bool,
}

pub async fn run(path: Option<PathBuf>, options: Options) -> ExitCode {
    let (config, mut items) = match config::load(path.as_deref()) {
        Ok(c) => (Some(c), Vec::new()),
        Err(problems) => (None, vec![configuration_failed(&problems.0)]),
    };
    let Some(mut config) = config else {
        return finish(&items, "unknown", &options, true);
    };
    if options.production && !config.is_production() {
        config.environment = Environment::Production;
        let problems = config::validate(&config);
        if !problems.is_empty() {
            items.push(configuration_failed(&problems));
            return finish(&items, "production", &options, true);
        }
    }
    let environment = config.environment.as_str();
    items.push(Item::new(
        "configuration",
        Status::Pass,
        format!("valid for {environment}"),
    ));
    items.extend(collect(&config).await);
    finish(&items, environment, &options, false)
}

fn configuration_failed(problems: &[config::Problem]) -> Item {
    let listed: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    Item::new(
        "configuration",
        Status::Fail,
        format!(
            "{} problem(s), to fix before anything else can be checked: {}",
            problems.len(),
            listed.join("; ")
        ),
    )
}

/// Every item after the configuration, in checklist order.
async fn collect(config: &Config) -> Vec<Item> {
    let production = config.is_production();
    let mut items = Vec::new();
    for app in &config.apps {
        let stores = crate::config::billing::describe_stores(app);
        if !stores.is_empty() {
            items.push(Item::new(
                format!("stores.{}", app.slug),
                Status::Info,
                format!("app {} sells through {}", app.slug, stores.join(", ")),
            ));
        }
    }
    let url = config.database_url();
    // A checklist only looks: connecting would create the SQLite file it checks.
    let missing_file = Db::sqlite_file(&url).filter(|file| !file.exists());
    let db = match missing_file {
        Some(file) => {
            items.push(Item::new(
                "database",
                Status::Fail,
                format!(
                    "{} does not exist yet; `tollgate migrate` (or `tollgate serve`) creates it",
                    file.display()
                ),
            ));
            if let Some(url) = config.redis.url.as_deref() {
                items.push(live(checks::redis(url).await, None));
            }
            None
        }
        None => match Db::connect(&url, &config.database).await {
            Err(e) => {
                items.push(Item::new(
                    "database",
                    Status::Fail,
                    format!("not reachable: {e:#}"),
                ));
                None
            }
            Ok(db) => {
                for c in checks::all(&db, config.redis.url.as_deref()).await {
                    items.push(live(c, Some(&db)));
                }
                Some(db)
            }
        },
    };
    if config.redis.url.is_none() {
        items.push(Item::new(
            "redis",
            Status::Skip,
            "not configured (optional with one replica)",
        ));
    }
    if let Some(db) = &db {
        items.push(checklist::pool(config, db.backend(), production));
        items.extend(superuser(db, production).await);
        items.push(backup(db, config).await);
        items.push(checklist::switches(db, production).await);
    }
    items.push(match checks::email(config).await {
        Some(c) => live(c, None),
        None => Item::new("email", Status::Skip, "SMTP_URL not set (no email is sent)"),
    });
    items.push(checklist::error_reporting(config, production));
    items.push(checklist::rate_limits(config, production));
    items.extend(checklist::stripe_endpoints(config).await);
    items.push(Item::new(
        "tls_certificate",
        Status::Skip,
        "the public URL's certificate is watched by the TollgateCertificateExpiresSoon alert (deploy/prometheus)",
    ));
    if let Some(db) = db {
        db.close().await;
    }
    items
}

/// A live dependency check as a line, with its latency.
fn live(c: checks::Check, db: Option<&Db>) -> Item {
    let latency = format!("{:.1} ms", c.latency.as_secs_f64() * 1000.0);
    let output = c.output.map(|o| format!(": {o}")).unwrap_or_default();
    let label = match (c.name, db, c.ok) {
        ("database", Some(db), true) => format!("reachable ({})", db.backend().as_str()),
        ("migrations", _, true) => "applied".to_string(),
        ("migrations", _, false) => "not applied".to_string(),
        ("email", _, true) => "SMTP connects and authenticates".to_string(),
        ("email", _, false) => "SMTP fails".to_string(),
        (_, _, true) => "reachable".to_string(),
        (_, _, false) => "not reachable".to_string(),
    };
    let status = if c.ok { Status::Pass } else { Status::Fail };
    Item::new(c.name, status, format!("{label} [{latency}]{output}"))
}

async fn superuser(db: &Db, production: bool) -> Option<Item> {
    let status = match checks::database_superuser(db).await? {
        true if production => Status::Fail,
        true => Status::Warn,
        false => Status::Pass,
    };
    let detail = if status == Status::Pass {
        "not a superuser (row-level security applies)"
    } else {
        "a superuser, which bypasses row-level security; connect as an ordinary role (docs/auth.md)"
    };
    Some(Item::new("database_role", status, detail))
}

async fn backup(db: &Db, config: &Config) -> Item {
    match checks::backup(db, config).await {
        Some(c) => Item::new(
            "backups",
            if c.ok { Status::Pass } else { Status::Fail },
            format!(
                "scheduled ({}); {}",
                config
                    .backup
                    .cron
                    .as_ref()
                    .map(|c| c.as_str())
                    .unwrap_or_default(),
                c.output.unwrap_or_default()
            ),
        ),
        None if config.is_production() => Item::new(
            "backups",
            Status::Warn,
            "none scheduled (backup.cron); take them with `tollgate backup` or your platform's snapshots",
        ),
        None => Item::new("backups", Status::Skip, "none scheduled (backup.cron)"),
    }
}

/// Prints the checklist and picks the exit code: 2 for an invalid configuration, 1 when a line
/// failed, 0 otherwise.
fn finish(items: &[Item], environment: &str, options: &Options, invalid: bool) -> ExitCode {
    let failed = items.iter().filter(|i| i.status == Status::Fail).count();
    let warned = items.iter().filter(|i| i.status == Status::Warn).count();
    let checked = items
        .iter()
        .filter(|i| matches!(i.status, Status::Pass | Status::Warn | Status::Fail))
        .count();
    if options.json {
        let doc = serde_json::json!({
            "environment": environment,
            "ok": failed == 0,
            "checked": checked,
            "failed": failed,
            "warned": warned,
            "items": items,
        });
        println!("{doc:#}");
    } else {
        println!("tollgate check ({environment} environment)");
        for i in items {
            println!("[{}] {}: {}", i.status.label(), i.name, i.detail);
        }
        if invalid {
            println!("result: the configuration must be fixed before anything else can be checked");
        } else if failed == 0 {
            println!("result: all {checked} checks passed ({warned} warnings)");
        } else {
            println!("result: {failed} of {checked} checks failed");
        }
    }
    match (invalid, failed) {
        (true, _) => ExitCode::from(2),
        (false, 0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
