//! The command line: one file per subcommand group. Exit codes: 0 success, 1 failure,
//! 2 configuration problems (listed on stderr).

mod backup;
mod check;
mod credits;
mod email;
mod endpoints;
mod identity;
mod jobs;
mod migrate;
mod probe;
mod serve;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::role::Role;

/// tollgate: users, billing webhooks, credits, a metered AI proxy and jobs for a paid app.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    /// TOML configuration file; without one, built-in development defaults apply.
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// What this process runs.
        #[arg(long, value_enum, default_value = "all", env = "TOLLGATE_ROLE")]
        role: Role,
        /// Apply pending migrations at start even outside development.
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations.
    Migrate {
        /// Only show what is applied and what is pending.
        #[arg(long)]
        status: bool,
    },
    /// The deploy checklist: validate the configuration, check every dependency and every
    /// setting production needs; one pass/warn/FAIL line each. Exit 0 unless a line fails.
    Check {
        /// Apply production's rules whatever the configured environment.
        #[arg(long)]
        production: bool,
        /// One JSON document instead of lines (for CI).
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server's /health (or /ready) and exit 0 only on 200: a container health
    /// check for images without curl.
    Health {
        /// Ask /ready (every dependency) instead of /health (the process).
        #[arg(long)]
        ready: bool,
        /// The server's base URL; default: the configured listen address on loopback.
        #[arg(long)]
        url: Option<String>,
    },
    /// Take a verified backup now, while tollgate serves (SQLite: an online copy; PostgreSQL:
    /// pg_dump). Writes PATH and its manifest PATH.json.
    Backup {
        /// The file to write; it must not exist.
        path: PathBuf,
    },
    /// Restore a backup into the configured database, then compare its row counts with the
    /// manifest and verify the ledger. Stop tollgate first.
    Restore {
        /// A file written by `tollgate backup` (or a scheduled backup).
        path: PathBuf,
        /// Replace a database that already holds tables.
        #[arg(long)]
        force: bool,
    },
    /// Copy every table of a SQLite database into an empty PostgreSQL schema (ids and
    /// sequences intact), then compare row counts and verify the ledger there. Stop tollgate
    /// first.
    MigrateData {
        /// The SQLite database: sqlite:///path/tollgate.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database, as the schema's owner: postgres://…
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Import users, their plans and balances from CSV (header: external_id,plan,balance,reason)
    /// or JSON (an array of those objects); every row is checked first. Each balance becomes one
    /// grant with its reason; importing the same file again grants nothing twice.
    Import {
        /// The app (slug) the users belong to.
        #[arg(long)]
        app: String,
        /// A .csv or .json file.
        path: PathBuf,
    },
    /// Data for a try-out instance: the app `demo` with a Free and a Pro plan, 12 users with
    /// balances, AI calls with their usage, Stripe subscriptions and recovery cases in each
    /// state. Seeding again adds nothing; an app `demo` it did not make is left alone.
    Seed {
        /// The demo data set (the only one).
        #[arg(long, required = true)]
        demo: bool,
    },
    /// Queue operations: stats, list, show, retry, discard, cancel, pause, resume, switch, drain.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Apps (tenants).
    Apps {
        #[command(subcommand)]
        command: identity::AppsCommand,
    },
    /// API keys: user keys and app secret keys.
    Keys {
        #[command(subcommand)]
        command: identity::KeysCommand,
    },
    /// Operator tokens (for the admin API).
    Operators {
        #[command(subcommand)]
        command: identity::OperatorsCommand,
    },
    /// Users: show, or delete their personal data.
    Users {
        #[command(subcommand)]
        command: identity::UsersCommand,
    },
    /// Credits of a user: grant, show.
    Credits {
        #[command(subcommand)]
        command: credits::CreditsCommand,
    },
    /// The credit ledger as a whole: verify.
    Ledger {
        #[command(subcommand)]
        command: credits::LedgerCommand,
    },
    /// Billing stores' webhook deliveries: list, show, replay.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Outbound event endpoints of an app: add, list, enable, disable, rotate, delete, replay.
    Endpoints {
        #[command(subcommand)]
        command: endpoints::EndpointsCommand,
    },
    /// Email: send a test message through SMTP_URL.
    Email {
        #[command(subcommand)]
        command: email::EmailCommand,
    },
    /// Print the version.
    Version,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the annotated default configuration file.
    Example,
    /// Encrypt a secret read from standard input with ENCRYPTION_KEY, for the config file
    /// (`enc:v1:…`; provider API keys accept it).
    Seal,
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_broken_pipe();
    }
    match cli.command {
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Seal,
        } => with_config(cli.config, async |config: Config| {
            use secrecy::ExposeSecret;
            let key = config.encryption_key.as_ref().ok_or_else(|| {
                anyhow::anyhow!("set ENCRYPTION_KEY (64 hex characters: openssl rand -hex 32)")
            })?;
            let mut secret = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut secret)?;
            let secret = secret.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!secret.is_empty(), "nothing to seal on standard input");
            println!("{}", crate::crypto::seal(key.expose_secret(), secret)?);
            Ok(())
        }),
        Command::Check { production, json } => {
            block_on(check::run(cli.config, check::Options { production, json }))
        }
        Command::Health { ready, url } => with_config(cli.config, |c| probe::run(c, ready, url)),
        Command::Serve { role, migrate } => {
            with_config(cli.config, |c| serve::run(c, role, migrate))
        }
        Command::Migrate { status } => with_config(cli.config, |c| migrate::run(c, status)),
        Command::Backup { path } => with_config(cli.config, async move |c: Config| {
            backup::take(c, &path).await
        }),
        Command::Restore { path, force } => with_config(cli.config, async move |c: Config| {
            backup::restore(c, &path, force).await
        }),
        Command::MigrateData { from, to } => with_config(cli.config, async move |c: Config| {
            migrate::migrate_data(c, &from, &to).await
        }),
        Command::Import { app, path } => with_db(cli.config, async move |db: &crate::store::Db| {
            identity::import(db, &app, &path).await
        }),
        Command::Seed { demo: _ } => with_config(cli.config, async move |config: Config| {
            let db = open_db(&config).await?;
            let result = identity::seed_demo(&db, &config).await;
            db.close().await;
            result
        }),
        Command::Jobs { command } => with_config(cli.config, |c| jobs::run(c, command)),
        Command::Apps { command } => with_config(cli.config, async move |config: Config| {
            let db = open_db(&config).await?;
            let result = identity::apps(&db, &config, command).await;
            db.close().await;
            result
        }),
        Command::Keys { command } => with_db(cli.config, async move |db: &crate::store::Db| {
            identity::keys(db, command).await
        }),
        Command::Operators { command } => {
            with_db(cli.config, async move |db: &crate::store::Db| {
                identity::operators(db, command).await
            })
        }
        Command::Users { command } => with_db(cli.config, async move |db: &crate::store::Db| {
            identity::users(db, command).await
        }),
        Command::Credits { command } => with_db(cli.config, async move |db: &crate::store::Db| {
            credits::credits(db, command).await
        }),
        Command::Webhooks { command } => with_db(cli.config, async move |db: &crate::store::Db| {
            webhooks::run(db, command).await
        }),
        Command::Endpoints { command } => with_config(cli.config, async move |config: Config| {
            let db = open_db(&config).await?;
            let result = endpoints::run(&config, &db, command).await;
            db.close().await;
            result
        }),
        Command::Email { command } => with_config(cli.config, |c| email::run(c, command)),
        Command::Ledger { command } => with_db(cli.config, async move |db: &crate::store::Db| {
            credits::ledger(db, command).await
        }),
    }
}

