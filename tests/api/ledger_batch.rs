//! The AI call path's group commit (`store::ledger::Batcher`): the holds and charges of
//! concurrent calls, of several users and apps, written in one transaction keep every ledger
//! invariant; holds are checked against the balance in arrival order; a charge on a hold closed
//! meanwhile is refused as alone; a batch that fails is written call by call.
//!
//! `#[tokio::test]` runs on one thread: `join_all` queues every call before the writer task
//! runs, so the calls of one `join_all` are one batch.

use futures_util::future::join_all;
use tollgate::store::ledger::EntryKind;
use tollgate::store::ledger::{
    self, Batcher, CallClose, CallHold, Credit, LedgerError, Note, Target,
};
use tollgate::store::usage::{self, NewUsage};
use tollgate::store::{Db, now_ms};

use crate::credits::assert_ledger_verifies;
use crate::helpers::{TestApp, spawn_app};

const CREDIT: i64 = 1_000_000;

/// A user of app `slug` (both created if missing) with `credits` credits.
async fn funded(app: &TestApp, slug: &str, user: &str, credits: i64) -> Target {
    let t = app.user_target(slug, user).await;
    let credit = Credit {
        kind: EntryKind::Grant,
        amount: credits,
        source: "promo",
        expires_at: None,
        note: Note::default(),
    };
    ledger::credit(&app.db, t, &credit, None).await.unwrap();
    t
}

fn hold(t: Target, amount: i64, reference: &str) -> CallHold {
    CallHold {
        t,
        amount,
        overdraft: 0,
        expires_at: now_ms() + 60_000,
        reason: Some("ai call"),
        reference: Some(reference.to_string()),
        key: None,
        plan: None,
        call: None,
    }
}

fn charge(t: Target, hold_id: i64, charged: i64) -> CallClose {
    let usage = NewUsage {
        request_id: format!("req-{hold_id}"),
        model: "gpt".into(),
        provider: "openai".into(),
        upstream_model: "gpt-4o-mini".into(),
        input_tokens: 10,
        cached_input_tokens: 0,
        output_tokens: charged as u64,
        cost: charged,
        hold_id: Some(hold_id),
        status: "ok",
        estimated: false,
        stream: false,
        latency_ms: 1,
        ttft_ms: None,
    };
    CallClose::of_call(t, hold_id, charged, "ai call", Some(usage))
}

async fn balance_and_held(db: &Db, t: Target) -> (i64, i64) {
    let b = ledger::balances(db, t).await.unwrap();
    (b.balance, b.held)
}

#[tokio::test]
async fn a_batch_of_holds_and_charges_for_several_users_and_apps_keeps_the_ledger_exact() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for (slug, user) in [
        ("one", "alice"),
        ("one", "bob"),
        ("two", "alice"),
        ("two", "carol"),
    ] {
        users.push(funded(&app, slug, user, 100 * CREDIT).await);
    }
    let batcher = Batcher::start(app.db.clone());

    // Five holds of 10 credits per user, interleaved, in one batch.
    let holds: Vec<(Target, CallHold)> = (0..5)
        .flat_map(|i| {
            users
                .iter()
                .map(move |t| (*t, hold(*t, 10 * CREDIT, &format!("r{i}"))))
        })
        .collect();
    let held = join_all(holds.into_iter().map(|(t, h)| {
        let batcher = &batcher;
        async move { (t, batcher.reserve_call(h).await.unwrap()) }
    }))
    .await;
    for t in &users {
        assert_eq!(
            balance_and_held(&app.db, *t).await,
            (100 * CREDIT, 50 * CREDIT)
        );
    }

    // Each hold charged a different amount, one released (charged 0), in one batch.
    let closes = held.iter().enumerate().map(|(i, (t, id))| {
        let batcher = &batcher;
        let charged = (i as i64 % 5) * CREDIT;
        async move { batcher.close(charge(*t, *id, charged)).await.unwrap() }
    });
    join_all(closes).await;
    let mut expected: std::collections::HashMap<i64, i64> = Default::default();
    for (i, (t, _)) in held.iter().enumerate() {
        *expected.entry(t.user_id).or_default() += (i as i64 % 5) * CREDIT;
    }
    for t in &users {
        let spent = expected[&t.user_id];
        assert_eq!(
            balance_and_held(&app.db, *t).await,
            (100 * CREDIT - spent, 0)
        );
        let records = usage::list(&app.db, *t, None, 100).await.unwrap();
        assert_eq!(records.len(), 5, "one usage record per call");
        assert_eq!(records.iter().map(|r| r.cost_micros).sum::<i64>(), spent);
    }
    let entries = ledger::entries(&app.db, users[0], None, 100).await.unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "hold").count(), 5);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "settle" || **k == "release")
            .count(),
        5
    );
    assert_ledger_verifies(&app.db).await;
    // Written as batches, not call by call after a failed batch: under row-level security a
    // batch of several apps writes each app's rows in that app's scope.
    let text = app.get_metrics(None).await.text().await.unwrap();
    assert!(
        !text.contains("tollgate_ledger_batch_failures_total"),
        "a batch failed: {text}"
    );
}

