//! The floor for `bench/gateway.sh`: a pass-through proxy that does nothing but forward — no
//! key check, no limits, no hold, no charge, no record — on the same HTTP stack as tollgate
//! (axum in, a pooled reqwest client out, answers streamed chunk by chunk). What tollgate
//! costs above this is what its checks and its billing cost.
//!
//!   cargo run --release --example floor_proxy -- 127.0.0.1:18097 http://127.0.0.1:18098

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;

#[derive(Clone)]
struct Floor {
    client: reqwest::Client,
    upstream: String,
}

async fn forward(
    State(floor): State<Floor>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StatusCode> {
    let url = format!("{}{}", floor.upstream, uri.path());
    let mut request = floor.client.post(url).body(body);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let upstream = request.send().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let chunks = futures_util::stream::unfold(upstream, |mut r| async move {
        match r.chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, reqwest::Error>(chunk), r)),
            Ok(None) => None,
            Err(e) => Some((Err(e), r)),
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18097".into());
    let upstream = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18098".into());
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()?;
    let app = Router::new().fallback(forward).with_state(Floor {
        client,
        upstream: upstream.trim_end_matches('/').to_string(),
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
