//! Every effect once across crashes: an API process killed after a request's effect committed
//! and before its `Idempotency-Key` answer was stored (deterministically, at the fault point;
//! and at random instants with SIGKILL), then the same requests retried against a new process.

use std::time::Duration;
use tollgate::store::ledger::EntryKind;

use serde_json::{Value, json};
use tollgate::domain::identity::KeyKind;
use tollgate::store::identity::KeySpec;
use tollgate::store::ledger::{self, Credit, Note, Target};
use tollgate::store::{Db, migrate};

use crate::helpers::{TestDb, new_key, seed_app_user};
use crate::jobs_processes::{spawn_api_env, terminate};

const CREDIT: i64 = 1_000_000;

/// A lock short enough that a retry takes over a dead process's claim within a second.
const SHORT_LOCK: (&str, &str) = ("TOLLGATE_LEDGER__IDEMPOTENCY_LOCK_SECS", "1");
const ABORT_BEFORE_ANSWER: (&str, &str) = ("TOLLGATE_FAULT_ABORT_AT", "idempotency.before_answer");
/// 40 ms between an effect's commit and its stored answer: a kill at a random instant lands
/// there often, instead of almost never.
const PAUSE_BEFORE_ANSWER: (&str, &str) =
    ("TOLLGATE_FAULT_PAUSE_AT", "idempotency.before_answer:40");

/// A database with app `crashy`, its user `alice` (1,000 credits), an app key and her key.
pub struct Fixture {
    pub test_db: TestDb,
    pub db: Db,
    pub t: Target,
    pub app_key: String,
    pub user_key: String,
}

pub async fn fixture() -> Fixture {
    let test_db = TestDb::new().await;
    let db = test_db.connect().await;
    migrate::run(&db).await.unwrap();
    let t = seed_app_user(&db, "crashy", "alice").await;
    let credit = Credit {
        kind: EntryKind::Grant,
        amount: 1_000 * CREDIT,
        source: "top_up",
        expires_at: None,
        note: Note::default(),
    };
    ledger::credit(&db, t, &credit, None).await.unwrap();
    let spec = |user_id| KeySpec {
        app_id: Some(t.app_id),
        user_id,
        ..Default::default()
    };
    let app_key = new_key(&db, KeyKind::App, spec(None)).await;
    let user_key = new_key(&db, KeyKind::User, spec(Some(t.user_id))).await;
    Fixture {
        test_db,
        db,
        t,
        app_key,
        user_key,
    }
}

/// One request the tests send, retry and count.
#[derive(Clone)]
struct Call {
    path: &'static str,
    body: Value,
    user: bool,
    key: String,
}

impl Call {
    fn debit(key: &str) -> Call {
        Call {
            path: "/v1/users/alice/debits",
            body: json!({ "amount_micros": CREDIT, "reference": key }),
            user: false,
            key: key.into(),
        }
    }

    fn hold(key: &str) -> Call {
        Call {
            path: "/v1/users/alice/holds",
            body: json!({ "amount_micros": 2 * CREDIT, "reference": key }),
            user: false,
            key: key.into(),
        }
    }

    fn chat(key: &str, stream: bool) -> Call {
        Call {
            path: "/v1/chat/completions",
            body: json!({ "model": "mock", "stream": stream,
                "messages": [{ "role": "user", "content": format!("hello {key}") }] }),
            user: true,
            key: key.into(),
        }
    }

