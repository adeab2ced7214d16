//! Applies one normalised store event: the user's subscription and plan, the period's
//! credits, a top-up's credits, a refund's clawback, a payment outcome for recovery. Every effect
//! is idempotent by the store's ids, so applying an event twice (a retry, a replay, a
//! redelivery, a sync that saw it too) changes nothing twice.

use crate::config::AppConfig;
use crate::domain::plans::{BillingSettings, Period};
use crate::domain::subscriptions::{Version, deciding};
use crate::jobs::Permanent;
use crate::store::billing::{self as store, PaymentEvent, SubscriptionWrite};
use crate::store::ledger::EntryKind;
use crate::store::ledger::{self, Credit, Note, Refunded, Target, UserPlan};
use crate::store::{Db, identity, now_ms};

use super::{Change, Normalized, Provider, SubscriptionFacts};

/// Where an event comes from: a stored delivery, or a sync with the store's API.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The store's time for it; orders it against other events of the same subscription.
    pub time_ms: i64,
    /// The store's id for it (a sync makes one up from its time).
    pub event_id: &'a str,
    /// The stored delivery, when there is one (payment outcomes are published once per delivery).
    pub webhook_id: Option<i64>,
}

/// What applying did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub user_id: i64,
    pub change: Change,
    /// In words, for operators.
    pub outcome: String,
}

/// One normalised event and what it is applied with.
pub struct Effects<'a> {
    pub db: &'a Db,
    pub app: &'a AppConfig,
    pub billing: &'a BillingSettings,
    pub provider: Provider,
    /// The event these effects come from.
    pub source: Source<'a>,
    pub n: &'a Normalized,
}

