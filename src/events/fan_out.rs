//! From one stored event to its deliveries: one per endpoint that wants it, each with its
//! delivery job, made in one transaction (a re-run adds nothing). Replays use the same path
//! with a new round.

use serde::{Deserialize, Serialize};

use crate::jobs::{Client, EnqueueOptions};
use crate::store::Db;
use crate::store::events as store;

/// The job that sends one delivery (`events.deliver`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deliver {
    pub app: i64,
    pub delivery: i64,
}

/// Which deliveries to make: of which event, in which round (a new one when `None`), to
/// which endpoint (every one that wants it when `None`), due when (now when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Deliveries {
    pub app_id: i64,
    pub event: i64,
    pub round: Option<i64>,
    pub only: Option<i64>,
    pub run_at: Option<i64>,
}

/// Makes the deliveries and enqueues their jobs; returns how many were made.
pub async fn deliver(db: &Db, jobs: &Client, d: Deliveries) -> anyhow::Result<usize> {
    let Deliveries {
        app_id,
        event,
        round,
        only,
        run_at,
    } = d;
    let mut tx = db.begin().await?;
    let round = match round {
        Some(r) => r,
        None => store::next_round(&mut tx, app_id, event).await?,
    };
    let made = store::add_deliveries(&mut tx, app_id, event, round, only).await?;
    for &delivery in &made {
        jobs.enqueue_tx(
            &mut tx,
            &Deliver {
                app: app_id,
                delivery,
            },
            EnqueueOptions {
                run_at,
                ..Default::default()
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(made.len())
}

/// What a replay covers.
#[derive(Debug, Clone, Copy)]
pub enum Replay<'a> {
    /// One message, by its `webhook-id`.
    Message(&'a str),
    /// Every event created in `[from, to)` (ms since the epoch), at most 10,000.
    Range { from: i64, to: i64 },
}

/// Sends events again as a new round of deliveries (to `only`, or to every endpoint that wants
/// them now). Returns (events, deliveries) made; `None` when the message does not exist.
pub async fn replay(
    db: &Db,
    jobs: &Client,
    app_id: i64,
    what: Replay<'_>,
    only: Option<i64>,
) -> anyhow::Result<Option<(usize, usize)>> {
    let events = match what {
        Replay::Message(msg_id) => match store::event_by_msg_id(db, app_id, msg_id).await? {
            Some(e) => vec![e.id],
            None => return Ok(None),
        },
        Replay::Range { from, to } => store::events_between(db, app_id, from, to, 10_000).await?,
    };
    let mut deliveries = 0;
    for &event in &events {
        let d = Deliveries {
            app_id,
            event,
            round: None,
            only,
            run_at: None,
        };
        deliveries += deliver(db, jobs, d).await?;
    }
    Ok(Some((events.len(), deliveries)))
}
