//! The app's own jobs, run by tollgate's queue without the app writing Rust (docs/jobs.md): the
//! app enqueues `{kind, args}` over HTTP (or declares a schedule); each run is a signed
//! Standard Webhooks POST to the app's jobs endpoint; a 2xx completes it, anything else is
//! retried with the queue's backoff, then discarded. Stored as kind `app.<slug>.<kind>`, so
//! stats, unique keys, retry, discard and cancel tell the app's kinds apart.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, FieldError, Result};
use crate::jobs::kind::{APP_KIND_PREFIX, defaults_of};
use crate::jobs::{Client, EnqueueOptions, is_valid_queue_name};
use crate::store::now_ms;

/// The queue an app's jobs run on unless they name another.
pub const QUEUE: &str = "app";
/// Queues that belong to tollgate itself: an app's jobs never run there.
const RESERVED_QUEUES: [&str; 2] = ["maintenance", "events"];
/// The most JSON an app job's arguments may hold.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

/// The stored arguments of an app's job: whose, which of its kinds, with what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppJob {
    /// The app's slug.
    pub app: String,
    pub kind: String,
    pub args: serde_json::Value,
}

/// The kind an app's job is stored under.
pub fn stored_kind(slug: &str, kind: &str) -> String {
    format!("{APP_KIND_PREFIX}{slug}.{kind}")
}

/// The app's own kind of a stored job of app `slug`, if it is one.
pub fn own_kind<'a>(slug: &str, stored: &'a str) -> Option<&'a str> {
    stored
        .strip_prefix(APP_KIND_PREFIX)?
        .strip_prefix(slug)?
        .strip_prefix('.')
}

/// A job the app asks for.
#[derive(Debug, Clone, Default)]
pub struct NewAppJob {
    pub kind: String,
    pub args: Option<serde_json::Value>,
    pub run_at: Option<i64>,
    pub queue: Option<String>,
    pub priority: Option<i64>,
    pub max_attempts: Option<i64>,
    pub unique_key: Option<String>,
}

/// The job enqueued (or the one found by its unique key or Idempotency-Key).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enqueued {
    pub id: i64,
    /// False when an existing job was returned: one holding the same `unique_key` unfinished,
    /// or the one this `Idempotency-Key` enqueued.
    pub inserted: bool,
    pub queue: String,
}

/// Why an app's job may not use `queue`, if it may not: tollgate's own, or not declared.
pub fn queue_problem(queue: &str, declared: &[&str]) -> Option<String> {
    if RESERVED_QUEUES.contains(&queue) {
        Some(format!("{queue:?} is tollgate's own queue"))
    } else if !declared.contains(&queue) {
        Some(format!(
            "{queue:?} is not declared under [jobs.queues]; no worker would run it"
        ))
    } else {
        None
    }
}

/// The problems of a schedule of an app's kind, by field (config and admin API alike; the
/// cron expression is parsed by its caller).
pub fn schedule_problems(
    name: &str,
    kind: &str,
    args: &serde_json::Value,
    queue: Option<&str>,
    declared: &[&str],
) -> Vec<(&'static str, String)> {
    let names = "1-64 characters of a-z, 0-9, '_', '-' and '.'";
    let mut p = Vec::new();
    if !is_valid_queue_name(name) {
        p.push(("name", names.to_string()));
    }
    if !is_valid_queue_name(kind) {
        p.push(("kind", names.to_string()));
    }
    if !args.is_object() {
        p.push(("args", "expected an object of arguments".to_string()));
    }
    if let Some(m) = queue_problem(queue.unwrap_or(QUEUE), declared) {
        p.push(("queue", m));
    }
    p
}

/// Checks the request field by field (every problem at once), then enqueues.
pub async fn enqueue(
    config: &Config,
    jobs: &Client,
    slug: &str,
    job: NewAppJob,
    effect_key: Option<&str>,
) -> Result<Enqueued> {
    let mut fields = Vec::new();
    if !is_valid_queue_name(&job.kind) {
        fields.push(FieldError::new(
            "kind",
            "1-64 characters of a-z, 0-9, '_', '-' and '.'",
        ));
    }
    let args = job.args.unwrap_or_else(|| serde_json::json!({}));
    if !args.is_object() {
        fields.push(FieldError::new("args", "expected a JSON object"));
    }
    if args.to_string().len() > MAX_ARGS_BYTES {
        fields.push(FieldError::new("args", "at most 64 KiB of JSON"));
    }
    let now = now_ms();
    if let Some(at) = job.run_at
        && at > now + 366 * 86_400_000
    {
        fields.push(FieldError::new("run_at", "at most a year from now"));
    }
    let queue = job.queue.unwrap_or_else(|| QUEUE.to_string());
    if RESERVED_QUEUES.contains(&queue.as_str()) {
        fields.push(FieldError::new(
            "queue",
            format!("{queue:?} is tollgate's own queue"),
        ));
    } else if !config.jobs.queues.contains_key(&queue) {
        fields.push(FieldError::new(
            "queue",
            format!("{queue:?} is not declared under [jobs.queues]; no worker would run it"),
        ));
    }
    if job.priority.is_some_and(|p| !(0..=10).contains(&p)) {
        fields.push(FieldError::new("priority", "0 (first) to 10"));
    }
    if job.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
        fields.push(FieldError::new("max_attempts", "1 to 100"));
    }
    if job
        .unique_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        fields.push(FieldError::new("unique_key", "1 to 200 characters"));
    }
    if !fields.is_empty() {
        return Err(Error::Validation(fields));
    }
    let stored = AppJob {
        app: slug.to_string(),
        kind: job.kind.clone(),
        args,
    };
    let args = serde_json::to_string(&stored).map_err(|e| Error::Internal(e.into()))?;
    let options = EnqueueOptions {
        queue: Some(queue),
        priority: job.priority,
        run_at: job.run_at.map(|t| t.max(now)),
        max_attempts: job.max_attempts,
        unique_key: job.unique_key,
        timeout: None,
        effect_key: effect_key.map(str::to_string),
    };
    let defaults = defaults_of::<AppJob>();
    let (e, queue) = jobs
        .enqueue_named(stored_kind(slug, &job.kind), &args, defaults, options)
        .await?;
    Ok(Enqueued {
        id: e.id,
        inserted: e.inserted,
        queue,
    })
}