impl Effects<'_> {
    /// Applies every effect of the event; idempotent.
    pub async fn apply(&self, app_id: i64) -> anyhow::Result<Applied> {
        let n = self.n;
        let change = n.change.expect("normalised events carry a change");
        let t = self.user(app_id).await?;
        let mut outcome = Vec::new();
        if let Some(customer) = &n.customer {
            store::remember_customer(self.db, t, self.provider, customer).await?;
        }
        let adopted = self.stored_id(t).await?;
        if let Some(facts) = &n.subscription {
            let adopted_facts;
            let facts = match adopted {
                Some(id) => {
                    adopted_facts = SubscriptionFacts {
                        id,
                        ..facts.clone()
                    };
                    &adopted_facts
                }
                None => facts,
            };
            let plan = self.plan_of(facts.product.as_deref(), facts.status.gives_access())?;
            let version = Version {
                time_ms: self.source.time_ms,
                event_id: self.source.event_id.to_string(),
            };
            let write = SubscriptionWrite {
                provider: self.provider,
                facts,
                plan_id: plan.as_deref(),
                environment: n.environment.as_deref(),
                store: n.store.as_deref(),
                version: &version,
            };
            let written = store::put_subscription(self.db, t, &write).await?;
            outcome.push(if written {
                format!("subscription {} is {}", facts.id, facts.status.as_str())
            } else {
                format!("subscription {} has newer state; left as is", facts.id)
            });
            outcome.push(self.settle_plan(t).await?);
        }
        match change {
            Change::SubscriptionStarted
            | Change::SubscriptionRenewed
            | Change::PaymentSucceeded => {
                if let Some(text) = self.period_credits(t).await? {
                    outcome.push(text);
                }
            }
            Change::OneTimePurchase => outcome.push(self.top_up(t).await?),
            Change::Refunded => outcome.push(self.claw_back(t).await?),
            _ => {}
        }
        if let Some(webhook_id) = self.source.webhook_id
            && matches!(
                change,
                Change::PaymentFailed | Change::PaymentSucceeded | Change::SubscriptionRenewed
            )
        {
            let kind = if change == Change::PaymentFailed {
                "payment_failed"
            } else {
                "payment_succeeded"
            };
            store::record_payment(
                self.db,
                t,
                &PaymentEvent {
                    provider: self.provider,
                    kind,
                    reference: n.reference.as_deref(),
                    amount_minor: n.amount_minor,
                    currency: n.currency.as_deref(),
                    event_time: self.source.time_ms,
                    webhook_id,
                    subscription: n
                        .subscription_id
                        .as_deref()
                        .or(n.subscription.as_ref().map(|s| s.id.as_str()))
                        .unwrap_or_default(),
                    recovery_window_ms: self.billing.recovery_window_ms(),
                    recovery_incentive: self
                        .app
                        .recovery
                        .as_ref()
                        .is_some_and(|r| r.incentive_days > 0 || r.incentive_credits.is_positive()),
                },
            )
            .await?;
            outcome.push(format!("{kind} published"));
        }
        Ok(Applied {
            user_id: t.user_id,
            change,
            outcome: outcome.join("; "),
        })
    }

    /// The user the event is about: named by the app's own id, else found by the store's
    /// customer id or by a subscription seen before.
    async fn user(&self, app_id: i64) -> anyhow::Result<Target> {
        let n = self.n;
        let target = |user_id| Target { app_id, user_id };
        if let Some(external) = &n.user {
            let (user, _) = identity::find_or_create_user(self.db, app_id, external).await?;
            return Ok(target(user.id));
        }
        if let Some(customer) = &n.customer
            && let Some(id) = store::customer_user(self.db, app_id, self.provider, customer).await?
        {
            return Ok(target(id));
        }
        let subscription = n
            .subscription
            .as_ref()
            .map(|s| s.id.as_str())
            .or(n.subscription_id.as_deref());
        if let Some(sub) = subscription
            && let Some(id) = store::subscription_user(self.db, app_id, self.provider, sub).await?
        {
            return Ok(target(id));
        }
        // Retried, not failed: the event naming the user may still be on its way (stores do
        // not deliver in order). After the last attempt the delivery shows as failed.
        Err(anyhow::anyhow!(
            "the event names no known user yet: the app's user id goes in metadata.tollgate_user \
             (Stripe: client_reference_id or subscription metadata; RevenueCat: app_user_id)"
        ))
    }

    /// The plan a subscribed product gives; unmapped products fail so an operator can map them
    /// and replay (a live subscription must not be silently ignored).
    fn plan_of(&self, product: Option<&str>, live: bool) -> anyhow::Result<Option<String>> {
        let Some(product) = product else {
            return Ok(None);
        };
        match self.app.product(self.provider, product) {
            Some(p) => Ok(p.plan.clone()),
            None if live => Err(Permanent::error(format!(
                "{} product {product:?} is not mapped in [[apps.products]]; map it, then replay",
                self.provider.as_str()
            ))),
            None => Ok(None),
        }
    }

    /// Puts the user on the plan of their deciding subscription (the default plan when none is
    /// live), with its period and, for one set to cancel, when it lapses.
    /// RevenueCat names one subscription two ways — its webhooks by the original transaction,
    /// its REST API (the "sync now") by nothing but the product — so a user's subscription to a
    /// product keeps the id under which it was first stored, whichever path stored it: a
    /// refund or expiry seen by one path then ends the row the other wrote. (A subscriber has
    /// one subscription per product at RevenueCat.)
    async fn stored_id(&self, t: Target) -> anyhow::Result<Option<String>> {
        let Some(facts) = &self.n.subscription else {
            return Ok(None);
        };
        if self.provider != Provider::RevenueCat {
            return Ok(None);
        }
        let Some(product) = facts.product.as_deref() else {
            return Ok(None);
        };
        let stored = store::subscription_for_product(self.db, t, self.provider, product).await?;
        Ok(stored.filter(|id| *id != facts.id))
    }

    async fn settle_plan(&self, t: Target) -> anyhow::Result<String> {
        let subs = store::subscriptions(self.db, t).await?;
        let standings: Vec<_> = subs.iter().map(|s| s.standing()).collect();
        let grace = self.billing.grace_ms();
        let plan = match deciding(&standings, now_ms(), grace) {
            Some(s) => UserPlan {
                plan_id: s.plan_id.clone(),
                billing: s.period,
                until: s.until(grace),
            },
            None => UserPlan::default(),
        };
        ledger::set_plan(self.db, t, &plan, None).await?;
        Ok(match &plan.plan_id {
            Some(p) => format!("user on plan {p}"),
            None => format!("user on the default plan {}", self.billing.default_plan),
        })
    }

    /// The credits a paid period includes, granted under the same key the ledger uses for the
    /// period, so the webhook and the first request of the period grant them once between them.
    async fn period_credits(&self, t: Target) -> anyhow::Result<Option<String>> {
        let n = self.n;
        let period: Option<Period> = n
            .paid_period
            .or_else(|| n.subscription.as_ref().and_then(|s| s.period));
        let product = n
            .product
            .as_deref()
            .or_else(|| n.subscription.as_ref().and_then(|s| s.product.as_deref()));
        let (Some(period), Some(product)) = (period, product) else {
            return Ok(None);
        };
        let Some(plan_id) = self.plan_of(Some(product), true)? else {
            return Ok(None);
        };
        let plan = self.billing.plan(Some(&plan_id));
        if !plan.credits.is_positive() || period.end <= now_ms() {
            return Ok(None);
        }
        let key = ledger::period_key(t, &plan.id, period);
        let reason = format!("credits included in plan {:?}", plan.id);
        let written = ledger::credit(
            self.db,
            t,
            &Credit {
                kind: EntryKind::Grant,
                amount: plan.credits.0,
                source: "subscription",
                expires_at: Some(period.end),
                note: Note {
                    reason: Some(&reason),
                    reference: n.reference.as_deref(),
                    key: Some(&key),
                },
            },
            None,
        )
        .await?;
        if let Some(grant_id) = written.clone().into_inner().grant_id {
            store::link_grant(self.db, t, self.provider, &self.purchase_ids(), grant_id).await?;
        }
        Ok(Some(if written.is_replayed() {
            format!("period credits of plan {} already granted", plan.id)
        } else {
            format!("granted {} credits of plan {}", plan.credits, plan.id)
        }))
    }

    /// A top-up pack's credits, once per purchase.
    async fn top_up(&self, t: Target) -> anyhow::Result<String> {
        let n = self.n;
        let product = n
            .product
            .as_deref()
            .ok_or_else(|| Permanent::error("a one-time purchase without a product"))?;
        let credits = self
            .app
            .product(self.provider, product)
            .and_then(|p| p.credits)
            .ok_or_else(|| {
                Permanent::error(format!(
                    "{} product {product:?} is not a top-up pack in [[apps.products]]; map it, then replay",
                    self.provider.as_str()
                ))
            })?;
        let purchase = n.reference.as_deref().unwrap_or(self.source.event_id);
        let key = format!("top-up:{}:{purchase}", self.provider.as_str());
        let reason = format!("top-up pack {product}");
        let written = ledger::credit(
            self.db,
            t,
            &Credit {
                kind: EntryKind::Grant,
                amount: credits.0,
                source: "top_up",
                expires_at: None,
                note: Note {
                    reason: Some(&reason),
                    reference: Some(purchase),
                    key: Some(&key),
                },
            },
            None,
        )
        .await?;
        if let Some(grant_id) = written.clone().into_inner().grant_id {
            store::link_grant(self.db, t, self.provider, &self.purchase_ids(), grant_id).await?;
        }
        Ok(if written.is_replayed() {
            format!("top-up {purchase} already granted")
        } else {
            format!("granted {credits} credits for top-up {purchase}")
        })
    }

    /// Every id the store may name this purchase by later (a refund names one of them).
    fn purchase_ids(&self) -> Vec<String> {
        let n = self.n;
        let mut ids: Vec<String> = n
            .reference
            .iter()
            .chain(&n.also_known_as)
            .cloned()
            .collect();
        if ids.is_empty() {
            ids.push(self.source.event_id.to_string());
        }
        ids
    }

    /// Takes back what is left of the refunded purchase's credits.
    async fn claw_back(&self, t: Target) -> anyhow::Result<String> {
        let n = self.n;
        let refs: Vec<String> = n
            .reference
            .iter()
            .chain(n.also_known_as.iter())
            .cloned()
            .collect();
        let key = format!(
            "clawback:{}:{}",
            self.provider.as_str(),
            self.source.event_id
        );
        let grants = store::grants_of(self.db, t, self.provider, &refs).await?;
        let refunded = match n.refunded_part {
            Some((refunded, total)) => Refunded::Part { refunded, total },
            None => Refunded::All,
        };
        let c =
            ledger::claw_back(self.db, t, &grants, refunded, &key, "refunded at the store").await?;
        Ok(format!(
            "clawed back {} of {} grant(s); {} already spent",
            crate::domain::money::Micros(c.taken),
            c.grants,
            crate::domain::money::Micros(c.spent)
        ))
    }
}
