//! The credit ledger end to end: holds under concurrency, idempotent entries, expiry order,
//! plans, entitlements, quotas, period credits, the admin and CLI surfaces, `ledger verify`.

use std::time::Duration;
use tollgate::store::ledger::EntryKind;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tollgate::config::AppConfig;
use tollgate::domain::identity::{KeyKind, Role};
use tollgate::store::identity::{self, KeySpec};
use tollgate::store::ledger::{self, Credit, Note, Target};
use tollgate::store::{Db, now_ms, scope};
use tollgate::tx_run;

use crate::cli::{as_refs, db_vars, run};
use crate::helpers::{TestApp, problem, spawn_app, spawn_app_full, spawn_app_with};

const CREDIT: i64 = 1_000_000;

/// An app "shop" with two plans: free (default; 5 credits a month, 3 requests a month, `basic`)
/// and pro (100 credits, `premium`, 2 credits of overdraft).
pub fn shop_config() -> AppConfig {
    serde_json::from_value(json!({
        "slug": "shop",
        "credit_usd": "0.01",
        "markup": "1.3",
        "default_plan": "free",
        "plans": [
            { "id": "free", "name": "Free", "entitlements": ["basic"], "models": ["mock"],
              "credits": "5", "quotas": { "requests": { "limit": 3, "period": "month" } } },
            { "id": "pro", "name": "Pro", "entitlements": ["basic", "premium"],
              "models": ["mock", "gpt-4o*"], "credits": "100", "overdraft": "2",
              "quotas": { "requests": { "limit": 1000, "period": "billing_period" } } }
        ]
    }))
    .expect("a valid app config")
}

pub struct Shop {
    pub app_id: i64,
    pub user_id: i64,
    /// The app's secret key.
    pub app_key: String,
    pub user_key: String,
    pub owner: String,
}

impl Shop {
    pub fn target(&self) -> Target {
        Target {
            app_id: self.app_id,
            user_id: self.user_id,
        }
    }
}

/// App `slug` (created if missing), user `alice`, an app key, her user key and an owner token.
pub async fn seed(app: &TestApp, slug: &str) -> Shop {
    let a = match identity::app_by_slug(&app.db, slug).await.unwrap() {
        Some(a) => a,
        None => identity::create_app(&app.db, slug, slug)
            .await
            .unwrap()
            .unwrap(),
    };
    let (alice, _) = identity::find_or_create_user(&app.db, a.id, "alice")
        .await
        .unwrap();
    let key = |kind, spec| async move {
        identity::create_key(&app.db, kind, &spec)
            .await
            .unwrap()
            .1
            .secret
    };
    let app_key = key(
        KeyKind::App,
        KeySpec {
            app_id: Some(a.id),
            ..Default::default()
        },
    )
    .await;
    let user_key = key(
        KeyKind::User,
        KeySpec {
            app_id: Some(a.id),
            user_id: Some(alice.id),
            ..Default::default()
        },
    )
    .await;
    let owner = key(
        KeyKind::Operator,
        KeySpec {
            role: Some(Role::Owner),
            ..Default::default()
        },
    )
    .await;
    Shop {
        app_id: a.id,
        user_id: alice.id,
        app_key,
        user_key,
        owner,
    }
}

async fn grant(db: &Db, t: Target, amount: i64, expires_at: Option<i64>, key: Option<&str>) -> i64 {
    let credit = Credit {
        kind: EntryKind::Grant,
        amount,
        source: "promo",
        expires_at,
        note: Note {
            key,
            ..Note::default()
        },
    };
    ledger::credit(db, t, &credit, None)
        .await
        .unwrap()
        .into_inner()
        .grant_id
        .unwrap()
}

