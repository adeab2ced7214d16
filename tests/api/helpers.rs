//! The test harness: every test gets the real app on a random port against a fresh database —
//! a temp SQLite file by default, a fresh PostgreSQL schema when `TEST_DATABASE_URL` is set.

use std::path::PathBuf;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tollgate::config::Config;
use tollgate::http::AppState;
use tollgate::startup::{Application, Role, ServeOptions};
use tollgate::store::Db;
use tollgate::store::ledger::Target;

/// Redis used by tests that configure one.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The PostgreSQL role the app under test connects as (created if missing; the test server
/// must let it connect, as trust authentication on 127.0.0.1 does).
pub const APP_ROLE: &str = "tollgate_app";

/// A database that exists only for one test: a temp directory (SQLite) or a PostgreSQL schema.
pub struct TestDb {
    pub data_dir: PathBuf,
    /// `None` on SQLite: the app uses its default file inside `data_dir`.
    pub url: Option<String>,
    /// PostgreSQL with a separate owner ([`TestDb::with_separate_owner`]).
    pub owner_url: Option<String>,
    postgres: Option<(String, String)>,
}

/// The role that owns the schema in [`TestDb::with_separate_owner`].
pub const OWNER_ROLE: &str = "tollgate_owner";

impl TestDb {
    /// With `TEST_DATABASE_OWNER=separate`, [`TestDb::with_separate_owner`]: the whole suite
    /// then runs as a serving role that owns nothing (CI runs it that way too).
    pub async fn new() -> TestDb {
        if std::env::var("TEST_DATABASE_OWNER").as_deref() == Ok("separate") {
            return TestDb::with_separate_owner().await;
        }
        TestDb::create(APP_ROLE).await
    }

    /// On PostgreSQL: the schema owned by another role ([`OWNER_ROLE`]), which migrates it and
    /// runs the cross-app statements (`database.owner_url`); the app's role owns nothing and is
    /// granted read and write by the migration. On SQLite: [`TestDb::new`].
    pub async fn with_separate_owner() -> TestDb {
        let mut db = TestDb::create(OWNER_ROLE).await;
        if let Some(owner_url) = db.url.clone() {
            let serving = owner_url.replacen(OWNER_ROLE, APP_ROLE, 1);
            db.owner_url = Some(owner_url);
            db.url = Some(serving);
        }
        db
    }

    /// A fresh database whose schema (on PostgreSQL) `role` owns and connects as.
    async fn create(role: &str) -> TestDb {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let data_dir = std::env::temp_dir().join(format!("tollgate-test-{id}"));
        std::fs::create_dir_all(&data_dir).expect("create the test data directory");
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            return TestDb {
                data_dir,
                url: None,
                owner_url: None,
                postgres: None,
            };
        };
        let schema = format!("tg_test_{id}");
        let mut admin = connect_admin(&admin_url).await;
        // The app connects as an ordinary role, as in production: superusers ignore
        // row-level security, so only then do the tests exercise it.
        for r in [APP_ROLE, role] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DO $$ BEGIN CREATE ROLE {r} LOGIN; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )))
            .execute(&mut admin)
            .await
            .expect("create the app role");
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA {schema} AUTHORIZATION {role}"
        )))
        .execute(&mut admin)
        .await
        .expect("create the test schema");
        // The app sees only its schema: `search_path` is set on every connection it opens.
        let mut app_url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        app_url
            .set_username(role)
            .expect("the URL takes a user name");
        let app_url = app_url.to_string();
        let sep = if app_url.contains('?') { '&' } else { '?' };
        let url = format!("{app_url}{sep}options=-c%20search_path%3D{schema}");
        TestDb {
            data_dir,
            url: Some(url),
            owner_url: None,
            postgres: Some((admin_url, schema)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// On PostgreSQL: the admin URL and the test's schema.
    pub fn postgres_schema(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|(a, s)| (a.as_str(), s.as_str()))
    }

    /// The URL the app connects to, as the CLI would see it.
    pub fn effective_url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tollgate.db").display()))
    }

    /// A development config pointing at this database, listening on a random port.
    pub fn config(&self) -> Config {
        let mut c = Config::defaults();
        c.listen = "127.0.0.1:0".into();
        c.data_dir = self.data_dir.clone();
        c.database.url = self.url.clone();
        c.database.owner_url = self.owner_url.clone();
        c.database.max_connections = 5;
        c.http.shutdown_timeout_ms = 5_000;
        // The period-credits sweep runs every ten minutes by default; a test running across a
        // boundary would see credits it did not grant. Tests run the job themselves.
        c.ledger.period_credits_cron = "0 0 1 1 *".parse().expect("a cron expression");
        c.jobs.recovery_sweep_cron = "0 0 1 1 *".parse().expect("a cron expression");
        c
    }

    pub async fn connect(&self) -> Db {
        Db::connect(&self.effective_url(), &self.config().database)
            .await
            .expect("connect to the test database")
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("TEST_DATABASE_URL must point at a running PostgreSQL")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some((admin_url, schema)) = self.postgres.take() {
            // Drop is synchronous and may run inside a runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(drop_schema(&admin_url, &schema));
            })
            .join();
        }
    }
}

/// Drops a test schema. The app may still hold locks in it (a test that did not stop its app
/// ends while a job's transaction is open, and the runtime that would finish it is the one
/// blocked here): after a short lock wait, the sessions holding locks in the schema are ended.
async fn drop_schema(admin_url: &str, schema: &str) {
    let mut admin = connect_admin(admin_url).await;
    let _ = sqlx::raw_sql("SET lock_timeout = '2s'")
        .execute(&mut admin)
        .await;
    for _ in 0..5 {
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await;
        if dropped.is_ok() {
            return;
        }
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
             JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
        )
        .bind(schema)
        .execute(&mut admin)
        .await;
    }
}

