//! `tollgate import`: users, their plans and balances from another system, as CSV (a header
//! row: `external_id,plan,balance,reason`) or JSON (an array of those objects). Every row is
//! checked before anything is written, and every problem is listed with its row; each balance
//! becomes one grant with its reason, keyed by the file and the user, so importing the same
//! file again grants nothing twice.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::domain::money::Micros;
use crate::domain::plans::BillingSettings;
use crate::store::Db;
use crate::store::identity::{self, AppRow, NewAudit};
use crate::store::ledger::{self, Credit, EntryKind, Note, Target, UserPlan};

/// One user to import.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub external_id: String,
    #[serde(default)]
    pub plan: Option<String>,
    /// Credits, as an exact decimal (`12.5`); empty or 0: no grant.
    #[serde(default)]
    pub balance: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A row that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub external_id: String,
    pub plan: Option<String>,
    pub balance: Micros,
    pub reason: String,
}

/// The file's format, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn of(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

const DEFAULT_REASON: &str = "imported balance";

/// Reads and checks every row; returns all of them, or every problem found (`row N: …`, row 1
/// being the first after a CSV header).
pub fn parse(
    bytes: &[u8],
    format: Format,
    billing: &BillingSettings,
) -> Result<Vec<Checked>, Vec<String>> {
    let rows: Vec<Result<Row, String>> = match format {
        Format::Json => match serde_json::from_slice::<Vec<Row>>(bytes) {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) => return Err(vec![format!("not a JSON array of users: {e}")]),
        },
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(bytes);
            reader
                .deserialize::<Row>()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect()
        }
    };
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, row) in rows.into_iter().enumerate() {
        let n = i + 1;
        // A repeated id is named even when its first row had other problems.
        let id = row.as_ref().ok().map(|r| r.external_id.trim().to_string());
        if let Some(id) = id.filter(|id| !id.is_empty() && !seen.insert(id.clone())) {
            problems.push(format!("row {n}: external_id {id:?} appears twice"));
            continue;
        }
        match row.and_then(|r| check(r, billing)) {
            Ok(c) => checked.push(c),
            Err(e) => problems.push(format!("row {n}: {e}")),
        }
    }
    if checked.is_empty() && problems.is_empty() {
        problems.push("no rows".into());
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn check(row: Row, billing: &BillingSettings) -> Result<Checked, String> {
    let mut problems = Vec::new();
    let id = row.external_id.trim();
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        problems.push("external_id: 1 to 255 characters, no control characters".to_string());
    }
    let plan = row.plan.filter(|p| !p.trim().is_empty());
    if let Some(p) = &plan
        && !billing.plans.iter().any(|known| &known.id == p)
    {
        let known: Vec<&str> = billing.plans.iter().map(|k| k.id.as_str()).collect();
        problems.push(format!(
            "plan: {p:?} is not one of the app's plans {known:?}"
        ));
    }
    let balance = match row
        .balance
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        None => Micros(0),
        Some(text) => match Micros::parse(text) {
            Ok(m) if m.0 < 0 => {
                problems.push(format!("balance: {text} is negative"));
                Micros(0)
            }
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("balance: {e}"));
                Micros(0)
            }
        },
    };
    let reason = row
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REASON.into());
    if reason.len() > 500 {
        problems.push("reason: at most 500 characters".into());
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Checked {
        external_id: id.to_string(),
        plan,
        balance,
        reason,
    })
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub users: usize,
    pub created: usize,
    pub plans_set: usize,
    pub granted: usize,
    /// Grants this file had made already (an import run again).
    pub already: usize,
}

/// Applies checked rows to `app`; `file_key` (from the file's digest) keys each grant.
pub async fn apply(
    db: &Db,
    app: &AppRow,
    rows: &[Checked],
    file_key: &str,
) -> anyhow::Result<Imported> {
    let billing = &app.settings.billing;
    let mut done = Imported::default();
    for row in rows {
        let (user, created) = identity::find_or_create_user(db, app.id, &row.external_id).await?;
        let t = Target {
            app_id: app.id,
            user_id: user.id,
        };
        done.users += 1;
        done.created += usize::from(created);
        let details = serde_json::json!({ "plan": row.plan, "balance_micros": row.balance.0,
            "reason": row.reason, "file": file_key })
        .to_string();
        let audit = NewAudit {
            actor: "cli",
            actor_role: None,
            action: "users.import",
            target: Some(&row.external_id),
            app_id: Some(app.id),
            request_id: None,
            details: Some(&details),
        };
        if let Some(plan) = &row.plan {
            let wanted = UserPlan {
                plan_id: Some(plan.clone()),
                billing: None,
                until: None,
            };
            ledger::set_plan(db, t, &wanted, Some(&audit)).await?;
            done.plans_set += 1;
        }
        if row.balance.is_positive() {
            ledger::refresh(db, t, billing).await?;
            let key = format!("import:{file_key}:{}", row.external_id);
            let credit = Credit {
                kind: EntryKind::Grant,
                amount: row.balance.0,
                source: "manual",
                expires_at: None,
                note: Note {
                    reason: Some(&row.reason),
                    reference: Some("import"),
                    key: Some(&key),
                },
            };
            match ledger::credit(db, t, &credit, Some(&audit)).await? {
                ledger::Written::Replayed(_) => done.already += 1,
                ledger::Written::New(_) => done.granted += 1,
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing() -> BillingSettings {
        serde_json::from_value(serde_json::json!({
            "default_plan": "free", "plans": [{ "id": "free" }, { "id": "pro" }] }))
        .unwrap()
    }

    #[test]
    fn csv_rows_are_read_exactly_with_quoted_commas() {
        let csv = "external_id,plan,balance,reason\n\
                   u1,pro,12.5,\"moved from Lago, 2026\"\n\
                   u2,,,\n";
        let rows = parse(csv.as_bytes(), Format::Csv, &billing()).unwrap();
        assert_eq!(rows[0].balance, Micros(12_500_000));
        assert_eq!(rows[0].reason, "moved from Lago, 2026");
        assert_eq!(rows[1].plan, None);
        assert_eq!(rows[1].balance, Micros(0));
        assert_eq!(rows[1].reason, DEFAULT_REASON);
    }

    #[test]
    fn every_bad_row_is_named_at_once() {
        let csv = "external_id,plan,balance\nu1,gold,1\n,free,-2\nu3,free,1.0000001\nu1,free,1\n";
        let problems = parse(csv.as_bytes(), Format::Csv, &billing()).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].starts_with("row 1: plan: \"gold\""),
            "{problems:?}"
        );
        assert!(problems[1].contains("external_id") && problems[1].contains("negative"));
        assert!(problems[2].starts_with("row 3: balance"), "{problems:?}");
        assert!(problems[3].contains("appears twice"), "{problems:?}");
        let json = br#"[{"external_id": "u1", "credits": 5}]"#;
        let problems = parse(json, Format::Json, &billing()).unwrap_err();
        assert!(problems[0].contains("unknown field"), "{problems:?}");
    }
}