pub async fn assert_ledger_verifies(db: &Db) {
    let (checked, mismatches) = ledger::verify(db).await.unwrap();
    assert!(checked > 0);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn sixty_four_concurrent_reserves_of_ten_against_one_hundred_succeed_exactly_ten_times() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    grant(&app.db, s.target(), 100 * CREDIT, None, None).await;

    let reserves = (0..64).map(|_| {
        app.send_as(
            reqwest::Method::POST,
            "/v1/users/alice/holds",
            &s.app_key,
            Some(json!({ "amount_micros": 10 * CREDIT })),
        )
    });
    let answers = join_all(reserves).await;
    let mut holds = Vec::new();
    let mut refused = 0;
    for r in answers {
        match r.status().as_u16() {
            201 => holds.push(r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()),
            402 => {
                let p = problem(r, 402).await;
                assert_eq!(p["type"], "urn:tollgate:problem:insufficient-credits");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((holds.len(), refused), (10, 54));
    let b = ledger::balances(&app.db, s.target()).await.unwrap();
    assert_eq!((b.balance, b.held), (100 * CREDIT, 100 * CREDIT));

    for id in &holds {
        let r = app
            .send_as(
                reqwest::Method::POST,
                &format!("/v1/holds/{id}/settle"),
                &s.app_key,
                Some(json!({ "amount_micros": 10 * CREDIT })),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["state"], "settled");
    }
    let b = ledger::balances(&app.db, s.target()).await.unwrap();
    assert_eq!((b.balance, b.held), (0, 0));
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn an_entry_written_twice_with_the_same_key_changes_the_balance_once() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let t = s.target();
    let first = grant(&app.db, t, 7 * CREDIT, None, Some("promo-2026-11")).await;
    let again = grant(&app.db, t, 7 * CREDIT, None, Some("promo-2026-11")).await;
    assert_eq!(first, again);

    let note = Note {
        key: Some("order-42"),
        ..Note::default()
    };
    let debit = ledger::charge(&app.db, t, EntryKind::Debit, 2 * CREDIT, 0, note, None)
        .await
        .unwrap();
    let repeat = ledger::charge(&app.db, t, EntryKind::Debit, 2 * CREDIT, 0, note, None)
        .await
        .unwrap();
    assert!(!debit.is_replayed());
    assert!(repeat.is_replayed());
    assert_eq!(debit.into_inner().id, repeat.into_inner().id);

    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!(b.balance, 5 * CREDIT);
    let entries = ledger::entries(&app.db, t, None, 100).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn soonest_expiring_grants_are_spent_first_and_an_expired_remainder_is_removed() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let t = s.target();
    let never = grant(&app.db, t, 10 * CREDIT, None, None).await;
    let later = grant(&app.db, t, 5 * CREDIT, Some(now_ms() + 3_600_000), None).await;
    let soon = grant(&app.db, t, 5 * CREDIT, Some(now_ms() + 400), None).await;

    ledger::charge(
        &app.db,
        t,
        EntryKind::Debit,
        3 * CREDIT,
        0,
        Note::default(),
        None,
    )
    .await
    .unwrap();
    let left = |b: &ledger::Balances, id| {
        b.buckets
            .iter()
            .find(|k| k.grant_id == id)
            .map_or(0, |k| k.remaining)
    };
    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!(
        left(&b, soon),
        2 * CREDIT,
        "the soonest-expiring grant pays first"
    );
    assert_eq!(
        (left(&b, later), left(&b, never)),
        (5 * CREDIT, 10 * CREDIT)
    );
    assert_eq!(
        b.buckets[0].grant_id, soon,
        "buckets are listed in spending order"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    // The next read through the API expires it (the expiry job does the same for idle users).
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"]["balance_micros"], 15 * CREDIT);
    assert_eq!(me["credits"]["balance"], "15");
    let entries = ledger::entries(&app.db, t, None, 10).await.unwrap();
    let expire = &entries[0];
    assert_eq!(expire.kind, "expire");
    assert_eq!((expire.amount, expire.grant_id), (-2 * CREDIT, Some(soon)));
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn credits_a_hold_still_needs_do_not_expire_under_it() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let t = s.target();
    grant(&app.db, t, 5 * CREDIT, Some(now_ms() + 400), None).await;
    let hold = ledger::reserve(
        &app.db,
        t,
        4 * CREDIT,
        0,
        now_ms() + 60_000,
        Note::default(),
    )
    .await
    .unwrap()
    .into_inner();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ledger::expire_grants(&app.db, t).await.unwrap(), 1);
    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!((b.balance, b.held), (4 * CREDIT, 4 * CREDIT));
    ledger::settle(&app.db, s.app_id, hold.id, 3 * CREDIT, None)
        .await
        .unwrap();
    // Settling spends 3 of the held 4; the last credit expires with the settle.
    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!((b.balance, b.held), (0, 0));
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn settle_charges_exactly_the_actual_amount_once_and_release_charges_nothing() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let t = s.target();
    grant(&app.db, t, 10 * CREDIT, None, None).await;
    let (a, key) = (&app, &s.app_key);
    let post = move |path: String, body: Value| async move {
        a.send_as(reqwest::Method::POST, &path, key, Some(body))
            .await
    };
    let hold: Value = post(
        "/v1/users/alice/holds".into(),
        json!({ "amount_micros": 6 * CREDIT, "reference": "job-1" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = hold["id"].as_i64().unwrap();
    assert_eq!(hold["amount"], "6");
    let too_much = post(
        format!("/v1/holds/{id}/settle"),
        json!({ "amount_micros": 7 * CREDIT }),
    )
    .await;
    problem(too_much, 409).await;
    let settled = post(
        format!("/v1/holds/{id}/settle"),
        json!({ "amount_micros": 2_500_000 }),
    )
    .await;
    assert_eq!(settled.status(), 200);
    let again = post(
        format!("/v1/holds/{id}/settle"),
        json!({ "amount_micros": 2_500_000 }),
    )
    .await;
    assert_eq!(again.status(), 200, "the same settle again is harmless");
    let other = post(
        format!("/v1/holds/{id}/settle"),
        json!({ "amount_micros": 1 }),
    )
    .await;
    problem(other, 409).await;
    let release = post(format!("/v1/holds/{id}/release"), json!({})).await;
    problem(release, 409).await;

    let second: Value = post(
        "/v1/users/alice/holds".into(),
        json!({ "amount_micros": CREDIT }),
    )
    .await
    .json()
    .await
    .unwrap();
    let released = post(format!("/v1/holds/{}/release", second["id"]), json!({})).await;
    assert_eq!(released.json::<Value>().await.unwrap()["state"], "released");

    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!((b.balance, b.held), (7_500_000, 0));
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn another_apps_key_cannot_settle_or_see_a_hold() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let other = seed(&app, "other").await;
    grant(&app.db, s.target(), 10 * CREDIT, None, None).await;
    let hold = ledger::reserve(
        &app.db,
        s.target(),
        CREDIT,
        0,
        now_ms() + 60_000,
        Note::default(),
    )
    .await
    .unwrap()
    .into_inner();
    let r = app
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/holds/{}/settle", hold.id),
            &other.app_key,
            Some(json!({ "amount_micros": 1 })),
        )
        .await;
    problem(r, 404).await;
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/alice/debits",
            &s.user_key,
            Some(json!({ "amount_micros": 1 })),
        )
        .await;
    problem(r, 403).await;
}

#[tokio::test]
async fn me_shows_plan_entitlements_balances_and_quotas_and_grants_period_credits_once() {
    let app = spawn_app_with(|c| c.apps = vec![shop_config()]).await;
    let s = seed(&app, "shop").await;
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["plan"]["id"], "free");
    assert_eq!(me["entitlements"], json!(["basic"]));
    assert_eq!(me["credits"]["balance_micros"], 5 * CREDIT);
    let bucket = &me["credits"]["buckets"][0];
    assert_eq!(bucket["source"], "monthly_free");
    let month = tollgate::domain::plans::Period::month_of(now_ms());
    assert_eq!(bucket["expires_at"], month.end);
    assert_eq!(me["quotas"][0]["metric"], "requests");
    assert_eq!(me["quotas"][0]["limit"], 3);
    assert_eq!(me["quotas"][0]["resets_at"], month.end);

    // The job grants no one twice: alice got hers lazily, bob gets his from the job.
    let (bob, _) = identity::find_or_create_user(&app.db, s.app_id, "bob")
        .await
        .unwrap();
    let shop = identity::app_by_id(&app.db, s.app_id)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        for (id, user) in ledger::users_page(&app.db, s.app_id, 0, 100).await.unwrap() {
            let plan = shop.settings.billing.plan(user.plan_id.as_deref());
            let t = Target {
                app_id: s.app_id,
                user_id: id,
            };
            ledger::grant_period_credits(&app.db, t, &shop.settings.billing, &user, &plan)
                .await
                .unwrap();
        }
    }
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"]["balance_micros"], 5 * CREDIT);
    let bob_t = Target {
        app_id: s.app_id,
        user_id: bob.id,
    };
    assert_eq!(
        ledger::balances(&app.db, bob_t).await.unwrap().balance,
        5 * CREDIT
    );
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn an_entitlement_follows_the_plan_and_a_plan_change_applies_on_the_next_request() {
    let app = spawn_app_with(|c| c.apps = vec![shop_config()]).await;
    let s = seed(&app, "shop").await;
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"]["balance_micros"], 5 * CREDIT);
    let p = problem(
        app.get_as("/v1/entitlements/premium", &s.user_key).await,
        403,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("premium"), "{p}");
    let ok = app.get_as("/v1/entitlements/basic", &s.user_key).await;
    assert_eq!(ok.status(), 200);

    let path = "/admin/v1/apps/shop/users/alice/plan";
    let bad = app
        .send_as(
            reqwest::Method::PUT,
            path,
            &s.owner,
            Some(json!({ "plan_id": "gold" })),
        )
        .await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "plan_id");
    let set = app
        .send_as(
            reqwest::Method::PUT,
            path,
            &s.owner,
            Some(json!({ "plan_id": "pro" })),
        )
        .await;
    assert_eq!(set.status(), 200);
    let ok: Value = app
        .get_as("/v1/entitlements/premium", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ok["granted"].clone(), ok["plan"]["id"].clone()),
        (json!(true), json!("pro"))
    );
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    // Free's 5 and pro's 100 for this period.
    assert_eq!(me["credits"]["balance_micros"], 105 * CREDIT);
    let sources: Vec<&str> = me["credits"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"subscription") && sources.contains(&"monthly_free"));
}

