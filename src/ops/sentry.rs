//! Error reporting to Sentry, when `sentry_dsn` is set: every `error!` log event becomes a
//! Sentry event (tagged with `service` = the role, the environment and the request id), posted
//! as an envelope by a background task. Without a DSN nothing is installed and no network call
//! is made. Hand-written (about what the sentry crate's core does for us) to avoid a second
//! HTTP/TLS stack in the build; see docs/decisions.md.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::http::request_id;

/// Events waiting to be sent; beyond this, new ones are dropped (reporting never blocks).
const QUEUE: usize = 256;
const CLIENT: &str = concat!("tollgate/", env!("CARGO_PKG_VERSION"));

/// A parsed DSN: `scheme://public_key@host[:port][/prefix]/project_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub public_key: String,
    /// `scheme://host[:port][/prefix]/api/<project_id>/envelope/`
    pub envelope_url: String,
}

impl Dsn {
    pub fn parse(raw: &str) -> Option<Dsn> {
        let url = url::Url::parse(raw).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.username().is_empty() {
            return None;
        }
        let path = url.path().trim_end_matches('/');
        let (prefix, project) = path.rsplit_once('/')?;
        if project.is_empty() {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Some(Dsn {
            public_key: url.username().to_string(),
            envelope_url: format!(
                "{}://{host}{port}{prefix}/api/{project}/envelope/",
                url.scheme()
            ),
        })
    }
}

enum Message {
    Event(Value),
    Flush(oneshot::Sender<()>),
}

static QUEUE_TX: OnceLock<mpsc::Sender<Message>> = OnceLock::new();

/// The tracing layer that turns `error!` events into Sentry events. Must be called inside a
/// Tokio runtime (it spawns the sender task).
pub fn layer(dsn: Dsn, service: &str, environment: &str) -> SentryLayer {
    let (tx, rx) = mpsc::channel(QUEUE);
    let _ = QUEUE_TX.set(tx.clone());
    tokio::spawn(send_loop(dsn, rx));
    SentryLayer {
        tx,
        service: service.to_string(),
        environment: environment.to_string(),
    }
}

/// Waits until every event reported so far has been posted (or `timeout` passes).
pub async fn flush(timeout: Duration) {
    let Some(tx) = QUEUE_TX.get() else { return };
    let (done, wait) = oneshot::channel();
    if tx.send(Message::Flush(done)).await.is_ok() {
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

async fn send_loop(dsn: Dsn, mut rx: mpsc::Receiver<Message>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client with default TLS builds");
    let auth = format!(
        "Sentry sentry_version=7, sentry_key={}, sentry_client={CLIENT}",
        dsn.public_key
    );
    while let Some(message) = rx.recv().await {
        let event = match message {
            Message::Event(event) => event,
            Message::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let result = client
            .post(&dsn.envelope_url)
            .header("content-type", "application/x-sentry-envelope")
            .header("x-sentry-auth", &auth)
            .body(envelope(&event))
            .send()
            .await;
        // warn!, not error!: an error here would be reported again, in a loop.
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "sentry refused an event"),
            Err(e) => tracing::warn!(error = %e, "cannot reach sentry"),
        }
    }
}

/// An envelope with one event item: header line, item header line, payload.
pub fn envelope(event: &Value) -> Vec<u8> {
    let payload = event.to_string();
    let header = json!({ "event_id": event["event_id"] });
    let item = json!({ "type": "event", "length": payload.len() });
    format!("{header}\n{item}\n{payload}\n").into_bytes()
}

/// See [`layer`].
pub struct SentryLayer {
    tx: mpsc::Sender<Message>,
    service: String,
    environment: String,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber> Layer<S> for SentryLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        // An event may name its own service (job failures say `service = "worker"` even in a
        // process running both roles).
        let service = fields
            .0
            .remove("service")
            .unwrap_or_else(|| self.service.clone());
        let mut tags = json!({ "service": service });
        for key in ["job_id", "job_kind"] {
            if let Some(v) = fields.0.get(key) {
                tags[key] = json!(v);
            }
        }
        if let Some(id) = request_id::current() {
            tags["request_id"] = json!(id);
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let payload = json!({
            "event_id": uuid::Uuid::now_v7().simple().to_string(),
            "timestamp": timestamp,
            "platform": "other",
            "level": "error",
            "logger": event.metadata().target(),
            "message": { "formatted": message },
            "release": concat!("tollgate@", env!("CARGO_PKG_VERSION")),
            "environment": self.environment,
            "tags": tags,
            "extra": fields.0,
            "sdk": { "name": "tollgate", "version": env!("CARGO_PKG_VERSION") },
        });
        // A full queue drops the event: reporting must never slow a request down.
        let _ = self.tx.try_send(Message::Event(payload));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_gives_the_envelope_url_and_key() {
        let dsn = Dsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(dsn.public_key, "abc123");
        assert_eq!(
            dsn.envelope_url,
            "https://o1.ingest.sentry.io/api/42/envelope/"
        );
        let self_hosted = Dsn::parse("http://k@127.0.0.1:9000/sentry/7").unwrap();
        assert_eq!(
            self_hosted.envelope_url,
            "http://127.0.0.1:9000/sentry/api/7/envelope/"
        );
        assert!(Dsn::parse("https://o1.ingest.sentry.io/42").is_none());
        assert!(Dsn::parse("https://k@o1.ingest.sentry.io/").is_none());
        assert!(Dsn::parse("not a dsn").is_none());
    }

    #[test]
    fn an_envelope_is_three_lines_with_the_payload_length() {
        let event = json!({ "event_id": "abc", "message": { "formatted": "boom" } });
        let text = String::from_utf8(envelope(&event)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let item: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], lines[2].len());
        assert_eq!(
            serde_json::from_str::<Value>(lines[0]).unwrap()["event_id"],
            "abc"
        );
    }
}
