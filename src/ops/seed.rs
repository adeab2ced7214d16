//! `tollgate seed --demo`: data for a try-out instance — an app with a free and a paid plan,
//! users with balances, AI calls with their usage records, Stripe subscriptions, and payment
//! recovery cases in each state — written through the same code the real events go through
//! (the store's deliveries are stored and applied as the processing job applies them, each call
//! is a hold closed with its usage record), so every screen and `ledger verify` see consistent
//! data. Every effect is keyed, so seeding again adds nothing.

use serde_json::{Value, json};

use crate::billing::{Provider, deliveries, stripe};
use crate::config::{AppConfig, Config};
use crate::domain::money::Micros;
use crate::domain::pricing::Tokens;
use crate::store::billing::{self as billing_store, Ingested, Processed};
use crate::store::identity::{self, AppRow};
use crate::store::ledger::{self, CallClose, Credit, EntryKind, HoldState, Note, Target};
use crate::store::usage::NewUsage;
use crate::store::{Db, now_ms, recovery};

/// The demo app, as an `[[apps]]` entry.
const DEMO: &str = include_str!("demo.toml");
const USERS: usize = 12;
const WELCOME: Micros = Micros::units(25);
const PRICE: &str = "price_demo_pro_monthly";
/// The model the demo's calls are priced as (the built-in one, which needs no provider).
const MODEL: &str = "mock";
const DAY: i64 = 86_400_000;
const CENTS: i64 = 1999;

/// The demo app's definition, read and validated as the config file's apps are.
pub fn demo_app() -> anyhow::Result<AppConfig> {
    use figment::providers::{Format, Toml};
    let app: AppConfig = figment::Figment::from(Toml::string(DEMO)).extract()?;
    let mut problems = Vec::new();
    crate::config::validate_apps(std::slice::from_ref(&app), false, &mut problems);
    if !problems.is_empty() {
        let list: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        anyhow::bail!("the demo app is invalid: {}", list.join("; "));
    }
    Ok(app)
}

/// What seeding wrote (or found written by an earlier run).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub app: String,
    pub app_id: i64,
    /// False when the app existed: an earlier seed made it.
    pub created: bool,
    pub users: usize,
    pub deliveries: usize,
    pub calls: usize,
    /// The cases of the demo's users, by state.
    pub cases: Vec<(String, usize)>,
}

/// Seeds the demo app. An app of that slug that an earlier seed did not make is left alone.
pub async fn demo(db: &Db, config: &Config) -> anyhow::Result<Seeded> {
    let demo = demo_app()?;
    let name = demo.name.clone().unwrap_or_default();
    let price = *config.prices.get(MODEL).ok_or_else(|| {
        anyhow::anyhow!("the demo's AI calls are priced as the {MODEL} model: set [prices.{MODEL}]")
    })?;
    let (app, created) = match identity::app_by_slug(db, &demo.slug).await? {
        Some(app) if app.name == name => (app, false),
        Some(_) => anyhow::bail!(
            "an app {:?} exists and the demo seed did not make it; nothing was seeded",
            demo.slug
        ),
        None => {
            let made = identity::create_app_with(db, &demo.slug, &name, &demo.settings()).await?;
            (
                made.ok_or_else(|| anyhow::anyhow!("the app was created meanwhile"))?,
                true,
            )
        }
    };
    let now = now_ms();
    let mut seeded = Seeded {
        app: app.slug.clone(),
        app_id: app.id,
        created,
        ..Default::default()
    };
    for i in 1..=USERS {
        let user = user_name(i);
        let (row, _) = identity::find_or_create_user(db, app.id, &user).await?;
        let t = Target {
            app_id: app.id,
            user_id: row.id,
        };
        seeded.users += 1;
        for (id, kind, at, object) in story(i, &user, now) {
            deliver(db, &app, &demo, &id, kind, at, object).await?;
            seeded.deliveries += 1;
        }
        ledger::refresh(db, t, &app.settings.billing).await?;
        welcome(db, t, &user).await?;
        for call in 0..calls_of(i) {
            let tokens = Tokens {
                input: 120 + 31 * (i * 3 + call) as u64,
                cached_input: 0,
                output: 40 + 17 * (i + call * 2) as u64,
            };
            let cost = price.cost(tokens, &app.settings.billing.conversion())?;
            ai_call(db, t, &format!("seed-{user}-{call}"), tokens, cost.0).await?;
            seeded.calls += 1;
        }
    }
    // The worker's sweep, now: a case whose window has passed is lost.
    recovery::sweep(db, now, 100).await?;
    seeded.cases = cases_by_state(db, app.id).await?;
    Ok(seeded)
}

