//! Which hosts a delivery may reach. With the guard on (production, unless configured
//! otherwise), a name is resolved and every address it has must be public unicast, or inside
//! `events.allowed_targets`; the check runs in the HTTP client's own resolver, so the address
//! checked is the address connected to (no window for a DNS answer to change in between), and
//! deliveries never follow redirects.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::Url;

use crate::config::{Config, IpNet};
use crate::domain::events::{Forbidden, forbidden};

/// The guard's settings.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub guard: bool,
    pub allowed: Vec<IpNet>,
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("expected an http or https URL with a host")]
    NotHttp,
    #[error("{host} resolves to {ip}, a {} address; deliveries to it are refused (events.allowed_targets can allow it)", .why.as_str())]
    Blocked {
        host: String,
        ip: IpAddr,
        why: Forbidden,
    },
    #[error("cannot resolve {0}")]
    Unresolvable(String),
}

impl Policy {
    pub fn from_config(c: &Config) -> Policy {
        Policy {
            guard: c.events.guard_targets(c.environment),
            allowed: c
                .events
                .allowed_targets
                .iter()
                .filter_map(|s| IpNet::parse(s).ok())
                .collect(),
        }
    }

    /// Whether `ip` may be reached.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        if !self.guard || self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            Some(why) => Err(Refused::Blocked {
                host: host.to_string(),
                ip,
                why,
            }),
            None => Ok(()),
        }
    }

    /// Resolves `url`'s host and checks every address (for registering an endpoint: refuse a
    /// target at once rather than at its first delivery).
    pub async fn check_url(&self, url: &str) -> Result<(), Refused> {
        let url = Url::parse(url).map_err(|_| Refused::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::NotHttp);
        }
        let host = url.host_str().ok_or(Refused::NotHttp)?.to_string();
        for ip in self.resolve(&host).await? {
            self.check_ip(&host, ip)?;
        }
        Ok(())
    }

    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let addrs = tokio::net::lookup_host((bare, 0))
            .await
            .map_err(|_| Refused::Unresolvable(host.to_string()))?;
        let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        if ips.is_empty() {
            return Err(Refused::Unresolvable(host.to_string()));
        }
        Ok(ips)
    }
}

/// The HTTP client's resolver: resolves, then refuses the name if any address is refused.
#[derive(Debug, Clone)]
struct Guarded(Arc<Policy>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = policy.resolve(&host).await?;
            for ip in &ips {
                policy.check_ip(&host, *ip)?;
            }
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client deliveries are sent with: the guarded resolver, no redirects, no proxy from the
/// environment (a proxy would connect on our behalf, past the guard).
pub fn client(policy: Arc<Policy>, timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(Guarded(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("tollgate-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}
