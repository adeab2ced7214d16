//! The worker: per queue, a producer claims due jobs (up to the queue's concurrency) and runs
//! each in its own task; a heartbeat renews the leases of running jobs; a completer marks
//! successes in batches. No database transaction is held while a handler runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::switches::Switch;
use super::{Client, JobContext, JobInfo, Permanent, Registry, metrics};
use crate::config::Config;
use crate::store::jobs::queue::{self, Claimed, Failure};
use crate::store::{Db, now_ms};

/// How a worker runs. Built from `[jobs]` by [`WorkerSettings::from_config`].
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Queue name → concurrency.
    pub queues: Vec<(String, usize)>,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> WorkerSettings {
        let j = &config.jobs;
        WorkerSettings {
            queues: j
                .queues
                .iter()
                .map(|(name, q)| (name.clone(), q.concurrency))
                .collect(),
            poll_interval: j.poll_interval(),
            lease: j.lease(),
            shutdown_timeout: j.shutdown_timeout(),
        }
    }
}

/// What a worker shares between its tasks.
struct Shared {
    id: String,
    db: Db,
    config: Arc<Config>,
    client: Client,
    registry: Arc<Registry>,
    settings: WorkerSettings,
    /// Running job id → the token that stops it.
    running: Mutex<HashMap<i64, CancellationToken>>,
    completions: mpsc::UnboundedSender<i64>,
    /// Added to the real clock: a test's worker claims what is due at a time of its choosing
    /// and schedules retries from it ([`Worker::at`]). 0 in every real worker.
    clock_offset_ms: i64,
    /// The HTTP client of outbound deliveries, shared by every job of this worker.
    sender: Arc<crate::events::send::Sender>,
}

impl Shared {
    fn now(&self) -> i64 {
        now_ms() + self.clock_offset_ms
    }
}

/// A worker process's job runner.
pub struct Worker {
    shared: Arc<Shared>,
    completions: mpsc::UnboundedReceiver<i64>,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        client: Client,
        registry: Arc<Registry>,
        settings: WorkerSettings,
    ) -> Worker {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let sender = Arc::new(crate::events::send::Sender::from_config(&config));
        Worker {
            shared: Arc::new(Shared {
                id,
                db: client.db().clone(),
                clock_offset_ms: 0,
                sender,
                config,
                client,
                registry,
                settings,
                running: Mutex::default(),
                completions: tx,
            }),
            completions: rx,
        }
    }

    /// This worker as if the time were `now_ms`: it claims the jobs due by then, its handlers
    /// see that time ([`JobContext::now_ms`]) and it schedules retries from it. For tests of
    /// schedules that span hours, without sleeping.
    pub fn at(mut self, now_ms: i64) -> Worker {
        let shared = Arc::get_mut(&mut self.shared).expect("a new worker is not shared yet");
        shared.clock_offset_ms = now_ms - crate::store::now_ms();
        self
    }

    /// This worker's name, stored in `attempted_by`.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Runs until `stop` is cancelled; then lets running jobs finish for at most
    /// `shutdown_timeout` and releases the others to the queue.
    pub async fn run(self, stop: CancellationToken) {
        let Worker {
            shared,
            completions,
        } = self;
        tracing::info!(worker = %shared.id, queues = ?shared.settings.queues, "job worker started");
        let hard_stop = CancellationToken::new();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), heartbeat_stop.clone()));
        let completer = tokio::spawn(complete_batches(shared.clone(), completions));
        let mut producers = JoinSet::new();
        for (queue, concurrency) in shared.settings.queues.clone() {
            producers.spawn(produce(
                shared.clone(),
                queue,
                concurrency,
                stop.clone(),
                hard_stop.clone(),
            ));
        }
        stop.cancelled().await;
        let grace = shared.settings.shutdown_timeout;
        let drained = tokio::time::timeout(grace, async {
            while producers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let n = shared.running.lock().expect("running lock").len();
            tracing::warn!(
                jobs = n,
                "job shutdown grace elapsed; releasing unfinished jobs"
            );
            hard_stop.cancel();
            while producers.join_next().await.is_some() {}
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        // The last sender goes with `shared`; the completer then flushes and ends.
        drop(shared);
        let _ = completer.await;
        tracing::info!("job worker stopped");
    }

    /// Runs every due job of `queue`, one batch after another, until none is left; returns
    /// how many ran. For tests and `jobs drain`-style tools: no polling, no sleeping.
    pub async fn run_available(self, queue: &str) -> anyhow::Result<usize> {
        let Worker {
            shared,
            completions,
        } = self;
        let completer = tokio::spawn(complete_batches(shared.clone(), completions));
        let never = CancellationToken::new();
        let mut total = 0;
        loop {
            let jobs = claim(&shared, queue, 100).await?;
            if jobs.is_empty() {
                break;
            }
            total += jobs.len();
            let mut set = JoinSet::new();
            for job in jobs {
                set.spawn(execute(shared.clone(), job, never.clone()));
            }
            while set.join_next().await.is_some() {}
        }
        drop(shared);
        let _ = completer.await;
        Ok(total)
    }
}

