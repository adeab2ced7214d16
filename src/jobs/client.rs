//! Enqueueing: [`Client::enqueue_tx`] inside the caller's transaction (the job exists iff the
//! business write commits), or [`Client::enqueue`] on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::kind::{KindDefaults, defaults_of};
use super::switches::{Switch, Switches};
use super::{Job, WhenEnqueueOff, is_valid_queue_name, metrics};
use crate::store::jobs::queue::{self, NewJob};
use crate::store::{Db, Tx, now_ms};

/// Per-job overrides of the kind's defaults.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub queue: Option<String>,
    pub priority: Option<i64>,
    /// Run no earlier than this (ms since the epoch); default now.
    pub run_at: Option<i64>,
    pub max_attempts: Option<i64>,
    /// While an unfinished job of the same kind holds this key, enqueueing again returns it.
    pub unique_key: Option<String>,
    pub timeout: Option<Duration>,
    /// The `Idempotency-Key` effect of the request enqueueing it: enqueueing again under the
    /// same effect returns the first job, finished or not.
    pub effect_key: Option<String>,
}

impl EnqueueOptions {
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    pub fn run_at(mut self, at_ms: i64) -> Self {
        self.run_at = Some(at_ms);
        self
    }
    pub fn delay(self, delay: Duration) -> Self {
        self.run_at(now_ms() + delay.as_millis() as i64)
    }
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }
    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = Some(n);
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The job an enqueue produced or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// False when an unfinished job with the same unique key was returned instead.
    pub inserted: bool,
    /// Stored but held: the enqueue switch is off and the kind parks.
    pub parked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("enqueueing is switched off (jobs switch enqueue off); {kind} jobs are refused")]
    Disabled { kind: String },
    #[error("invalid queue name {0:?}")]
    InvalidQueue(String),
    #[error("max_attempts must be at least 1")]
    InvalidAttempts,
    #[error("cannot serialise the job's arguments: {0}")]
    Args(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<EnqueueError> for crate::error::Error {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Disabled { .. } => crate::error::Error::Unavailable(e.to_string()),
            other => crate::error::Error::Internal(other.into()),
        }
    }
}

/// Wakes idle workers of this process when a job lands in their queue.
#[derive(Debug, Default)]
pub(crate) struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    pub(crate) fn get(&self, queue: &str) -> Arc<Notify> {
        self.0
            .lock()
            .expect("wakers lock")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    pub(crate) fn wake(&self, queue: &str) {
        if let Some(n) = self.0.lock().expect("wakers lock").get(queue) {
            n.notify_one();
        }
    }
}

/// Enqueues jobs. Cheap to clone; one per process, shared by the API and the worker.
#[derive(Debug, Clone)]
pub struct Client {
    db: Db,
    switches: Switches,
    pub(crate) wakers: Arc<Wakers>,
}

