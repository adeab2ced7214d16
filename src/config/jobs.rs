//! The `[jobs]` section: polling, leases, retention, queues and cron schedules.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::Problem;
use crate::jobs::cron::CronExpr;
use crate::jobs::{DEFAULT_QUEUE, is_valid_queue_name, kinds};

/// Background jobs: see docs/jobs.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// How often an idle queue looks for work when nothing woke it.
    pub poll_interval_ms: u64,
    /// A running job's lease; renewed every third of it while the handler runs.
    pub lease_ms: u64,
    /// How often expired leases (dead workers) are looked for.
    pub rescue_interval_ms: u64,
    /// How often kill switches and queue pauses are re-read from the database.
    pub switch_refresh_ms: u64,
    /// On shutdown, running jobs get this long to finish before they are released.
    pub shutdown_timeout_ms: u64,
    /// How often the scheduler looks for due cron slots.
    pub scheduler_tick_ms: u64,
    /// Completed and cancelled jobs are deleted after this many hours.
    pub retain_completed_hours: u64,
    /// Discarded jobs (the dead letters) are deleted after this many hours.
    pub retain_discarded_hours: u64,
    /// When the built-in pruning job runs.
    pub prune_cron: CronExpr,
    /// When open recovery cases whose window passed are marked lost (docs/recovery.md).
    pub recovery_sweep_cron: CronExpr,
    /// Queue name → settings. `default` always exists.
    pub queues: BTreeMap<String, QueueConfig>,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
}

/// One queue's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs of this queue run at most this many at a time in one process.
    pub concurrency: usize,
}

/// A cron schedule: every slot of `cron` (UTC) enqueues one `kind` job with `args`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    pub cron: CronExpr,
    pub kind: String,
    #[serde(default = "empty_object")]
    pub args: serde_json::Value,
    /// Defaults to the kind's own queue.
    pub queue: Option<String>,
    #[serde(default)]
    pub catch_up: CatchUp,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::None => "none",
            CatchUp::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<CatchUp> {
        [CatchUp::Once, CatchUp::None, CatchUp::All]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// What a scheduler does with the slots it missed while no scheduler ran.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once for all the missed slots (the default).
    #[default]
    Once,
    /// Skip missed slots; wait for the next one.
    None,
    /// Run every missed slot (at most 100).
    All,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl JobsConfig {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
    pub fn rescue_interval(&self) -> Duration {
        Duration::from_millis(self.rescue_interval_ms)
    }
    pub fn switch_refresh(&self) -> Duration {
        Duration::from_millis(self.switch_refresh_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    pub fn scheduler_tick(&self) -> Duration {
        Duration::from_millis(self.scheduler_tick_ms)
    }
}

/// The `[jobs]` rules; every problem is reported.
pub fn validate(c: &JobsConfig, p: &mut Vec<Problem>) {
    let ranges: [(&str, u64, u64, u64); 6] = [
        ("jobs.poll_interval_ms", c.poll_interval_ms, 10, 60_000),
        ("jobs.lease_ms", c.lease_ms, 1_000, 3_600_000),
        (
            "jobs.rescue_interval_ms",
            c.rescue_interval_ms,
            100,
            3_600_000,
        ),
        // "Within a few seconds" is the promise made for kill switches.
        ("jobs.switch_refresh_ms", c.switch_refresh_ms, 100, 10_000),
        (
            "jobs.shutdown_timeout_ms",
            c.shutdown_timeout_ms,
            0,
            3_600_000,
        ),
        ("jobs.scheduler_tick_ms", c.scheduler_tick_ms, 100, 60_000),
    ];
    for (key, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            p.push(Problem::new(
                key,
                format!("expected {min} to {max}, got {value}"),
            ));
        }
    }
    for (key, hours) in [
        ("jobs.retain_completed_hours", c.retain_completed_hours),
        ("jobs.retain_discarded_hours", c.retain_discarded_hours),
    ] {
        if hours == 0 {
            p.push(Problem::new(key, "must be at least 1 hour"));
        }
    }
    for required in [DEFAULT_QUEUE, crate::jobs::MAINTENANCE_QUEUE] {
        if !c.queues.contains_key(required) {
            p.push(Problem::new(
                "jobs.queues",
                format!("the queue {required:?} must stay declared"),
            ));
        }
    }
    for (name, q) in &c.queues {
        if !is_valid_queue_name(name) {
            p.push(Problem::new(
                format!("jobs.queues.{name}"),
                "queue names are 1-64 characters of a-z, 0-9, '_', '-' and '.'",
            ));
        }
        if !(1..=1000).contains(&q.concurrency) {
            p.push(Problem::new(
                format!("jobs.queues.{name}.concurrency"),
                format!("expected 1 to 1000, got {}", q.concurrency),
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, s) in c.schedules.iter().enumerate() {
        let key = format!("jobs.schedules.{i}");
        if !is_valid_queue_name(&s.name) {
            p.push(Problem::new(
                format!("{key}.name"),
                "schedule names are 1-64 characters of a-z, 0-9, '_', '-' and '.'",
            ));
        } else if !names.insert(s.name.as_str()) {
            p.push(Problem::new(
                format!("{key}.name"),
                format!("{:?} is declared twice", s.name),
            ));
        }
        if s.kind.starts_with(crate::jobs::kind::APP_KIND_PREFIX) {
            p.push(Problem::new(
                format!("{key}.kind"),
                "an app's own kinds are scheduled under [[apps.schedules]]",
            ));
            continue;
        }
        match kinds::builtin().queue_of(&s.kind) {
            None => p.push(Problem::new(
                format!("{key}.kind"),
                format!(
                    "unknown job kind {:?}; known kinds: {}",
                    s.kind,
                    kinds::builtin().kind_names().join(", ")
                ),
            )),
            Some(kind_queue) => {
                let queue = s.queue.as_deref().unwrap_or(kind_queue);
                if !c.queues.contains_key(queue) {
                    p.push(Problem::new(
                        format!("{key}.queue"),
                        format!("queue {queue:?} is not declared under [jobs.queues]"),
                    ));
                }
            }
        }
        if !s.args.is_object() {
            p.push(Problem::new(
                format!("{key}.args"),
                "expected a table of arguments, e.g. args = {}",
            ));
        }
    }
}
