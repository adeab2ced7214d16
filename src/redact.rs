//! Connection URLs made safe to log or print. Below config and telemetry, which both need it.

/// A connection URL with its password replaced by `****`, safe to log or print.
/// Text that does not parse as a URL is hidden whole: it may be a secret written wrongly.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("****"));
            }
            url.to_string()
        }
        Err(_) => "(unparsable URL hidden)".to_string(),
    }
}
