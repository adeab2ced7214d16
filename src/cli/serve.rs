//! `tollgate serve`: run until SIGTERM/SIGINT, then shut down gracefully.

use std::time::Duration;

use crate::config::Config;
use crate::ops;
use crate::role::Role;
use crate::startup::{Application, ServeOptions, shutdown_signal};
use crate::telemetry;

pub async fn run(config: Config, role: Role, migrate: bool) -> anyhow::Result<()> {
    telemetry::init(&config, role.as_str());
    let app = Application::build(config, ServeOptions { role, migrate }).await?;
    let token = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
    let result = app.run_until_stopped().await;
    ops::sentry::flush(Duration::from_secs(2)).await;
    result
}
