//! Job metrics, named `tollgate_jobs_*`, labelled by queue and kind.

use std::time::Duration;

pub const ENQUEUED: &str = "tollgate_jobs_enqueued_total";
pub const STARTED: &str = "tollgate_jobs_started_total";
pub const COMPLETED: &str = "tollgate_jobs_completed_total";
pub const FAILED: &str = "tollgate_jobs_failed_total";
pub const DISCARDED: &str = "tollgate_jobs_discarded_total";
pub const RESCUED: &str = "tollgate_jobs_rescued_total";
pub const RUN_DURATION: &str = "tollgate_jobs_run_duration_seconds";
pub const START_DELAY: &str = "tollgate_jobs_start_delay_seconds";
pub const DEPTH: &str = "tollgate_jobs_queue_depth";
pub const OLDEST_AGE: &str = "tollgate_jobs_oldest_available_age_seconds";
pub const SCHEDULE_LAG: &str = "tollgate_jobs_schedule_lag_seconds";

/// Registers the help texts (called once with the recorder).
pub fn describe() {
    metrics::describe_counter!(ENQUEUED, "Jobs enqueued, by queue and kind.");
    metrics::describe_counter!(STARTED, "Job attempts started, by queue and kind.");
    metrics::describe_counter!(COMPLETED, "Jobs completed, by queue and kind.");
    metrics::describe_counter!(
        FAILED,
        "Job attempts that failed (error, panic or timeout), by queue and kind."
    );
    metrics::describe_counter!(
        DISCARDED,
        "Jobs discarded after their last attempt (dead letters), by queue and kind."
    );
    metrics::describe_counter!(
        RESCUED,
        "Running jobs whose lease expired (their worker died), by queue and kind."
    );
    metrics::describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "Handler run time, by queue and kind."
    );
    metrics::describe_histogram!(
        START_DELAY,
        metrics::Unit::Seconds,
        "From when a job was due to when it started, by queue."
    );
    metrics::describe_gauge!(DEPTH, "Jobs by queue and state.");
    metrics::describe_gauge!(
        OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest due job not yet started, by queue."
    );
    metrics::describe_gauge!(
        SCHEDULE_LAG,
        metrics::Unit::Seconds,
        "Delay between a cron slot's time and its job's enqueue, by schedule."
    );
}

pub fn enqueued(queue: &str, kind: &str) {
    metrics::counter!(ENQUEUED, "queue" => queue.to_string(), "kind" => kind.to_string())
        .increment(1);
}

pub fn started(queue: &str, kind: &str, delay: Duration) {
    metrics::counter!(STARTED, "queue" => queue.to_string(), "kind" => kind.to_string())
        .increment(1);
    metrics::histogram!(START_DELAY, "queue" => queue.to_string()).record(delay.as_secs_f64());
}

/// Counts how an attempt ended, with its run time.
pub fn finished(queue: &str, kind: &str, outcome: &'static str, took: Duration) {
    let name = match outcome {
        "completed" => COMPLETED,
        "discarded" => DISCARDED,
        _ => FAILED,
    };
    if outcome == "discarded" {
        // A discard is also a failed attempt.
        metrics::counter!(FAILED, "queue" => queue.to_string(), "kind" => kind.to_string())
            .increment(1);
    }
    metrics::counter!(name, "queue" => queue.to_string(), "kind" => kind.to_string()).increment(1);
    metrics::histogram!(RUN_DURATION, "queue" => queue.to_string(), "kind" => kind.to_string())
        .record(took.as_secs_f64());
}

pub fn rescued(queue: &str, kind: &str) {
    metrics::counter!(RESCUED, "queue" => queue.to_string(), "kind" => kind.to_string())
        .increment(1);
}

pub fn gauge_depth(queue: &str, state: &str, n: i64) {
    metrics::gauge!(DEPTH, "queue" => queue.to_string(), "state" => state.to_string())
        .set(n as f64);
}

pub fn gauge_oldest(queue: &str, age: Duration) {
    metrics::gauge!(OLDEST_AGE, "queue" => queue.to_string()).set(age.as_secs_f64());
}

pub fn schedule_lag(schedule: &str, lag: Duration) {
    metrics::gauge!(SCHEDULE_LAG, "schedule" => schedule.to_string()).set(lag.as_secs_f64());
}
