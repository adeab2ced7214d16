//! What a job kind is: a Rust type with serialisable arguments and a handler ([`Job`]), and the
//! [`Registry`] a worker looks kinds up in.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::{Client, DEFAULT_QUEUE, backoff};
use crate::config::Config;
use crate::store::Db;

/// What enqueueing a kind does while the `enqueue` kill switch is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenEnqueueOff {
    /// Refuse with [`super::EnqueueError::Disabled`]: the caller decides (the default).
    Fail,
    /// Store the job parked: it runs once the switch is back on. For work that must not be lost.
    Park,
}

/// A job kind. The value is the job's arguments, stored as JSON.
///
/// ```ignore
/// #[derive(Serialize, Deserialize)]
/// struct SendReminder { user_id: i64 }
/// impl Job for SendReminder {
///     const KIND: &'static str = "billing.send_reminder";
///     async fn run(self, ctx: JobContext) -> anyhow::Result<()> { … }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name stored with each job; never rename a kind that has jobs in flight.
    const KIND: &'static str;
    const QUEUE: &'static str = DEFAULT_QUEUE;
    /// 0 runs first.
    const PRIORITY: i64 = 1;
    const MAX_ATTEMPTS: i64 = 20;
    /// A run longer than this fails (and is retried).
    const TIMEOUT: Duration = Duration::from_secs(60);
    const WHEN_ENQUEUE_OFF: WhenEnqueueOff = WhenEnqueueOff::Fail;

    /// The wait before retry number `attempt`.
    fn backoff(attempt: i64) -> Duration {
        backoff::exponential(attempt)
    }

    /// Does the work. An `Err` is retried (after [`Job::backoff`]) until `MAX_ATTEMPTS`; an
    /// error wrapping [`Permanent`] discards the job at once. Must be idempotent.
    fn run(self, ctx: JobContext) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// An error that retrying cannot fix: the job is discarded at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

impl Permanent {
    /// The error a handler returns to discard its job at once.
    pub fn error(message: impl Into<String>) -> anyhow::Error {
        Permanent(message.into()).into()
    }
}

/// What a running handler gets.
#[derive(Clone)]
pub struct JobContext {
    pub db: Db,
    pub config: Arc<Config>,
    /// To enqueue follow-up jobs.
    pub jobs: Client,
    pub job: JobInfo,
    /// Cancelled when the job should stop early (operator cancel, shutdown deadline). Handlers
    /// with long loops may check it; others are simply dropped.
    pub cancel: CancellationToken,
    /// The worker's clock against the real one (0 but in tests: [`super::Worker::at`]).
    pub clock_offset_ms: i64,
    /// The client outbound deliveries are sent with.
    pub sender: Arc<crate::events::send::Sender>,
}

impl JobContext {
    /// Now, by the worker's clock: the time schedules and records of a handler use.
    pub fn now_ms(&self) -> i64 {
        crate::store::now_ms() + self.clock_offset_ms
    }
}

/// The running job's identity.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub attempt: i64,
    pub max_attempts: i64,
}

type BoxFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A kind with its type erased, as the worker sees it.
trait ErasedKind: Send + Sync {
    fn run(&self, args: &str, ctx: JobContext) -> BoxFuture;
    fn backoff(&self, attempt: i64) -> Duration;
    fn defaults(&self) -> KindDefaults;
}

/// A kind's declared defaults, for enqueueing by name (cron schedules).
#[derive(Debug, Clone, Copy)]
pub struct KindDefaults {
    pub kind: &'static str,
    pub queue: &'static str,
    pub priority: i64,
    pub max_attempts: i64,
    pub timeout: Duration,
    pub when_enqueue_off: WhenEnqueueOff,
}

/// The defaults a kind declares.
pub(crate) fn defaults_of<J: Job>() -> KindDefaults {
    KindDefaults {
        kind: J::KIND,
        queue: J::QUEUE,
        priority: J::PRIORITY,
        max_attempts: J::MAX_ATTEMPTS,
        timeout: J::TIMEOUT,
        when_enqueue_off: J::WHEN_ENQUEUE_OFF,
    }
}

struct Typed<J>(PhantomData<fn() -> J>);

impl<J: Job> ErasedKind for Typed<J> {
    fn run(&self, args: &str, ctx: JobContext) -> BoxFuture {
        match serde_json::from_str::<J>(args) {
            Ok(job) => Box::pin(job.run(ctx)),
            Err(e) => {
                let err = Permanent(format!("arguments do not fit kind {}: {e}", J::KIND));
                Box::pin(async move { Err(err.into()) })
            }
        }
    }
    fn backoff(&self, attempt: i64) -> Duration {
        J::backoff(attempt)
    }
    fn defaults(&self) -> KindDefaults {
        defaults_of::<J>()
    }
}

/// Jobs an app enqueues over HTTP are stored as `app.<slug>.<kind>`, so stats, switches and
/// unique keys tell them apart by their own kind.
pub const APP_KIND_PREFIX: &str = "app.";
/// The registered name of the kind that runs every app kind.
pub const APP_KINDS: &str = "app.*";

/// The kinds a worker can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Arc<dyn ErasedKind>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a kind; registering one name twice keeps the last.
    pub fn register<J: Job>(&mut self) -> &mut Registry {
        self.kinds
            .insert(J::KIND, Arc::new(Typed::<J>(PhantomData)));
        self
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.get(kind).is_some()
    }

    /// The kind named `kind`; an app's own kind (`app.<slug>.<kind>`, docs/jobs.md) is run by
    /// the one kind registered as [`APP_KINDS`].
    fn get(&self, kind: &str) -> Option<&Arc<dyn ErasedKind>> {
        self.kinds.get(kind).or_else(|| {
            kind.strip_prefix(APP_KIND_PREFIX)
                .filter(|rest| rest.contains('.'))
                .and_then(|_| self.kinds.get(APP_KINDS))
        })
    }

    /// The default queue of a registered kind.
    pub fn queue_of(&self, kind: &str) -> Option<&'static str> {
        self.defaults(kind).map(|d| d.queue)
    }

    pub fn defaults(&self, kind: &str) -> Option<KindDefaults> {
        self.get(kind).map(|k| k.defaults())
    }

    /// Sorted names, for messages.
    pub fn kind_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Starts the handler of `kind` on `args`; `None` for an unknown kind.
    pub(crate) fn run(&self, kind: &str, args: &str, ctx: JobContext) -> Option<BoxFuture> {
        self.get(kind).map(|k| k.run(args, ctx))
    }

    pub(crate) fn backoff(&self, kind: &str, attempt: i64) -> Duration {
        self.get(kind)
            .map(|k| k.backoff(attempt))
            .unwrap_or_else(|| backoff::exponential(attempt))
    }
}
