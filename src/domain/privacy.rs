//! What personal data looks like in the payloads tollgate keeps, and how it is erased: a
//! deleted user's stored webhook bodies keep their ids, types, products and periods (what
//! processing and accounting need) and lose their names, emails, phones and addresses.

use serde_json::Value;

/// Keys whose values are personal data in the stores' payloads: RevenueCat's
/// `subscriber_attributes` (`$email`, `$displayName`, `$phoneNumber`, …); Stripe's customer and
/// checkout fields (`email`, `name`, `phone`, `address`, `shipping`, `customer_details`,
/// `billing_details`, `customer_email`, …); Paddle's and Whop's customer and user objects
/// (`email`, `name`, `first_name`, `username`, …). Compared without case.
const PERSONAL_KEYS: &[&str] = &[
    "subscriber_attributes",
    "email",
    "name",
    "phone",
    "address",
    "shipping",
    "shipping_details",
    "customer_details",
    "billing_details",
    "customer_email",
    "customer_name",
    "customer_phone",
    "customer_address",
    "customer_shipping",
    "receipt_email",
    "first_name",
    "last_name",
    "display_name",
    "username",
    "ip_address",
];

/// What an erased string becomes.
pub const ERASED: &str = "[erased]";

/// `body` with its personal data erased: values under [`PERSONAL_KEYS`] become `"[erased]"`
/// (text) or empty (objects, lists), and any text equal to the user's `external_id` becomes
/// their `anonymous_id`. A body that is not JSON is replaced whole: it cannot be told apart.
pub fn erase(body: &[u8], external_id: &str, anonymous_id: &str) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return ERASED.as_bytes().to_vec();
    };
    erase_value(&mut value, external_id, anonymous_id);
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

fn erase_value(value: &mut Value, external_id: &str, anonymous_id: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if PERSONAL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                    *v = match v {
                        Value::Object(_) => Value::Object(Default::default()),
                        Value::Array(_) => Value::Array(Vec::new()),
                        Value::Null => Value::Null,
                        _ => Value::String(ERASED.into()),
                    };
                } else {
                    erase_value(v, external_id, anonymous_id);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                erase_value(v, external_id, anonymous_id);
            }
        }
        Value::String(s) if !external_id.is_empty() && s == external_id => {
            *s = anonymous_id.to_string();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn erased(v: Value) -> Value {
        serde_json::from_slice(&erase(
            &serde_json::to_vec(&v).unwrap(),
            "alice@example.com",
            "anon_1",
        ))
        .unwrap()
    }

    #[test]
    fn revenuecat_attributes_and_the_external_id_are_erased_ids_stay() {
        let event = json!({ "event": { "type": "INITIAL_PURCHASE", "id": "evt_1",
            "app_user_id": "alice@example.com", "aliases": ["alice@example.com", "$RCAnonymousID:1"],
            "product_id": "pro.monthly", "expiration_at_ms": 1,
            "subscriber_attributes": { "$email": { "value": "alice@example.com", "updated_at_ms": 1 },
                "$phoneNumber": { "value": "+15550100", "updated_at_ms": 1 } } } });
        let out = erased(event);
        let text = out.to_string();
        assert!(!text.contains("alice@example.com"), "{text}");
        assert!(!text.contains("+15550100"), "{text}");
        assert_eq!(out["event"]["app_user_id"], "anon_1");
        assert_eq!(out["event"]["aliases"][1], "$RCAnonymousID:1");
        assert_eq!(out["event"]["product_id"], "pro.monthly");
        assert_eq!(out["event"]["subscriber_attributes"], json!({}));
    }

    #[test]
    fn stripe_paddle_and_whop_customer_fields_are_erased() {
        let stripe = json!({ "id": "evt_1", "data": { "object": { "id": "cs_1", "customer": "cus_1",
            "customer_details": { "email": "a@b.c", "name": "Alice", "phone": "+1" },
            "customer_email": "a@b.c", "shipping": null, "metadata": { "user": "alice@example.com" } } } });
        let out = erased(stripe);
        assert_eq!(out["data"]["object"]["customer"], "cus_1");
        assert_eq!(out["data"]["object"]["customer_details"], json!({}));
        assert_eq!(out["data"]["object"]["customer_email"], ERASED);
        assert_eq!(out["data"]["object"]["shipping"], Value::Null);
        assert_eq!(out["data"]["object"]["metadata"]["user"], "anon_1");
        let paddle =
            json!({ "data": { "customer": { "id": "ctm_1", "email": "a@b.c", "name": "Alice" } } });
        let out = erased(paddle);
        assert_eq!(
            out["data"]["customer"],
            json!({ "id": "ctm_1", "email": ERASED, "name": ERASED })
        );
        let whop = json!({ "data": { "user": { "id": "user_1", "username": "alice", "email": "a@b.c" } } });
        let out = erased(whop);
        assert_eq!(out["data"]["user"]["id"], "user_1");
        assert_eq!(out["data"]["user"]["username"], ERASED);
    }

    #[test]
    fn a_body_that_is_not_json_is_replaced_whole() {
        assert_eq!(erase(b"name=Alice", "x", "y"), ERASED.as_bytes());
    }
}
