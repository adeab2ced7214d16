//! Personal data: a deleted user's email, name and phone leave the stored webhook bodies and the
//! audit log; `[retention]` prunes old payloads, usage records, audit entries and payment events.

use serde_json::{Value, json};
use tollgate::store::billing as store;
use tollgate::store::identity;

use crate::billing::{post_stripe, settled, spawn_store_app, stripe_event};
use crate::cli::{as_refs, db_vars, run};
use crate::helpers::TestApp;

/// A scoped statement in a test (the macro's `?` needs a `Result` around it).
macro_rules! scoped {
    ($db:expr, $scope:expr, $c:ident => $body:expr) => {
        async {
            let r: Result<_, sqlx::Error> = tollgate::scoped_run!($db, $scope, $c => $body);
            r
        }
        .await
    };
}

const EMAIL: &str = "bob.builder@example.com";
const PHONE: &str = "+15550100";
const NAME: &str = "Bob Builder";

async fn post_revenuecat(app: &TestApp, event: Value) {
    let r = app
        .client
        .post(app.url("/webhooks/shop/revenuecat"))
        .header("authorization", crate::billing::RC_AUTH)
        .json(&json!({ "api_version": "1.0", "event": event }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn deleting_a_user_erases_their_email_name_and_phone_from_webhooks_and_the_audit_log() {
    let app = spawn_store_app().await;
    let now = tollgate::store::now_ms();
    post_revenuecat(
        &app,
        json!({ "id": "rc_priv", "type": "NON_RENEWING_PURCHASE", "app_user_id": "bob",
            "original_app_user_id": "bob", "product_id": "pack_20", "transaction_id": "tx_priv",
            "purchased_at_ms": now, "event_timestamp_ms": now, "environment": "SANDBOX",
            "store": "APP_STORE", "subscriber_attributes": {
                "$email": { "value": EMAIL, "updated_at_ms": now },
                "$displayName": { "value": NAME, "updated_at_ms": now },
                "$phoneNumber": { "value": PHONE, "updated_at_ms": now } } }),
    )
    .await;
    let session = json!({ "id": "cs_priv", "object": "checkout.session", "mode": "payment",
        "payment_status": "paid", "client_reference_id": "bob", "customer": "cus_priv",
        "payment_intent": "pi_priv", "amount_total": 500, "currency": "usd",
        "customer_details": { "email": EMAIL, "name": NAME, "phone": PHONE },
        "customer_email": EMAIL, "metadata": { "tollgate_product": "price_pack" } });
    let r = post_stripe(
        &app,
        &stripe_event(
            "evt_priv",
            "checkout.session.completed",
            now / 1000,
            session,
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let rows = settled(&app).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(
            row.user_id.is_some(),
            "{:?} {:?}",
            row.status,
            row.last_error
        );
    }
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let (code, _, err) = run(
        &[
            "credits",
            "grant",
            "--app",
            "shop",
            "--user",
            "bob",
            "--credits",
            "5",
            "--reason",
            "support for bob",
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let shown = |id: i64| {
        let vars = vars.clone();
        async move {
            let (code, out, err) = run(&["webhooks", "show", &id.to_string()], &vars).await;
            assert_eq!(code, 0, "{err}");
            out
        }
    };
    // Before: the stores' personal data is there, as they sent it.
    for row in &rows {
        assert!(shown(row.id).await.contains(EMAIL));
    }

    let (code, out, err) = run(
        &["users", "delete", "--app", "shop", "--user", "bob"],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    for row in &rows {
        let out = shown(row.id).await;
        for personal in [EMAIL, PHONE, NAME, "\"bob\""] {
            assert!(!out.contains(personal), "{personal} still shown: {out}");
        }
        // What processing and accounting need stays.
        assert!(out.contains("anon_"), "{out}");
    }
    let stored = store::webhook(&app.db, rows[0].id).await.unwrap().unwrap();
    let body: Value = serde_json::from_slice(&stored.body).unwrap();
    assert!(body.to_string().contains("pack_20") || body.to_string().contains("price_pack"));
    let audit = identity::list_audit(&app.db, None, 100).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "credits.grant"),
        "{audit:?}"
    );
    for entry in &audit {
        assert_ne!(entry.target.as_deref(), Some("bob"), "{entry:?}");
        let details = entry.details.as_deref().unwrap_or_default();
        assert!(!details.contains("bob"), "{entry:?}");
    }
}

/// Rows of every kind `[retention]` prunes: one old (40 days, or 800 for payment events) and
/// one recent each, plus an old delivery still pending. Returns the old webhook row's id.
async fn seed_aged_rows(db: &tollgate::store::Db, t: tollgate::store::ledger::Target) -> i64 {
    use tollgate::store::scope::Scope;
    let now = tollgate::store::now_ms();
    let day = 86_400_000i64;
    let body = format!(r#"{{"customer_email":"{EMAIL}"}}"#).into_bytes();
    let mut webhooks = Vec::new();
    for (event_id, status, age) in [
        ("evt_old", "processed", 40),
        ("evt_new", "processed", 1),
        ("evt_wait", "pending", 40),
    ] {
        let at = now - age * day;
        let id: i64 = scoped!(db, Scope::App(t.app_id), pool => sqlx::query_scalar(
            "INSERT INTO webhook_events (app_id, provider, event_id, event_type, event_time, \
             received_at, body, status) VALUES ($1, 'stripe', $2, 'invoice.paid', $3, $3, $4, $5) \
             RETURNING id")
            .bind(t.app_id).bind(event_id).bind(at).bind(&body).bind(status)
            .fetch_one(pool).await)
        .unwrap();
        webhooks.push(id);
    }
    for (webhook, age) in [(webhooks[0], 800), (webhooks[1], 1)] {
        let at = now - age * day;
        scoped!(db, Scope::App(t.app_id), pool => sqlx::query(
            "INSERT INTO payment_events (app_id, user_id, provider, kind, event_time, webhook_id, \
             created_at) VALUES ($1, $2, 'stripe', 'payment_failed', $3, $4, $3)")
            .bind(t.app_id).bind(t.user_id).bind(at).bind(webhook).execute(pool).await.map(|_| ()))
        .unwrap();
    }
    for (request_id, age) in [("req_old", 40), ("req_new", 1)] {
        let usage = tollgate::store::usage::NewUsage {
            request_id: request_id.into(),
            model: "mock".into(),
            provider: "mock".into(),
            upstream_model: "mock".into(),
            input_tokens: 1,
            cached_input_tokens: 0,
            output_tokens: 1,
            cost: 1,
            hold_id: None,
            status: "ok",
            estimated: false,
            stream: false,
            latency_ms: 1,
            ttft_ms: None,
        };
        let mut tx = db.begin_in(Scope::App(t.app_id)).await.unwrap();
        tollgate::store::usage::insert_tx(&mut tx, t.app_id, &[(t.user_id, &usage)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        scoped!(db, Scope::App(t.app_id), pool => sqlx::query("UPDATE usage_records SET created_at = $1 WHERE request_id = $2")
            .bind(now - age * day).bind(request_id).execute(pool).await.map(|_| ()))
        .unwrap();
        let audit = identity::NewAudit {
            actor: "cli",
            actor_role: None,
            action: "credits.grant",
            target: Some(request_id),
            app_id: Some(t.app_id),
            request_id: None,
            details: None,
        };
        identity::record_audit(db, &audit).await.unwrap();
        scoped!(db, Scope::App(t.app_id), pool => sqlx::query("UPDATE audit_log SET at = $1 WHERE target = $2")
            .bind(now - age * day).bind(request_id).execute(pool).await.map(|_| ()))
        .unwrap();
    }
    webhooks[0]
}

/// A database with [`seed_aged_rows`], after one run of the prune job with these retentions
/// (webhook payloads, usage records, audit entries, payment events; days). Returns the old
/// webhook row's id too.
async fn pruned_with(days: [u32; 4]) -> (crate::jobs::Harness, i64) {
    let h = crate::jobs::harness_with(|c| {
        let r = &mut c.retention;
        [
            r.webhook_payload_days,
            r.usage_record_days,
            r.audit_days,
            r.payment_event_days,
        ] = days;
    })
    .await;
    let t = crate::helpers::seed_app_user(&h.db, "shop", "bob").await;
    let old_webhook = seed_aged_rows(&h.db, t).await;
    h.enqueue(tollgate::jobs::kinds::maintenance::Prune {})
        .await;
    assert_eq!(h.rt.worker().run_available("maintenance").await.unwrap(), 1);
    (h, old_webhook)
}

#[tokio::test]
async fn the_prune_job_removes_what_is_older_than_its_retention_and_keeps_the_rest() {
    use tollgate::store::scope::Scope;
    let (h, old_webhook) = pruned_with([30, 30, 30, 730]).await;

    let bodies: Vec<(String, i64)> = scoped!(&h.db, Scope::AllApps, pool => sqlx::query_as(
        "SELECT event_id, CAST(LENGTH(body) AS BIGINT) FROM webhook_events ORDER BY event_id")
        .fetch_all(pool).await)
    .unwrap();
    let bodies: Vec<(&str, bool)> = bodies.iter().map(|(e, n)| (e.as_str(), *n > 0)).collect();
    assert_eq!(
        bodies,
        [("evt_new", true), ("evt_old", false), ("evt_wait", true)],
        "the old processed payload is pruned (its row stays); a pending one is kept"
    );
    let shown = store::webhook(&h.db, old_webhook).await.unwrap().unwrap();
    assert_eq!(shown.status, "processed");
    let vars = db_vars(&h._test_db);
    let vars = as_refs(&vars);
    let id = old_webhook.to_string();
    let (code, out, _) = run(&["webhooks", "show", &id], &vars).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("(pruned: older than retention.webhook_payload_days)"),
        "{out}"
    );
    let (code, _, err) = run(&["webhooks", "replay", &id], &vars).await;
    assert_ne!(code, 0);
    assert!(err.contains("its payload was pruned"), "{err}");
    let count = |table: &'static str| {
        let db = h.db.clone();
        async move {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let n: i64 = scoped!(&db, Scope::AllApps, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await)
                .unwrap();
            n
        }
    };
    assert_eq!(count("usage_records").await, 1);
    assert_eq!(count("audit_log").await, 1);
    assert_eq!(count("payment_events").await, 1, "800 days old: past 730");
    let audit = identity::list_audit(&h.db, None, 10).await.unwrap();
    assert_eq!(audit[0].target.as_deref(), Some("req_new"));

    // 0 keeps for ever.
    let (h2, _) = pruned_with([0, 0, 0, 0]).await;
    let n: i64 = scoped!(&h2.db, Scope::AllApps, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_events WHERE LENGTH(body) > 0").fetch_one(pool).await)
    .unwrap();
    assert_eq!(n, 3);
}
