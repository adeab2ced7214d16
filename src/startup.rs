//! The application as a value: [`Application::build`] connects, migrates (as policy allows) and
//! binds; [`Application::run_until_stopped`] serves until the shutdown token is cancelled.
//! `main` and the tests both go through here.

use std::future::IntoFuture;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Environment};
use crate::http::{self, AppState};
use crate::jobs::{self, Registry};
use crate::ops;
use crate::store::{Db, migrate};

pub use crate::role::Role;

/// How `serve` was asked to start.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub role: Role,
    /// Apply pending migrations even outside development (`serve --migrate`).
    pub migrate: bool,
}

/// A built, bound, not yet running tollgate.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    routes: Router<AppState>,
    jobs: jobs::Runtime,
    shutdown: CancellationToken,
}

impl Application {
    /// Connects to the database, brings the schema up to date if allowed, and binds the
    /// listener (port 0 picks a free port, as tests do).
    pub async fn build(config: Config, options: ServeOptions) -> anyhow::Result<Application> {
        let db = Db::connect(&config.database_url(), &config.database)
            .await
            .context("cannot connect to the database")?;
        prepare_schema(&db, config.environment, options.migrate).await?;
        for app in &config.apps {
            let settings = serde_json::to_string(&app.settings()).expect("settings serialise");
            let name = app.name.as_deref().unwrap_or(&app.slug);
            crate::store::identity::upsert_app(&db, &app.slug, name, &settings)
                .await
                .with_context(|| format!("cannot create or update app {}", app.slug))?;
        }
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let config = Arc::new(config);
        let jobs =
            jobs::Runtime::new(db.clone(), config.clone(), jobs::kinds::builtin().clone()).await;
        let limiter = http::rate_limit::RateLimiter::new(&config);
        let state = AppState::new(http::Shared {
            upstream: crate::gateway::Upstream::new(&config, limiter.store()),
            ledger: crate::store::ledger::Batcher::start(db.clone()),
            limiter,
            jwt: http::jwt::JwtVerifier::new(&config),
            stores: crate::billing::store_http::http_client(),
            config,
            db,
            jobs: jobs.client.clone(),
            keys: http::auth::KeyCache::default(),
            metrics: ops::metrics::handle(),
            role: options.role,
        });
        Ok(Application {
            listener,
            routes: http::routes(options.role),
            state,
            jobs,
            shutdown: CancellationToken::new(),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Adds routes (for embedding tollgate, and for tests) under the same middleware.
    pub fn with_routes(mut self, extra: Router<AppState>) -> Application {
        self.routes = self.routes.merge(extra);
        self
    }

    /// Adds job kinds (for embedding tollgate, and for tests) to the built-in ones.
    pub fn with_job_kinds(mut self, add: impl FnOnce(&mut Registry)) -> Application {
        let mut registry = (*self.jobs.registry).clone();
        add(&mut registry);
        self.jobs.registry = Arc::new(registry);
        self
    }

    /// The process's job client.
    pub fn jobs(&self) -> &jobs::Client {
        &self.jobs.client
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight requests finish for
    /// at most `http.shutdown_timeout_ms` before dropping them.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            routes,
            jobs,
            shutdown,
        } = self;
        let grace = state.config.shutdown_timeout();
        let db = state.db.clone();
        tracing::info!(
            address = %listener.local_addr()?,
            role = state.role.as_str(),
            environment = state.config.environment.as_str(),
            backend = db.backend().as_str(),
            version = env!("CARGO_PKG_VERSION"),
            "tollgate started"
        );
        tokio::spawn(ops::metrics::upkeep(
            state.metrics.clone(),
            shutdown.clone(),
        ));
        // Job tasks stop on the same token; the worker has its own grace (jobs.shutdown_timeout_ms).
        let mut background = jobs.spawn(state.role, shutdown.clone());
        let app = http::with_middleware(routes, state);
        // No Nagle: small writes (SSE chunks, short answers) would otherwise wait for the
        // client's delayed ACK, 40 ms a chunk.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
        let deadline = async {
            shutdown.cancelled().await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: finishing in-flight requests"
            );
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("the HTTP server failed")?,
            _ = deadline => tracing::warn!("shutdown grace period elapsed; dropping unfinished requests"),
        }
        while background.join_next().await.is_some() {}
        db.close().await;
        tracing::info!("tollgate stopped");
        Ok(())
    }
}

/// Development applies pending migrations by itself so a fresh clone just works; staging and
/// production refuse to start on an old schema unless `--migrate` says to apply it.
async fn prepare_schema(db: &Db, env: Environment, migrate_flag: bool) -> anyhow::Result<()> {
    let status = migrate::status(db)
        .await
        .context("cannot read the migration status")?;
    if let Some(damage) = status.damage() {
        bail!(damage);
    }
    if !status.unknown.is_empty() {
        tracing::warn!(versions = ?status.unknown, "the database has migrations this binary does not know (a newer version ran here)");
    }
    if status.pending.is_empty() {
        return Ok(());
    }
    let versions = status.pending_versions();
    if env != Environment::Development && !migrate_flag {
        bail!(
            "the database has {} pending migration(s) {versions:?}; run `tollgate migrate` first, \
             or start with `tollgate serve --migrate` (refused by default outside development)",
            versions.len()
        );
    }
    let applied = migrate::run(db).await.context("migration failed")?;
    tracing::info!(versions = ?applied, "applied pending migrations");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
