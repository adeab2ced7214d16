//! `[events]`: delivering tollgate's own events to the apps' endpoints (docs/events.md).

use serde::Deserialize;

use super::{Environment, IpNet, Problem};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Refuse deliveries to loopback, private, link-local and metadata addresses. Unset: on in
    /// production, off elsewhere.
    pub block_private_targets: Option<bool>,
    /// Networks (IPs or CIDRs) deliveries may reach even while private targets are blocked: a
    /// receiver inside the same network.
    #[serde(deserialize_with = "super::env::string_list")]
    pub allowed_targets: Vec<String>,
    /// An attempt waiting longer for its answer fails (and is retried).
    pub attempt_timeout_ms: u64,
    /// An endpoint whose every attempt failed for this long is disabled (0: never).
    pub disable_after_hours: u64,
    /// After a secret rotation, the old secret keeps signing (beside the new one) this long.
    pub rotation_overlap_hours: u64,
}

impl EventsConfig {
    /// Whether the target guard is on in `env`.
    pub fn guard_targets(&self, env: Environment) -> bool {
        self.block_private_targets
            .unwrap_or(env == Environment::Production)
    }
}

pub fn validate(c: &EventsConfig, p: &mut Vec<Problem>) {
    for (i, t) in c.allowed_targets.iter().enumerate() {
        if let Err(m) = IpNet::parse(t) {
            p.push(Problem::new(format!("events.allowed_targets.{i}"), m));
        }
    }
    if !(100..=120_000).contains(&c.attempt_timeout_ms) {
        p.push(Problem::new(
            "events.attempt_timeout_ms",
            "expected 100 to 120000",
        ));
    }
    if c.disable_after_hours > 24 * 90 {
        p.push(Problem::new(
            "events.disable_after_hours",
            "expected 0 to 2160 (90 days)",
        ));
    }
    if c.rotation_overlap_hours > 24 * 30 {
        p.push(Problem::new(
            "events.rotation_overlap_hours",
            "expected 0 to 720 (30 days)",
        ));
    }
}
