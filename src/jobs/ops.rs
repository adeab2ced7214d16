//! Queue operations shared by `tollgate jobs …` and the admin API: what each action does to
//! one job, and waiting for a queue to drain.

use std::time::{Duration, Instant};

use super::switches;
use crate::store::jobs::{admin, state};
use crate::store::{Db, now_ms};

/// An operator action on jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run again now (from discarded, cancelled, completed or retryable).
    Retry,
    /// Stop and never run (from available, retryable or running).
    Cancel,
    /// Move to the dead letters (from available, retryable or running).
    Discard,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Cancel => "cancel",
            Action::Discard => "discard",
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The job is not in a state the action applies to.
    Skipped(String),
    NotFound,
}

/// Applies `action` to one job.
pub async fn apply(db: &Db, action: Action, id: i64) -> Result<Applied, sqlx::Error> {
    let now = now_ms();
    let result = match action {
        Action::Retry => admin::retry(db, id, now).await,
        Action::Cancel => {
            admin::finish(db, id, state::CANCELLED, "cancelled by an operator", now).await
        }
        Action::Discard => {
            admin::finish(db, id, state::DISCARDED, "discarded by an operator", now).await
        }
    };
    match result {
        Ok(true) => Ok(Applied::Done),
        Ok(false) => Ok(match admin::get(db, id).await? {
            None => Applied::NotFound,
            Some(job) => Applied::Skipped(format!("it is {}", job.state)),
        }),
        // Retrying a job whose unique key a newer unfinished job holds.
        Err(e) if crate::store::is_unique_violation(&e) => Ok(Applied::Skipped(
            "another unfinished job holds its unique key".into(),
        )),
        Err(e) => Err(e),
    }
}

/// Waits until `queue` has no due or running job; false if `timeout` passed first.
pub async fn drain(
    db: &Db,
    queue: &str,
    timeout: Duration,
    mut progress: impl FnMut(i64),
) -> Result<bool, sqlx::Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = admin::pending_in_queue(db, queue, now_ms()).await?;
        progress(left);
        if left == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One queue's numbers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queue: String,
    pub paused: bool,
    /// Jobs by state (every state listed, zeros included).
    #[schema(value_type = Object)]
    pub counts: std::collections::BTreeMap<&'static str, i64>,
    /// How long the oldest due job has waited, if any.
    pub oldest_due_age_ms: Option<i64>,
}

/// Every queue (declared or holding jobs) and the kill switches.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub queues: Vec<QueueStats>,
    /// Switch name → on.
    #[schema(value_type = Object)]
    pub switches: std::collections::BTreeMap<&'static str, bool>,
}

pub async fn stats(db: &Db) -> Result<Stats, sqlx::Error> {
    let now = now_ms();
    let counts = admin::counts(db, now).await?;
    let declared = admin::queues(db).await?;
    let mut names: Vec<String> = declared.iter().map(|q| q.name.clone()).collect();
    for c in &counts {
        if !names.contains(&c.queue) {
            names.push(c.queue.clone());
        }
    }
    let queues = names
        .into_iter()
        .map(|name| {
            let mut by_state = std::collections::BTreeMap::new();
            let mut oldest: Option<i64> = None;
            for s in state::ALL {
                let c = counts.iter().find(|c| c.queue == name && c.state == s);
                by_state.insert(s, c.map_or(0, |c| c.count));
                if let Some(at) = c.and_then(|c| c.oldest_due_at) {
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
            }
            QueueStats {
                paused: declared.iter().any(|q| q.name == name && q.paused),
                queue: name,
                counts: by_state,
                oldest_due_age_ms: oldest.map(|at| (now - at).max(0)),
            }
        })
        .collect();
    let switches = switches::read_all(db)
        .await?
        .into_iter()
        .map(|(w, on)| (w.as_str(), on))
        .collect();
    Ok(Stats { queues, switches })
}