#[tokio::test]
async fn a_quota_is_counted_atomically_and_refuses_past_its_limit() {
    let app = spawn_app_with(|c| c.apps = vec![shop_config()]).await;
    let s = seed(&app, "shop").await;
    let calls = (0..10).map(|_| {
        app.send_as(
            reqwest::Method::POST,
            "/v1/users/alice/quotas/requests",
            &s.app_key,
            Some(json!({})),
        )
    });
    let answers = join_all(calls).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let refused: Vec<_> = answers.into_iter().filter(|r| r.status() == 429).collect();
    assert_eq!((ok, refused.len()), (3, 7));
    let retry_after: u64 = refused[0].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 31 * 86_400);
    let p = problem(refused.into_iter().next().unwrap(), 429).await;
    assert_eq!(p["type"], "urn:tollgate:problem:quota-exceeded");
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            me["quotas"][0]["used"].clone(),
            me["quotas"][0]["remaining"].clone()
        ),
        (json!(3), json!(0))
    );
    // A metric the plan has no quota for is not limited.
    let free = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/alice/quotas/exports",
            &s.app_key,
            Some(json!({})),
        )
        .await;
    assert_eq!(free.status(), 204);
}

#[tokio::test]
async fn operators_grant_adjust_and_refund_with_an_audit_row_each_and_page_the_ledger() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let base = "/admin/v1/apps/plain/users/alice";
    let (a, owner) = (&app, &s.owner);
    let post = move |path: &'static str, body: Value| async move {
        a.send_as(
            reqwest::Method::POST,
            &format!("{base}{path}"),
            owner,
            Some(body),
        )
        .await
    };
    let g = post(
        "/grants",
        json!({ "amount_micros": 3 * CREDIT, "source": "top_up", "reason": "pack" }),
    )
    .await;
    assert_eq!(g.status(), 201);
    let g: Value = g.json().await.unwrap();
    assert_eq!(
        (g["amount"].clone(), g["balance_after_micros"].clone()),
        (json!("3"), json!(3 * CREDIT))
    );
    let bad = post("/grants", json!({ "amount_micros": 0, "source": "gift" })).await;
    assert_eq!(
        problem(bad, 422).await["errors"][0]["field"],
        "amount_micros"
    );
    let bad = post("/grants", json!({ "amount_micros": 1, "source": "gift" })).await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "source");
    assert_eq!(
        post(
            "/adjustments",
            json!({ "amount_micros": -CREDIT, "reason": "duplicate pack" })
        )
        .await
        .status(),
        201
    );
    let too_far = post(
        "/adjustments",
        json!({ "amount_micros": -5 * CREDIT, "reason": "x" }),
    )
    .await;
    problem(too_far, 402).await;
    assert_eq!(
        post(
            "/refunds",
            json!({ "amount_micros": 500_000, "reference": "req_1" })
        )
        .await
        .status(),
        201
    );

    let page: Value = app
        .get_as(&format!("{base}/ledger?limit=2"), &s.owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["kind"], "refund");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest: Value = app
        .get_as(&format!("{base}/ledger?limit=2&cursor={cursor}"), &s.owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["kind"], "grant");
    assert!(rest["next_cursor"].is_null());
    let credits: Value = app
        .get_as(&format!("{base}/credits"), &s.owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["credits"]["balance"], "2.5");

    let audit: Value = app
        .get_as("/admin/v1/audit?app=plain", &s.owner)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| a.starts_with("credits.")).count(),
        3,
        "{actions:?}"
    );
    // The user sees the same entries.
    let mine: Value = app
        .get_as("/v1/me/ledger", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_viewer_cannot_grant_credits() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let (_, viewer) = identity::create_key(
        &app.db,
        KeyKind::Operator,
        &KeySpec {
            role: Some(Role::Viewer),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/admin/v1/apps/plain/users/alice/grants",
            &viewer.secret,
            Some(json!({ "amount_micros": CREDIT })),
        )
        .await;
    problem(r, 403).await;
    assert_eq!(
        ledger::balances(&app.db, s.target()).await.unwrap().balance,
        0
    );
}

#[tokio::test]
async fn the_cli_grants_shows_and_verifies_and_verify_fails_on_a_tampered_balance() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let (code, out, err) = run(
        &[
            "credits",
            "grant",
            "--app",
            "plain",
            "--user",
            "alice",
            "--credits",
            "2.5",
            "--expires-at",
            "2999-01-01",
            "--reason",
            "welcome",
        ],
        &vars,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("granted 2.5 credits"), "{out}");
    let (code, out, _) = run(
        &["credits", "show", "--app", "plain", "--user", "alice"],
        &vars,
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("balance   2.5"), "{out}");
    assert!(out.contains("2999-01-01T00:00:00Z"), "{out}");
    let (code, out, _) = run(&["ledger", "verify"], &vars).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ledger ok: 1 account(s)"), "{out}");

    tamper(&app.db, s.user_id).await;
    let (code, out, err) = run(&["ledger", "verify"], &vars).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("MISMATCH"), "{out}");
}

