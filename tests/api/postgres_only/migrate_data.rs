//! `tollgate migrate-data`: a SQLite instance moved into an empty PostgreSQL schema keeps every
//! row and id, its sequences move past SQLite's ids, its ledger verifies, and a tollgate
//! started on the copy serves the same keys. A second run into the filled schema is refused.

use serde_json::json;
use tollgate::store::{Db, backup as stored, migrate};

use crate::cli::run;
use crate::helpers::TestDb;
use crate::jobs_processes::{spawn_api, terminate};

#[tokio::test]
async fn a_sqlite_instance_moves_into_postgres_row_for_row_and_serves_there() {
    let target = TestDb::new().await;
    super::require_postgres(&target);
    let dir = std::env::temp_dir().join(format!("tg-move-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let from = format!("sqlite://{}", dir.join("tollgate.db").display());
    let source = Db::connect(&from, &tollgate::config::Config::defaults().database)
        .await
        .unwrap();
    let key = crate::backup::populate(&source).await;
    // An id handed out and deleted: PostgreSQL must not give it out again.
    let (deleted,): (i64,) = tollgate::db_run!(&source, pool => sqlx::query_as(
        "DELETE FROM jobs WHERE id = (SELECT max(id) FROM jobs) RETURNING id").fetch_one(pool).await)
    .unwrap();
    let mut expected = stored::row_counts(&source).await.unwrap();
    expected.remove("_sqlx_migrations");
    source.close().await;

    let to = target.owner_url.clone().unwrap_or(target.effective_url());
    let (code, stdout, stderr) = run(&["migrate-data", "--from", &from, "--to", &to], &[]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("row counts: every table matches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ledger: 4 accounts checked, 0 mismatches"),
        "{stdout}"
    );

    let mut cfg = tollgate::config::Config::defaults().database;
    cfg.owner_url = target.owner_url.clone();
    let copy = Db::connect(&target.effective_url(), &cfg).await.unwrap();
    assert!(migrate::status(&copy).await.unwrap().is_current());
    // The step the command prints next: with a separate serving role, `tollgate migrate` grants
    // it its rights (nothing is pending; the grants are idempotent).
    assert!(migrate::run(&copy).await.unwrap().is_empty());
    let mut found = stored::row_counts(&copy).await.unwrap();
    found.remove("_sqlx_migrations");
    assert_eq!(found, expected);
    assert_eq!(found["users"], 4);
    assert_eq!(found["webhook_events"], 2);
    let (accounts, mismatches) = tollgate::store::ledger::verify(&copy).await.unwrap();
    assert_eq!((accounts, mismatches.len()), (4, 0), "{mismatches:?}");

    let jobs =
        tollgate::jobs::Client::new(copy.clone(), tollgate::jobs::switches::Switches::all_on());
    let next = jobs
        .enqueue(
            &tollgate::jobs::kinds::maintenance::Noop::default(),
            Default::default(),
        )
        .await
        .unwrap()
        .id;
    assert!(
        next > deleted,
        "a new job ({next}) takes no id SQLite gave out ({deleted})"
    );

    // A second move into the filled schema is refused and changes nothing.
    let (code, _, stderr) = run(&["migrate-data", "--from", &from, "--to", &to], &[]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("the target is not empty"), "{stderr}");

    // tollgate on the copy: the app key copied from SQLite holds credits there.
    let (api, base) = spawn_api(&target, &[]).await;
    let hold = reqwest::Client::new()
        .post(format!("{base}/v1/users/u0/holds"))
        .bearer_auth(&key)
        .json(&json!({ "amount_micros": 1_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    terminate(api).await;
    copy.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
