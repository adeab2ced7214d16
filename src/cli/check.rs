//! `tollgate check`: the deploy checklist. Validates the configuration, then checks every
//! dependency live, one line each; exits 0 only if every line passes.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;
use crate::ops::checks;
use crate::store::Db;

pub async fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(problems) => {
            println!("[FAIL] configuration: {problems}");
            println!("result: the configuration must be fixed before anything else can be checked");
            return ExitCode::from(2);
        }
    };
    println!(
        "tollgate check ({} environment)",
        config.environment.as_str()
    );
    println!("[pass] configuration is valid");
    for app in &config.apps {
        let stores = crate::config::billing::describe_stores(app);
        if !stores.is_empty() {
            println!(
                "[info] app {}: sells through {}",
                app.slug,
                stores.join(", ")
            );
        }
    }
    let mut failed = 0;
    let mut total = 1;
    let mut line = |ok: bool, text: String| {
        total += 1;
        if !ok {
            failed += 1;
        }
        println!("[{}] {text}", if ok { "pass" } else { "FAIL" });
    };
    let url = config.database_url();
    // A checklist only looks: connecting would create the SQLite file it checks.
    let missing_file = Db::sqlite_file(&url).filter(|file| !file.exists());
    let (db, found) = match missing_file {
        Some(file) => {
            line(
                false,
                format!(
                    "database: {} does not exist yet; `tollgate migrate` (or `tollgate serve`) creates it",
                    file.display()
                ),
            );
            let redis = match config.redis.url.as_deref() {
                Some(url) => vec![checks::redis(url).await],
                None => Vec::new(),
            };
            (None, redis)
        }
        None => match Db::connect(&url, &config.database).await {
            Err(e) => {
                line(false, format!("database reachable: {e:#}"));
                (None, Vec::new())
            }
            Ok(db) => {
                let found = checks::all(&db, config.redis.url.as_deref()).await;
                (Some(db), found)
            }
        },
    };
    for c in found {
        let latency = format!("{:.1} ms", c.latency.as_secs_f64() * 1000.0);
        let output = c.output.map(|o| format!(": {o}")).unwrap_or_default();
        let label = match (c.name, &db) {
            ("database", Some(db)) => format!("database reachable ({})", db.backend().as_str()),
            ("migrations", _) => "migrations applied".to_string(),
            (other, _) => format!("{other} reachable"),
        };
        line(c.ok, format!("{label} [{latency}]{output}"));
    }
    if let Some(db) = db {
        match checks::backup(&db, &config).await {
            Some(c) => {
                let output = c.output.unwrap_or_default();
                line(
                    c.ok,
                    format!(
                        "backups: scheduled ({}); {output}",
                        config
                            .backup
                            .cron
                            .as_ref()
                            .map(|c| c.as_str())
                            .unwrap_or_default()
                    ),
                );
            }
            None if config.is_production() => println!(
                "[warn] backups: none scheduled (backup.cron); take them with `tollgate backup` or your platform's snapshots"
            ),
            None => println!("[skip] backups: none scheduled (backup.cron)"),
        }
        match checks::database_superuser(&db).await {
            Some(true) if config.is_production() => line(
                false,
                "database role: a superuser, which bypasses row-level security; connect as an ordinary role (docs/auth.md)".into(),
            ),
            Some(true) => println!(
                "[warn] database role: a superuser, which bypasses row-level security; use an ordinary role in production"
            ),
            Some(false) => line(true, "database role: not a superuser (row-level security applies)".into()),
            None => {}
        }
        db.close().await;
    }
    if config.redis.url.is_none() {
        println!("[skip] redis: not configured (optional with one replica)");
    }
    match checks::email(&config).await {
        Some(c) => {
            let latency = format!("{:.1} ms", c.latency.as_secs_f64() * 1000.0);
            let output = c.output.map(|o| format!(": {o}")).unwrap_or_default();
            line(
                c.ok,
                format!("email: SMTP connects and authenticates [{latency}]{output}"),
            );
        }
        None => println!("[skip] email: SMTP_URL not set (no email is sent)"),
    }
    if failed == 0 {
        println!("result: all {total} checks passed");
        ExitCode::SUCCESS
    } else {
        println!("result: {failed} of {total} checks failed");
        ExitCode::FAILURE
    }
}
