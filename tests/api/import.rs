//! `tollgate import`: users, plans and balances from CSV or JSON through the CLI, on both
//! databases. A bad file writes nothing and names every bad row; the same file imported twice
//! grants each balance once.

use tollgate::store::ledger::{self, Target};
use tollgate::store::{identity, migrate};

use crate::cli::{as_refs, db_vars, run};
use crate::helpers::TestDb;

const CONFIG: &str = r#"
[new_app_billing]
default_plan = "free"

[[new_app_billing.plans]]
id = "free"
models = ["mock"]

[[new_app_billing.plans]]
id = "pro"
models = ["mock"]
entitlements = ["premium"]
"#;

#[tokio::test]
async fn users_plans_and_balances_are_imported_once_and_a_bad_file_writes_nothing() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let config = test_db.data_dir.join("import.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    let vars = db_vars(&test_db);
    let vars = as_refs(&vars);
    let (code, _, stderr) = run(&["--config", &config, "apps", "create", "shop"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    let app = identity::app_by_slug(&db, "shop").await.unwrap().unwrap();

    let bad = test_db.data_dir.join("bad.csv");
    std::fs::write(
        &bad,
        "external_id,plan,balance,reason\nann,gold,5,\n,free,-1,\nbob,free,2.5,\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let (code, _, stderr) = run(
        &["--config", &config, "import", "--app", "shop", &bad],
        &vars,
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("row 1: plan: \"gold\""), "{stderr}");
    assert!(stderr.contains("row 2: external_id"), "{stderr}");
    assert!(
        stderr.contains("2 problem(s); nothing was imported"),
        "{stderr}"
    );
    assert!(
        identity::user_by_external_id(&db, app.id, "bob")
            .await
            .unwrap()
            .is_none(),
        "no row of a bad file is written, not even the good ones"
    );

    let good = test_db.data_dir.join("users.csv");
    std::fs::write(
        &good,
        "external_id,plan,balance,reason\n\
         ann,pro,12.5,\"moved from Lago, March\"\n\
         bob,,3,\n\
         cy,free,,\n",
    )
    .unwrap();
    let good = good.display().to_string();
    for round in 0..2 {
        let (code, stdout, stderr) = run(
            &["--config", &config, "import", "--app", "shop", &good],
            &vars,
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
        let expected = if round == 0 {
            "imported 3 users into shop (3 new), 2 plans set, 2 balances granted (0 granted by this file before)"
        } else {
            "imported 3 users into shop (0 new), 2 plans set, 0 balances granted (2 granted by this file before)"
        };
        assert!(stdout.contains(expected), "{stdout}");
    }
    let target = |id: i64| Target {
        app_id: app.id,
        user_id: id,
    };
    let ann = identity::user_by_external_id(&db, app.id, "ann")
        .await
        .unwrap()
        .unwrap();
    let entries = ledger::entries(&db, target(ann.id), None, 10)
        .await
        .unwrap();
    let grants: Vec<_> = entries.iter().filter(|e| e.kind == "grant").collect();
    assert_eq!(grants.len(), 1, "{entries:?}");
    assert_eq!(grants[0].amount, 12_500_000);
    assert_eq!(grants[0].reason.as_deref(), Some("moved from Lago, March"));
    let (_, plan) = ledger::refresh(&db, target(ann.id), &app.settings.billing)
        .await
        .unwrap();
    assert_eq!(plan.id, "pro");
    let bob = identity::user_by_external_id(&db, app.id, "bob")
        .await
        .unwrap()
        .unwrap();
    let b = ledger::balances(&db, target(bob.id)).await.unwrap();
    assert!(
        b.balance >= 3_000_000,
        "bob's 3 credits (and the plan's own): {}",
        b.balance
    );

    // JSON, the same rules.
    let json = test_db.data_dir.join("more.json");
    std::fs::write(&json, r#"[{"external_id": "dee", "balance": "0.000001"}]"#).unwrap();
    let json = json.display().to_string();
    let (code, stdout, stderr) = run(
        &["--config", &config, "import", "--app", "shop", &json],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 balances granted"), "{stdout}");
    let (_, mismatches) = ledger::verify(&db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    db.close().await;
}
