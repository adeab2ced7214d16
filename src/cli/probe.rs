//! `tollgate health`: asks the running server's `/health` (or `/ready`), for container health
//! checks in images that carry no HTTP client. Exit 0 when it answers 200, 1 otherwise.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;

pub async fn run(config: Config, ready: bool, url: Option<String>) -> anyhow::Result<()> {
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let mut addr = config.listen_addr();
            // The server listens on every interface; it answers on loopback too.
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    let path = if ready { "/ready" } else { "/health" };
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(format!("{base}{path}"))
        .send()
        .await
        .with_context(|| format!("{base}{path} does not answer"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        bail!("{path} answered {status}");
    }
    Ok(())
}
