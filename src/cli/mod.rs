//! The command line: one file per subcommand group. Exit codes: 0 success, 1 failure,
//! 2 configuration problems (listed on stderr).

mod check;
mod jobs;
mod migrate;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::startup::Role;

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
    /// The deploy checklist: validate the configuration and check every dependency.
    Check,
    /// Queue operations: stats, list, show, retry, discard, cancel, pause, resume, switch, drain.
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
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
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
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
        Command::Check => block_on(check::run(cli.config)),
        Command::Serve { role, migrate } => {
            with_config(cli.config, |c| serve::run(c, role, migrate))
        }
        Command::Migrate { status } => with_config(cli.config, |c| migrate::run(c, status)),
        Command::Jobs { command } => with_config(cli.config, |c| jobs::run(c, command)),
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
