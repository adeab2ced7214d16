//! One signed delivery: the POST, its answer's status and first bytes, how long it took.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::signing::{ID, SIGNATURE, TIMESTAMP, sign_all};
use super::target::{self, Policy};
use crate::config::Config;

/// Sends deliveries: one HTTP client (its connections reused across deliveries) and the target
/// guard it resolves through.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: std::sync::Arc<Policy>,
    /// The SMTP transport, when `SMTP_URL` is set.
    mailer: Option<super::email::Mailer>,
}

impl Sender {
    pub fn from_config(c: &Config) -> Sender {
        let policy = std::sync::Arc::new(Policy::from_config(c));
        let timeout = Duration::from_millis(c.events.attempt_timeout_ms);
        let mailer = super::email::Mailer::from_config(c).unwrap_or_else(|e| {
            tracing::error!(error = %e, "email.smtp_url cannot be used; email is not sent");
            None
        });
        Sender {
            client: target::client(policy.clone(), timeout),
            policy,
            mailer,
        }
    }

    pub fn mailer(&self) -> Option<&super::email::Mailer> {
        self.mailer.as_ref()
    }

    pub async fn send(&self, m: &Message<'_>) -> Sent {
        send(&self.client, &self.policy, m).await
    }
}

/// How much of an answer's body is kept with the attempt.
pub const RESPONSE_KEPT: usize = 1024;

/// What a receiver is sent.
pub struct Message<'a> {
    pub url: &'a str,
    pub msg_id: &'a str,
    /// Unix seconds, the `webhook-timestamp` signed with the body.
    pub timestamp: i64,
    pub body: &'a str,
    /// Every secret in use (two during a rotation).
    pub secrets: &'a [String],
}

/// How an attempt went.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The answer's status; `None` when none came.
    pub status: Option<u16>,
    pub took: Duration,
    pub response: Option<String>,
    pub error: Option<String>,
    /// Refused before sending: the target is a forbidden address.
    pub blocked: bool,
}

impl Sent {
    /// The outcome label of the attempt metric.
    pub fn outcome(&self) -> &'static str {
        match self.status {
            _ if self.blocked => "blocked",
            None => "unreachable",
            Some(200..=299) => "2xx",
            Some(410) => "410",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
        }
    }
}

async fn send(client: &reqwest::Client, policy: &Policy, m: &Message<'_>) -> Sent {
    let started = Instant::now();
    let failed = |error: String, blocked: bool| Sent {
        status: None,
        took: started.elapsed(),
        response: None,
        error: Some(error),
        blocked,
    };
    // The client's resolver guards names; an address written in the URL is never resolved.
    if let Some(ip) = url::Url::parse(m.url).ok().and_then(|u| {
        u.host_str().and_then(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        })
    }) && let Err(e) = policy.check_ip(&ip.to_string(), ip)
    {
        return failed(e.to_string(), true);
    }
    let signature = sign_all(
        m.secrets.iter().map(String::as_str),
        m.msg_id,
        m.timestamp,
        m.body.as_bytes(),
    );
    let sent = client
        .post(m.url)
        .header(ID, m.msg_id)
        .header(TIMESTAMP, m.timestamp.to_string())
        .header(SIGNATURE, signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(m.body.to_string())
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            let blocked = causes(&e).any(|s| s.downcast_ref::<super::target::Refused>().is_some());
            return failed(describe(e), blocked);
        }
    };
    let status = response.status().as_u16();
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_KEPT {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(RESPONSE_KEPT);
    Sent {
        status: Some(status),
        took: started.elapsed(),
        response: Some(String::from_utf8_lossy(&kept).into_owned()),
        error: None,
        blocked: false,
    }
}

/// The error with its causes, without the URL (it may carry a token in its query).
fn describe(e: reqwest::Error) -> String {
    let causes: Vec<String> = causes(&e).map(|s| s.to_string()).collect();
    let mut text = e.without_url().to_string();
    for c in causes {
        text.push_str(": ");
        text.push_str(&c);
    }
    text
}

fn causes<'a>(
    e: &'a reqwest::Error,
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> + 'a {
    std::iter::successors(std::error::Error::source(e), |s| s.source())
}
