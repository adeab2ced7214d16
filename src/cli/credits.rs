//! `tollgate credits grant|show` and `tollgate ledger verify`.

use crate::store::ledger::EntryKind;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate};
use clap::Subcommand;

use super::identity::app;
use crate::domain::money::Micros;
use crate::store::identity::{self, NewAudit};
use crate::store::ledger::{self, Credit, GRANT_SOURCES, Note, Target};
use crate::store::{Db, now_ms};

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Grants credits to a user of the app (an unknown user is refused unless --create).
    Grant {
        #[arg(long)]
        app: String,
        #[arg(long)]
        user: String,
        /// Create the user if the app has not seen them yet (a typo would otherwise make a new
        /// user, who then also gets the plan's monthly credits).
        #[arg(long)]
        create: bool,
        /// Credits, as an exact decimal (e.g. 100 or 2.5).
        #[arg(long)]
        credits: String,
        /// Expiry: a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// monthly_free, subscription, top_up, promo, incentive or manual.
        #[arg(long, default_value = "manual")]
        source: String,
    },
    /// Shows a user's plan, balances and buckets.
    Show {
        #[arg(long)]
        app: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recomputes every balance from its entries, holds and buckets; exits 1 on any mismatch.
    Verify,
}

/// `2026-12-01` (midnight UTC) or `2026-12-01T12:00:00Z`, as ms since the epoch.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .context("invalid date")?
        .and_utc()
        .timestamp_millis())
}

pub async fn credits(db: &Db, command: CreditsCommand) -> anyhow::Result<()> {
    match command {
        CreditsCommand::Grant {
            app: slug,
            user,
            create,
            credits,
            expires_at,
            reason,
            source,
        } => {
            let amount = Micros::parse(&credits).map_err(anyhow::Error::msg)?;
            if !amount.is_positive() {
                bail!("--credits must be greater than 0");
            }
            if !GRANT_SOURCES.contains(&source.as_str()) {
                bail!("--source must be one of {}", GRANT_SOURCES.join(", "));
            }
            let expires_at = expires_at.as_deref().map(parse_time).transpose()?;
            if expires_at.is_some_and(|at| at <= now_ms()) {
                bail!("--expires-at is in the past");
            }
            let app = app(db, &slug).await?;
            let known = identity::user_by_external_id(db, app.id, &user)
                .await?
                .filter(|u| u.deleted_at.is_none());
            let u = match known {
                Some(u) => u,
                None if create => identity::find_or_create_user(db, app.id, &user).await?.0,
                None => bail!(
                    "no user {user:?} in app {slug:?}; check the id, or pass --create to create them"
                ),
            };
            let t = Target {
                app_id: app.id,
                user_id: u.id,
            };
            ledger::refresh(db, t, &app.settings.billing).await?;
            let details = serde_json::json!({ "amount_micros": amount.0, "source": source, "expires_at": expires_at, "reason": reason }).to_string();
            let audit = NewAudit {
                actor: "cli",
                actor_role: None,
                action: "credits.grant",
                target: Some(&user),
                app_id: Some(app.id),
                request_id: None,
                details: Some(&details),
            };
            let credit = Credit {
                kind: EntryKind::Grant,
                amount: amount.0,
                source: &source,
                expires_at,
                note: Note {
                    reason: reason.as_deref(),
                    reference: Some("cli"),
                    key: None,
                },
            };
            let entry = ledger::credit(db, t, &credit, Some(&audit))
                .await?
                .into_inner();
            println!(
                "granted {amount} credits to {user} of {slug} (entry {}); balance {}",
                entry.id,
                Micros(entry.balance_after)
            );
        }
        CreditsCommand::Show { app: slug, user } => {
            let app = app(db, &slug).await?;
            let Some(u) = identity::user_by_external_id(db, app.id, &user).await? else {
                bail!("no user {user:?} in {slug}");
            };
            let t = Target {
                app_id: app.id,
                user_id: u.id,
            };
            let (_, plan) = ledger::refresh(db, t, &app.settings.billing).await?;
            let b = ledger::balances(db, t).await?;
            println!("plan      {} ({})", plan.id, plan.name);
            println!("balance   {}", Micros(b.balance));
            println!("held      {}", Micros(b.held));
            println!("available {}", Micros(b.available()));
            for k in &b.buckets {
                let expiry = k
                    .expires_at
                    .map_or("never".to_string(), crate::domain::plans::iso);
                println!(
                    "  grant {:>6}  {:<12} {:>16} left of {:<16} expires {expiry}",
                    k.grant_id,
                    k.source,
                    Micros(k.remaining).to_string(),
                    Micros(k.amount).to_string()
                );
            }
        }
    }
    Ok(())
}

pub async fn ledger(db: &Db, command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Verify => {
            let (checked, mismatches) = ledger::verify(db).await?;
            for m in &mismatches {
                println!(
                    "MISMATCH app {} user {}: {}",
                    m.app_id, m.user_id, m.problem
                );
            }
            if !mismatches.is_empty() {
                bail!("{} mismatch(es) in {checked} account(s)", mismatches.len());
            }
            println!("ledger ok: {checked} account(s) match their entries, holds and buckets");
        }
    }
    Ok(())
}
