//! `tollgate migrate [--status]`.

use crate::config::Config;
use crate::store::{Db, migrate};

pub async fn run(config: Config, status_only: bool) -> anyhow::Result<()> {
    let url = config.database_url();
    // Asking for the status only looks: connecting would create a missing SQLite file.
    if let Some(file) = Db::sqlite_file(&url).filter(|f| status_only && !f.exists()) {
        println!("backend: sqlite");
        println!(
            "{} does not exist yet; `tollgate migrate` (or `tollgate serve`) creates it",
            file.display()
        );
        for (version, description) in migrate::embedded_list(crate::store::Backend::Sqlite) {
            println!("pending: {version} {description}");
        }
        return Ok(());
    }
    let db = Db::connect(&url, &config.database).await?;
    let status = migrate::status(&db).await?;
    if status_only {
        println!("backend: {}", db.backend().as_str());
        println!("applied: {:?}", status.applied);
        for (version, description) in &status.pending {
            println!("pending: {version} {description}");
        }
        if let Some(v) = status.dirty {
            println!("failed halfway: {v}");
        }
        if !status.unknown.is_empty() {
            println!("unknown to this binary: {:?}", status.unknown);
        }
        return Ok(());
    }
    let applied = migrate::run(&db).await?;
    if applied.is_empty() {
        println!(
            "the database is up to date ({} migrations applied)",
            status.applied.len()
        );
    } else {
        println!("applied migrations {applied:?}");
    }
    db.close().await;
    Ok(())
}
