//! The names one-app deployments already use for their stores' secrets (`STRIPE_SECRET_KEY`,
//! `STRIPE_WEBHOOK_SECRET`, …). They configure the app when exactly one is declared in
//! `[[apps]]`; with none or several they cannot say which app they mean, and are refused by name
//! rather than ignored.

use secrecy::SecretString;

use super::billing::{RevenueCatConfig, SignedWebhooks, StripeConfig};
use super::{AppConfig, Config, Problem};

/// Puts a variable's value where it belongs in the app.
type Fill = fn(&mut AppConfig, &str);

/// Each name, the key under the app it fills, and how. A list takes a comma-separated value (several
/// secrets are accepted during a rotation).
const NAMES: &[(&str, &str, Fill)] = &[
    ("STRIPE_SECRET_KEY", "stripe.secret_key", |app, v| {
        stripe(app).secret_key = Some(secret(v));
    }),
    (
        "STRIPE_WEBHOOK_SECRET",
        "stripe.webhook_secrets",
        |app, v| {
            stripe(app).webhook_secrets = list(v);
        },
    ),
    (
        "REVENUECAT_WEBHOOK_SECRET",
        "revenuecat.webhook_authorization",
        |app, v| {
            // The Authorization header's exact value: one value, commas and all.
            revenuecat(app).webhook_authorization = vec![secret(v)];
        },
    ),
    ("REVENUECAT_API_KEY", "revenuecat.api_key", |app, v| {
        revenuecat(app).api_key = Some(secret(v));
    }),
    (
        "PADDLE_WEBHOOK_SECRET",
        "paddle.webhook_secrets",
        |app, v| {
            app.paddle
                .get_or_insert_with(SignedWebhooks::default)
                .webhook_secrets = list(v);
        },
    ),
    ("WHOP_WEBHOOK_SECRET", "whop.webhook_secrets", |app, v| {
        app.whop
            .get_or_insert_with(SignedWebhooks::default)
            .webhook_secrets = list(v);
    }),
];

/// Applies the names set in `vars` over the file's values (the environment wins, as elsewhere).
/// Returns the keys it filled (`apps.0.stripe.secret_key`) with the variable that filled each.
pub fn apply(
    config: &mut Config,
    vars: &[(String, String)],
    problems: &mut Vec<Problem>,
) -> Vec<(String, &'static str)> {
    let mut filled = Vec::new();
    for (name, key, set) in NAMES {
        let Some((_, value)) = vars.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        match config.apps.as_mut_slice() {
            [app] => {
                set(app, value);
                filled.push((format!("apps.0.{key}"), *name));
            }
            apps => problems.push(Problem::new(
                *name,
                format!(
                    "configures the one app of a one-app deployment, but {} apps are declared in [[apps]]; set the secret in that app's section instead",
                    apps.len()
                ),
            )),
        }
    }
    filled
}

fn stripe(app: &mut AppConfig) -> &mut StripeConfig {
    app.stripe.get_or_insert_with(StripeConfig::default)
}

fn revenuecat(app: &mut AppConfig) -> &mut RevenueCatConfig {
    app.revenuecat.get_or_insert_with(RevenueCatConfig::default)
}

fn secret(value: &str) -> SecretString {
    SecretString::from(value.trim().to_string())
}

fn list(value: &str) -> Vec<SecretString> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_string()))
        .collect()
}
