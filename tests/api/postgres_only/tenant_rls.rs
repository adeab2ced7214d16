//! PostgreSQL row-level security, the second wall of tenant isolation: through the app's own
//! connection, a query that names no app sees no tenant row and cannot write one for another
//! app. (SQLite has no row-level security: these tests are not run there.)

use tollgate::domain::identity::KeyKind;
use tollgate::scoped_run;
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::scope::Scope;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_query_that_forgets_its_app_sees_nothing_of_any_app() {
    let app = spawn_app().await;
    super::require_postgres(&app._test_db);
    let db = &app.db;
    let a = identity::create_app(db, "app-a", "A")
        .await
        .unwrap()
        .unwrap();
    let b = identity::create_app(db, "app-b", "B")
        .await
        .unwrap()
        .unwrap();
    for (app_id, user) in [(a.id, "alice"), (b.id, "bob")] {
        let (u, _) = identity::find_or_create_user(db, app_id, user)
            .await
            .unwrap();
        let spec = KeySpec {
            app_id: Some(app_id),
            user_id: Some(u.id),
            ..Default::default()
        };
        identity::create_key(db, KeyKind::User, &spec)
            .await
            .unwrap();
    }
    let tollgate::store::Db::Postgres(pool, _) = db else {
        unreachable!()
    };
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        !superuser,
        "the app connects as an ordinary role (superusers bypass RLS)"
    );

    // Forgotten scope: nothing, from any tenant table.
    for table in ["users", "api_keys", "audit_log", "invite_codes"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} is invisible without a scope");
    }
    let count = |scope: Scope| async move {
        let n: Result<i64, sqlx::Error> = async {
            scoped_run!(db, scope, conn => sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(conn).await)
        }
        .await;
        n.unwrap()
    };
    assert_eq!(
        count(Scope::App(a.id)).await,
        1,
        "app A sees its own user only"
    );
    assert_eq!(count(Scope::App(b.id)).await, 1);
    assert_eq!(
        count(Scope::AllApps).await,
        2,
        "an explicit all-apps scope sees both"
    );

    // Writing another app's row under app A's scope is refused by the policy.
    let forged: Result<u64, sqlx::Error> = async { scoped_run!(db, Scope::App(a.id), conn => sqlx::query(
        "INSERT INTO users (app_id, external_id, anonymous_id, created_at) VALUES ($1, 'mallory', 'anon_x', 0)")
        .bind(b.id).execute(conn).await.map(|r| r.rows_affected())) }.await;
    let err = forged.expect_err("the row-level policy refuses it");
    assert!(err.to_string().contains("row-level security"), "{err}");
    // An unscoped UPDATE changes nothing.
    let n = sqlx::query("UPDATE users SET external_id = 'x'")
        .execute(pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_serving_role_that_owns_nothing_cannot_see_past_row_level_security_by_itself() {
    use crate::helpers::{TestDb, spawn_app_on};
    let test_db = TestDb::with_separate_owner().await;
    super::require_postgres(&test_db);
    let app = spawn_app_on(
        test_db,
        |_| {},
        tollgate::startup::Role::All,
        axum::Router::new(),
    )
    .await;
    let db = &app.db;
    let a = identity::create_app(db, "app-a", "A")
        .await
        .unwrap()
        .unwrap();
    let b = identity::create_app(db, "app-b", "B")
        .await
        .unwrap()
        .unwrap();
    let mut keys = Vec::new();
    for (app_id, user) in [(a.id, "alice"), (b.id, "bob")] {
        let (u, _) = identity::find_or_create_user(db, app_id, user)
            .await
            .unwrap();
        let spec = KeySpec {
            app_id: Some(app_id),
            user_id: Some(u.id),
            ..Default::default()
        };
        keys.push(
            identity::create_key(db, KeyKind::User, &spec)
                .await
                .unwrap()
                .1
                .secret,
        );
    }
    // The cross-app statements still work, on the owner's pool: a key finds its app.
    let me: serde_json::Value = app.get_as("/v1/me", &keys[1]).await.json().await.unwrap();
    assert_eq!(me["app"]["slug"], "app-b");

    // What SQL run as the serving role (an injection, a stolen password) could try.
    let tollgate::store::Db::Postgres(serving, Some(_)) = db else {
        panic!("two pools")
    };
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(serving)
        .await
        .unwrap();
    assert_eq!(role, crate::helpers::APP_ROLE);
    let mut tx = serving.begin().await.unwrap();
    sqlx::query("SET LOCAL tollgate.all_apps = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in ["users", "api_keys"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(
            n, 0,
            "{table}: tollgate.all_apps opens nothing to the serving role"
        );
    }
    sqlx::query("SELECT set_config('tollgate.app_id', $1, true)")
        .bind(a.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the app it names");
    tx.rollback().await.unwrap();
    // Nor can it take the wall down: it owns no table.
    let disabled = sqlx::query("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
        .execute(serving)
        .await;
    assert!(disabled.is_err(), "only the owner may alter the table");
}
