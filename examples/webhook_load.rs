//! Load for bench/webhooks.sh: POSTs `total` distinct Stripe events (signed as Stripe signs
//! them) to tollgate's webhook endpoint with `concurrency` requests in flight, then prints
//! requests/s and latency percentiles. Every answer must be 200.
//!
//!   cargo run --release --example webhook_load -- URL SECRET TOTAL CONCURRENCY

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, secret, total, concurrency] = args.as_slice() else {
        eprintln!("usage: webhook_load URL SECRET TOTAL CONCURRENCY");
        std::process::exit(2);
    };
    let total: usize = total.parse().unwrap();
    let concurrency: usize = concurrency.parse().unwrap();
    let run = std::process::id();
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, secret) =
            (client.clone(), next.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let event = json!({ "id": format!("evt_{run}_{i}"), "object": "event",
                    "type": "customer.subscription.updated", "created": now, "livemode": false,
                    "data": { "object": { "id": format!("sub_{}", i % 1000), "object": "subscription",
                        "customer": format!("cus_{}", i % 1000), "status": "active",
                        "cancel_at_period_end": false,
                        "items": { "data": [{ "price": { "id": "price_pro" },
                            "current_period_start": now - 86_400, "current_period_end": now + 86_400 * 29 }] },
                        "metadata": { "tollgate_user": format!("user{}", i % 1000) } } } });
                let body = serde_json::to_vec(&event).unwrap();
                let sig = tollgate::billing::stripe::sign(&secret, now, &body);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("stripe-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .expect("tollgate answers");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let p =
        |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{total} events, concurrency {concurrency}: {:.0} stored/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total as f64 / elapsed.as_secs_f64(),
        p(0.50),
        p(0.99),
        p(1.0)
    );
}
