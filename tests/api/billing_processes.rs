//! A crash after ingest and before processing: the API process stores the deliveries and is
//! killed with SIGKILL; a worker started afterwards processes each once.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tollgate::store::billing as store;
use tollgate::store::{identity, ledger, migrate};

use crate::billing::{STRIPE_SECRET, stripe_event};
use crate::cli::{as_refs, db_vars, tollgate};
use crate::helpers::TestDb;
use crate::jobs::wait_until;
use crate::jobs_processes::{FAST, spawn_api, terminate};

const CONFIG: &str = r#"
[[apps]]
slug = "shop"
default_plan = "free"

[[apps.plans]]
id = "free"

[[apps.plans]]
id = "pro"
credits = "100"
entitlements = ["premium"]

[apps.stripe]
webhook_secrets = ["whsec_test_shop_endpoint"]

[[apps.products]]
provider = "stripe"
id = "price_pro"
plan = "pro"
"#;

#[tokio::test]
async fn deliveries_stored_by_a_killed_process_are_processed_once_after_restart() {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let config = test_db.data_dir.join("billing.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();

    let (mut api, base) = spawn_api(&test_db, &["--config", &config]).await;
    let client = reqwest::Client::new();

    let now = tollgate::store::now_ms() / 1000;
    let (start, end) = (now - 86_400, now + 29 * 86_400);
    let sub = json!({ "id": "sub_K", "object": "subscription", "customer": "cus_K",
        "status": "active", "cancel_at_period_end": false,
        "items": { "data": [{ "price": { "id": "price_pro" },
            "current_period_start": start, "current_period_end": end }] },
        "metadata": { "tollgate_user": "kim" } });
    let invoice = json!({ "id": "in_K", "object": "invoice", "customer": "cus_K",
        "billing_reason": "subscription_create", "amount_paid": 900, "currency": "usd",
        "parent": { "subscription_details": { "subscription": "sub_K",
            "metadata": { "tollgate_user": "kim" } } },
        "lines": { "data": [{ "period": { "start": start, "end": end },
            "pricing": { "price_details": { "price": "price_pro" } } }] } });
    for event in [
        stripe_event("evt_k1", "customer.subscription.created", now - 1, sub),
        stripe_event("evt_k2", "invoice.paid", now, invoice),
    ] {
        let body = serde_json::to_vec(&event).unwrap();
        let sig = tollgate::billing::stripe::sign(STRIPE_SECRET, now, &body);
        let r = client
            .post(format!("{base}/webhooks/shop/stripe"))
            .header("stripe-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Acknowledged means stored: both wait, unprocessed, when the process dies.
    let rows = store::webhooks(&db, None, None, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.status == "pending" && r.attempts == 0),
        "{rows:?}"
    );
    api.start_kill().unwrap();
    api.wait().await.unwrap();

    let vars = db_vars(&test_db);
    let mut vars = as_refs(&vars);
    vars.extend_from_slice(FAST);
    let worker = tollgate(&["--config", &config, "serve", "--role", "worker"], &vars)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), || async {
        let rows = store::webhooks(&db, None, None, 10).await.unwrap();
        rows.iter().all(|r| r.status == "processed")
    })
    .await;
    terminate(worker).await;

    let rows = store::webhooks(&db, None, None, 10).await.unwrap();
    assert!(rows.iter().all(|r| r.attempts == 1), "{rows:?}");
    let app = identity::app_by_slug(&db, "shop").await.unwrap().unwrap();
    let kim = identity::user_by_external_id(&db, app.id, "kim")
        .await
        .unwrap()
        .unwrap();
    let t = ledger::Target {
        app_id: app.id,
        user_id: kim.id,
    };
    let entries = ledger::entries(&db, t, None, 10).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].amount, 100_000_000);
    let plan = ledger::user_plan(&db, t).await.unwrap();
    assert_eq!(plan.plan_id.as_deref(), Some("pro"));
}

/// `tollgate check` names every malformed store setting, and lists each app's stores.
#[tokio::test]
async fn check_reports_store_settings() {
    let test_db = TestDb::new().await;
    let bad = test_db.data_dir.join("bad.toml");
    std::fs::write(
        &bad,
        CONFIG.replace("whsec_test_shop_endpoint", "sk_test_oops")
            + "\n[apps.revenuecat]\nwebhook_authorization = \"short\"\n",
    )
    .unwrap();
    let vars = db_vars(&test_db);
    let vars = as_refs(&vars);
    let bad = bad.display().to_string();
    let (code, stdout, _) = crate::cli::run(&["--config", &bad, "check"], &vars).await;
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("apps.0.stripe.webhook_secrets.0"),
        "{stdout}"
    );
    assert!(stdout.contains("starts with whsec_"), "{stdout}");
    assert!(
        stdout.contains("apps.0.revenuecat.webhook_authorization.0"),
        "{stdout}"
    );

    let good = test_db.data_dir.join("good.toml");
    std::fs::write(&good, CONFIG).unwrap();
    let good = good.display().to_string();
    let (_, stdout, _) = crate::cli::run(&["--config", &good, "check"], &vars).await;
    assert!(
        stdout.contains("[info] stores.shop: app shop sells through stripe (1 webhook secret(s); no secret_key: no checkout), 1 product(s) mapped"),
        "{stdout}"
    );
}
