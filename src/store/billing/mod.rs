//! Billing stores' data: verified webhook deliveries (ingested with their processing job in one
//! transaction), subscriptions as the newest event left them, the stores' customer ids, the
//! grants each purchase made, and payment outcomes for the recovery feature.

pub mod checkouts;
mod purchases;
mod subscriptions;
mod webhooks;

pub use purchases::{
    PaymentEvent, customer_user, grants_of, link_grant, payments, record_payment,
    remember_customer, user_customer,
};
pub use subscriptions::{
    SubscriptionRow, SubscriptionWrite, put_subscription, subscription_for_product,
    subscription_user, subscriptions,
};
pub use webhooks::{
    Ingested, Processed, WebhookRow, finish, ingest, replay, store_unqueued, webhook, webhooks,
};
