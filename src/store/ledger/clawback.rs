//! Refunds and chargebacks at the store: what is left of the credits the refunded purchase
//! granted is taken back (in proportion, for a partial refund); what was already spent is
//! recorded, not turned into debt.

use crate::domain::money::div_ceil;
use crate::store::Db;
use crate::store::scope::{self, Scope};
use crate::tx_run;

use super::account::{self, NewEntry};
use super::{LedgerError, Target, save_one};

/// What a clawback did, in micro-credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clawback {
    /// Taken back now.
    pub taken: i64,
    /// Owed back by the refund but already spent (or reserved by open holds).
    pub spent: i64,
    /// Grants of the purchase.
    pub grants: usize,
}

/// How much of a purchase was refunded: `refunded` of `total` (any unit), or all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refunded {
    All,
    Part { refunded: i64, total: i64 },
}

impl Refunded {
    /// The part of `amount` the refund takes back, rounded up like any charge.
    pub fn of(self, amount: i64) -> i64 {
        match self {
            Refunded::All => amount,
            Refunded::Part { refunded, total } if total > 0 => {
                let part = div_ceil(
                    amount as i128 * refunded.clamp(0, total) as i128,
                    total as i128,
                );
                part as i64
            }
            Refunded::Part { .. } => amount,
        }
    }
}

/// Takes back, from each of `grant_ids`, the refunded part of its amount less what earlier
/// clawbacks took (store refunds are cumulative), bounded by what remains unspent and
/// unreserved. Entries are keyed `{key}:{grant id}`: the same refund event applies once.
pub async fn claw_back(
    db: &Db,
    t: Target,
    grant_ids: &[i64],
    refunded: Refunded,
    key: &str,
    reason: &str,
) -> Result<Clawback, LedgerError> {
    let mut result = Clawback {
        grants: grant_ids.len(),
        ..Clawback::default()
    };
    if grant_ids.is_empty() {
        return Ok(result);
    }
    let mut tx = db.begin().await?;
    scope::apply_tx(&mut tx, Scope::App(t.app_id)).await?;
    let mut account = account::load_one(&mut tx, t).await?;
    let mut keys = Vec::new();
    let mut taken = Vec::new();
    for &grant_id in grant_ids {
        let row: Option<i64> = tx_run!(&mut tx, c => sqlx::query_scalar(
            "SELECT amount FROM credit_grants WHERE id = $1 AND app_id = $2 AND user_id = $3")
            .bind(grant_id).bind(t.app_id).bind(t.user_id).fetch_optional(&mut **c).await)?;
        let Some(amount) = row else {
            continue;
        };
        let entry_key = format!("{key}:{grant_id}");
        // Earlier clawbacks of this grant (this event's included, when it is a repeat).
        let (before, this_event): (i64, i64) = tx_run!(&mut tx, c => sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(-amount), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN idempotency_key = $3 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM ledger_entries WHERE app_id = $1 AND grant_id = $2 AND kind = 'adjustment' \
             AND idempotency_key LIKE 'clawback:%'")
            .bind(t.app_id).bind(grant_id).bind(&entry_key).fetch_one(&mut **c).await)?;
        let owed = (refunded.of(amount) - before).max(0);
        if this_event > 0 {
            continue;
        }
        // Credits reserved by open holds stay: the work they pay for has been done or is running.
        let take = account.claw_back(grant_id, owed);
        let took = take.map_or(0, |e| -e.amount);
        result.spent += owed - took;
        result.taken += took;
        if let Some(entry) = take {
            keys.push(entry_key);
            taken.push(entry);
        }
    }
    let entries: Vec<NewEntry> = taken
        .into_iter()
        .zip(&keys)
        .map(|(entry, key)| NewEntry {
            key: Some(key.as_str().into()),
            ..NewEntry::plain(t.user_id, entry, Some(reason))
        })
        .collect();
    save_one(&mut tx, t, &account, &entries).await?;
    tx.commit().await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::Refunded;

    #[test]
    fn a_partial_refund_takes_its_share_rounded_up() {
        assert_eq!(Refunded::All.of(500), 500);
        assert_eq!(
            Refunded::Part {
                refunded: 250,
                total: 500
            }
            .of(50_000_000),
            25_000_000
        );
        assert_eq!(
            Refunded::Part {
                refunded: 1,
                total: 3
            }
            .of(10),
            4
        );
        assert_eq!(
            Refunded::Part {
                refunded: 900,
                total: 500
            }
            .of(7),
            7
        );
        assert_eq!(
            Refunded::Part {
                refunded: 5,
                total: 0
            }
            .of(7),
            7
        );
    }
}
