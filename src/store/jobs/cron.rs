//! Cron slots: the primary key (name, slot) is what makes any number of schedulers enqueue
//! exactly one job per slot.

use crate::store::{Db, Tx};
use crate::{db_run, tx_run};

/// Claims a slot in the caller's transaction; false when a scheduler already has it.
pub async fn claim_slot(
    tx: &mut Tx,
    name: &str,
    slot_at: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n = tx_run!(tx, c => sqlx::query(
        "INSERT INTO cron_slots (name, slot_at, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name, slot_at) DO NOTHING")
        .bind(name).bind(slot_at).bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Records which job a claimed slot produced.
pub async fn set_slot_job(
    tx: &mut Tx,
    name: &str,
    slot_at: i64,
    job_id: i64,
) -> Result<(), sqlx::Error> {
    tx_run!(tx, c => sqlx::query("UPDATE cron_slots SET job_id = $1 WHERE name = $2 AND slot_at = $3")
        .bind(job_id).bind(name).bind(slot_at)
        .execute(&mut **c).await.map(|_| ()))
}

/// The latest slot of a schedule that any scheduler claimed.
pub async fn last_slot(db: &Db, name: &str) -> Result<Option<i64>, sqlx::Error> {
    db_run!(db, pool => sqlx::query_scalar("SELECT MAX(slot_at) FROM cron_slots WHERE name = $1")
        .bind(name).fetch_one(pool).await)
}

/// Deletes slots older than `before`, keeping each schedule's latest (the catch-up rule needs
/// it).
pub async fn prune_slots(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    db_run!(db, pool => sqlx::query(
        "DELETE FROM cron_slots WHERE slot_at < $1 AND slot_at < \
         (SELECT MAX(s.slot_at) FROM cron_slots s WHERE s.name = cron_slots.name)")
        .bind(before).execute(pool).await.map(|r| r.rows_affected()))
}
