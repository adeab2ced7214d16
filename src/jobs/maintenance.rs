//! Background upkeep in the worker role: the rescuer (jobs whose worker died) and the queue
//! gauges. Any number of replicas may run them; every write is guarded so doing it twice is
//! harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Registry, metrics};
use crate::store::Db;
use crate::store::jobs::queue;

/// Returns running jobs whose lease expired to `retryable` (or `discarded` after their last
/// attempt), every `every`, until `stop`.
pub async fn rescue_loop(
    db: Db,
    registry: Arc<Registry>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = rescue(&db, &registry).await {
            tracing::warn!(error = %e, "the job rescuer failed; trying again later");
        }
    }
}

/// One rescue pass; returns how many jobs it rescued.
pub async fn rescue(db: &Db, registry: &Registry) -> Result<usize, sqlx::Error> {
    let now = crate::store::now_ms();
    let mut rescued = 0;
    for job in queue::expired_leases(db, now, 500).await? {
        let last = job.attempt >= job.max_attempts;
        let error = format!(
            "lease expired: worker {} stopped renewing it (crashed, killed or cut off)",
            job.attempted_by.as_deref().unwrap_or("?")
        );
        let failure = queue::Failure {
            id: job.id,
            attempt: job.attempt,
            worker: None,
            error: &error,
            now,
            retry_at: (!last)
                .then(|| now + registry.backoff(&job.kind, job.attempt).as_millis() as i64),
        };
        if queue::fail(db, &failure).await? {
            rescued += 1;
            metrics::rescued(&job.queue, &job.kind);
            tracing::warn!(job_id = job.id, job_kind = %job.kind, attempt = job.attempt, discarded = last, "rescued a job whose worker stopped");
        }
    }
    Ok(rescued)
}

/// Publishes queue depth and the age of the oldest due job, every `every`.
pub async fn gauges_loop(db: Db, every: Duration, stop: CancellationToken) {
    loop {
        if let Err(e) = publish_gauges(&db).await {
            tracing::debug!(error = %e, "cannot read queue gauges");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The same numbers as `tollgate jobs stats`, as gauges.
async fn publish_gauges(db: &Db) -> Result<(), sqlx::Error> {
    crate::ops::backup::publish_gauge(db).await?;
    for q in super::ops::stats(db).await?.queues {
        for (state, n) in &q.counts {
            metrics::gauge_depth(&q.queue, state, *n);
        }
        let age = q.oldest_due_age_ms.unwrap_or(0);
        metrics::gauge_oldest(&q.queue, Duration::from_millis(age as u64));
    }
    Ok(())
}
