//! Recovery nudges by email, through a real SMTP exchange on loopback: a user whose address the
//! app set gets each nudge as a message from the app's template, carrying the same link as the
//! `recovery.nudge` event, once; a user without one gets the event alone; the address is
//! checked when set and erased with the user. Both databases.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::store::identity;

use crate::billing::{settled, store_config};
use crate::fake_smtp::FakeSmtp;
use crate::helpers::{TestApp, problem, spawn_app_with};
use crate::jobs::wait_until;
use crate::recovery::deliver;

async fn shop() -> (TestApp, FakeSmtp) {
    let (smtp, url) = FakeSmtp::start().await;
    let mut shop = store_config();
    shop.email = Some(
        serde_json::from_value(json!({
            "from": "Shop <billing@shop.example>",
            "templates": { "recovery_nudge": {
                "subject": "Reminder {{ step }}: your payment of {{ amount }} failed",
                "text": "{{ message }} Fix it here: {{ link }}",
                "html": "<p>{{ message }}</p><p><a href=\"{{ link }}\">Fix it</a></p>"
            } }
        }))
        .unwrap(),
    );
    shop.recovery = Some(
        serde_json::from_value(json!({ "email_template": "recovery_nudge",
            "steps": [{ "after_hours": 0, "variants": [{ "name": "plain", "message": "Your card was declined." }] }] }))
        .unwrap(),
    );
    let app = spawn_app_with(move |c| {
        c.apps = vec![shop];
        c.email.smtp_url = Some(url.into());
    })
    .await;
    (app, smtp)
}

async fn nudge_now(app: &TestApp, key: &str, user: &str) {
    let case = crate::recovery::cases(app, user).await[0].id;
    let path = format!("/v1/recovery/cases/{case}/actions");
    let r = app
        .send_as(
            Method::POST,
            &path,
            key,
            Some(json!({ "action": "nudge_now" })),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The `recovery.nudge` events' links, by user.
async fn links(app: &TestApp) -> Vec<(String, String)> {
    let shop = identity::app_by_slug(&app.db, "shop")
        .await
        .unwrap()
        .unwrap();
    tollgate::store::events::events(&app.db, shop.id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "recovery.nudge")
        .map(|e| {
            let d = &e.payload["data"];
            (
                d["user_id"].as_str().unwrap().to_string(),
                d["link"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_nudge_goes_by_email_with_the_events_link_to_users_whose_address_the_app_set() {
    let (app, smtp) = shop().await;
    let key = crate::credits::seed(&app, "shop").await.app_key;
    let t0 = tollgate::store::now_ms() / 1000 - 3600;
    deliver(&app, "evt_fail_ann", "ann", false, t0).await;
    deliver(&app, "evt_fail_bob", "bob", false, t0).await;
    settled(&app).await;

    // The address is checked, kept masked in the answer, and can be forgotten.
    let put = |user: &'static str, email: Value| {
        let (app, key) = (&app, &key);
        async move {
            let path = format!("/v1/users/{user}/email");
            app.send_as(Method::PUT, &path, key, Some(json!({ "email": email })))
                .await
        }
    };
    let bad = put("ann", json!("not an address")).await;
    assert_eq!(problem(bad, 422).await["errors"][0]["field"], "email");
    problem(put("nobody", json!("x@example.com")).await, 404).await;
    // A body without the field forgets nothing: it is refused, naming the field.
    let empty = app
        .send_as(Method::PUT, "/v1/users/ann/email", &key, Some(json!({})))
        .await;
    let p = problem(empty, 422).await;
    assert!(p.to_string().contains("email"), "{p}");
    let set: Value = put("ann", json!("ann@example.com"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(set["email"], "a***@example.com");

    nudge_now(&app, &key, "ann").await;
    nudge_now(&app, &key, "bob").await;
    wait_until(Duration::from_secs(10), || async {
        links(&app).await.len() == 2 && smtp.mails().len() == 1
    })
    .await;
    let mails = smtp.mails();
    assert_eq!(mails[0].to, ["ann@example.com"]);
    let ann_link = links(&app)
        .await
        .into_iter()
        .find(|(u, _)| u == "ann")
        .unwrap()
        .1;
    let data = mails[0].data.replace("=\r\n", "");
    assert!(
        data.contains("Subject: Reminder 1: your payment of 19.99 USD failed"),
        "{data}"
    );
    assert!(data.contains("Your card was declined."), "{data}");
    assert!(
        data.contains(&ann_link),
        "the event's link: {ann_link} in {data}"
    );

    // Nothing more comes: the nudge went once, by both channels.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.mails().len(), 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"tollgate_recovery_nudges_total{channel="email",outcome="queued"} 1"#),
        "{metrics}"
    );

    // Erasing the user erases the address.
    let shop = identity::app_by_slug(&app.db, "shop")
        .await
        .unwrap()
        .unwrap();
    let ann = app.user_target("shop", "ann").await;
    assert!(
        identity::email_of(&app.db, shop.id, ann.user_id)
            .await
            .unwrap()
            .is_some()
    );
    let r = app
        .send_as(Method::DELETE, "/v1/users/ann", &key, None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        identity::email_of(&app.db, shop.id, ann.user_id)
            .await
            .unwrap(),
        None
    );
}
