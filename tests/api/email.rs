//! Email through a real SMTP exchange on loopback: a message queued from the app's template,
//! sent once per key by its job, escaped in HTML; a refused recipient is a bounce, a 451 is
//! retried; `tollgate check`, `tollgate email test` and `/ready` see the transport.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate::config::Config;
use tollgate::jobs::Runtime;
use tollgate::store::now_ms;

use crate::cli::{as_refs, db_vars, run};
use crate::credits::{Shop, seed};
use crate::fake_smtp::FakeSmtp;
use crate::helpers::{TestApp, problem, spawn_api_with_runtime};

struct Mail {
    app: TestApp,
    rt: Runtime,
    shop: Shop,
    smtp: FakeSmtp,
    url: String,
}

fn with_templates(c: &mut Config, smtp_url: &str) {
    let mut shop = crate::credits::shop_config();
    shop.email = Some(
        serde_json::from_value(json!({
            "from": "Shop <billing@shop.example>",
            "templates": { "payment_failed": {
                "subject": "Your payment of {{ amount }} failed",
                "text": "Hi {{ name }}, update your card: {{ url }}",
                "html": "<p>Hi {{ name }}, <a href=\"{{ url }}\">update your card</a></p>"
            } }
        }))
        .unwrap(),
    );
    c.apps.push(shop);
    c.email.smtp_url = Some(smtp_url.to_string().into());
}

async fn mail_app() -> Mail {
    let (smtp, url) = FakeSmtp::start().await;
    let u = url.clone();
    let (app, rt) = spawn_api_with_runtime(move |c: &mut Config| with_templates(c, &u)).await;
    let shop = seed(&app, "shop").await;
    Mail {
        app,
        rt,
        shop,
        smtp,
        url,
    }
}

impl Mail {
    async fn send(&self, to: &str, key: &str, vars: Value) -> reqwest::Response {
        let body = json!({ "template": "payment_failed", "to": to, "key": key, "variables": vars });
        self.app
            .send_as(Method::POST, "/v1/emails", &self.shop.app_key, Some(body))
            .await
    }

    async fn work_at(&self, at: i64) -> usize {
        self.rt
            .worker()
            .at(at)
            .run_available("events")
            .await
            .unwrap()
    }

    async fn state(&self, id: i64) -> (String, Option<i64>) {
        let m = tollgate::store::email::message(&self.app.db, self.shop.app_id, id)
            .await
            .unwrap()
            .unwrap();
        (m.state, m.smtp_code)
    }
}

fn vars() -> Value {
    json!({ "name": "<Ann>", "amount": "$9", "url": "https://shop.example/card?a=1&b=2" })
}

#[tokio::test]
async fn a_templated_message_is_sent_once_per_key_with_its_html_escaped() {
    let h = mail_app().await;
    let r = h.send("ann@example.com", "failed:inv_1", vars()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let again = h.send("ann@example.com", "failed:inv_1", vars()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id);
    assert_eq!(h.work_at(now_ms()).await, 1, "one job for the two requests");
    assert_eq!(h.work_at(now_ms()).await, 0);
    let mails = h.smtp.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "billing@shop.example");
    assert_eq!(m.to, ["ann@example.com"]);
    assert!(
        m.data.contains("Subject: Your payment of $9 failed"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("Hi <Ann>, update your card"),
        "the text part is not escaped: {}",
        m.data
    );
    assert!(
        m.data.contains("Hi &lt;Ann&gt;"),
        "the HTML part is escaped: {}",
        m.data
    );
    assert!(m.data.contains("multipart/alternative"), "{}", m.data);
    assert!(
        m.data
            .contains(&format!("tollgate.{}.{id}@", h.shop.app_id)),
        "{}",
        m.data
    );
    assert_eq!(h.state(id).await, ("sent".to_string(), None));
}

#[tokio::test]
async fn a_refused_recipient_is_a_bounce_and_a_temporary_failure_is_retried() {
    let h = mail_app().await;
    h.smtp.refuse("gone@example.com");
    let r = h.send("gone@example.com", "k1", vars()).await;
    let bounced = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    h.work_at(now_ms()).await;
    assert_eq!(h.state(bounced).await, ("bounced".to_string(), Some(550)));
    assert_eq!(
        h.work_at(now_ms() + 3_600_000).await,
        0,
        "a bounce is not retried"
    );
    h.smtp.fail_temporarily(1);
    let r = h.send("ann@example.com", "k2", vars()).await;
    let retried = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let t = now_ms();
    h.work_at(t).await;
    assert_eq!(h.state(retried).await, ("pending".to_string(), Some(451)));
    h.work_at(t + 5_000).await;
    assert_eq!(h.state(retried).await.0, "sent");
    assert_eq!(h.smtp.mails().len(), 1);
    let m = h.app.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("tollgate_email_messages_total{state=\"bounced\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn bad_email_requests_are_refused_field_by_field_and_nothing_is_queued() {
    let h = mail_app().await;
    let r = h
        .send("not-an-address", "k1", json!({ "name": "Ann" }))
        .await;
    let p = problem(r, 422).await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "to",
            "variables (subject)",
            "variables (text)",
            "variables (html)"
        ],
        "{p}"
    );
    let body = json!({ "template": "welcome", "to": "ann@example.com" });
    let r = h
        .app
        .send_as(Method::POST, "/v1/emails", &h.shop.app_key, Some(body))
        .await;
    assert_eq!(problem(r, 422).await["errors"][0]["field"], "template");
    assert_eq!(h.work_at(now_ms()).await, 0);
}

#[tokio::test]
async fn check_email_test_and_ready_see_the_transport_and_a_wrong_password() {
    let h = mail_app().await;
    let vars = db_vars(&h.app._test_db);
    let mut env = as_refs(&vars);
    env.push(("SMTP_URL", &h.url));
    env.push(("TOLLGATE_EMAIL__FROM", "ops@shop.example"));
    let (code, out, err) = run(&["email", "test", "--to", "ops@example.com"], &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sent a test message to o***@example.com"),
        "{out}"
    );
    assert_eq!(h.smtp.mails().len(), 1);
    let (_, out, _) = run(&["check"], &env).await;
    assert!(
        out.contains("[pass] email: SMTP connects and authenticates"),
        "{out}"
    );
    let wrong = h.url.replace(crate::fake_smtp::PASSWORD, "wrong");
    let mut bad = as_refs(&vars);
    bad.push(("SMTP_URL", &wrong));
    bad.push(("TOLLGATE_EMAIL__FROM", "ops@shop.example"));
    let (code, out, _) = run(&["check"], &bad).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] email"), "{out}");
    assert!(!out.contains("wrong"), "the password is not printed: {out}");
    let ready: Value = h.app.get("/ready").await.json().await.unwrap();
    assert_eq!(ready["checks"]["email"][0]["status"], "pass", "{ready}");
}