/// The first demo user's external id (a Pro subscriber), for the seed's "try it" line.
pub fn first_user() -> String {
    user_name(1)
}

fn user_name(i: usize) -> String {
    format!("demo-user-{i:02}")
}

/// How many AI calls user `i` made: 2 to 8, varied.
fn calls_of(i: usize) -> usize {
    2 + (i * 5) % 7
}

/// A user's store history: `(event id, type, time, object)`. Users 1–4 subscribe to Pro;
/// 5 and 6 fail a renewal and pay within the window (recovered); 7 failed two days ago (open);
/// 8 failed twenty days ago and Stripe ended the subscription (lost); the rest stay on Free.
fn story(i: usize, user: &str, now: i64) -> Vec<(String, &'static str, i64, Value)> {
    let sub = format!("sub_demo_{i:02}");
    let ev = |n: u32| format!("evt_demo_{i:02}_{n}");
    let subscription = |status: &str, start: i64| subscription(&sub, user, status, start);
    let invoice = |n: u32, paid: bool, start: i64| {
        invoice(&format!("in_demo_{i:02}_{n}"), &sub, user, paid, start)
    };
    match i {
        1..=4 => {
            let start = now - (6 + 4 * i as i64) * DAY;
            vec![
                (
                    ev(1),
                    "customer.subscription.created",
                    start,
                    subscription("active", start),
                ),
                (ev(2), "invoice.paid", start, invoice(1, true, start)),
            ]
        }
        5..=8 => {
            let failed = now - [3, 10, 2, 20][i - 5] * DAY;
            let mut events = vec![
                (
                    ev(1),
                    "customer.subscription.updated",
                    failed,
                    subscription("past_due", failed),
                ),
                (
                    ev(2),
                    "invoice.payment_failed",
                    failed,
                    invoice(1, false, failed),
                ),
            ];
            match i {
                5 | 6 => {
                    let paid = now - [2, 1][i - 5] * DAY;
                    events.push((ev(3), "invoice.paid", paid, invoice(1, true, failed)));
                    events.push((
                        ev(4),
                        "customer.subscription.updated",
                        paid,
                        subscription("active", failed),
                    ));
                }
                8 => {
                    let ended = failed + 14 * DAY;
                    events.push((
                        ev(3),
                        "customer.subscription.deleted",
                        ended,
                        subscription("canceled", failed),
                    ));
                }
                _ => {}
            }
            events
        }
        _ => Vec::new(),
    }
}

/// A Stripe subscription object (API version 2025-03-31: the period is on the item).
fn subscription(id: &str, user: &str, status: &str, start: i64) -> Value {
    json!({ "id": id, "object": "subscription", "customer": customer(user), "status": status,
        "cancel_at_period_end": false,
        "items": { "object": "list", "data": [{ "object": "subscription_item",
            "price": { "id": PRICE, "object": "price" },
            "current_period_start": start / 1000, "current_period_end": (start + 30 * DAY) / 1000 }] },
        "metadata": { "tollgate_user": user } })
}

/// A Stripe invoice object for the subscription's period starting at `start`.
fn invoice(id: &str, sub: &str, user: &str, paid: bool, start: i64) -> Value {
    let amount = if paid { "amount_paid" } else { "amount_due" };
    json!({ "id": id, "object": "invoice", "customer": customer(user),
        "billing_reason": "subscription_cycle", amount: CENTS, "currency": "usd",
        "parent": { "type": "subscription_details", "subscription_details": {
            "subscription": sub, "metadata": { "tollgate_user": user } } },
        "lines": { "object": "list", "data": [{ "object": "line_item",
            "period": { "start": start / 1000, "end": (start + 30 * DAY) / 1000 },
            "pricing": { "price_details": { "price": PRICE } } }] } })
}

