//! Helpers of the admin API tests (`admin*.rs`): plain HTTP calls to the admin listener,
//! proxies with the admin API (and dynamic configs) on free ports, and the reference's
//! static limits.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{free_port, http, Proxy};

/// (status, content-type, body) of one HTTP request with an optional JSON body.
pub async fn call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("admin listener");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let ct = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, ct, body.to_owned())
}

pub async fn get_json(port: u16, path: &str) -> Value {
    let (status, ct, body) = call(port, "GET", path, None, &[]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

/// A proxy with its admin API on a free port; returns it with that port.
pub async fn admin_proxy(env: &[(&str, &str)]) -> (Proxy, u16) {
    let admin = free_port();
    let admin_s = admin.to_string();
    let mut all = vec![
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", admin_s.as_str()),
        ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
    ];
    all.extend_from_slice(env);
    let proxy = Proxy::start(&all).await;
    wait_ready(&proxy).await;
    (proxy, admin)
}

/// A node with dynamic configs on `topic`.
pub async fn dynamic_proxy(topic: &str, env: &[(&str, &str)]) -> (Proxy, u16) {
    let mut all =
        vec![("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"), ("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME", topic)];
    all.extend_from_slice(env);
    admin_proxy(&all).await
}

pub async fn wait_ready(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _, _)) = http(proxy.port, "GET", "/ready", &[]).await {
            return;
        }
        assert!(Instant::now() < deadline, "proxy not ready in 60 s:\n{}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET path` until `done` holds (for reads on another node: eventually consistent).
pub async fn eventually(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = call(port, "GET", path, None, &[]).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "GET {path} still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const STATIC_CONSUMERS: &str = r#"[{"group-id":"dummy","messages-per-second":10,"max-connections":2}]"#;
pub const STATIC_PRODUCERS: &str = r#"[{"producer-id":"limit-test-producer-1","messages-per-second":10,"max-connections":1},{"producer-id":"limit-test-producer-2","messages-per-second":10,"max-connections":2}]"#;
pub const INVALID_CONSUMER: &str = "{\n  \"message\" : \"Invalid JSON for consumer config.\"\n}";
pub const INVALID_PRODUCER: &str = "{\n  \"message\" : \"Invalid JSON for producer config.\"\n}";

pub fn static_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", STATIC_CONSUMERS),
        ("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", STATIC_PRODUCERS),
    ]
}