    async fn send(&self, f: &Fixture, base: &str) -> Result<(u16, String), reqwest::Error> {
        let bearer = if self.user { &f.user_key } else { &f.app_key };
        let r = reqwest::Client::new()
            .post(format!("{base}{}", self.path))
            .bearer_auth(bearer)
            .header("Idempotency-Key", &self.key)
            .json(&self.body)
            .timeout(Duration::from_secs(20))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// Retries until the answer is final (not 409 "still being processed").
    async fn settle_on(&self, f: &Fixture, base: &str) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.send(f, base).await.expect("the new process answers");
            if status != 409 || !body.contains("still being processed") {
                return (status, body);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: stuck in flight",
                self.key
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How many times each ledger effect happened: entries by kind and reference.
async fn entries_with(db: &Db, t: Target, kind: &str, reference: &str) -> usize {
    ledger::entries(db, t, None, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == kind && e.reference.as_deref() == Some(reference))
        .count()
}

/// Whether the app's request with `key` has its answer stored.
async fn answer_stored(db: &Db, app_id: i64, key: &str) -> bool {
    let status: Option<Option<i32>> = async {
        tollgate::scoped_run!(db, tollgate::store::scope::Scope::App(app_id), c => sqlx::query_scalar(
            "SELECT status FROM idempotency_keys WHERE app_id = $1 AND key = $2")
            .bind(app_id).bind(key).fetch_optional(c).await)
    }
    .await
    .unwrap();
    status.flatten().is_some()
}

async fn ai_charges(db: &Db, t: Target) -> usize {
    ledger::entries(db, t, None, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "hold" && e.reason.as_deref() == Some("ai call"))
        .count()
}

async fn verify(db: &Db) {
    let (_, mismatches) = ledger::verify(db).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn a_retry_after_a_crash_between_the_effect_and_its_stored_answer_does_not_repeat_the_effect()
{
    let f = fixture().await;
    let calls = [
        Call::debit("crash-debit"),
        Call::hold("crash-hold"),
        Call::chat("crash-chat", false),
        Call::chat("crash-stream", true),
    ];
    // Each request crashes its process right after its effect committed.
    for call in &calls {
        let (mut doomed, base) =
            spawn_api_env(&f.test_db, &[], &[SHORT_LOCK, ABORT_BEFORE_ANSWER]).await;
        let answer = call.send(&f, &base).await;
        let exit = tokio::time::timeout(Duration::from_secs(20), doomed.wait())
            .await
            .expect("the process aborts")
            .unwrap();
        assert!(
            !exit.success(),
            "{}: the process died ({answer:?})",
            call.key
        );
        if let Ok((_, body)) = &answer {
            // A stream's head may have reached the client; never its stored end.
            assert!(call.path.contains("chat"), "{}: answered {body}", call.key);
        }
    }
    assert_eq!(
        entries_with(&f.db, f.t, "debit", "crash-debit").await,
        1,
        "committed"
    );
    assert_eq!(
        entries_with(&f.db, f.t, "hold", "crash-hold").await,
        1,
        "committed"
    );
    assert_eq!(
        ai_charges(&f.db, f.t).await,
        2,
        "both AI calls took their holds"
    );
    let balance_after_crashes = ledger::balances(&f.db, f.t).await.unwrap();

    let (api, base) = spawn_api_env(&f.test_db, &[], &[SHORT_LOCK]).await;
    let (status, body) = calls[0].settle_on(&f, &base).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = calls[1].settle_on(&f, &base).await;
    assert_eq!(status, 201, "{body}");
    let hold: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hold["state"], "open", "the first hold, answered again");
    for call in &calls[2..] {
        let (status, body) = call.settle_on(&f, &base).await;
        assert_eq!(status, 409, "{}: {body}", call.key);
        assert!(body.contains("already made this AI call"), "{body}");
        // The report is the key's answer from now on.
        let (again, _) = call.send(&f, &base).await.unwrap();
        assert_eq!(again, 409);
    }
    terminate(api).await;

    assert_eq!(
        entries_with(&f.db, f.t, "debit", "crash-debit").await,
        1,
        "charged once"
    );
    assert_eq!(
        entries_with(&f.db, f.t, "hold", "crash-hold").await,
        1,
        "held once"
    );
    assert_eq!(ai_charges(&f.db, f.t).await, 2, "no AI call ran twice");
    let b = ledger::balances(&f.db, f.t).await.unwrap();
    assert_eq!(
        b.balance, balance_after_crashes.balance,
        "the retries charged nothing"
    );
    verify(&f.db).await;
}

/// Trials of the random-kill test: 6 in the suite; `CRASH_TRIALS` (bench/crash.sh) for more.
fn trials() -> usize {
    std::env::var("CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6)
}

#[tokio::test]
async fn requests_killed_at_random_instants_and_retried_take_effect_at_most_once() {
    let f = fixture().await;
    let trials = trials();
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut keyed, mut doubled, mut chats, mut in_window) = (0, 0, 0, 0);
    for trial in 0..trials {
        let calls: Vec<Call> = (0..6)
            .map(|i| match i % 3 {
                0 => Call::debit(&format!("t{trial}-debit-{i}")),
                1 => Call::hold(&format!("t{trial}-hold-{i}")),
                _ => Call::chat(&format!("t{trial}-chat-{i}"), i % 2 == 0),
            })
            .collect();
        let (mut doomed, base) =
            spawn_api_env(&f.test_db, &[], &[SHORT_LOCK, PAUSE_BEFORE_ANSWER]).await;
        let mut sent = tokio::task::JoinSet::new();
        for call in calls.clone() {
            let (f_key, a_key, base) = (f.user_key.clone(), f.app_key.clone(), base.clone());
            sent.spawn(async move {
                let bearer = if call.user { f_key } else { a_key };
                let _ = reqwest::Client::new()
                    .post(format!("{base}{}", call.path))
                    .bearer_auth(bearer)
                    .header("Idempotency-Key", &call.key)
                    .json(&call.body)
                    .send()
                    .await;
            });
        }
        // SIGKILL somewhere in the requests' lives: before, during or after their commits (a new
        // PostgreSQL connection takes ~100 ms, hence the range).
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=400))).await;
        doomed.start_kill().unwrap();
        doomed.wait().await.unwrap();
        while sent.join_next().await.is_some() {}
        // The instant that matters: an effect committed, its key's answer not stored.
        for call in calls.iter().filter(|c| !c.user) {
            let kind = if call.path.ends_with("debits") {
                "debit"
            } else {
                "hold"
            };
            if entries_with(&f.db, f.t, kind, &call.key).await > 0
                && !answer_stored(&f.db, f.t.app_id, &call.key).await
            {
                in_window += 1;
            }
        }

        let (api, base) = spawn_api_env(&f.test_db, &[], &[SHORT_LOCK]).await;
        for call in &calls {
            keyed += 1;
            let (status, body) = call.settle_on(&f, &base).await;
            let kind = if call.path.ends_with("debits") {
                "debit"
            } else if call.path.ends_with("holds") {
                "hold"
            } else {
                assert!(matches!(status, 200 | 409), "{}: {status} {body}", call.key);
                chats += 1;
                continue;
            };
            assert_eq!(status, 201, "{}: {body}", call.key);
            let effects = entries_with(&f.db, f.t, kind, &call.key).await;
            assert!(
                effects >= 1,
                "{}: answered 201 without its effect",
                call.key
            );
            doubled += effects - 1;
        }
        terminate(api).await;
    }
    // Each chat key took at most one hold, whether its first run finished or not.
    let ai_doubled = ai_charges(&f.db, f.t).await.saturating_sub(chats);
    eprintln!(
        "kill -9 trials: {trials} (seed {seed}), keyed requests: {keyed}, killed after the \
         effect and before the stored answer: {in_window}, double effects: {} (ledger \
         {doubled}, AI calls {ai_doubled})",
        doubled + ai_doubled
    );
    assert_eq!(doubled + ai_doubled, 0, "an effect happened twice");
    verify(&f.db).await;
}
