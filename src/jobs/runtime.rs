//! Wiring: what each role runs. Every role keeps the kill switches fresh (the API enqueues);
//! the worker role also runs the worker, the scheduler, the rescuer and the queue gauges.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Scheduler, schedules};
use super::store_listen;
use super::switches::Switches;
use super::worker::{Worker, WorkerSettings};
use super::{Client, Registry, maintenance};
use crate::config::Config;
use crate::role::Role;
use crate::store::Db;

/// How often the queue gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// The jobs side of one process.
pub struct Runtime {
    pub client: Client,
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
}

impl Runtime {
    /// Reads the switches once (a failure leaves them all on and is logged).
    pub async fn new(db: Db, config: Arc<Config>, registry: Registry) -> Runtime {
        let switches = Switches::all_on();
        if let Err(e) = switches.refresh(&db).await {
            tracing::warn!(error = %e, "cannot read the job kill switches at start; assuming all on");
        }
        Runtime {
            client: Client::new(db, switches),
            registry: Arc::new(registry),
            config,
        }
    }

    /// A worker over the configured queues.
    pub fn worker(&self) -> Worker {
        self.worker_with(WorkerSettings::from_config(&self.config))
    }

    pub fn worker_with(&self, settings: WorkerSettings) -> Worker {
        Worker::new(
            self.config.clone(),
            self.client.clone(),
            self.registry.clone(),
            settings,
        )
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.client.clone(),
            self.registry.clone(),
            schedules(&self.config, &self.registry),
            self.config.jobs.scheduler_tick(),
        )
    }

    /// Starts what `role` runs; every task ends after `stop` (the worker after its grace).
    pub fn spawn(&self, role: Role, stop: CancellationToken) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let db = self.client.db().clone();
        let j = &self.config.jobs;
        tasks.spawn(self.client.switches().clone().keep_fresh(
            db.clone(),
            j.switch_refresh(),
            stop.clone(),
        ));
        if !role.runs_worker() {
            return tasks;
        }
        tasks.spawn(store_listen::wake_on_notify(
            db.clone(),
            self.client.wakers.clone(),
            stop.clone(),
        ));
        tasks.spawn(self.worker().run(stop.clone()));
        tasks.spawn(self.scheduler().run(stop.clone()));
        tasks.spawn(maintenance::rescue_loop(
            db.clone(),
            self.registry.clone(),
            j.rescue_interval(),
            stop.clone(),
        ));
        tasks.spawn(maintenance::gauges_loop(db, GAUGE_INTERVAL, stop));
        tasks
    }
}
