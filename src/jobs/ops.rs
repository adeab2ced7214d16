//! Queue operations shared by `tollgate jobs …` and the admin API: what each action does to
//! one job, and waiting for a queue to drain.

use std::time::{Duration, Instant};

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
