//! Email: one SMTP transport (lettre over rustls) for every app, the app's templates rendered
//! with the sender's variables (the HTML part escaped), messages queued once per key and sent
//! by a job (docs/email.md). Bodies and full addresses never reach a log.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::{Config, EmailTemplate};
use crate::error::{Error, FieldError};

/// How the connection is secured, from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp://`: STARTTLS, refused if the server does not offer it.
    StartTls,
    /// `smtp://…?tls=none`: in the clear (a local relay in development).
    None,
}

/// The parts of `SMTP_URL`.
#[derive(Clone)]
pub struct Transport {
    pub host: String,
    pub port: u16,
    pub security: Security,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn parse(url: &str) -> Result<Transport, String> {
        let u = url::Url::parse(url).map_err(|_| {
            "expected smtp://user:pass@host:587 or smtps://user:pass@host:465".to_string()
        })?;
        let tls = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (u.scheme(), tls.as_deref()) {
            ("smtps", None) => Security::Tls,
            ("smtp", None | Some("required")) => Security::StartTls,
            ("smtp", Some("none")) => Security::None,
            ("smtp" | "smtps", Some(other)) => {
                return Err(format!("tls={other:?}: expected tls=required or tls=none"));
            }
            (other, _) => return Err(format!("scheme {other:?}: expected smtp or smtps")),
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL names no host")?
            .to_string();
        let port = u.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::None => 25,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!u.username().is_empty()).then(|| decode(u.username()));
        let password = u.password().map(decode);
        Ok(Transport {
            host,
            port,
            security,
            user,
            password,
        })
    }

    fn build(&self, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let tls = |host: &str| {
            TlsParameters::new(host.to_string()).map_err(|e| format!("TLS setup: {e}"))
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(timeout));
        b = match self.security {
            Security::Tls => b.tls(Tls::Wrapper(tls(&self.host)?)),
            Security::StartTls => b.tls(Tls::Required(tls(&self.host)?)),
            Security::None => b.tls(Tls::None),
        };
        if let Some(user) = &self.user {
            let password = self.password.clone().unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(b.build())
    }
}

/// The process's SMTP sender, when `SMTP_URL` is set.
#[derive(Clone)]
pub struct Mailer {
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    transport: Transport,
    from: Option<Mailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// How a send went.
#[derive(Debug, Clone)]
pub enum SendError {
    /// The server refused it for good (a 5xx reply): a bounce.
    Rejected { code: u16, detail: String },
    /// Anything retrying may fix: a 4xx, a timeout, a lost connection, TLS.
    Transient { code: Option<u16>, detail: String },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Rejected { code, detail } => write!(f, "refused ({code}): {detail}"),
            SendError::Transient {
                code: Some(c),
                detail,
            } => write!(f, "failed ({c}): {detail}"),
            SendError::Transient { code: None, detail } => write!(f, "failed: {detail}"),
        }
    }
}

/// One message to send.
pub struct Outgoing<'a> {
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// `Message-ID`, the same on every attempt, so a receiving system can tell a resend.
    pub message_id: &'a str,
}

impl Mailer {
    pub fn from_config(c: &Config) -> Result<Option<Mailer>, String> {
        let Some(url) = &c.email.smtp_url else {
            return Ok(None);
        };
        let transport = Transport::parse(url.expose_secret())?;
        let smtp = transport.build(Duration::from_millis(c.email.timeout_ms))?;
        let from = match &c.email.from {
            Some(f) => Some(f.parse().map_err(|_| "email.from is not an address")?),
            None => None,
        };
        Ok(Some(Mailer {
            smtp,
            transport,
            from,
        }))
    }

    /// Connects, says hello and authenticates (`tollgate check`, `/ready`).
    pub async fn check(&self) -> Result<String, String> {
        match self.smtp.test_connection().await {
            Ok(true) => Ok(format!(
                "{}:{} ({:?})",
                self.transport.host, self.transport.port, self.transport.security
            )),
            Ok(false) => Err("the server did not answer NOOP".into()),
            Err(e) => Err(describe(&e)),
        }
    }

