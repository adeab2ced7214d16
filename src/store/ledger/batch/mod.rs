//! Group commit for the AI call path: the holds and settlements of concurrent calls are
//! written together by one task per process, one transaction per batch, instead of one
//! transaction each.
//!
//! Why: every ledger write takes the user's account lock (SQLite: the only writer), so one
//! user's concurrent calls queue behind each other, and each call cost two transactions of
//! 7–11 statements. A batch locks each user's account once, checks every hold against the
//! balance in memory in arrival order, and writes the entries and usage records of all its
//! calls in one multi-row statement each: the same rows and invariants as [`super::reserve`]
//! and [`super::close_call`], with a fraction of the statements (docs/decisions.md).
//!
//! A caller waits for the batch's commit, so a hold is durable before its provider call and a
//! charge before the call's answer ends. If a batch fails, it is rolled back and its calls are
//! written one by one with the ordinary functions: a batch never loses or doubles a write.

use tokio::sync::{mpsc, oneshot};

mod write;

use super::holds;
use super::holds::{CallClose, CallHold};
use super::{HoldRow, HoldState, LedgerError, Note, Target, Written, metrics};
use crate::store::Db;
use write::write;

/// The most calls one transaction writes.
const MAX_BATCH: usize = 256;

/// Sends the call path's ledger writes to this process's batch writer. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    db: Db,
    ops: mpsc::Sender<Op>,
    /// Period credits known granted and plans last read (see [`super::refresh_for_charge`]).
    granted: std::sync::Arc<super::GrantedKeys>,
    plans: std::sync::Arc<super::PlanCache>,
    /// Each user's available credits after this process's last batch naming them.
    seen: std::sync::Arc<Seen>,
}

/// Available credits as this process's batches last left them: a hint, never the truth (other
/// processes and the one-by-one writes change balances without telling it).
#[derive(Default)]
struct Seen(std::sync::Mutex<std::collections::HashMap<Target, i64>>);

/// How many users the hint remembers; past it, it starts again (a hint may be forgotten).
const SEEN_MAX: usize = 100_000;

enum Op {
    Reserve(CallHold, oneshot::Sender<Result<Written<i64>, LedgerError>>),
    Close(CallClose, oneshot::Sender<Result<(), LedgerError>>),
}

impl Op {
    fn target(&self) -> Target {
        match self {
            Op::Reserve(r, _) => r.t,
            Op::Close(c, _) => c.t,
        }
    }
}

/// What a batch did with one call's write.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    Held(i64),
    Insufficient {
        available: i64,
        needed: i64,
    },
    /// Priced on plan columns the user's row no longer has.
    PlanChanged,
    Closed,
    /// Written alone after the batch: the batch failed, or the hold was not open (expired by
    /// the job meanwhile, or not this user's) and the ordinary close answers with the precise
    /// conflict.
    Retry,
}

impl Batcher {
    /// Starts the writer task (it ends when the last `Batcher` is dropped).
    pub fn start(db: Db) -> Batcher {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let seen = std::sync::Arc::<Seen>::default();
        tokio::spawn(write_batches(db.clone(), rx, seen.clone()));
        Batcher {
            db,
            ops: tx,
            granted: Default::default(),
            plans: Default::default(),
            seen,
        }
    }

    /// Whether this process last saw the user with credits enough for a hold of `amount`:
    /// true lets a call send its provider request while its hold is written. A wrong hint
    /// costs a wasted provider call (counted) or a wait, never a wrong charge.
    pub fn likely_covers(&self, t: Target, amount: i64, overdraft: i64) -> bool {
        let seen = self.seen.0.lock().expect("seen balances");
        seen.get(&t)
            .is_some_and(|available| available - amount >= -overdraft)
    }

    /// The plan an AI call is priced on: this process's last reading unless `fresh` (see
    /// [`super::refresh_for_charge`]).
    pub async fn plan(
        &self,
        t: Target,
        billing: &crate::domain::plans::BillingSettings,
        fresh: bool,
    ) -> Result<super::CallPlan, LedgerError> {
        let caches = (&*self.granted, &*self.plans);
        super::refresh_for_charge(&self.db, t, billing, caches, fresh).await
    }

    /// Reserves a hold: its id, the first hold's when `reserve.key` was written before,
    /// [`LedgerError::Insufficient`], or [`LedgerError::PlanChanged`] when the plan it was
    /// priced on is not the user's any more.
    pub async fn reserve(&self, reserve: CallHold) -> Result<Written<i64>, LedgerError> {
        debug_assert!(reserve.amount > 0);
        let (reply, answer) = oneshot::channel();
        match self.ops.send(Op::Reserve(reserve, reply)).await {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(writer_gone())),
            Err(mpsc::error::SendError(Op::Reserve(reserve, _))) => {
                alone_reserve(&self.db, &reserve).await
            }
            Err(_) => unreachable!("a reserve was sent"),
        }
    }

    /// Reserves an AI call's hold: [`Batcher::reserve`], except that a call whose key already
    /// holds credits is refused (409): it ran before its process died and is not run again.
    pub async fn reserve_call(&self, reserve: CallHold) -> Result<i64, LedgerError> {
        let app_id = reserve.t.app_id;
        match self.reserve(reserve).await? {
            Written::New(id) => Ok(id),
            Written::Replayed(id) => {
                let first = super::hold(&self.db, app_id, id).await?;
                let first = first.ok_or_else(|| LedgerError::NotFound(format!("no hold {id}")))?;
                Err(LedgerError::Conflict(already_ran(&first)))
            }
        }
    }

    /// Closes a hold (with its usage record, for an AI call), in one transaction.
    pub async fn close(&self, close: CallClose) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        match self.ops.send(Op::Close(close, reply)).await {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(writer_gone())),
            Err(mpsc::error::SendError(Op::Close(close, _))) => alone_close(&self.db, &close).await,
            Err(_) => unreachable!("a close was sent"),
        }
    }

    /// Closes hold `hold_id` of the app at `charged`, ending in `ends` (the holds API's settle
    /// and release): the hold as it ends, or as it ended when the same close was made before.
    pub async fn close_hold(
        &self,
        app_id: i64,
        hold_id: i64,
        charged: i64,
        ends: HoldState,
    ) -> Result<Written<HoldRow>, LedgerError> {
        let not_found = || LedgerError::NotFound(format!("no hold {hold_id}"));
        let before = super::hold(&self.db, app_id, hold_id)
            .await?
            .ok_or_else(not_found)?;
        if before.state != HoldState::Open {
            // Already closed: the one-by-one close answers a repeat or the conflict.
            return alone_close_hold(&self.db, app_id, hold_id, charged, ends).await;
        }
        let t = Target {
            app_id,
            user_id: before.user_id,
        };
        let close = CallClose {
            t,
            hold_id,
            charged,
            ends,
            reason: None,
            usage: None,
            credits_low: None,
        };
        match self.close(close).await {
            Ok(()) => {
                let after = super::hold(&self.db, app_id, hold_id).await?;
                Ok(Written::New(after.ok_or_else(not_found)?))
            }
            Err(e) => Err(e),
        }
    }
}

