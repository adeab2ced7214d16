//! The official `stripe` Python package (installed by `.ci/run`) and tollgate agree on
//! `Stripe-Signature`: the package's `Webhook.construct_event` accepts what tollgate's signer
//! (used by the tests as the fake Stripe) makes, and tollgate accepts a signature made the way
//! Stripe documents it.

use serde_json::{Value, json};

use crate::billing::{STRIPE_SECRET, settled, spawn_store_app, stripe_event};
use crate::python::python_with;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/stripe_webhooks.py"
);

async fn python(mode: &str, payload: &std::path::Path, signature: &str) -> String {
    let output = python_with("stripe")
        .args([SCRIPT, mode])
        .env("STRIPE_PAYLOAD", payload)
        .env("STRIPE_SECRET", STRIPE_SECRET)
        .env("STRIPE_SIGNATURE", signature)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_official_stripe_package_and_tollgate_agree_on_signatures() {
    let app = spawn_store_app().await;
    let now = tollgate::store::now_ms() / 1000;
    let topup = json!({ "id": "cs_py", "object": "checkout.session", "mode": "payment",
        "client_reference_id": "py", "payment_status": "paid", "payment_intent": "pi_py",
        "metadata": { "tollgate_product": "price_pack" } });
    let event = stripe_event("evt_py", "checkout.session.completed", now, topup);
    let body = serde_json::to_vec(&event).unwrap();
    let payload = app._test_db.data_dir.join("stripe_payload.json");
    std::fs::write(&payload, &body).unwrap();

    // tollgate's signature, checked by the stripe package.
    let ours = tollgate::billing::stripe::sign(STRIPE_SECRET, now, &body);
    assert_eq!(python("verify", &payload, &ours).await, "evt_py");

    // A signature made as Stripe documents it, checked by tollgate.
    let theirs = python("sign", &payload, "").await;
    let r = app
        .client
        .post(app.url("/webhooks/shop/stripe"))
        .header("stripe-signature", theirs)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["event_id"], "evt_py");
    let rows = settled(&app).await;
    assert_eq!(rows[0].status, "processed", "{rows:?}");
}