    pub async fn send(&self, m: &Outgoing<'_>) -> Result<(), SendError> {
        let bad = |detail: String| SendError::Rejected { code: 0, detail };
        let from: Mailbox = match m.from {
            Some(f) => f
                .parse()
                .map_err(|_| bad("the sender is not an address".into()))?,
            None => self
                .from
                .clone()
                .ok_or_else(|| bad("no sender: set email.from".into()))?,
        };
        let to: Mailbox =
            m.to.parse()
                .map_err(|_| bad("the recipient is not an address".into()))?;
        let builder = Message::builder()
            .from(from)
            .to(to)
            .subject(m.subject)
            .message_id(Some(m.message_id.to_string()));
        let message = match m.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                m.text.to_string(),
                html.to_string(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(m.text.to_string()),
        }
        .map_err(|e| bad(e.to_string()))?;
        match self.smtp.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.status().map(|c| {
                    let text = c.to_string();
                    text.parse::<u16>().unwrap_or(0)
                });
                let detail = describe(&e);
                Err(if e.is_permanent() {
                    SendError::Rejected {
                        code: code.unwrap_or(550),
                        detail,
                    }
                } else {
                    SendError::Transient { code, detail }
                })
            }
        }
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `a***@example.com`: enough to tell messages apart in a log, not enough to write to.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// A template's syntax, checked at config load.
pub fn check_template(source: &str) -> Result<(), String> {
    let mut env = minijinja::Environment::new();
    env.add_template("t", source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A rendered message.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Renders the template's parts over `vars`. Every variable a part uses must be given (a
/// missing one is a field error naming it, never an empty gap in a sent message); the HTML
/// part escapes every value.
pub fn render(t: &EmailTemplate, vars: &serde_json::Value) -> Result<Rendered, Error> {
    let part = |field: &str, source: &str, html: bool| -> Result<String, FieldError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(move |_| {
            if html {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.add_template("t", source)
            .and_then(|_| env.get_template("t")?.render(vars))
            .map_err(|e| FieldError::new(format!("variables ({field})"), e.to_string()))
    };
    let mut errors = Vec::new();
    let mut take = |r: Result<String, FieldError>| match r {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let subject = take(part("subject", &t.subject, false));
    let text = take(part("text", &t.text, false));
    let html = t.html.as_deref().map(|h| take(part("html", h, true)));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    Ok(Rendered {
        // A subject is one line: a variable cannot add headers.
        subject: subject.unwrap_or_default().replace(['\r', '\n'], " "),
        text: text.unwrap_or_default(),
        html: html.flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_with_their_security_and_default_ports() {
        let t = Transport::parse("smtps://u%40x:p%2Fw@mail.example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("mail.example.com", 465, Security::Tls)
        );
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("u@x"), Some("p/w"))
        );
        let t = Transport::parse("smtp://mail.example.com").unwrap();
        assert_eq!((t.port, t.security), (587, Security::StartTls));
        let t = Transport::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((t.port, t.security), (2525, Security::None));
        assert!(Transport::parse("http://mail.example.com").is_err());
        assert!(Transport::parse("smtp://mail.example.com?tls=maybe").is_err());
        assert!(
            !format!("{t:?}").contains("p/w"),
            "the password never prints"
        );
    }

    #[test]
    fn html_is_escaped_text_is_not_and_a_missing_variable_is_named() {
        let t = EmailTemplate {
            subject: "Hi {{ name }}\r\nBcc: x@evil".into(),
            text: "Hello {{ name }}".into(),
            html: Some("<p>Hello {{ name }}</p>".into()),
        };
        let r = render(&t, &serde_json::json!({ "name": "<b>Ann</b>" })).unwrap();
        assert_eq!(r.text, "Hello <b>Ann</b>");
        assert_eq!(r.html.unwrap(), "<p>Hello &lt;b&gt;Ann&lt;&#x2f;b&gt;</p>");
        assert!(!r.subject.contains('\n'));
        let Err(Error::Validation(fields)) = render(&t, &serde_json::json!({})) else {
            panic!("a missing variable must be refused");
        };
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].field, "variables (subject)");
    }

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask("alice@example.com"), "a***@example.com");
        assert_eq!(mask("nonsense"), "***");
    }
}

/// A message the app (or tollgate) asks to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub template: String,
    pub to: String,
    pub variables: serde_json::Value,
    /// Once per app and key: asking again returns the first message.
    pub key: String,
}

/// The message queued (or the first one under its key).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Queued {
    pub id: i64,
    /// False when a message under this key was queued before (nothing new is sent).
    pub inserted: bool,
}

/// The job that sends one stored message.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    pub app: i64,
    pub message: i64,
}

/// Renders the app's template and queues the message with its sending job, in one
/// transaction; every problem with the request is a field error.
pub async fn queue(
    config: &Config,
    db: &crate::store::Db,
    jobs: &crate::jobs::Client,
    app: (i64, &str),
    r: Request,
) -> Result<Queued, Error> {
    let (app_id, slug) = app;
    let mut fields = Vec::new();
    let template = config
        .app(slug)
        .and_then(|a| a.email.as_ref())
        .and_then(|e| e.templates.get(&r.template));
    if template.is_none() {
        fields.push(FieldError::new(
            "template",
            format!(
                "app {slug:?} has no email template {:?} ([apps.email.templates])",
                r.template
            ),
        ));
    }
    if r.to.len() > 320 || r.to.parse::<Mailbox>().is_err() {
        fields.push(FieldError::new("to", "expected an email address"));
    }
    if !r.variables.is_object() {
        fields.push(FieldError::new("variables", "expected a JSON object"));
    }
    if r.key.is_empty() || r.key.len() > 200 {
        fields.push(FieldError::new("key", "1 to 200 characters"));
    }
    let rendered = match template {
        Some(t) if r.variables.is_object() => match render(t, &r.variables) {
            Ok(m) => Some(m),
            Err(Error::Validation(more)) => {
                fields.extend(more);
                None
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let Some(m) = rendered.filter(|_| fields.is_empty()) else {
        return Err(Error::Validation(fields));
    };
    let mut tx = db.begin().await?;
    let new = crate::store::email::NewMessage {
        key: &r.key,
        template: &r.template,
        recipient: &r.to,
        subject: &m.subject,
        text: &m.text,
        html: m.html.as_deref(),
    };
    let (id, inserted) = crate::store::email::insert(&mut tx, app_id, &new).await?;
    if inserted {
        let job = SendEmail {
            app: app_id,
            message: id,
        };
        jobs.enqueue_tx(&mut tx, &job, crate::jobs::EnqueueOptions::default())
            .await?;
    }
    tx.commit().await?;
    Ok(Queued { id, inserted })
}

/// Email metrics, named `tollgate_email_*`.
pub mod metrics {
    pub const MESSAGES: &str = "tollgate_email_messages_total";

    pub fn describe() {
        metrics::describe_counter!(
            MESSAGES,
            "Email messages finished, by state (sent, bounced: refused by the server, failed: retries ran out)."
        );
    }

    pub fn finished(state: &'static str) {
        metrics::counter!(MESSAGES, "state" => state).increment(1);
    }
}