/// A running tollgate and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: Db,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Kept alive so the database outlives the app; dropped (and removed) with it.
    pub _test_db: TestDb,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_full(configure, Role::All, Router::new()).await
}

/// The full form: adjust the config, pick the role, add test-only routes.
pub async fn spawn_app_full(
    configure: impl FnOnce(&mut Config),
    role: Role,
    extra_routes: Router<AppState>,
) -> TestApp {
    spawn_app_on(TestDb::new().await, configure, role, extra_routes).await
}

/// [`spawn_app_full`] on a database the test prepared.
pub async fn spawn_app_on(
    test_db: TestDb,
    configure: impl FnOnce(&mut Config),
    role: Role,
    extra_routes: Router<AppState>,
) -> TestApp {
    let mut config = test_db.config();
    configure(&mut config);
    if std::env::var("TEST_LOG").is_ok() || config.sentry_dsn.is_some() {
        tollgate::telemetry::init(&config, role.as_str());
    }
    let app = Application::build(
        config,
        ServeOptions {
            role,
            migrate: false,
        },
    )
    .await
    .expect("the app builds")
    .with_routes(extra_routes);
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.db().clone();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        shutdown,
        server: Some(server),
        _test_db: test_db,
    }
}

/// A second process's worth of tollgate (another replica) on the same database as an app:
/// its own limiter, caches and gateway state. Stopped when dropped.
pub struct Replica {
    pub address: String,
    shutdown: CancellationToken,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a [`Replica`] on `test_db` with the config `configure` makes.
pub async fn spawn_replica(test_db: &TestDb, configure: impl FnOnce(&mut Config)) -> Replica {
    let mut config = test_db.config();
    configure(&mut config);
    let options = ServeOptions {
        role: Role::All,
        migrate: false,
    };
    let app = Application::build(config, options)
        .await
        .expect("the replica builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    Replica { address, shutdown }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(name, value)
            .send()
            .await
            .expect("request sent")
    }

    /// The ledger target of `external_id` in app `slug`, creating the app and the user if
    /// missing.
    pub async fn user_target(&self, slug: &str, external_id: &str) -> Target {
        use tollgate::store::identity;
        let app = match identity::app_by_slug(&self.db, slug).await.unwrap() {
            Some(app) => app,
            None => identity::create_app(&self.db, slug, slug)
                .await
                .unwrap()
                .unwrap(),
        };
        let (user, _) = identity::find_or_create_user(&self.db, app.id, external_id)
            .await
            .unwrap();
        Target {
            app_id: app.id,
            user_id: user.id,
        }
    }

    /// A user key for `external_id` in app `slug`, creating the app and the user if missing.
    pub async fn user_key(&self, slug: &str, external_id: &str) -> String {
        use tollgate::domain::identity::KeyKind;
        use tollgate::store::identity::{self, KeySpec};
        let t = self.user_target(slug, external_id).await;
        let spec = KeySpec {
            app_id: Some(t.app_id),
            user_id: Some(t.user_id),
            ..Default::default()
        };
        identity::create_key(&self.db, KeyKind::User, &spec)
            .await
            .unwrap()
            .1
            .secret
    }

    pub async fn get_as(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    pub async fn get_health(&self) -> reqwest::Response {
        self.get("/health").await
    }

    pub async fn get_ready(&self) -> reqwest::Response {
        self.get("/ready").await
    }

    pub async fn get_metrics(&self, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url("/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// Cancels the shutdown token and waits for the server to return.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(handle) => handle.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "problems are application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"],
        request_id.as_str(),
        "the body carries the request id"
    );
    for key in ["type", "title", "detail"] {
        assert!(body[key].is_string(), "{key} missing in {body}");
    }
    body
}

/// An app created the way `tollgate apps create` makes one (the `[new_app_billing]` plans:
/// the mock model, monthly credits) and one user in it.
pub async fn seed_app_user(db: &Db, slug: &str, external_id: &str) -> Target {
    let settings = Config::defaults().new_app_settings();
    let app = tollgate::store::identity::create_app_with(db, slug, slug, &settings)
        .await
        .unwrap()
        .expect("a new slug");
    let (user, _) = tollgate::store::identity::find_or_create_user(db, app.id, external_id)
        .await
        .unwrap();
    Target {
        app_id: app.id,
        user_id: user.id,
    }
}

/// The secret of a new key of `kind` (a user key when `spec.user_id` is set).
pub async fn new_key(
    db: &Db,
    kind: tollgate::domain::identity::KeyKind,
    spec: tollgate::store::identity::KeySpec,
) -> String {
    tollgate::store::identity::create_key(db, kind, &spec)
        .await
        .unwrap()
        .1
        .secret
}

/// An API-only app (no background worker) and a job runtime over the same database and config,
/// whose worker the test runs itself (`rt.worker().at(t).run_available(queue)`), at the times
/// it chooses.
pub async fn spawn_api_with_runtime(
    configure: impl Fn(&mut Config) + Send + 'static,
) -> (TestApp, tollgate::jobs::Runtime) {
    let test_db = TestDb::new().await;
    let mut config = test_db.config();
    configure(&mut config);
    let app = spawn_app_on(test_db, configure, Role::Api, Router::new()).await;
    let registry = tollgate::jobs::kinds::builtin().clone();
    let rt =
        tollgate::jobs::Runtime::new(app.db.clone(), std::sync::Arc::new(config), registry).await;
    (app, rt)
}

/// Serves a fake store API on a loopback port; its base URL (`http://127.0.0.1:port`).
pub async fn serve_fake(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// A JSON answer of a fake store API.
pub fn json_answer(
    status: axum::http::StatusCode,
    body: &serde_json::Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
