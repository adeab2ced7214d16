//! One open Stripe Checkout Session per user and price. A request first claims the
//! `(app, user, price)` row; only the claimant creates a session, and every concurrent request
//! waits for it and answers the same one. The row's `generation` is part of the Stripe
//! Idempotency-Key, so a claim taken over after its process died asks Stripe with the same key
//! and gets the session the dead process may already have made.

use crate::scoped_run;
use crate::store::ledger::Target;
use crate::store::scope::Scope;
use crate::store::{Db, now_ms};

/// A claim older than this is taken over (its request died before recording the session).
pub const CLAIM_TIMEOUT_MS: i64 = 30_000;

/// The row as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRow {
    pub generation: i64,
    pub session_id: Option<String>,
    pub url: Option<String>,
    pub expires_at: Option<i64>,
    pub claimed_at: i64,
}

/// What the caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Create the session of this generation (its Stripe Idempotency-Key).
    Create(i64),
    /// A session is recorded: reuse it if Stripe still has it open.
    Recorded(CheckoutRow),
    /// Another request is creating it: wait and look again.
    Wait,
}

async fn read(db: &Db, t: Target, price: &str) -> Result<Option<CheckoutRow>, sqlx::Error> {
    type Row = (i64, Option<String>, Option<String>, Option<i64>, i64);
    let row: Option<Row> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_as(
        "SELECT generation, session_id, url, expires_at, claimed_at FROM checkout_sessions \
         WHERE app_id = $1 AND user_id = $2 AND price = $3")
        .bind(t.app_id).bind(t.user_id).bind(price).fetch_optional(c).await)?;
    Ok(row.map(|r| CheckoutRow {
        generation: r.0,
        session_id: r.1,
        url: r.2,
        expires_at: r.3,
        claimed_at: r.4,
    }))
}

/// Claims the right to create the user's session for `price`, or says what another request
/// left.
pub async fn claim(db: &Db, t: Target, price: &str) -> Result<Claim, sqlx::Error> {
    let now = now_ms();
    let inserted: Option<i64> = scoped_run!(db, Scope::App(t.app_id), c => sqlx::query_scalar(
        "INSERT INTO checkout_sessions (app_id, user_id, price, generation, claimed_at) \
         VALUES ($1, $2, $3, 1, $4) ON CONFLICT (app_id, user_id, price) DO NOTHING \
         RETURNING generation")
        .bind(t.app_id).bind(t.user_id).bind(price).bind(now).fetch_optional(c).await)?;
    if let Some(generation) = inserted {
        return Ok(Claim::Create(generation));
    }
    let Some(row) = read(db, t, price).await? else {
        return Ok(Claim::Wait);
    };
    if row.session_id.is_some() {
        return Ok(Claim::Recorded(row));
    }
    if row.claimed_at + CLAIM_TIMEOUT_MS > now {
        return Ok(Claim::Wait);
    }
    // Its claimant died: take over the same generation (the same Stripe key).
    let taken = take(db, t, price, row.generation, row.generation, row.claimed_at).await?;
    Ok(if taken {
        Claim::Create(row.generation)
    } else {
        Claim::Wait
    })
}

/// Claims the next generation after the recorded session closed (paid, expired): its number,
/// or `None` when a concurrent request did first.
pub async fn renew(
    db: &Db,
    t: Target,
    price: &str,
    row: &CheckoutRow,
) -> Result<Option<i64>, sqlx::Error> {
    let next = row.generation + 1;
    let taken = take(db, t, price, row.generation, next, row.claimed_at).await?;
    Ok(taken.then_some(next))
}

async fn take(
    db: &Db,
    t: Target,
    price: &str,
    from: i64,
    to: i64,
    claimed_at: i64,
) -> Result<bool, sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "UPDATE checkout_sessions SET generation = $1, session_id = NULL, url = NULL, \
         expires_at = NULL, claimed_at = $2 \
         WHERE app_id = $3 AND user_id = $4 AND price = $5 AND generation = $6 AND claimed_at = $7")
        .bind(to).bind(now_ms()).bind(t.app_id).bind(t.user_id).bind(price).bind(from)
        .bind(claimed_at).execute(c).await.map(|r| r.rows_affected() == 1))
}

/// Records the session the claimant created.
pub async fn record(
    db: &Db,
    t: Target,
    price: &str,
    generation: i64,
    session: (&str, &str, Option<i64>),
) -> Result<(), sqlx::Error> {
    let (id, url, expires_at) = session;
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "UPDATE checkout_sessions SET session_id = $1, url = $2, expires_at = $3 \
         WHERE app_id = $4 AND user_id = $5 AND price = $6 AND generation = $7")
        .bind(id).bind(url).bind(expires_at).bind(t.app_id).bind(t.user_id).bind(price)
        .bind(generation).execute(c).await.map(|_| ()))
}

/// Gives up a claim whose session could not be created (Stripe refused or failed): the next
/// request takes it over at once, under a new generation — Stripe replays a refusal to the
/// same Idempotency-Key for a day.
pub async fn abandon(db: &Db, t: Target, price: &str, generation: i64) -> Result<(), sqlx::Error> {
    scoped_run!(db, Scope::App(t.app_id), c => sqlx::query(
        "UPDATE checkout_sessions SET generation = generation + 1, claimed_at = 0 \
         WHERE app_id = $1 AND user_id = $2 AND price = $3 AND generation = $4 \
         AND session_id IS NULL")
        .bind(t.app_id).bind(t.user_id).bind(price).bind(generation).execute(c).await.map(|_| ()))
}