/// Adds one micro-credit to a cached balance behind the ledger's back.
async fn tamper(db: &Db, user_id: i64) {
    let mut tx = db.begin_in(scope::Scope::AllApps).await.unwrap();
    tx_run!(&mut tx, c => sqlx::query("UPDATE credit_accounts SET balance = balance + 1 WHERE user_id = $1")
        .bind(user_id).execute(&mut **c).await.map(|_| ()))
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_period_credits_job_grants_each_user_once_however_often_it_runs() {
    use std::sync::Arc;
    use tollgate::jobs::kinds::ledger::PeriodCredits;
    use tollgate::jobs::{EnqueueOptions, Runtime};

    // API role: the app's own worker would otherwise race this test for the job.
    let app = spawn_app_full(
        |c| c.apps = vec![shop_config()],
        tollgate::startup::Role::Api,
        axum::Router::new(),
    )
    .await;
    let s = seed(&app, "shop").await;
    let (bob, _) = identity::find_or_create_user(&app.db, s.app_id, "bob")
        .await
        .unwrap();
    let rt = Runtime::new(
        app.db.clone(),
        Arc::new(tollgate::config::Config::defaults()),
        tollgate::jobs::kinds::builtin().clone(),
    )
    .await;
    for _ in 0..2 {
        rt.client
            .enqueue(&PeriodCredits {}, EnqueueOptions::default())
            .await
            .unwrap();
        assert_eq!(rt.worker().run_available("maintenance").await.unwrap(), 1);
    }
    for user_id in [s.user_id, bob.id] {
        let t = Target {
            app_id: s.app_id,
            user_id,
        };
        let entries = ledger::entries(&app.db, t, None, 10).await.unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].source.as_deref(), Some("monthly_free"));
        assert_eq!(
            ledger::balances(&app.db, t).await.unwrap().balance,
            5 * CREDIT
        );
    }
    // The lazy path finds the job's grant and adds nothing.
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"]["balance_micros"], 5 * CREDIT);
}

