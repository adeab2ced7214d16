//! The cron scheduler. Every slot of every schedule is claimed in `cron_slots` (primary key
//! name + slot) in the same transaction as its job, so any number of schedulers, on any number
//! of replicas, enqueue exactly one job per slot.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::{EnqueueError, Spec};
use super::cron::CronExpr;
use super::switches::Switch;
use super::{Client, EnqueueOptions, Registry, metrics};
use crate::config::{CatchUp, Config, ScheduleConfig};
use crate::store::jobs::cron as slots;
use crate::store::now_ms;

/// The priority of a cron slot's job: ahead of every ordinary job (lower runs first), so a
/// schedule never waits behind a backlog on its queue — a drain of 20,000 jobs used to delay a
/// 5-second schedule until it was through.
pub const CRON_PRIORITY: i64 = -100;

/// Most missed slots `catch_up = "all"` enqueues at once.
const MAX_CATCH_UP: usize = 100;

/// The built-in pruning schedule's name.
pub const PRUNE_SCHEDULE: &str = "tollgate.prune";
/// The built-in schedule of `ledger.expire` (holds and grants past their expiry).
pub const EXPIRE_SCHEDULE: &str = "tollgate.ledger_expire";
/// The built-in schedule of `recovery.sweep`.
pub const RECOVERY_SWEEP_SCHEDULE: &str = "tollgate.recovery_sweep";
pub const BACKUP_SCHEDULE: &str = "tollgate.backup";
/// The built-in schedule of `ledger.period_credits`.
pub const PERIOD_CREDITS_SCHEDULE: &str = "tollgate.period_credits";

/// One schedule: `kind` with `args` at every slot of `cron`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron: CronExpr,
    /// A registered kind, or an app's (`app.<slug>.<kind>`).
    pub kind: std::borrow::Cow<'static, str>,
    /// JSON text.
    pub args: String,
    pub queue: Option<String>,
    pub catch_up: CatchUp,
}

impl Schedule {
    /// A schedule from the config; `None` if its kind is not registered (refused by
    /// `config::validate` before this point).
    pub fn from_config(s: &ScheduleConfig, registry: &Registry) -> Option<Schedule> {
        Some(Schedule {
            name: s.name.clone(),
            cron: s.cron.clone(),
            kind: std::borrow::Cow::Borrowed(registry.defaults(&s.kind)?.kind),
            args: s.args.to_string(),
            queue: s.queue.clone(),
            catch_up: s.catch_up,
        })
    }
}

/// The schedules a process runs: the built-in ones, then the config's.
pub fn schedules(config: &Config, registry: &Registry) -> Vec<Schedule> {
    let mut all = vec![Schedule {
        name: PRUNE_SCHEDULE.into(),
        cron: config.jobs.prune_cron.clone(),
        kind: super::kinds::maintenance::Prune::KIND_NAME.into(),
        args: "{}".into(),
        queue: None,
        catch_up: CatchUp::Once,
    }];
    for (name, cron, kind) in [
        (
            EXPIRE_SCHEDULE,
            &config.ledger.expiry_cron,
            super::kinds::ledger::Expire::KIND_NAME,
        ),
        (
            PERIOD_CREDITS_SCHEDULE,
            &config.ledger.period_credits_cron,
            super::kinds::ledger::PeriodCredits::KIND_NAME,
        ),
        (
            RECOVERY_SWEEP_SCHEDULE,
            &config.jobs.recovery_sweep_cron,
            super::kinds::recovery::Sweep::KIND_NAME,
        ),
    ] {
        all.push(Schedule {
            name: name.into(),
            cron: cron.clone(),
            kind: kind.into(),
            args: "{}".into(),
            queue: None,
            catch_up: CatchUp::Once,
        });
    }
    if let Some(cron) = &config.backup.cron {
        all.push(Schedule {
            name: BACKUP_SCHEDULE.into(),
            cron: cron.clone(),
            kind: super::kinds::backup::Backup::KIND_NAME.into(),
            args: "{}".into(),
            queue: None,
            // A backup of the present state is what counts, not one per slot missed.
            catch_up: CatchUp::Once,
        });
    }
    all.extend(
        config
            .jobs
            .schedules
            .iter()
            .filter_map(|s| Schedule::from_config(s, registry)),
    );
    for app in &config.apps {
        all.extend(app.schedules.iter().map(|s| app_schedule(&app.slug, s)));
    }
    all
}