/// Loads the config (exit 2 listing every problem) and runs `f` on a Tokio runtime.
fn with_config<F, Fut>(path: Option<PathBuf>, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("tollgate: {problems}");
            return ExitCode::from(2);
        }
    };
    block_on(async move {
        match f(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "tollgate failed");
                crate::ops::sentry::flush(std::time::Duration::from_secs(2)).await;
                eprintln!("tollgate: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn block_on<F: Future<Output = ExitCode>>(future: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(future),
        Err(e) => {
            eprintln!("tollgate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operator command on the configured database.
fn with_db<F>(path: Option<PathBuf>, f: F) -> ExitCode
where
    F: AsyncFnOnce(&crate::store::Db) -> anyhow::Result<()>,
{
    with_config(path, async move |config: Config| {
        let db = open_db(&config).await?;
        let result = f(&db).await;
        db.close().await;
        result
    })
}

/// Connects for an operator command; refuses a database whose schema is not current.
async fn open_db(config: &Config) -> anyhow::Result<crate::store::Db> {
    use anyhow::Context;
    let db = crate::store::Db::connect(&config.database_url(), &config.database)
        .await
        .context("cannot connect to the database")?;
    if !crate::store::migrate::status(&db).await?.is_current() {
        anyhow::bail!("the database schema is not current; run `tollgate migrate` first");
    }
    Ok(db)
}

/// A one-shot command whose output is cut short (`tollgate webhooks list | head`) ends quietly,
/// as command-line tools do, instead of panicking on the broken pipe: the Rust runtime ignores
/// SIGPIPE, so its default (end the process) is restored. Not for `serve`, whose sockets must
/// never end the process.
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
