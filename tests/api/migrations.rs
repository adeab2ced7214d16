use tollgate::config::Environment;
use tollgate::startup::{Application, Role, ServeOptions};
use tollgate::store::{Backend, Db, migrate, now_ms};
use tollgate::{db_run, tx_run};

use crate::helpers::TestDb;

async fn setting(db: &Db, key: &str) -> Option<String> {
    db_run!(db, pool => {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn migrations_apply_once_on_a_fresh_database() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    let expected = if test_db.is_postgres() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert_eq!(db.backend(), expected);

    let before = migrate::status(&db).await.unwrap();
    assert_eq!(
        before.pending,
        [
            (1, "init".to_string()),
            (2, "jobs".to_string()),
            (3, "identity".to_string()),
            (4, "invites".to_string()),
            (5, "tenant_rls".to_string()),
            (6, "ledger".to_string()),
            (7, "usage".to_string()),
            (8, "billing".to_string()),
            (9, "exactly_once".to_string()),
            (10, "call_on_hold".to_string()),
            (11, "events".to_string()),
            (12, "recovery".to_string()),
            (13, "recovery_nudges".to_string()),
            (14, "backups".to_string()),
            (15, "recovery_incentives".to_string()),
            (16, "user_email".to_string())
        ]
    );
    assert!(!before.is_current());

    assert_eq!(
        migrate::run(&db).await.unwrap(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    );
    let after = migrate::status(&db).await.unwrap();
    assert!(after.is_current(), "{after:?}");
    assert_eq!(
        after.applied,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    );
    assert_eq!(migrate::run(&db).await.unwrap(), Vec::<i64>::new());
}

#[tokio::test]
async fn the_transaction_helper_commits_on_ok_and_rolls_back_on_err() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();

    db.transaction(|tx| {
        Box::pin(async move {
            tx_run!(tx, c => sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)")
                .bind("kept").bind("1").bind(now_ms()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            Ok::<_, anyhow::Error>(())
        })
    })
    .await
    .unwrap();

    let failed = db
        .transaction(|tx| {
            Box::pin(async move {
                tx_run!(tx, c => sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)")
                    .bind("dropped").bind("1").bind(now_ms()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                anyhow::bail!("the business rule refused");
                #[allow(unreachable_code)]
                Ok(())
            })
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(setting(&db, "kept").await.as_deref(), Some("1"));
    assert_eq!(setting(&db, "dropped").await, None);
}

#[tokio::test]
async fn a_duplicate_key_is_detected_as_a_unique_violation_on_both_backends() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let insert = || async {
        db_run!(&db, pool => sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 0)")
            .execute(pool).await.map(|_| ()))
    };
    insert().await.unwrap();
    let err = insert().await.unwrap_err();
    assert!(tollgate::store::is_unique_violation(&err), "{err}");
}

#[tokio::test]
async fn production_refuses_to_start_with_pending_migrations_unless_told_to_migrate() {
    let test_db = TestDb::new().await;
    let mut config = test_db.config();
    config.environment = Environment::Production;

    let refused = Application::build(
        config.clone(),
        ServeOptions {
            role: Role::Api,
            migrate: false,
        },
    )
    .await;
    let message = format!("{:#}", refused.err().expect("start is refused"));
    assert!(
        message.contains(
            "16 pending migration(s) [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"
        ),
        "{message}"
    );
    assert!(message.contains("tollgate serve --migrate"), "{message}");

    let app = Application::build(
        config,
        ServeOptions {
            role: Role::Api,
            migrate: true,
        },
    )
    .await
    .unwrap();
    assert!(migrate::status(app.db()).await.unwrap().is_current());
}

#[tokio::test]
async fn a_migration_edited_after_release_stops_the_start() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    db_run!(&db, pool => sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
        .bind(vec![0u8; 48]).execute(pool).await.unwrap().rows_affected());
    let refused = Application::build(
        test_db.config(),
        ServeOptions {
            role: Role::All,
            migrate: true,
        },
    )
    .await;
    let message = format!("{:#}", refused.err().expect("start is refused"));
    assert!(message.contains("differ from this binary"), "{message}");
}
