//! The scheduled backup (`[backup]`, docs/backups.md): one verified backup per cron slot into
//! `backup.dir`, then the oldest beyond `backup.keep` are deleted. A retried run takes a new
//! backup under a new name; two of one slot are harmless, and pruning keeps the count bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobContext};
use crate::ops::backup;
use crate::store::backup::Trigger;
use crate::store::{Backend, now_ms};

/// Takes one scheduled backup. Runs on `backup.cron`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {}

impl Backup {
    pub const KIND_NAME: &'static str = "maintenance.backup";
}

/// File names of scheduled backups: `tollgate-<UTC time>.<ext>`, so names sort by age.
const PREFIX: &str = "tollgate-";

impl Job for Backup {
    const KIND: &'static str = Backup::KIND_NAME;
    const QUEUE: &'static str = crate::jobs::MAINTENANCE_QUEUE;
    const MAX_ATTEMPTS: i64 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);

    async fn run(self, ctx: JobContext) -> anyhow::Result<()> {
        let dir = ctx.config.backup.dir(&ctx.config.data_dir);
        let file = dir.join(file_name(ctx.db.backend(), now_ms()));
        let taken = backup::take_and_record(&ctx.config, &ctx.db, &file, Trigger::Schedule).await?;
        let removed = prune(&dir, ctx.config.backup.keep as usize)?;
        tracing::info!(
            path = %file.display(),
            bytes = taken.bytes,
            rows = taken.rows(),
            removed = removed.len(),
            "took a scheduled backup"
        );
        Ok(())
    }
}

fn file_name(backend: Backend, at_ms: i64) -> String {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    let ext = match backend {
        Backend::Sqlite => "db",
        Backend::Postgres => "dump",
    };
    format!("{PREFIX}{}.{ext}", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Deletes scheduled backups beyond the newest `keep` (with their manifests), and files left
/// half-written by a crash. Only backups with a manifest count: one without never verified.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut backups = Vec::new();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        if name.ends_with(".partial") {
            std::fs::remove_file(&path)?;
            removed.push(path);
        } else if !name.ends_with(".json") && backup::manifest_path(&path).exists() {
            backups.push(path);
        }
    }
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for old in backups.into_iter().take(excess) {
        std::fs::remove_file(&old)?;
        std::fs::remove_file(backup::manifest_path(&old))?;
        removed.push(old);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_say_the_backend() {
        let a = file_name(Backend::Sqlite, 1_795_343_415_000);
        let b = file_name(Backend::Sqlite, 1_795_343_415_001);
        assert_eq!(a, "tollgate-20261122T103015.000Z.db");
        assert!(a < b);
        assert!(file_name(Backend::Postgres, 0).ends_with(".dump"));
    }

    #[test]
    fn pruning_keeps_the_newest_verified_and_removes_leftovers() {
        let dir = std::env::temp_dir().join(format!("tg-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4 {
            let f = dir.join(file_name(Backend::Sqlite, 1_000 * i));
            std::fs::write(&f, b"x").unwrap();
            std::fs::write(backup::manifest_path(&f), b"{}").unwrap();
        }
        let unverified = dir.join(file_name(Backend::Sqlite, 9_000));
        std::fs::write(&unverified, b"x").unwrap();
        let partial = dir.join(format!("{}.partial", file_name(Backend::Sqlite, 10_000)));
        std::fs::write(&partial, b"x").unwrap();
        let other = dir.join("notes.txt");
        std::fs::write(&other, b"x").unwrap();

        let removed = prune(&dir, 2).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt".to_string(),
                file_name(Backend::Sqlite, 2_000),
                format!("{}.json", file_name(Backend::Sqlite, 2_000)),
                file_name(Backend::Sqlite, 3_000),
                format!("{}.json", file_name(Backend::Sqlite, 3_000)),
                file_name(Backend::Sqlite, 9_000),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