async fn claim(shared: &Shared, queue: &str, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = shared.now();
    let until = now + shared.settings.lease.as_millis() as i64;
    queue::claim(&shared.db, queue, &shared.id, limit as i64, now, until).await
}

/// One queue's loop: claim what fits, run it, wait for room or for new work.
async fn produce(
    shared: Arc<Shared>,
    queue: String,
    concurrency: usize,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    let wake = shared.client.wakers.get(&queue);
    let switches = shared.client.switches().clone();
    let mut tasks = JoinSet::new();
    let mut failures = 0u32;
    // After a full batch there is a backlog: claim again only once half the slots are free, so
    // a busy queue claims in batches instead of one job per finished job.
    let mut backlog = false;
    let batch_room = concurrency.div_ceil(2);
    while !stop.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let room = concurrency.saturating_sub(tasks.len());
        if room == 0 || (backlog && room < batch_room) {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tasks.join_next() => {}
            }
            continue;
        }
        if !switches.is_on(Switch::Processing) || switches.is_paused(&queue) {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(shared.settings.poll_interval) => {}
            }
            continue;
        }
        match claim(&shared, &queue, room).await {
            Ok(jobs) => {
                failures = 0;
                let full = jobs.len() == room;
                backlog = full;
                for job in jobs {
                    tasks.spawn(execute(shared.clone(), job, hard_stop.clone()));
                }
                if full {
                    // There may be more: claim again once there is room.
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                backlog = false;
                tracing::warn!(queue = %queue, error = %e, "cannot claim jobs; retrying");
            }
        }
        // Nothing more is due: sleep until an enqueue wakes us or the poll interval passes
        // (longer after errors, so a down database is not hammered).
        let wait = shared.settings.poll_interval * failures.clamp(1, 10);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// How one attempt ended.
enum Outcome {
    Completed,
    Failed {
        error: String,
        permanent: bool,
        /// The handler panicked: the panic hook reported it (with its stack trace) already.
        panicked: bool,
    },
    /// Shutdown deadline: give the job back.
    Released,
    /// Someone else owns the job now (operator cancel/discard, or a rescuer).
    Lost,
}

async fn execute(shared: Arc<Shared>, job: Claimed, hard_stop: CancellationToken) {
    let started = Instant::now();
    let cancel = hard_stop.child_token();
    shared
        .running
        .lock()
        .expect("running lock")
        .insert(job.id, cancel.clone());
    let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind, queue = %job.queue, attempt = job.attempt);
    let delay = Duration::from_millis((shared.now() - job.run_at).max(0) as u64);
    metrics::started(&job.queue, &job.kind, delay);
    let ctx = JobContext {
        db: shared.db.clone(),
        config: shared.config.clone(),
        jobs: shared.client.clone(),
        job: JobInfo {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
        },
        cancel: cancel.clone(),
        clock_offset_ms: shared.clock_offset_ms,
        sender: shared.sender.clone(),
    };
    let outcome = match shared.registry.run(&job.kind, &job.args, ctx) {
        None => Outcome::Failed {
            error: format!("no handler for job kind {:?} in this build", job.kind),
            permanent: false,
            panicked: false,
        },
        Some(handler) => {
            // Its own task, so a panic is a failed attempt and not a dead worker.
            // With its own error-reporting hub, so a panic is reported tagged with the job.
            let hub = crate::ops::sentry::job_hub(job.id, &job.kind);
            let mut handle = tokio::spawn(sentry::SentryFutureExt::bind_hub(
                handler.instrument(span.clone()),
                hub,
            ));
            let limit = Duration::from_millis(job.timeout_ms.max(1) as u64);
            tokio::select! {
                result = tokio::time::timeout(limit, &mut handle) => match result {
                    Ok(Ok(Ok(()))) => Outcome::Completed,
                    Ok(Ok(Err(e))) => Outcome::Failed {
                        permanent: e.downcast_ref::<Permanent>().is_some(),
                        error: format!("{e:#}"),
                        panicked: false,
                    },
                    Ok(Err(join)) => Outcome::Failed {
                        panicked: join.is_panic(),
                        error: panic_text(join),
                        permanent: false,
                    },
                    Err(_) => {
                        handle.abort();
                        Outcome::Failed {
                            error: format!("timed out after {limit:?}"),
                            permanent: false,
                            panicked: false,
                        }
                    }
                },
                _ = cancel.cancelled() => {
                    handle.abort();
                    if hard_stop.is_cancelled() { Outcome::Released } else { Outcome::Lost }
                }
            }
        }
    };
    shared.running.lock().expect("running lock").remove(&job.id);
    finish(&shared, &job, outcome, started.elapsed())
        .instrument(span)
        .await;
}

