//! The `[rate_limits]` section and the trusted proxies of `[http]`.

use std::net::IpAddr;

use serde::Deserialize;

use super::Problem;

/// Rate limiting: see docs/auth.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    /// With Redis configured and unreachable: `open` lets requests through (logged and
    /// counted), `closed` refuses them with 503.
    pub on_redis_error: FailMode,
    /// Prefix of the Redis keys (several deployments may share one Redis).
    pub redis_prefix: String,
    /// Per client IP, for requests without a valid key (unauthenticated routes).
    pub ip: LimitConfig,
    /// Per client IP, for billing stores' webhooks (`/webhooks/…`): stores send bursts from
    /// few addresses, and a refused delivery is only delayed (they retry).
    pub webhooks: LimitConfig,
    /// Per API key.
    pub key: LimitConfig,
    /// Per app, all its keys together.
    pub app: LimitConfig,
    /// Named per-key limits that plans choose with `rate_limit_tier`; a user key whose plan
    /// names a tier gets it instead of `key`.
    #[serde(default)]
    pub tiers: std::collections::BTreeMap<String, LimitConfig>,
}

/// `requests` per `per_seconds`, with bursts up to `requests`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub requests: u64,
    pub per_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    Closed,
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

pub fn validate(c: &RateLimitsConfig, trusted: &[String], p: &mut Vec<Problem>) {
    let tiers = c
        .tiers
        .iter()
        .map(|(name, l)| (format!("tiers.{name}"), *l));
    let fixed = [
        ("ip", c.ip),
        ("webhooks", c.webhooks),
        ("key", c.key),
        ("app", c.app),
    ]
    .map(|(n, l)| (n.to_string(), l));
    for (name, l) in fixed.into_iter().chain(tiers) {
        if l.requests == 0 {
            p.push(Problem::new(
                format!("rate_limits.{name}.requests"),
                "must be at least 1",
            ));
        }
        if !(1..=86_400).contains(&l.per_seconds) {
            p.push(Problem::new(
                format!("rate_limits.{name}.per_seconds"),
                format!("expected 1 to 86400, got {}", l.per_seconds),
            ));
        }
    }
    if c.redis_prefix.is_empty() {
        p.push(Problem::new(
            "rate_limits.redis_prefix",
            "must not be empty",
        ));
    }
    for (i, t) in trusted.iter().enumerate() {
        if let Err(m) = IpNet::parse(t) {
            p.push(Problem::new(format!("http.trusted_proxies.{i}"), m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            IpNet::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0/8"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }
}
