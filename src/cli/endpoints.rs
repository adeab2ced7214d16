//! `tollgate endpoints …`: an app's outbound event endpoints — add (the secret printed once),
//! list, enable, disable, rotate, delete — and replays (docs/events.md). The same rules as the
//! admin API (`events::endpoints`, `events::fan_out`).

use anyhow::bail;
use clap::Subcommand;

use crate::config::Config;
use crate::error::Error;
use crate::events::endpoints::{self as service, EndpointChange, EndpointInput, EndpointOut};
use crate::events::fan_out::{self, Replay};
use crate::jobs::Client;
use crate::store::Db;
use crate::store::events as store;
use crate::store::identity;

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint; prints its signing secret (whsec_…), which is not shown again.
    Add {
        #[arg(long)]
        app: String,
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (e.g. credits.low,payment.failed); default: every type.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// The endpoint the app's HTTP jobs are delivered to (docs/jobs.md), instead of events.
        #[arg(long, conflicts_with = "events")]
        jobs: bool,
    },
    /// The app's endpoints.
    List {
        #[arg(long)]
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver to it again (clears its failure streak).
    Enable {
        #[arg(long)]
        app: String,
        id: i64,
    },
    /// Stop delivering to it (pending deliveries are skipped).
    Disable {
        #[arg(long)]
        app: String,
        id: i64,
    },
    /// A new secret, printed once; the old one keeps signing for events.rotation_overlap_hours.
    Rotate {
        #[arg(long)]
        app: String,
        id: i64,
    },
    /// Delete it with its delivery history.
    Delete {
        #[arg(long)]
        app: String,
        id: i64,
    },
    /// Send events again: one message (--msg msg_…) or a time range (--from/--to, RFC 3339).
    Replay {
        #[arg(long)]
        app: String,
        #[arg(long, conflicts_with_all = ["from", "to"])]
        msg: Option<String>,
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Only to this endpoint.
        #[arg(long)]
        endpoint: Option<i64>,
    },
}

pub async fn run(config: &Config, db: &Db, command: EndpointsCommand) -> anyhow::Result<()> {
    let app_id = |slug: String| async move {
        match identity::app_by_slug(db, &slug).await? {
            Some(a) => Ok::<i64, anyhow::Error>(a.id),
            None => bail!("no app {slug:?}"),
        }
    };
    match command {
        EndpointsCommand::Add {
            app,
            url,
            events,
            description,
            jobs,
        } => {
            let app = app_id(app).await?;
            let input = EndpointInput {
                url,
                description,
                event_types: Some(events),
                for_jobs: jobs,
            };
            let made = service::create(config, db, app, input)
                .await
                .map_err(explain)?;
            println!("endpoint {} -> {}", made.endpoint.id, made.endpoint.url);
            println!("secret (shown once): {}", made.secret);
        }
        EndpointsCommand::List { app, json } => {
            let rows = store::endpoints(db, app_id(app).await?).await?;
            let rows: Vec<EndpointOut> = rows.into_iter().map(EndpointOut::from).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in rows {
                    let types = match (e.purpose.as_str(), e.event_types) {
                        ("jobs", _) => "the app's jobs".to_string(),
                        (_, None) => "all events".to_string(),
                        (_, Some(t)) => t.join(","),
                    };
                    let state = match (&e.enabled, &e.disabled_reason) {
                        (true, _) => "enabled".to_string(),
                        (false, Some(r)) => format!("disabled ({r})"),
                        (false, None) => "disabled".to_string(),
                    };
                    println!("{:>5}  {:<18}  {}  [{types}]", e.id, state, e.url);
                }
            }
        }
        EndpointsCommand::Enable { app, id } => {
            set_enabled(config, db, app_id(app).await?, id, true).await?
        }
        EndpointsCommand::Disable { app, id } => {
            set_enabled(config, db, app_id(app).await?, id, false).await?
        }
        EndpointsCommand::Rotate { app, id } => {
            let made = service::rotate(config, db, app_id(app).await?, id)
                .await
                .map_err(explain)?;
            println!("secret (shown once): {}", made.secret);
            if let Some(until) = made.endpoint.previous_secret_until {
                println!("the old secret signs too until {}", store::rfc3339(until));
            }
        }
        EndpointsCommand::Delete { app, id } => {
            if !store::delete_endpoint(db, app_id(app).await?, id).await? {
                bail!("no endpoint {id}");
            }
            println!("endpoint {id} deleted");
        }
        EndpointsCommand::Replay {
            app,
            msg,
            from,
            to,
            endpoint,
        } => {
            let app = app_id(app).await?;
            let what = match (&msg, from, to) {
                (Some(m), _, _) => Replay::Message(m),
                (None, Some(from), Some(to)) => Replay::Range {
                    from: parse_time("--from", &from)?,
                    to: parse_time("--to", &to)?,
                },
                _ => bail!("give --msg, or --from and --to"),
            };
            let jobs = Client::new(db.clone(), Default::default());
            match fan_out::replay(db, &jobs, app, what, endpoint).await? {
                Some((events, deliveries)) => {
                    println!("{events} event(s), {deliveries} delivery(ies) enqueued")
                }
                None => bail!("no message {:?}", msg.unwrap_or_default()),
            }
        }
    }
    Ok(())
}

async fn set_enabled(config: &Config, db: &Db, app: i64, id: i64, on: bool) -> anyhow::Result<()> {
    let change = EndpointChange {
        enabled: Some(on),
        ..Default::default()
    };
    let e = service::update(config, db, app, id, change)
        .await
        .map_err(explain)?;
    println!(
        "endpoint {} is {}",
        e.id,
        if e.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

/// An RFC 3339 time as ms since the epoch.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| anyhow::anyhow!("{flag}: expected an RFC 3339 time (2026-12-01T00:00:00Z)"))
}

/// A service error as the command line says it: each field's problem on its own line.
fn explain(e: Error) -> anyhow::Error {
    match e {
        Error::Validation(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("--{}: {}", f.field.replace('_', "-"), f.message))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}
