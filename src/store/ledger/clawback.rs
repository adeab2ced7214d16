//! Refunds and chargebacks at the store: what is left of the credits the refunded purchase
//! granted is taken back; what was already spent is recorded, not turned into debt.

use crate::store::Db;
use crate::store::scope::{self, Scope};
use crate::tx_run;

use super::{LedgerError, NewEntry, Note, Target, append, by_key, lock, save};

/// What a clawback did, in micro-credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clawback {
    /// Taken back from the purchase's grants.
    pub taken: i64,
    /// Granted by the purchase but already spent (or reserved by open holds).
    pub spent: i64,
    /// Grants found for the purchase.
    pub grants: usize,
}

/// Takes back what remains of every grant whose entry names one of `references`, once per
/// `key` (each grant's entry is keyed `{key}:{grant id}`).
pub async fn claw_back(
    db: &Db,
    t: Target,
    references: &[String],
    key: &str,
    reason: &str,
) -> Result<Clawback, LedgerError> {
    let mut result = Clawback::default();
    if references.is_empty() {
        return Ok(result);
    }
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let mut account = lock(&mut tx, t).await?;
    let placeholders: Vec<String> = (3..references.len() + 3).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT g.id, g.amount, g.remaining FROM credit_grants g JOIN ledger_entries e \
         ON e.grant_id = g.id AND e.kind = 'grant' WHERE g.app_id = $1 AND g.user_id = $2 \
         AND e.reference IN ({}) ORDER BY g.id",
        placeholders.join(", ")
    );
    let grants: Vec<(i64, i64, i64)> = tx_run!(&mut tx, c => {
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(t.app_id).bind(t.user_id);
        for r in references {
            q = q.bind(r);
        }
        q.fetch_all(&mut **c).await
    })?;
    result.grants = grants.len();
    for (grant_id, amount, remaining) in grants {
        let entry_key = format!("{key}:{grant_id}");
        if let Some(first) = by_key(&mut tx, t.app_id, Some(&entry_key)).await? {
            result.taken += -first.amount;
            result.spent += amount + first.amount;
            continue;
        }
        // Credits reserved by open holds stay: the work they pay for has been done or is running.
        let take = remaining.min((account.balance - account.held).max(0));
        result.spent += amount - take;
        if take == 0 {
            continue;
        }
        tx_run!(&mut tx, c => sqlx::query(
            "UPDATE credit_grants SET remaining = remaining - $1 WHERE id = $2")
            .bind(take).bind(grant_id).execute(&mut **c).await.map(|_| ()))?;
        account.balance -= take;
        result.taken += take;
        let entry = NewEntry {
            kind: "adjustment",
            amount: -take,
            held: 0,
            grant_id: Some(grant_id),
            hold_id: None,
            source: None,
            note: Note {
                reason: Some(reason),
                reference: None,
                key: Some(&entry_key),
            },
        };
        append(&mut tx, t, account.balance, entry).await?;
    }
    save(&mut tx, t, account).await?;
    tx.commit().await?;
    Ok(result)
}