#[tokio::test]
async fn holds_in_one_batch_are_checked_against_the_balance_in_arrival_order() {
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    let batcher = Batcher::start(app.db.clone());
    let answers =
        join_all((0..12).map(|i| batcher.reserve_call(hold(t, 10 * CREDIT, &format!("r{i}")))))
            .await;
    for (i, answer) in answers.iter().enumerate() {
        match (i < 10, answer) {
            (true, Ok(_)) => {}
            (false, Err(LedgerError::Insufficient { available, needed })) => {
                assert_eq!((*available, *needed), (0, 10 * CREDIT));
            }
            other => panic!("hold {i}: {other:?}"),
        }
    }
    assert_eq!(
        balance_and_held(&app.db, t).await,
        (100 * CREDIT, 100 * CREDIT)
    );
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn a_charge_on_a_hold_released_meanwhile_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    let batcher = Batcher::start(app.db.clone());
    let id = batcher
        .reserve_call(hold(t, 10 * CREDIT, "r"))
        .await
        .unwrap();
    ledger::release(&app.db, t.app_id, id, Some("the expiry job"))
        .await
        .unwrap();
    let late = batcher.close(charge(t, id, 4 * CREDIT)).await;
    assert!(matches!(late, Err(LedgerError::Conflict(_))), "{late:?}");
    assert_eq!(balance_and_held(&app.db, t).await, (100 * CREDIT, 0));
    assert!(usage::list(&app.db, t, None, 10).await.unwrap().is_empty());
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn a_batch_that_fails_is_written_call_by_call_and_only_the_bad_call_fails() {
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    // No such user: the rows written for it break a foreign key, and with them the whole
    // batch. (Its overdraft lets the hold through the balance rule, so something is written.)
    let ghost = Target {
        app_id: t.app_id,
        user_id: t.user_id + 1000,
    };
    let mut ghost_hold = hold(ghost, 10 * CREDIT, "ghost");
    ghost_hold.overdraft = 10 * CREDIT;
    let batcher = Batcher::start(app.db.clone());
    // Written alone, a hold priced on a plan the user left is still refused.
    let mut stale = hold(t, 10 * CREDIT, "stale");
    stale.plan = Some((Some("gone".into()), None, None, None));
    let answers = join_all([
        batcher.reserve_call(hold(t, 10 * CREDIT, "a")),
        batcher.reserve_call(ghost_hold),
        batcher.reserve_call(hold(t, 20 * CREDIT, "b")),
        batcher.reserve_call(stale),
    ])
    .await;
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert!(matches!(answers[1], Err(LedgerError::Db(_))), "{answers:?}");
    assert!(
        matches!(answers[3], Err(LedgerError::PlanChanged)),
        "{answers:?}"
    );
    assert_eq!(
        balance_and_held(&app.db, t).await,
        (100 * CREDIT, 30 * CREDIT)
    );
    let (a, b) = (answers[0].as_ref().unwrap(), answers[2].as_ref().unwrap());
    join_all([
        batcher.close(charge(t, *a, 10 * CREDIT)),
        batcher.close(charge(t, *b, 5 * CREDIT)),
    ])
    .await
    .into_iter()
    .for_each(|r| r.unwrap());
    assert_eq!(balance_and_held(&app.db, t).await, (85 * CREDIT, 0));
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn a_hold_closed_twice_in_one_batch_is_charged_once() {
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    let batcher = Batcher::start(app.db.clone());
    let id = batcher
        .reserve_call(hold(t, 10 * CREDIT, "r"))
        .await
        .unwrap();
    let answers = join_all([
        batcher.close(charge(t, id, 4 * CREDIT)),
        batcher.close(charge(t, id, 6 * CREDIT)),
    ])
    .await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(LedgerError::Conflict(_))),
        "{answers:?}"
    );
    assert_eq!(balance_and_held(&app.db, t).await, (96 * CREDIT, 0));
    assert_eq!(usage::list(&app.db, t, None, 10).await.unwrap().len(), 1);
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn a_hold_priced_on_a_plan_the_user_left_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    let batcher = Batcher::start(app.db.clone());
    let now = ledger::plan_columns(&app.db, t).await.unwrap();
    let mut stale = hold(t, 10 * CREDIT, "stale");
    stale.plan = Some((Some("gone".into()), None, None, None));
    let mut current = hold(t, 10 * CREDIT, "current");
    current.plan = now;
    let answers = join_all([batcher.reserve_call(stale), batcher.reserve_call(current)]).await;
    assert!(
        matches!(answers[0], Err(LedgerError::PlanChanged)),
        "{answers:?}"
    );
    assert!(answers[1].is_ok(), "{answers:?}");
    assert_eq!(
        balance_and_held(&app.db, t).await,
        (100 * CREDIT, 10 * CREDIT)
    );
    assert_ledger_verifies(&app.db).await;
}