#[tokio::test]
async fn an_overdraft_is_bounded_by_the_plan_and_repaid_first_by_the_next_grant() {
    let app = spawn_app_with(|c| c.apps = vec![shop_config()]).await;
    let s = seed(&app, "shop").await;
    let t = s.target();
    let pro = tollgate::store::ledger::UserPlan {
        plan_id: Some("pro".into()),
        billing: None,
        until: None,
    };
    ledger::set_plan(&app.db, t, &pro, None).await.unwrap();
    // Pro includes 100 credits (and free's 5 are not granted: alice never used the free plan).
    let me: Value = app
        .get_as("/v1/me", &s.user_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"]["balance_micros"], 100 * CREDIT);
    let debit = |amount: i64| {
        app.send_as(
            reqwest::Method::POST,
            "/v1/users/alice/debits",
            &s.app_key,
            Some(json!({ "amount_micros": amount })),
        )
    };
    assert_eq!(
        debit(101 * CREDIT).await.status(),
        201,
        "1 credit into the 2 allowed"
    );
    problem(debit(1_500_000).await, 402).await;
    assert_eq!(debit(CREDIT).await.status(), 201, "exactly to the bound");
    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!(b.balance, -2 * CREDIT);
    assert!(b.buckets.is_empty());
    assert_ledger_verifies(&app.db).await;

    grant(&app.db, t, 5 * CREDIT, None, None).await;
    let b = ledger::balances(&app.db, t).await.unwrap();
    assert_eq!(b.balance, 3 * CREDIT);
    assert_eq!(
        b.buckets[0].remaining,
        3 * CREDIT,
        "the debt was paid from the grant"
    );
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn over_long_notes_and_bad_amounts_are_refused_field_by_field_and_change_nothing() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let long = "x".repeat(501);
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/alice/debits",
            &s.app_key,
            Some(json!({ "amount_micros": 1, "reason": long })),
        )
        .await;
    assert_eq!(problem(r, 422).await["errors"][0]["field"], "reason");
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/alice/holds",
            &s.app_key,
            Some(json!({ "amount_micros": -5 })),
        )
        .await;
    assert_eq!(problem(r, 422).await["errors"][0]["field"], "amount_micros");
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/alice/holds",
            &s.app_key,
            Some(json!({ "amount_micros": "1.5" })),
        )
        .await;
    problem(r, 422).await;
    let r = app
        .send_as(
            reqwest::Method::POST,
            "/v1/users/nobody/holds",
            &s.app_key,
            Some(json!({ "amount_micros": 1 })),
        )
        .await;
    problem(r, 404).await;
    let entries = ledger::entries(&app.db, s.target(), None, 10)
        .await
        .unwrap();
    assert!(entries.is_empty());
}

#[tokio::test]
async fn the_cli_refuses_to_grant_to_an_unknown_user_unless_told_to_create_them() {
    let app = spawn_app().await;
    let s = seed(&app, "plain").await;
    let vars = db_vars(&app._test_db);
    let vars = as_refs(&vars);
    let grant = |user: &'static str, create: bool| {
        let vars = vars.clone();
        async move {
            let mut args = vec![
                "credits",
                "grant",
                "--app",
                "plain",
                "--user",
                user,
                "--credits",
                "3",
            ];
            if create {
                args.push("--create");
            }
            run(&args, &vars).await
        }
    };
    let (code, _, err) = grant("alcie", false).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no user \"alcie\"") && err.contains("--create"),
        "{err}"
    );
    let app_id = s.target().app_id;
    assert!(
        identity::user_by_external_id(&app.db, app_id, "alcie")
            .await
            .unwrap()
            .is_none(),
        "the typo made no user"
    );
    let (code, out, err) = grant("alice", false).await;
    assert_eq!(code, 0, "a known user: {out}{err}");
    let (code, out, err) = grant("bob", true).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        identity::user_by_external_id(&app.db, app_id, "bob")
            .await
            .unwrap()
            .is_some()
    );
}