impl Client {
    pub fn new(db: Db, switches: Switches) -> Client {
        Client {
            db,
            switches,
            wakers: Arc::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn switches(&self) -> &Switches {
        &self.switches
    }

    /// Enqueues in its own transaction.
    pub async fn enqueue<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let mut tx = self.db.begin().await?;
        let (enqueued, queue) = self.insert_tx(&mut tx, job, options).await?;
        tx.commit().await?;
        self.wakers.wake(&queue);
        Ok(enqueued)
    }

    /// Enqueues inside the caller's transaction: rolled back with it, visible when it commits.
    pub async fn enqueue_tx<J: Job>(
        &self,
        tx: &mut Tx,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let (enqueued, queue) = self.insert_tx(tx, job, options).await?;
        // Early for an uncommitted job; the worker then finds it at its next poll at worst.
        self.wakers.wake(&queue);
        Ok(enqueued)
    }

    async fn insert_tx<J: Job>(
        &self,
        tx: &mut Tx,
        job: &J,
        o: EnqueueOptions,
    ) -> Result<(Enqueued, String), EnqueueError> {
        let args = serde_json::to_string(job)?;
        let spec = Spec::new(defaults_of::<J>(), o);
        let enqueued = self.insert_raw(tx, &spec, &args).await?;
        Ok((enqueued, spec.queue))
    }

    /// Enqueues an app's own kind (`app.<slug>.<kind>`) with its JSON arguments, in its own
    /// transaction: the kinds registered as [`super::kind::APP_KINDS`] run it.
    pub async fn enqueue_named(
        &self,
        kind: String,
        args: &str,
        defaults: KindDefaults,
        options: EnqueueOptions,
    ) -> Result<(Enqueued, String), EnqueueError> {
        let mut spec = Spec::new(defaults, options);
        spec.kind = std::borrow::Cow::Owned(kind);
        let mut tx = self.db.begin().await?;
        if let Some(key) = spec.effect_key.as_deref()
            && let Some(id) = queue::by_effect_key(&mut tx, key).await?
        {
            tx.rollback().await?;
            let first = Enqueued {
                id,
                inserted: false,
                parked: false,
            };
            return Ok((first, spec.queue));
        }
        let enqueued = self.insert_raw(&mut tx, &spec, args).await?;
        tx.commit().await?;
        self.wakers.wake(&spec.queue);
        Ok((enqueued, spec.queue))
    }

    /// Enqueues by kind name with JSON arguments (cron schedules from the config use this).
    pub(crate) async fn insert_raw(
        &self,
        tx: &mut Tx,
        spec: &Spec,
        args: &str,
    ) -> Result<Enqueued, EnqueueError> {
        if !is_valid_queue_name(&spec.queue) {
            return Err(EnqueueError::InvalidQueue(spec.queue.clone()));
        }
        if spec.max_attempts < 1 {
            return Err(EnqueueError::InvalidAttempts);
        }
        let parked = !self.switches.is_on(Switch::Enqueue);
        if parked && spec.when_off == WhenEnqueueOff::Fail {
            return Err(EnqueueError::Disabled {
                kind: spec.kind.to_string(),
            });
        }
        let now = now_ms();
        let (id, inserted) = queue::insert(
            tx,
            &NewJob {
                queue: &spec.queue,
                kind: &spec.kind,
                args,
                priority: spec.priority,
                max_attempts: spec.max_attempts,
                timeout_ms: spec.timeout.as_millis() as i64,
                run_at: spec.run_at.unwrap_or(now),
                created_at: now,
                parked,
                unique_key: spec.unique_key.as_deref(),
                effect_key: spec.effect_key.as_deref(),
            },
        )
        .await?;
        if inserted {
            metrics::enqueued(&spec.queue, &spec.kind);
        }
        Ok(Enqueued {
            id,
            inserted,
            parked: parked && inserted,
        })
    }
}

/// Everything about a job except its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The kind's name as stored: the kind's own, or an app's kind (`app.<slug>.<kind>`).
    pub kind: std::borrow::Cow<'static, str>,
    pub queue: String,
    pub priority: i64,
    pub max_attempts: i64,
    pub timeout: Duration,
    pub run_at: Option<i64>,
    pub unique_key: Option<String>,
    pub effect_key: Option<String>,
    pub when_off: WhenEnqueueOff,
}

impl Spec {
    /// The kind's defaults with the caller's overrides.
    pub(crate) fn new(d: KindDefaults, o: EnqueueOptions) -> Spec {
        Spec {
            kind: std::borrow::Cow::Borrowed(d.kind),
            queue: o.queue.unwrap_or_else(|| d.queue.to_string()),
            priority: o.priority.unwrap_or(d.priority),
            max_attempts: o.max_attempts.unwrap_or(d.max_attempts),
            timeout: o.timeout.unwrap_or(d.timeout),
            run_at: o.run_at,
            unique_key: o.unique_key,
            effect_key: o.effect_key,
            when_off: d.when_enqueue_off,
        }
    }
}
