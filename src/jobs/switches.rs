//! Kill switches and queue pauses. They live in the database (`settings`, `job_queues`) so an
//! operator flips them once for every replica; each process re-reads them every
//! `jobs.switch_refresh_ms` and acts on its cached copy in between.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::jobs::admin;
use crate::store::{Db, now_ms};

/// A process-wide switch. All are on unless an operator turned one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Schedulers enqueue cron slots.
    Scheduler,
    /// New jobs may be enqueued.
    Enqueue,
    /// Workers start jobs.
    Processing,
}

impl Switch {
    pub const ALL: [Switch; 3] = [Switch::Scheduler, Switch::Enqueue, Switch::Processing];

    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Scheduler => "scheduler",
            Switch::Enqueue => "enqueue",
            Switch::Processing => "processing",
        }
    }

    /// The `settings` row that stores it.
    pub fn key(self) -> String {
        format!("{KEY_PREFIX}{}", self.as_str())
    }
}

const KEY_PREFIX: &str = "jobs.switch.";

impl FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Switch::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                format!("unknown switch {s:?}; expected scheduler, enqueue or processing")
            })
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
struct State {
    scheduler: bool,
    enqueue: bool,
    processing: bool,
    paused: HashSet<String>,
}

/// This process's copy of the switches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Switches {
    state: Arc<RwLock<State>>,
}

impl Default for Switches {
    fn default() -> Self {
        Switches::all_on()
    }
}

impl Switches {
    /// Everything on, nothing paused: the state before the first read.
    pub fn all_on() -> Switches {
        Switches {
            state: Arc::new(RwLock::new(State {
                scheduler: true,
                enqueue: true,
                processing: true,
                paused: HashSet::new(),
            })),
        }
    }

    pub fn is_on(&self, switch: Switch) -> bool {
        let s = self.state.read().expect("switch lock");
        match switch {
            Switch::Scheduler => s.scheduler,
            Switch::Enqueue => s.enqueue,
            Switch::Processing => s.processing,
        }
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.state
            .read()
            .expect("switch lock")
            .paused
            .contains(queue)
    }

    /// Re-reads the switches. When enqueueing comes back on, parked jobs are let go.
    pub async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let stored = read_all(db).await?;
        let on = |w: Switch| stored.iter().any(|&(s, on)| s == w && on);
        let paused = admin::queues(db)
            .await?
            .into_iter()
            .filter(|q| q.paused)
            .map(|q| q.name)
            .collect();
        let next = State {
            scheduler: on(Switch::Scheduler),
            enqueue: on(Switch::Enqueue),
            processing: on(Switch::Processing),
            paused,
        };
        let was_enqueue = {
            let mut s = self.state.write().expect("switch lock");
            let was = s.enqueue;
            *s = next.clone();
            was
        };
        if !was_enqueue && next.enqueue {
            let n = admin::unpark_all(db).await?;
            tracing::info!(jobs = n, "enqueue switch is on again: parked jobs released");
        }
        Ok(())
    }

    /// Refreshes every `every` until `stop`; a failed read keeps the last known state.
    pub async fn keep_fresh(self, db: Db, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh(&db).await {
                        tracing::warn!(error = %e, "cannot re-read the job kill switches; keeping the last known state");
                    }
                }
            }
        }
    }
}

/// Turns a switch on or off for every replica (they notice within `jobs.switch_refresh_ms`).
pub async fn set(db: &Db, switch: Switch, on: bool) -> Result<(), sqlx::Error> {
    admin::set_setting(db, &switch.key(), if on { "on" } else { "off" }, now_ms()).await?;
    if switch == Switch::Enqueue && on {
        admin::unpark_all(db).await?;
    }
    Ok(())
}

/// The stored value of every switch.
pub async fn read_all(db: &Db) -> Result<Vec<(Switch, bool)>, sqlx::Error> {
    let values = admin::settings_with_prefix(db, KEY_PREFIX).await?;
    Ok(Switch::ALL
        .into_iter()
        .map(|w| {
            let key = w.key();
            let on = values
                .iter()
                .find(|(k, _)| *k == key)
                .is_none_or(|(_, v)| v != "off");
            (w, on)
        })
        .collect())
}