/// An app's schedule: its kind stored as `app.<slug>.<kind>`, its name likewise, so two apps'
/// schedules of one name are two schedules.
fn app_schedule(slug: &str, s: &crate::config::AppScheduleConfig) -> Schedule {
    app_kind_schedule(
        slug,
        &s.name,
        s.cron.clone(),
        &s.kind,
        &s.args,
        s.queue.as_deref(),
        s.catch_up,
    )
}

fn app_kind_schedule(
    slug: &str,
    name: &str,
    cron: CronExpr,
    kind: &str,
    args: &serde_json::Value,
    queue: Option<&str>,
    catch_up: CatchUp,
) -> Schedule {
    use crate::events::app_jobs::{self, AppJob};
    let job = AppJob {
        app: slug.to_string(),
        kind: kind.to_string(),
        args: args.clone(),
    };
    Schedule {
        name: app_jobs::stored_kind(slug, name),
        cron,
        kind: app_jobs::stored_kind(slug, kind).into(),
        args: serde_json::to_string(&job).expect("JSON values serialise"),
        queue: Some(queue.unwrap_or(app_jobs::QUEUE).to_string()),
        catch_up,
    }
}

/// How often the schedules made through the admin API are re-read.
const STORED_REFRESH: Duration = Duration::from_secs(5);

/// The schedules made at run time (`app_schedules`), minus any whose name a config schedule
/// already has (the config wins).
async fn stored_schedules(
    db: &crate::store::Db,
    fixed: &[Schedule],
) -> Result<Vec<Schedule>, sqlx::Error> {
    let rows = crate::store::jobs::app_schedules::all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let cron = CronExpr::parse(&r.cron).ok()?;
            let catch_up = CatchUp::parse(&r.catch_up).unwrap_or_default();
            let s = app_kind_schedule(
                &r.app,
                &r.name,
                cron,
                &r.kind,
                &r.args,
                Some(&r.queue),
                catch_up,
            );
            (!fixed.iter().any(|f| f.name == s.name)).then_some(s)
        })
        .collect())
}

/// Runs schedules on a tick.
pub struct Scheduler {
    client: Client,
    registry: std::sync::Arc<Registry>,
    /// The built-in and the config's schedules.
    schedules: Vec<Schedule>,
    /// The apps' schedules made through the admin API, re-read every [`STORED_REFRESH`].
    stored: Vec<Schedule>,
    stored_at: Option<std::time::Instant>,
    tick: Duration,
    /// Latest slot known to be claimed, per schedule.
    last: HashMap<String, i64>,
}

impl Scheduler {
    pub fn new(
        client: Client,
        registry: std::sync::Arc<Registry>,
        schedules: Vec<Schedule>,
        tick: Duration,
    ) -> Scheduler {
        Scheduler {
            client,
            registry,
            schedules,
            stored: Vec::new(),
            stored_at: None,
            tick,
            last: HashMap::new(),
        }
    }

