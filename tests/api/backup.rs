//! The restore drill: an instance with users, grants, holds, webhook deliveries and jobs is
//! backed up by `tollgate backup` while a real `tollgate serve` takes writes, restored by
//! `tollgate restore` into a fresh place, and must match its manifest row for row with a
//! verified ledger. Plus the refusals (a non-empty target, a damaged file) and the schedule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate::billing::{Envelope, Provider};
use tollgate::domain::identity::KeyKind;
use tollgate::jobs::kinds::maintenance::Noop;
use tollgate::jobs::switches::Switches;
use tollgate::jobs::{Client, EnqueueOptions};
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::ledger::{self, Credit, EntryKind, Note, Target};
use tollgate::store::scope::Scope;
use tollgate::store::{Db, backup as stored, migrate};

use crate::cli::{as_refs, db_vars, run};
use crate::helpers::{TestDb, spawn_app_with};
use crate::jobs::wait_until;
use crate::jobs_processes::{spawn_api, terminate};

const CREDIT: i64 = 1_000_000;
const USERS: usize = 4;

/// Where a backup is restored: a new SQLite data directory, or on PostgreSQL a new database
/// (the schema keeps its name), dropped at the end.
struct FreshPlace {
    vars: Vec<(&'static str, String)>,
    url: String,
    _sqlite: Option<TestDb>,
    pg: Option<(String, String)>,
}

impl FreshPlace {
    async fn new(original: &TestDb) -> FreshPlace {
        let Some((admin_url, _)) = original.postgres_schema() else {
            let fresh = TestDb::new().await;
            return FreshPlace {
                vars: db_vars(&fresh),
                url: fresh.effective_url(),
                _sqlite: Some(fresh),
                pg: None,
            };
        };
        let name = format!("tg_restore_{}", uuid::Uuid::now_v7().simple());
        // The schema's owner restores it, so it owns the new database.
        let owner_url = original
            .owner_url
            .clone()
            .unwrap_or(original.effective_url());
        let owner = url::Url::parse(&owner_url).unwrap().username().to_string();
        admin_sql(admin_url, &format!("CREATE DATABASE {name} OWNER {owner}")).await;
        let retarget = |u: &str| {
            let mut u = url::Url::parse(u).unwrap();
            u.set_path(&format!("/{name}"));
            u.to_string()
        };
        let mut vars = vec![("TOLLGATE_DATA_DIR", original.data_dir.display().to_string())];
        let url = retarget(&original.effective_url());
        vars.push(("DATABASE_URL", url.clone()));
        if let Some(o) = &original.owner_url {
            vars.push(("DATABASE_OWNER_URL", retarget(o)));
        }
        FreshPlace {
            vars,
            url,
            _sqlite: None,
            pg: Some((admin_url.to_string(), name)),
        }
    }

    async fn connect(&self) -> Db {
        let mut cfg = tollgate::config::Config::defaults().database;
        cfg.owner_url = self
            .vars
            .iter()
            .find(|(k, _)| *k == "DATABASE_OWNER_URL")
            .map(|(_, v)| v.clone());
        Db::connect(&self.url, &cfg).await.unwrap()
    }

