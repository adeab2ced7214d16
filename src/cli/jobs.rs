//! `tollgate jobs …`: queue operations from the command line (docs/jobs.md).

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::jobs::ops::{self, Action, Applied};
use crate::jobs::switches::{self, Switch};
use crate::store::jobs::{JobRow, admin, state};
use crate::store::{Db, now_ms};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs per queue and state, the age of the oldest due job, pauses and switches.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Show jobs older than this id (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// One job: arguments, attempts and every error.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run jobs again now: by id, or every match of a filter (needs --limit, and --yes to act).
    Retry(Selection),
    /// Move unfinished jobs to the dead letters (discarded).
    Discard(Selection),
    /// Cancel unfinished jobs; a running one is stopped at its next lease renewal.
    Cancel(Selection),
    /// Stop starting jobs of a queue (every replica, within seconds).
    Pause { queue: String },
    /// Start jobs of a paused queue again.
    Resume { queue: String },
    /// Show the kill switches, or turn one on or off: scheduler, enqueue, processing.
    Switch {
        name: Option<Switch>,
        #[arg(value_parser = ["on", "off"])]
        value: Option<String>,
    },
    /// Wait until a queue has no due or running job.
    Drain {
        queue: String,
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// available, running, retryable, completed, discarded or cancelled.
    #[arg(long, value_parser = state::ALL)]
    pub state: Option<String>,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Job ids. Without ids, the filter selects the jobs.
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// With a filter: act on at most this many jobs (required).
    #[arg(long)]
    pub limit: Option<i64>,
    /// With a filter: act (without it, only print what would be done).
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(config: Config, command: JobsCommand) -> anyhow::Result<()> {
    let db = super::open_db(&config).await?;
    let result = dispatch(&db, command).await;
    db.close().await;
    result
}

async fn dispatch(db: &Db, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Stats { json } => stats(db, json).await,
        JobsCommand::List {
            filter,
            limit,
            before,
            json,
        } => {
            let rows = admin::list(db, &to_filter(&filter, limit.clamp(1, 10_000), before)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_jobs(&rows);
            }
            Ok(())
        }
        JobsCommand::Show { id, json } => show(db, id, json).await,
        JobsCommand::Retry(s) => act(db, Action::Retry, s).await,
        JobsCommand::Discard(s) => act(db, Action::Discard, s).await,
        JobsCommand::Cancel(s) => act(db, Action::Cancel, s).await,
        JobsCommand::Pause { queue } => pause(db, &queue, true).await,
        JobsCommand::Resume { queue } => pause(db, &queue, false).await,
        JobsCommand::Switch { name, value } => switch(db, name, value).await,
        JobsCommand::Drain {
            queue,
            timeout_secs,
        } => {
            let drained = ops::drain(db, &queue, Duration::from_secs(timeout_secs), |left| {
                println!("{queue}: {left} job(s) due or running");
            })
            .await?;
            if !drained {
                bail!("queue {queue} did not drain within {timeout_secs} s");
            }
            println!("queue {queue} is drained");
            Ok(())
        }
    }
}

fn to_filter(f: &FilterArgs, limit: i64, before_id: Option<i64>) -> admin::Filter {
    admin::Filter {
        state: f.state.clone(),
        queue: f.queue.clone(),
        kind: f.kind.clone(),
        before_id,
        limit,
    }
}

async fn stats(db: &Db, json: bool) -> anyhow::Result<()> {
    let stats = ops::stats(db).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<7} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "QUEUE",
        "PAUSED",
        "AVAILABLE",
        "RUNNING",
        "RETRYABLE",
        "COMPLETED",
        "DISCARDED",
        "CANCELLED",
        "OLDEST_DUE"
    );
    for q in &stats.queues {
        let n = |s: &str| q.counts.get(s).copied().unwrap_or(0);
        println!(
            "{:<24} {:<7} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12}",
            q.queue,
            if q.paused { "yes" } else { "no" },
            n("available"),
            n("running"),
            n("retryable"),
            n("completed"),
            n("discarded"),
            n("cancelled"),
            q.oldest_due_age_ms.map_or("-".into(), age),
        );
    }
    let text: Vec<String> = stats
        .switches
        .iter()
        .map(|(w, on)| format!("{w}={}", if *on { "on" } else { "off" }))
        .collect();
    println!("switches: {}", text.join(" "));
    Ok(())
}