    async fn refresh_stored(&mut self) {
        if self
            .stored_at
            .is_some_and(|at| at.elapsed() < STORED_REFRESH)
        {
            return;
        }
        match stored_schedules(self.client.db(), &self.schedules).await {
            Ok(s) => self.stored = s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the apps' schedules; keeping the last read")
            }
        }
        self.stored_at = Some(std::time::Instant::now());
    }

    /// Runs until `stop`, waking at each slot (or each tick, whichever is first).
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(schedules = self.schedules.len(), "scheduler started");
        loop {
            let now = now_ms();
            if self.client.switches().is_on(Switch::Scheduler) {
                self.run_due(now).await;
            }
            let next = self
                .schedules
                .iter()
                .chain(&self.stored)
                .filter_map(|s| s.cron.next_after(now))
                .min()
                .unwrap_or(i64::MAX);
            let wait =
                Duration::from_millis((next - now_ms()).clamp(1, i64::MAX) as u64).min(self.tick);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Enqueues every due, unclaimed slot as of `now`. Returns how many jobs it enqueued.
    pub async fn run_due(&mut self, now: i64) -> usize {
        self.refresh_stored().await;
        let all: Vec<Schedule> = self.schedules.iter().chain(&self.stored).cloned().collect();
        let mut enqueued = 0;
        for schedule in all {
            match self.due_slots(&schedule, now).await {
                Ok(due) => {
                    for slot in due {
                        match self.enqueue_slot(&schedule, slot, now).await {
                            Ok(true) => enqueued += 1,
                            Ok(false) => {}
                            Err(EnqueueError::Disabled { .. }) => {
                                tracing::debug!(schedule = %schedule.name, "enqueue switched off; slot left for later");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(schedule = %schedule.name, slot, error = %e, "cannot enqueue a cron slot");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(schedule = %schedule.name, error = %e, "cannot read cron slots")
                }
            }
        }
        enqueued
    }

    /// The slots to enqueue now, oldest first, by the schedule's catch-up rule.
    async fn due_slots(&mut self, s: &Schedule, now: i64) -> Result<Vec<i64>, sqlx::Error> {
        let Some(due) = s.cron.latest_at_or_before(now) else {
            return Ok(vec![]);
        };
        let last = match self.last.get(&s.name) {
            Some(&l) => Some(l),
            None => {
                let l = slots::last_slot(self.client.db(), &s.name).await?;
                if let Some(l) = l {
                    self.last.insert(s.name.clone(), l);
                }
                l
            }
        };
        if last.is_some_and(|l| l >= due) {
            return Ok(vec![]);
        }
        // A slot this recent is "now", not a missed one.
        let on_time = now - due <= 3 * self.tick.as_millis() as i64;
        Ok(match (last, s.catch_up) {
            // A schedule seen for the first time starts with its next slot.
            (None, _) | (Some(_), CatchUp::None) => {
                if on_time {
                    vec![due]
                } else {
                    vec![]
                }
            }
            (Some(_), CatchUp::Once) => vec![due],
            (Some(l), CatchUp::All) => {
                let mut missed = s.cron.slots_between(l, due, usize::MAX);
                let skip = missed.len().saturating_sub(MAX_CATCH_UP);
                missed.drain(..skip);
                missed
            }
        })
    }

    /// Claims one slot and enqueues its job, in one transaction. False if another scheduler
    /// had it.
    async fn enqueue_slot(
        &mut self,
        s: &Schedule,
        slot: i64,
        now: i64,
    ) -> Result<bool, EnqueueError> {
        let defaults = self
            .registry
            .defaults(&s.kind)
            .expect("schedules only name registered kinds");
        let mut options = EnqueueOptions::default()
            .unique(format!("cron:{}:{slot}", s.name))
            .priority(CRON_PRIORITY.min(defaults.priority));
        options.queue = s.queue.clone();
        let mut spec = Spec::new(defaults, options);
        spec.kind = s.kind.clone();
        let mut tx = self.client.db().begin().await?;
        if !slots::claim_slot(&mut tx, &s.name, slot, now).await? {
            tx.rollback().await?;
            self.last.insert(s.name.clone(), slot);
            return Ok(false);
        }
        let job = self.client.insert_raw(&mut tx, &spec, &s.args).await?;
        slots::set_slot_job(&mut tx, &s.name, slot, job.id).await?;
        tx.commit().await?;
        self.client.wakers.wake(&spec.queue);
        self.last.insert(s.name.clone(), slot);
        let lag = Duration::from_millis((now_ms() - slot).max(0) as u64);
        metrics::schedule_lag(&s.name, lag);
        tracing::info!(schedule = %s.name, slot, job_id = job.id, lag_ms = lag.as_millis() as u64, "cron slot enqueued");
        Ok(true)
    }
}