async fn alone_close_hold(
    db: &Db,
    app_id: i64,
    hold_id: i64,
    charged: i64,
    ends: HoldState,
) -> Result<Written<HoldRow>, LedgerError> {
    match ends {
        HoldState::Released => super::release(db, app_id, hold_id, None).await,
        _ => super::settle(db, app_id, hold_id, charged, None).await,
    }
}

fn writer_gone() -> LedgerError {
    LedgerError::Db(sqlx::Error::WorkerCrashed)
}

async fn write_batches(db: Db, mut rx: mpsc::Receiver<Op>, seen: std::sync::Arc<Seen>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut ops, MAX_BATCH).await > 0 {
        commit(&db, std::mem::take(&mut ops), &seen).await;
    }
}

/// Writes one batch and answers its callers.
async fn commit(db: &Db, ops: Vec<Op>, seen: &Seen) {
    let started = std::time::Instant::now();
    let written = write(db, &ops).await;
    metrics::batch(ops.len(), started.elapsed(), written.is_err());
    let outcomes = match written {
        Ok(written) => {
            let mut known = seen.0.lock().expect("seen balances");
            if known.len() > SEEN_MAX {
                known.clear();
            }
            known.extend(written.available);
            written.outcomes
        }
        Err(e) => {
            tracing::warn!(error = %e, calls = ops.len(), "a ledger batch failed; writing its calls one by one");
            vec![Outcome::Retry; ops.len()]
        }
    };
    for (op, outcome) in ops.into_iter().zip(outcomes) {
        match op {
            Op::Reserve(r, reply) => {
                let answer = match outcome {
                    Outcome::Held(id) => Ok(Written::New(id)),
                    Outcome::Insufficient { available, needed } => {
                        Err(LedgerError::Insufficient { available, needed })
                    }
                    Outcome::PlanChanged => Err(LedgerError::PlanChanged),
                    _ => alone_reserve(db, &r).await,
                };
                // The caller left (its client disconnected) while the hold was written. A hold
                // under an idempotency key stays open: the client's retry finds it and is
                // answered with it (the expiry job releases it if no retry comes). Without a key
                // nobody can find it again, so it is released now.
                if let Err(Ok(Written::New(id))) = reply.send(answer)
                    && r.key.is_none()
                {
                    release_orphan(db, r.t, id).await;
                }
            }
            Op::Close(close, reply) => {
                let answer = match outcome {
                    Outcome::Closed => Ok(()),
                    _ => alone_close(db, &close).await,
                };
                let _ = reply.send(answer);
            }
        }
    }
}

async fn alone_reserve(db: &Db, r: &CallHold) -> Result<Written<i64>, LedgerError> {
    // Alone, the plan is checked just before the hold rather than in its transaction: as
    // fresh as the gateway read it before batching existed.
    if r.plan.is_some() && r.plan != super::plan_columns(db, r.t).await? {
        return Err(LedgerError::PlanChanged);
    }
    let note = Note {
        reason: r.reason,
        reference: r.reference.as_deref(),
        key: r.key.as_deref(),
    };
    Ok(
        match super::reserve(db, r.t, r.amount, r.overdraft, r.expires_at, note).await? {
            Written::New(hold) => Written::New(hold.id),
            Written::Replayed(first) => Written::Replayed(first.id),
        },
    )
}

/// Why a call whose key already holds credits is not run again.
fn already_ran(first: &holds::HoldRow) -> String {
    let charged = first
        .charged
        .map(|c| format!(", charged {c} micro-credits"))
        .unwrap_or_default();
    format!(
        "the first request with this Idempotency-Key already made this AI call (hold {}, {}{charged}) \
         and its answer was lost when the server stopped; it is not run or charged again. \
         Send a new Idempotency-Key to make a new call",
        first.id,
        first.state.as_str()
    )
}

async fn alone_close(db: &Db, c: &CallClose) -> Result<(), LedgerError> {
    holds::close_call(db, c).await.map(|_| ())
}

async fn release_orphan(db: &Db, t: Target, hold_id: i64) {
    let why = Some("ai call: the client left before the call started");
    if let Err(e) = super::release(db, t.app_id, hold_id, why).await {
        tracing::warn!(hold_id, error = %e, "releasing an orphaned hold failed; the expiry job will");
    }
}
