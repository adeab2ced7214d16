//! Error reporting to Sentry through the `sentry` crate, when `sentry_dsn` is set: every
//! `error!` log event and every panic (in a handler, a job or any background task) becomes one
//! Sentry event with its stack trace, the release and the environment, tagged with `service`
//! (the role), the request id and, in a job, `job_id` and `job_kind`. It sends on tollgate's own
//! reqwest and rustls (see docs/decisions.md). Without a DSN nothing is installed and no
//! network call is made.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sentry::protocol::{Context, Event};
use sentry::{ClientInitGuard, ClientOptions, Hub};

use crate::http::request_id;

/// Set on an `error!` whose panic the panic hook has reported already (with its stack trace):
/// the log becomes a breadcrumb of that event, not a second event.
pub const REPORTED_AS_PANIC: &str = "reported_as_panic";
/// The tracing fields that become tags (the rest stay in the event's fields context).
const TAG_FIELDS: [&str; 3] = ["service", "job_id", "job_kind"];
const FIELDS_CONTEXT: &str = "Rust Tracing Fields";

static GUARD: OnceLock<ClientInitGuard> = OnceLock::new();

/// Whether `raw` is a DSN the client accepts (`scheme://public_key@host[:port][/prefix]/project`).
pub fn valid_dsn(raw: &str) -> bool {
    raw.parse::<sentry::types::Dsn>().is_ok()
}

/// Installs the client (once per process; a second call is a no-op). False if the DSN is
/// invalid (validation refuses one before this is reached).
pub fn init(dsn: &str, service: &str, environment: &str) -> bool {
    let Ok(dsn) = dsn.parse() else {
        return false;
    };
    let service = service.to_string();
    GUARD.get_or_init(|| {
        let mut options = ClientOptions::default();
        options.dsn = Some(dsn);
        options.release = Some(concat!("tollgate@", env!("CARGO_PKG_VERSION")).into());
        options.environment = Some(environment.to_string().into());
        // A stack trace on `error!` events too, not only on panics.
        options.attach_stacktrace = true;
        // User data never leaves: no IP addresses, no request bodies.
        options.send_default_pii = false;
        options.before_send = Some(Arc::new(tag));
        let guard = sentry::init(options);
        sentry::configure_scope(|scope| scope.set_tag("service", &service));
        guard
    });
    true
}

/// The tracing layers: `error!` is an event (unless [`REPORTED_AS_PANIC`]), `warn!` and
/// `info!` are breadcrumbs of the next one, the rest is ignored. Spans are not traced (no
/// performance data: a transaction per request would cost the hot path for nothing sampled).
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing::Level;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::filter_fn;
    let errors = ErrorLayer::new().with_filter(filter_fn(|m| {
        m.is_event() && *m.level() == Level::ERROR && m.fields().field(REPORTED_AS_PANIC).is_none()
    }));
    // Levels order by verbosity: ERROR < WARN < INFO < DEBUG < TRACE.
    let breadcrumbs = BreadcrumbLayer::new()
        .with_filter(filter_fn(|m| m.is_event() && *m.level() <= Level::INFO));
    errors.and_then(breadcrumbs)
}

/// Tags an event as it is sent: the request id of the request it happened in, and the fields
/// that name the service and the job.
fn tag(mut event: Event<'static>) -> Option<Event<'static>> {
    if let Some(id) = request_id::current() {
        event.tags.insert("request_id".into(), id);
    }
    if let Some(Context::Other(fields)) = event.contexts.get_mut(FIELDS_CONTEXT) {
        for key in TAG_FIELDS {
            if let Some(value) = fields.remove(key) {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                event.tags.insert(key.into(), text);
            }
        }
    }
    Some(event)
}

/// A hub for one job's task: a panic in it is tagged with the job (and `service = worker`,
/// even in a process running both roles).
pub fn job_hub(id: i64, kind: &str) -> Arc<Hub> {
    if Hub::main().client().is_none() {
        return Hub::current(); // no Sentry: nothing to tag, nothing to build per job
    }
    let hub = Arc::new(Hub::new_from_top(Hub::main()));
    hub.configure_scope(|scope| {
        scope.set_tag("service", "worker");
        scope.set_tag("job_id", id);
        scope.set_tag("job_kind", kind);
    });
    hub
}

/// Waits until every event reported so far has been sent (or `timeout` passes).
pub async fn flush(timeout: Duration) {
    let Some(client) = Hub::main().client() else {
        return;
    };
    let _ = tokio::task::spawn_blocking(move || client.flush(Some(timeout))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_need_a_key_and_a_project() {
        assert!(valid_dsn("https://abc123@o1.ingest.sentry.io/42"));
        assert!(valid_dsn("http://k@127.0.0.1:9000/sentry/7"));
        assert!(!valid_dsn("https://o1.ingest.sentry.io/42"));
        assert!(!valid_dsn("https://k@o1.ingest.sentry.io/"));
        assert!(!valid_dsn("not a dsn"));
    }

    #[test]
    fn service_and_job_fields_become_tags() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("service".to_string(), serde_json::json!("worker"));
        fields.insert("job_id".to_string(), serde_json::json!(7));
        fields.insert("attempt".to_string(), serde_json::json!(2));
        let mut event = Event::default();
        event
            .contexts
            .insert(FIELDS_CONTEXT.into(), Context::Other(fields));
        let event = tag(event).unwrap();
        assert_eq!(event.tags["service"], "worker");
        assert_eq!(event.tags["job_id"], "7");
        let Some(Context::Other(rest)) = event.contexts.get(FIELDS_CONTEXT) else {
            panic!("the fields context stays");
        };
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["attempt"]);
    }
}