#[tokio::test]
async fn a_keyed_hold_whose_caller_left_stays_open_for_its_retry_and_an_unkeyed_one_is_released() {
    use futures_util::FutureExt;
    let app = spawn_app().await;
    let t = funded(&app, "shop", "alice", 100 * CREDIT).await;
    let batcher = Batcher::start(app.db.clone());
    let keyed = CallHold {
        key: Some("effect:retry-me".into()),
        ..hold(t, 10 * CREDIT, "keyed")
    };
    // Each caller queues its hold and leaves before the batch is written (a client that
    // disconnected mid-request).
    assert!(batcher.reserve(keyed).now_or_never().is_none());
    assert!(
        batcher
            .reserve(hold(t, 20 * CREDIT, "unkeyed"))
            .now_or_never()
            .is_none()
    );
    // A later call runs the writer past both.
    batcher
        .reserve_call(hold(t, CREDIT, "later"))
        .await
        .unwrap();
    // The keyed hold is still reserved, the unkeyed one released.
    assert_eq!(
        balance_and_held(&app.db, t).await,
        (100 * CREDIT, 11 * CREDIT)
    );
    // The retry is answered with the first hold, still open: not a second hold.
    let retry = CallHold {
        key: Some("effect:retry-me".into()),
        ..hold(t, 10 * CREDIT, "keyed")
    };
    let first = batcher.reserve(retry).await.unwrap();
    assert!(first.is_replayed());
    let row = ledger::hold(&app.db, t.app_id, first.into_inner())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, ledger::HoldState::Open);
    assert_eq!(
        balance_and_held(&app.db, t).await,
        (100 * CREDIT, 11 * CREDIT)
    );
    assert_ledger_verifies(&app.db).await;
}