fn customer(user: &str) -> String {
    format!("cus_{}", user.replace('-', "_"))
}

/// Stores one made-up Stripe delivery and applies it as the processing job would.
async fn deliver(
    db: &Db,
    app: &AppRow,
    demo: &AppConfig,
    id: &str,
    kind: &str,
    at: i64,
    object: Value,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&json!({ "id": id, "object": "event",
        "api_version": "2025-03-31.basil", "created": at / 1000, "livemode": false,
        "type": kind, "data": { "object": object } }))?;
    let envelope = stripe::envelope(&body).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let row_id = match billing_store::store_unqueued(db, app.id, Provider::Stripe, &envelope, &body)
        .await?
    {
        Ingested::New(id) | Ingested::Duplicate(id) => id,
    };
    let row = billing_store::webhook(db, row_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("delivery {row_id} vanished"))?;
    if row.status == "processed" {
        return Ok(());
    }
    let done = deliveries::process(db, app, demo, &row).await?;
    let finished = Processed {
        status: if done.change.is_some() {
            "processed"
        } else {
            "ignored"
        },
        user_id: done.user_id,
        change: done.change.map(crate::billing::Change::as_str),
        outcome: Some(&done.outcome),
        error: None,
    };
    billing_store::finish(db, app.id, row.id, &finished).await?;
    Ok(())
}

async fn welcome(db: &Db, t: Target, user: &str) -> anyhow::Result<()> {
    let key = format!("seed:welcome:{user}");
    let credit = Credit {
        kind: EntryKind::Grant,
        amount: WELCOME.0,
        source: "promo",
        expires_at: None,
        note: Note {
            reason: Some("welcome credits (demo seed)"),
            reference: Some("seed"),
            key: Some(&key),
        },
    };
    ledger::credit(db, t, &credit, None).await?;
    Ok(())
}

/// One AI call as the gateway records it: a hold of its cost, closed at that cost with its
/// usage record in the same transaction. Keyed by `request_id`: an earlier seed's call is found.
async fn ai_call(
    db: &Db,
    t: Target,
    request_id: &str,
    tokens: Tokens,
    cost: i64,
) -> anyhow::Result<()> {
    let key = format!("seed:{request_id}");
    let note = Note {
        reason: Some("ai call"),
        reference: Some(request_id),
        key: Some(&key),
    };
    let hold = ledger::reserve(db, t, cost, 0, now_ms() + 600_000, note)
        .await?
        .into_inner();
    if hold.state != HoldState::Open {
        return Ok(());
    }
    let usage = NewUsage {
        request_id: request_id.to_string(),
        model: MODEL.into(),
        provider: std::borrow::Cow::Borrowed(MODEL),
        upstream_model: MODEL.into(),
        input_tokens: tokens.input,
        cached_input_tokens: tokens.cached_input,
        output_tokens: tokens.output,
        cost,
        hold_id: Some(hold.id),
        status: "ok",
        estimated: false,
        stream: false,
        latency_ms: 180 + (tokens.output as i64 % 400),
        ttft_ms: None,
    };
    ledger::close_call(
        db,
        &CallClose::of_call(t, hold.id, cost, "ai call", Some(usage)),
    )
    .await?;
    Ok(())
}

async fn cases_by_state(db: &Db, app_id: i64) -> anyhow::Result<Vec<(String, usize)>> {
    let cases = recovery::app_cases(db, app_id, None, None, 1000).await?;
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for c in cases {
        *by_state.entry(c.state).or_default() += 1;
    }
    Ok(by_state.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_app_is_a_valid_app_entry_whose_product_gives_its_paid_plan() {
        let app = demo_app().unwrap();
        let product = app.product(Provider::Stripe, PRICE).unwrap();
        assert_eq!(product.plan.as_deref(), Some("pro"));
        assert_eq!(app.settings().billing.default_plan, "free");
    }

    #[test]
    fn users_make_a_varied_number_of_calls() {
        let counts: Vec<usize> = (1..=USERS).map(calls_of).collect();
        assert!(counts.iter().all(|c| (2..=8).contains(c)), "{counts:?}");
        assert!(
            counts
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 5
        );
    }
}
