//! The jobs tables' queries: the runtime path ([`queue`]: enqueue, claim, finish, lease), the
//! operator path ([`admin`]: stats, list, retry, pause, switches, prune) and cron slots
//! ([`cron`]). One query text for both backends except the claim and the batch completion.

pub mod admin;
pub mod app_schedules;
pub mod cron;
pub mod queue;

/// Every column of `jobs`, in the order [`job_row!`] reads them.
pub const JOB_COLUMNS: &str = "id, queue, kind, args, state, priority, attempt, max_attempts, \
     timeout_ms, run_at, created_at, attempted_at, attempted_by, locked_until, finalized_at, \
     parked, unique_key, last_error";

/// One job as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub args: String,
    pub state: String,
    pub priority: i64,
    pub attempt: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub run_at: i64,
    pub created_at: i64,
    pub attempted_at: Option<i64>,
    pub attempted_by: Option<String>,
    pub locked_until: Option<i64>,
    pub finalized_at: Option<i64>,
    pub parked: bool,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
}

/// Reads a [`JobRow`] from a row of either backend (a macro because the row types differ).
macro_rules! job_row {
    ($row:expr) => {{
        use sqlx::Row;
        let r = $row;
        $crate::store::jobs::JobRow {
            id: r.try_get("id")?,
            queue: r.try_get("queue")?,
            kind: r.try_get("kind")?,
            args: r.try_get("args")?,
            state: r.try_get("state")?,
            priority: r.try_get("priority")?,
            attempt: r.try_get("attempt")?,
            max_attempts: r.try_get("max_attempts")?,
            timeout_ms: r.try_get("timeout_ms")?,
            run_at: r.try_get("run_at")?,
            created_at: r.try_get("created_at")?,
            attempted_at: r.try_get("attempted_at")?,
            attempted_by: r.try_get("attempted_by")?,
            locked_until: r.try_get("locked_until")?,
            finalized_at: r.try_get("finalized_at")?,
            parked: r.try_get("parked")?,
            unique_key: r.try_get("unique_key")?,
            last_error: r.try_get("last_error")?,
        }
    }};
}
pub(crate) use job_row;

/// The states a job can be in.
pub mod state {
    pub const AVAILABLE: &str = "available";
    pub const RUNNING: &str = "running";
    pub const RETRYABLE: &str = "retryable";
    pub const COMPLETED: &str = "completed";
    pub const DISCARDED: &str = "discarded";
    pub const CANCELLED: &str = "cancelled";
    pub const ALL: [&str; 6] = [
        AVAILABLE, RUNNING, RETRYABLE, COMPLETED, DISCARDED, CANCELLED,
    ];
}