async fn show(db: &Db, id: i64, json: bool) -> anyhow::Result<()> {
    let Some(job) = admin::get(db, id).await? else {
        bail!("no job {id}");
    };
    let errors = admin::errors(db, id).await?;
    if json {
        let doc = serde_json::json!({ "job": job, "errors": errors });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "job {}  kind {}  queue {}  state {}",
        job.id, job.kind, job.queue, job.state
    );
    println!("args        {}", job.args);
    println!("attempt     {} of {}", job.attempt, job.max_attempts);
    println!("priority    {}", job.priority);
    println!("created     {}", time(job.created_at));
    println!("run at      {}", time(job.run_at));
    if let Some(at) = job.attempted_at {
        println!(
            "attempted   {} by {}",
            time(at),
            job.attempted_by.as_deref().unwrap_or("?")
        );
    }
    if let Some(at) = job.finalized_at {
        println!("finished    {}", time(at));
    }
    if let Some(key) = &job.unique_key {
        println!("unique key  {key}");
    }
    if job.parked {
        println!("parked      yes (waits for `jobs switch enqueue on`)");
    }
    for e in &errors {
        println!(
            "error (attempt {}, {}, {}): {}",
            e.attempt,
            time(e.at),
            e.worker.as_deref().unwrap_or("rescuer"),
            e.error
        );
    }
    Ok(())
}

async fn act(db: &Db, action: Action, s: Selection) -> anyhow::Result<()> {
    let has_filter =
        s.filter.state.is_some() || s.filter.queue.is_some() || s.filter.kind.is_some();
    let ids = if !s.ids.is_empty() {
        if has_filter || s.limit.is_some() {
            bail!("give job ids or a filter (--state/--queue/--kind with --limit), not both");
        }
        s.ids
    } else {
        if !has_filter {
            bail!("give job ids, or a filter: --state, --queue and/or --kind, with --limit");
        }
        let Some(limit) = s.limit else {
            bail!("a filter needs --limit N: say how many jobs at most");
        };
        if limit < 1 {
            bail!("--limit must be at least 1");
        }
        let rows = admin::list(db, &to_filter(&s.filter, limit, None)).await?;
        println!("{} {} job(s):", action.verb(), rows.len());
        print_jobs(&rows);
        if !s.yes {
            println!(
                "dry run: nothing changed; add --yes to {} them",
                action.verb()
            );
            return Ok(());
        }
        rows.into_iter().map(|r| r.id).collect()
    };
    let mut done = 0;
    for id in &ids {
        match ops::apply(db, action, *id).await? {
            Applied::Done => {
                done += 1;
                println!("job {id}: {}", past(action));
            }
            Applied::Skipped(why) => println!("job {id}: skipped ({why})"),
            Applied::NotFound => println!("job {id}: not found"),
        }
    }
    println!("{done} of {} job(s) {}", ids.len(), past(action));
    Ok(())
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Retry => "made available again",
        Action::Cancel => "cancelled",
        Action::Discard => "discarded",
    }
}

async fn pause(db: &Db, queue: &str, paused: bool) -> anyhow::Result<()> {
    if !crate::jobs::is_valid_queue_name(queue) {
        bail!("invalid queue name {queue:?}");
    }
    admin::set_paused(db, queue, paused, now_ms()).await?;
    println!(
        "queue {queue} {} (every replica within jobs.switch_refresh_ms)",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}

async fn switch(db: &Db, name: Option<Switch>, value: Option<String>) -> anyhow::Result<()> {
    match (name, value) {
        (Some(w), Some(v)) => {
            switches::set(db, w, v == "on").await?;
            println!("switch {w} is {v} (every replica within jobs.switch_refresh_ms)");
        }
        (None, None) => {
            for (w, on) in switches::read_all(db).await? {
                println!("{w} {}", if on { "on" } else { "off" });
            }
        }
        _ => bail!("usage: tollgate jobs switch [scheduler|enqueue|processing on|off]"),
    }
    Ok(())
}

fn print_jobs(rows: &[JobRow]) {
    println!(
        "{:>10} {:<10} {:<16} {:<28} {:>7} {:<20} LAST ERROR",
        "ID", "STATE", "QUEUE", "KIND", "ATTEMPT", "RUN AT"
    );
    for j in rows {
        let error = j.last_error.as_deref().unwrap_or("");
        let error: String = error.chars().take(60).collect();
        println!(
            "{:>10} {:<10} {:<16} {:<28} {:>7} {:<20} {}",
            j.id,
            j.state,
            j.queue,
            j.kind,
            format!("{}/{}", j.attempt, j.max_attempts),
            time(j.run_at),
            error.replace('\n', " ")
        );
    }
}

pub(super) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn age(ms: i64) -> String {
    match ms / 1000 {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}
