//! `tollgate webhooks …`: the billing stores' deliveries — list (e.g. the failed ones), show one,
//! replay one through its processing job (docs/billing.md, "Webhook failures").

use anyhow::bail;
use clap::Subcommand;

use super::jobs::time;
use crate::jobs::Client;
use crate::jobs::kinds::billing::ProcessWebhook;
use crate::store::Db;
use crate::store::billing::{self as store, WebhookRow};
use crate::store::identity;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Deliveries, newest first.
    List {
        /// pending, processed, ignored or failed.
        #[arg(long, value_parser = ["pending", "processed", "ignored", "failed"])]
        status: Option<String>,
        /// Only this app (slug).
        #[arg(long)]
        app: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One delivery: what it is, what processing did or why it failed, and its body.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Process a delivery again (after fixing what made it fail). Effects already applied are
    /// not applied twice.
    Replay { id: i64 },
}

pub async fn run(db: &Db, command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List {
            status,
            app,
            limit,
            json,
        } => {
            let app_id = match &app {
                Some(slug) => match identity::app_by_slug(db, slug).await? {
                    Some(a) => Some(a.id),
                    None => bail!("no app {slug:?}"),
                },
                None => None,
            };
            let rows = store::webhooks(db, status.as_deref(), app_id, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_rows(&rows);
            }
            Ok(())
        }
        WebhooksCommand::Show { id, json } => {
            let Some(row) = store::webhook(db, id).await? else {
                bail!("no webhook delivery {id}");
            };
            let body = String::from_utf8_lossy(&row.body).into_owned();
            if json {
                let mut value = serde_json::to_value(&row)?;
                value["body"] =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            println!(
                "delivery {} ({} {}, event {})",
                row.id, row.provider, row.event_type, row.event_id
            );
            println!(
                "status:      {} after {} attempt(s), delivered {} time(s)",
                row.status, row.attempts, row.deliveries
            );
            println!("event time:  {}", time(row.event_time));
            println!("received:    {}", time(row.received_at));
            if let Some(c) = &row.change {
                println!("change:      {c}");
            }
            if let Some(u) = row.user_id {
                println!("user:        {u}");
            }
            if let Some(o) = &row.outcome {
                println!("outcome:     {o}");
            }
            if let Some(e) = &row.last_error {
                println!("last error:  {e}");
            }
            if row.body.is_empty() {
                println!("body:        (pruned: older than retention.webhook_payload_days)");
            } else {
                println!("body:\n{body}");
            }
            Ok(())
        }
        WebhooksCommand::Replay { id } => {
            if store::webhook(db, id)
                .await?
                .is_some_and(|r| r.body.is_empty())
            {
                bail!(
                    "webhook delivery {id} cannot be replayed: its payload was pruned \
                     (retention.webhook_payload_days); ask the store to resend the event"
                );
            }
            let jobs = Client::new(db.clone(), Default::default());
            if !store::replay(db, &jobs, id, ProcessWebhook { webhook: id }).await? {
                bail!("no webhook delivery {id}");
            }
            println!("webhook delivery {id} is pending again; a worker processes it");
            Ok(())
        }
    }
}

fn print_rows(rows: &[WebhookRow]) {
    println!(
        "{:>8} {:<10} {:<10} {:<34} {:<20} {:<20} ERROR / OUTCOME",
        "ID", "PROVIDER", "STATUS", "TYPE", "EVENT TIME", "EVENT ID"
    );
    for r in rows {
        let note = r
            .last_error
            .as_deref()
            .or(r.outcome.as_deref())
            .unwrap_or("");
        let note: String = note.chars().take(70).collect();
        println!(
            "{:>8} {:<10} {:<10} {:<34} {:<20} {:<20} {}",
            r.id,
            r.provider,
            r.status,
            r.event_type,
            time(r.event_time),
            r.event_id,
            note.replace('\n', " ")
        );
    }
}
