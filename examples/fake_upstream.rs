//! A fast local stand-in for OpenAI's Chat Completions API, for `bench/gateway.sh`: fixed
//! answers in the real wire format (a `chat.completion`, or `chat.completion.chunk` SSE events
//! with the usage chunk when `stream_options.include_usage` is true, then `[DONE]`), no delays.
//!
//!   cargo run --release --example fake_upstream -- 127.0.0.1:18098

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

const PLAIN: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

fn stream_body(include_usage: bool) -> String {
    let words = [
        "Hello", "!", " How", " can", " I", " help", " you", " today", "?",
    ];
    let usage = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n"
        )
    };
    let mut out = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for w in words {
        out += &chunk(&format!("{{\"content\":\"{w}\"}}"), "null");
    }
    out += &chunk("{}", "\"stop\"");
    if include_usage {
        out += "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9,\"total_tokens\":18}}\n\n";
    }
    out + "data: [DONE]\n\n"
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18098".into());
    let with_usage: &'static str = Box::leak(stream_body(true).into_boxed_str());
    let without: &'static str = Box::leak(stream_body(false).into_boxed_str());
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| async move {
            let compact: Vec<u8> = body.iter().copied().filter(|b| *b != b' ').collect();
            if contains(&compact, br#""stream":true"#) {
                let text = if contains(&compact, br#""include_usage":true"#) {
                    with_usage
                } else {
                    without
                };
                ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response()
            } else {
                ([(header::CONTENT_TYPE, "application/json")], PLAIN).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
