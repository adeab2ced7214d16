//! What one stored delivery does: read in the store's format, its Checkout resolved through
//! the store's API when it names no product, then applied. The processing job runs it on
//! deliveries as they arrive; the demo seed on the store history it makes up.

use super::apply::{Effects, Source};
use super::{Change, Provider};
use crate::config::AppConfig;
use crate::jobs::Permanent;
use crate::store::Db;
use crate::store::billing::WebhookRow;
use crate::store::identity::AppRow;

/// Processes the stored delivery `row` of `app`, as `app_config` maps its products; idempotent.
pub async fn process(
    db: &Db,
    app: &AppRow,
    app_config: &AppConfig,
    row: &WebhookRow,
) -> anyhow::Result<Done> {
    let provider = Provider::parse(&row.provider)
        .ok_or_else(|| Permanent::error(format!("unknown provider {:?}", row.provider)))?;
    let Some(mut n) = super::normalize(provider, &row.body).map_err(Permanent::error)? else {
        return Ok(Done {
            user_id: None,
            change: None,
            outcome: format!("{} is not an event tollgate acts on", row.event_type),
        });
    };
    if let Some(session) = n.unresolved_checkout.take() {
        n.product = Some(checkout_product(app_config, &session).await?);
    }
    let source = Source {
        time_ms: row.event_time,
        event_id: &row.event_id,
        webhook_id: Some(row.id),
    };
    let effects = Effects {
        db,
        app: app_config,
        billing: &app.settings.billing,
        provider,
        source,
        n: &n,
    };
    let applied = effects.apply(app.id).await?;
    Ok(Done {
        user_id: Some(applied.user_id),
        change: Some(applied.change),
        outcome: applied.outcome,
    })
}

/// The price a Stripe Checkout Session sold, read from its line items with the app's secret
/// key. Without the key the delivery fails with the reason (an operator sets the key, then
/// replays); Stripe unreachable is retried; Stripe refusing is final.
async fn checkout_product(app: &AppConfig, session: &str) -> anyhow::Result<String> {
    use super::store_http::StoreError;
    let Some((stripe, key)) = app
        .stripe
        .as_ref()
        .and_then(|s| s.secret_key.as_ref().map(|k| (s, k)))
    else {
        metrics::counter!("tollgate_billing_unresolved_checkouts_total", "reason" => "no_secret_key")
            .increment(1);
        return Err(Permanent::error(format!(
            "Checkout Session {session} has no tollgate_product metadata (a Payment Link or a \
             session the app created): tollgate reads its line items with [apps.stripe] \
             secret_key, which this app does not set; set it, then replay"
        )));
    };
    let http = super::store_http::http_client();
    let api = super::stripe_api::StripeApi {
        http: &http,
        base: &stripe.api_base,
        key,
    };
    match api.session_price(session).await {
        Ok(Some(price)) => Ok(price),
        Ok(None) => {
            metrics::counter!("tollgate_billing_unresolved_checkouts_total", "reason" => "no_line_items")
                .increment(1);
            Err(Permanent::error(format!(
                "Checkout Session {session} lists no line item with a price"
            )))
        }
        Err(e @ StoreError::Refused { status, .. }) if status < 500 => {
            metrics::counter!("tollgate_billing_unresolved_checkouts_total", "reason" => "refused")
                .increment(1);
            Err(Permanent::error(format!(
                "reading the line items of {session}: {e}"
            )))
        }
        Err(e) => Err(anyhow::anyhow!("reading the line items of {session}: {e}")),
    }
}

/// What processing did.
pub struct Done {
    /// The user it was about (none for an event tollgate does not act on).
    pub user_id: Option<i64>,
    /// What it changed (none: ignored).
    pub change: Option<Change>,
    /// In words, for operators.
    pub outcome: String,
}