    async fn drop_database(self) {
        if let Some((admin_url, name)) = &self.pg {
            admin_sql(admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
        }
    }
}

async fn admin_sql(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn manifest(file: &Path) -> Value {
    let path = format!("{}.json", file.display());
    serde_json::from_slice(&std::fs::read(path).expect("a manifest beside the backup")).unwrap()
}

fn counts_of(manifest: &Value) -> BTreeMap<String, i64> {
    manifest["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect()
}

/// An instance with four users (grants, one hold left open each), two webhook deliveries and
/// three jobs waiting; returns the app key.
pub async fn populate(db: &Db) -> String {
    migrate::run(db).await.unwrap();
    let app = identity::create_app(db, "drill", "Drill")
        .await
        .unwrap()
        .unwrap();
    for u in 0..USERS {
        let (user, _) = identity::find_or_create_user(db, app.id, &format!("u{u}"))
            .await
            .unwrap();
        let credit = Credit {
            kind: EntryKind::Grant,
            amount: 1_000 * CREDIT,
            source: "top_up",
            expires_at: None,
            note: Note::default(),
        };
        let t = Target {
            app_id: app.id,
            user_id: user.id,
        };
        ledger::credit(db, t, &credit, None).await.unwrap();
    }
    let jobs = Client::new(db.clone(), Switches::all_on());
    for i in 0..2 {
        let envelope = Envelope {
            id: format!("evt_drill_{i}"),
            kind: "invoice.paid".into(),
            time_ms: 1_795_000_000_000 + i,
        };
        tollgate::store::billing::ingest(
            db,
            &jobs,
            app.id,
            Provider::Stripe,
            &envelope,
            b"{\"id\":\"evt\"}",
            |_| Noop::default(),
        )
        .await
        .unwrap();
    }
    let later = EnqueueOptions {
        run_at: Some(tollgate::store::now_ms() + 3_600_000),
        ..Default::default()
    };
    for _ in 0..3 {
        jobs.enqueue(&Noop::default(), later.clone()).await.unwrap();
    }
    let spec = KeySpec {
        app_id: Some(app.id),
        ..Default::default()
    };
    identity::create_key(db, KeyKind::App, &spec)
        .await
        .unwrap()
        .1
        .secret
}

/// Reserve then settle, over and over, for one user, until `stop`; counts the settled calls.
async fn load(base: String, key: String, user: usize, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let hold: Value = client
            .post(format!("{base}/v1/users/u{user}/holds"))
            .bearer_auth(&key)
            .json(&json!({ "amount_micros": 3_000 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = hold["id"].as_i64().expect("a hold");
        let settled = client
            .post(format!("{base}/v1/holds/{id}/settle"))
            .bearer_auth(&key)
            .json(&json!({ "amount_micros": 1_234 }))
            .send()
            .await
            .unwrap();
        assert!(settled.status().is_success(), "{}", settled.status());
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_into_a_fresh_place_row_for_row_with_a_verified_ledger()
{
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    let key = populate(&db).await;
    let (api, base) = spawn_api(&test_db, &[]).await;
    let client = reqwest::Client::new();
    for u in 0..USERS {
        let open = client
            .post(format!("{base}/v1/users/u{u}/holds"))
            .bearer_auth(&key)
            .json(&json!({ "amount_micros": 5 * CREDIT, "expires_in_secs": 3600 }))
            .send()
            .await
            .unwrap();
        assert_eq!(open.status(), 201);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..USERS)
        .map(|u| {
            tokio::spawn(load(
                base.clone(),
                key.clone(),
                u,
                stop.clone(),
                done.clone(),
            ))
        })
        .collect();
    wait_until(Duration::from_secs(20), || async {
        done.load(Ordering::Relaxed) >= 50
    })
    .await;

    let file = test_db.data_dir.join("drill").join("tollgate.backup");
    let file_arg = file.display().to_string();
    let vars = db_vars(&test_db);
    let before = done.load(Ordering::Relaxed);
    let (code, stdout, stderr) = run(&["backup", &file_arg], &as_refs(&vars)).await;
    let during = done.load(Ordering::Relaxed) - before;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("backup: "), "{stdout}");
    // Let the load run on after the backup, then stop it.
    wait_until(Duration::from_secs(20), || async {
        done.load(Ordering::Relaxed) >= before + during + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    terminate(api).await;
    assert!(during > 0, "the load kept writing while the backup ran");

    let m = manifest(&file);
    let expected = counts_of(&m);
    let live = stored::row_counts(&db).await.unwrap();
    assert_eq!(expected["users"], USERS as i64);
    assert_eq!(expected["webhook_events"], 2);
    assert!(expected["jobs"] >= 5, "{expected:?}");
    assert!(expected["credit_holds"] >= 2 * USERS as i64, "{expected:?}");
    assert!(
        expected["ledger_entries"] < live["ledger_entries"],
        "the backup is a snapshot: the load went on after it ({expected:?} vs {live:?})"
    );

    let place = FreshPlace::new(&test_db).await;
    let (code, stdout, stderr) = run(&["restore", &file_arg], &as_refs(&place.vars)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("row counts: every table matches the manifest"),
        "{stdout}"
    );
    assert!(stdout.contains(", 0 mismatches"), "{stdout}");

    // Checked again here, not only by the command: the rows and the ledger.
    let restored = place.connect().await;
    assert!(migrate::status(&restored).await.unwrap().is_current());
    assert_eq!(stored::row_counts(&restored).await.unwrap(), expected);
    let (accounts, mismatches) = ledger::verify(&restored).await.unwrap();
    assert_eq!(accounts, USERS as u64);
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let open = async {
        Ok::<i64, sqlx::Error>(
            tollgate::scoped_run!(&restored, Scope::AllApps, c => sqlx::query_scalar(
            "SELECT count(*) FROM credit_holds WHERE state = 'open'").fetch_one(c).await)?,
        )
    }
    .await
    .unwrap();
    assert!(
        open >= USERS as i64,
        "the long holds came back open: {open}"
    );

    // A second restore into the same place is refused without --force.
    let (code, stdout, stderr) = run(&["restore", &file_arg], &as_refs(&place.vars)).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    restored.close().await;
    place.drop_database().await;
}

#[tokio::test]
async fn a_damaged_backup_is_refused_before_anything_is_written_and_a_backup_never_overwrites() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    populate(&db).await;
    let vars = db_vars(&test_db);
    let file = test_db.data_dir.join("b.backup");
    let file_arg = file.display().to_string();
    let (code, stdout, stderr) = run(&["backup", &file_arg], &as_refs(&vars)).await;
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, _, stderr) = run(&["backup", &file_arg], &as_refs(&vars)).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("never overwrites"), "{stderr}");

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let place = FreshPlace::new(&test_db).await;
    let (code, _, stderr) = run(&["restore", &file_arg], &as_refs(&place.vars)).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("does not match its manifest"), "{stderr}");
    let empty = place.connect().await;
    assert!(
        stored::row_counts(&empty).await.unwrap().is_empty(),
        "nothing was restored"
    );
    empty.close().await;
    place.drop_database().await;

    // Both backups were recorded: the one that worked and the refused overwrite.
    let outcomes: Vec<String> = tollgate::db_run!(&db, pool => sqlx::query_scalar(
        "SELECT outcome FROM backups ORDER BY id").fetch_all(pool).await)
    .unwrap();
    assert_eq!(outcomes, ["ok", "failed"]);
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_and_show_their_age_in_ready_and_metrics() {
    let dir = std::env::temp_dir().join(format!("tg-backups-{}", uuid::Uuid::now_v7().simple()));
    let dir_for_config = dir.clone();
    let app = spawn_app_with(move |c| {
        c.backup.cron = Some("* * * * * *".parse().unwrap());
        c.backup.dir = Some(dir_for_config);
        c.backup.keep = 2;
        c.jobs.poll_interval_ms = 50;
    })
    .await;
    let verified = |dir: &PathBuf| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let taken = || async {
        tollgate::db_run!(&app.db, pool => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM backups WHERE outcome = 'ok' AND trigger = 'schedule'")
            .fetch_one(pool).await)
        .unwrap()
    };
    wait_until(Duration::from_secs(30), || async { taken().await >= 4 }).await;
    // A backup runs every second: the next one's manifest may be written a moment before its
    // pruning leaves the newest two. With pruning broken the count only grows, never back to 2.
    wait_until(Duration::from_secs(10), || async { verified(&dir) == 2 }).await;

    let ready: Value = app.get_ready().await.json().await.unwrap();
    let backup = &ready["checks"]["backup"][0];
    assert_eq!(backup["status"], "pass", "{ready}");
    assert!(
        backup["output"]
            .as_str()
            .unwrap()
            .starts_with("newest verified backup 0 min old"),
        "{ready}"
    );
    let metrics = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains("tollgate_backups_total{trigger=\"schedule\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("tollgate_backup_last_success_timestamp_seconds"));
    let _ = std::fs::remove_dir_all(&dir);
}
