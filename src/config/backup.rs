//! `[backup]`: scheduled backups, run by the worker role (docs/backups.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::Problem;
use crate::jobs::cron::CronExpr;

/// Where scheduled backups go, how often, how many are kept, and when the last one is too old.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// When to take a backup (UTC cron); empty: no scheduled backups.
    #[serde(default, deserialize_with = "optional_cron")]
    pub cron: Option<CronExpr>,
    /// Directory of scheduled backups; empty: `backups/` in the data directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Scheduled backups kept; older ones are deleted after a new one is verified.
    pub keep: u32,
    /// `/ready` and `tollgate check` warn when the newest verified backup is older than this.
    pub max_age_hours: u32,
}

impl BackupConfig {
    /// The directory of scheduled backups.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => data_dir.join("backups"),
        }
    }
}

/// An empty string switches the schedule off, so an env override can (`TOLLGATE_BACKUP__CRON=`).
fn optional_cron<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CronExpr>, D::Error> {
    let text = Option::<String>::deserialize(d)?.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(None);
    }
    CronExpr::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub fn validate(b: &BackupConfig, p: &mut Vec<Problem>) {
    if !(1..=1000).contains(&b.keep) {
        p.push(Problem::new(
            "backup.keep",
            format!("expected 1 to 1000 backups, got {}", b.keep),
        ));
    }
    if !(1..=24 * 366).contains(&b.max_age_hours) {
        p.push(Problem::new(
            "backup.max_age_hours",
            format!("expected 1 to 8784 hours, got {}", b.max_age_hours),
        ));
    }
}