async fn finish(shared: &Shared, job: &Claimed, outcome: Outcome, took: Duration) {
    match outcome {
        Outcome::Completed => {
            metrics::finished(&job.queue, &job.kind, "completed", took);
            let _ = shared.completions.send(job.id);
        }
        Outcome::Failed {
            error,
            permanent,
            panicked,
        } => {
            let last = permanent || job.attempt >= job.max_attempts;
            let now = shared.now();
            let retry_at = (!last)
                .then(|| now + shared.registry.backoff(&job.kind, job.attempt).as_millis() as i64);
            // The fields name the field set, fixed per call site: two calls, one with the mark.
            if panicked {
                tracing::error!(service = "worker", job_id = job.id, job_kind = %job.kind,
                    attempt = job.attempt, max_attempts = job.max_attempts, will_retry = !last,
                    error = %error, reported_as_panic = true, "job failed");
            } else {
                tracing::error!(service = "worker", job_id = job.id, job_kind = %job.kind,
                    attempt = job.attempt, max_attempts = job.max_attempts, will_retry = !last,
                    error = %error, "job failed");
            }
            metrics::finished(
                &job.queue,
                &job.kind,
                if last { "discarded" } else { "failed" },
                took,
            );
            let failure = Failure {
                id: job.id,
                attempt: job.attempt,
                worker: Some(&shared.id),
                error: &error,
                now,
                retry_at,
            };
            if let Err(e) = queue::fail(&shared.db, &failure).await {
                tracing::warn!(error = %e, "cannot record the job failure; its lease will expire and a rescuer retries it");
            }
        }
        Outcome::Released => {
            if let Err(e) = queue::release(&shared.db, job.id, &shared.id, now_ms()).await {
                tracing::warn!(error = %e, "cannot release the job; its lease will expire and a rescuer retries it");
            } else {
                tracing::info!("job released at shutdown");
            }
        }
        Outcome::Lost => tracing::info!("job stopped: cancelled, discarded or rescued elsewhere"),
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return "the job task was cancelled".into();
    }
    let payload = join.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into());
    format!("the handler panicked: {text}")
}

/// Renews the leases of this worker's running jobs every third of a lease, and stops the ones
/// the database no longer gives it (cancelled, discarded or rescued).
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.settings.lease / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // Only jobs running before the renewal can be judged by it: one claimed meanwhile is
        // not in the answer yet.
        let before: Vec<(i64, CancellationToken)> = shared
            .running
            .lock()
            .expect("running lock")
            .iter()
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        let until = now_ms() + shared.settings.lease.as_millis() as i64;
        match queue::heartbeat(&shared.db, &shared.id, until).await {
            Ok(held) => {
                let held: HashSet<i64> = held.into_iter().collect();
                for (id, token) in before {
                    if !held.contains(&id) {
                        token.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew job leases"),
        }
    }
}

/// Marks completed jobs in batches: whatever has arrived since the last write goes in one
/// UPDATE, so a busy worker writes far less often than once per job.
async fn complete_batches(shared: Arc<Shared>, mut ids: mpsc::UnboundedReceiver<i64>) {
    // `shared` holds a sender; keep only what is needed so the channel can close.
    let (db, worker) = (shared.db.clone(), shared.id.clone());
    drop(shared);
    let mut batch = Vec::with_capacity(512);
    while ids.recv_many(&mut batch, 512).await > 0 {
        let now = now_ms();
        let mut tries = 0;
        loop {
            match queue::complete_many(&db, &batch, &worker, now).await {
                Ok(_) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, jobs = batch.len(), "cannot mark jobs completed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    // The jobs stay running; their lease expires and they run again.
                    tracing::error!(error = %e, jobs = batch.len(), "giving up marking jobs completed");
                    break;
                }
            }
        }
        batch.clear();
    }
}
