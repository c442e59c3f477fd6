//! The browser console (`GET /console`, issue 20): its headers and origin rule over plain HTTP,
//! and the page itself driven in a real headless Chromium (`tests/support/console_e2e.py`,
//! Selenium) against the proxy and the real broker, checked with the independent Kafka client.
//!
//! The OpenID Connect variant (the page's token field) is in `oidc.rs`, next to its provider.
//! Without Chromium and its driver (`apt-get install chromium chromium-driver`, which
//! `scripts/test` does when it can) the browser test is skipped with a warning.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{chromium, drive};
use common::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn console_is_off_by_default() {
    let proxy = Proxy::start(&[]).await;
    let (status, _, _) = http(proxy.port, "GET", "/console", &[]).await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn console_is_served_with_a_self_only_policy_and_nosniff() {
    let proxy = Proxy::start(&[("WSPROXY_CONSOLE_ENABLED", "true")]).await;
    let port = proxy.port;
    let mut size = 0;
    for (path, kind) in
        [("/console", "text/html"), ("/console/app.js", "text/javascript"), ("/console/app.css", "text/css")]
    {
        let (status, headers, body) = http(port, "GET", path, &[]).await.unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(header(&headers, "content-type").starts_with(kind), "{path}: {headers:?}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "{path}");
        let csp = header(&headers, "content-security-policy");
        assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"), "{path}: {csp}");
        assert!(csp.contains(&format!("connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port};")), "{csp}");
        // Nothing outside the page's origin: no absolute URL a browser would fetch.
        assert!(!body.contains("src=\"http") && !body.contains("href=\"http") && !body.contains("url(http"), "{path}");
        size += body.len();
    }
    eprintln!("console assets: {size} bytes");
}

/// With `WSPROXY_ALLOWED_ORIGINS` set, the console's own origin (the proxy's host) may open
/// sockets when the console is on, and only then; other origins stay refused.
#[tokio::test]
async fn the_consoles_own_origin_may_open_sockets_when_the_console_is_on() {
    let topic = unique("console-origin");
    create_topic(&topic, 1).await;
    for enabled in [true, false] {
        let proxy = Proxy::start(&[
            ("WSPROXY_ALLOWED_ORIGINS", "https://app.example.com"),
            ("WSPROXY_CONSOLE_ENABLED", if enabled { "true" } else { "false" }),
        ])
        .await;
        let url = proxy.url(&format!("/socket/in?clientId=console-origin&topic={topic}"));
        let own = format!("http://127.0.0.1:{}", proxy.port);
        let status = |origin: String| {
            let mut req = url.as_str().into_client_request().unwrap();
            req.headers_mut().insert("Origin", origin.parse().unwrap());
            async move {
                match tokio_tungstenite::connect_async(req).await {
                    Ok(_) => 101,
                    Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
                    Err(e) => panic!("{e}"),
                }
            }
        };
        assert_eq!(status(own).await, if enabled { 101 } else { 403 }, "console enabled: {enabled}");
        assert_eq!(status("http://evil.example".to_owned()).await, 403);
        assert_eq!(status("https://app.example.com".to_owned()).await, 101);
    }
}

/// Issue 20, as a person would use it: open /console, produce three records through the form,
/// a bad one (error frame) and `<img src=x onerror=alert(1)>` (shown as text, no script ran);
/// subscribe in a second tab with autoCommit off, see them in the table, commit one with its
/// button; pause and resume; 3,000 more records keep the table at 500 rows; no request outside
/// the page's origin; the Learn section's Python snippet, run as copied, produces and consumes. The proxy refuses other
/// origins (`WSPROXY_ALLOWED_ORIGINS`), so the page's sockets pass only as the console's own.
/// Saves `target/console.png` (docs/src/console.png is a copy of one run).
#[tokio::test]
async fn console_in_headless_chromium_produces_consumes_and_commits() {
    let Some(browser) = chromium() else { return };
    let topic = unique("console");
    let group = unique("console-group");
    create_topic(&topic, 1).await;
    let proxy =
        Proxy::start(&[("WSPROXY_CONSOLE_ENABLED", "true"), ("WSPROXY_ALLOWED_ORIGINS", "https://app.example.com")])
            .await;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let shot = project_root().join("target/console.png");
    let lines = drive(&browser, &[&base, &topic, &group, shot.to_str().unwrap()]);
    assert_eq!(lines.last().unwrap()["ok"], true);
    assert!(Path::new(&shot).metadata().unwrap().len() > 10_000, "the screenshot is missing or empty");

    // The independent client: the records the form produced, and the group's offset at 2 (the
    // record at offset 1 committed; closing the browser committed nothing more).
    let values: Vec<Value> = read_back(&topic, 5, "string", "string").iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, ["v1", "v2", "v3", "<img src=x onerror=alert(1)>", "produced while paused"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
        assert_eq!(committed["0"], 2, "the group's offset moved past the committed record");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Basic authentication: the browser's own credentials (what its prompt collects, here in the
/// URL) open the page, and it sends them on the console's sockets too.
#[tokio::test]
async fn console_in_headless_chromium_works_with_basic_auth() {
    let Some(browser) = chromium() else { return };
    let topic = unique("console-basic");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[
        ("WSPROXY_CONSOLE_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "Console"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "console-user"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "console-secret"),
    ])
    .await;
    let (status, headers, _) = http(proxy.port, "GET", "/console", &[]).await.unwrap();
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").starts_with("Basic"), "{headers:?}");
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let lines = drive(
        &browser,
        &[&base, &topic, &unique("console-basic-group"), "unused.png", "--basic", "console-user:console-secret"],
    );
    assert_eq!(lines.last().unwrap()["ok"], true);
    assert_eq!(read_back(&topic, 1, "string", "string")[0]["value"], "through basic auth");
}

/// Starts `--demo` (no broker, no auth) with extra variables; returns the child and the lines
/// it printed up to the console's URL.
async fn demo(env: &[(&str, &str)]) -> (std::process::Child, u16, String) {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .args(["--demo", "--port", &port.to_string()])
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("/console") {
                let _ = tx.send(printed.clone());
            }
        }
        let _ = tx.send(printed);
    });
    let printed = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the demo printed its console URL within 60 s");
    (child, port, printed)
}

/// A non-loopback address of this machine, if it has one (no packet is sent).
fn outside_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// Issue 20: `--demo` (no authentication) listens on 127.0.0.1 unless `WSPROXY_BIND_INTERFACE`
/// says otherwise, prints the console's URL and serves the console there.
#[tokio::test]
async fn demo_binds_loopback_and_prints_the_console_url() {
    let (mut child, port, printed) = demo(&[]).await;
    assert!(printed.contains(&format!("Open the console in a browser: http://127.0.0.1:{port}/console")), "{printed}");
    assert!(printed.contains(&format!("Listening on 127.0.0.1:{port} only")), "{printed}");
    let (status, headers, _) = http(port, "GET", "/console", &[]).await.unwrap();
    assert_eq!((status, header(&headers, "x-content-type-options")), (200, "nosniff"));
    if let Some(ip) = outside_address() {
        let reached = tokio::net::TcpStream::connect((ip, port)).await;
        assert!(reached.is_err(), "the demo answers on {ip}:{port}, outside the machine");
    }
    let _ = child.kill();
    let _ = child.wait();

    let (mut child, port, printed) = demo(&[("WSPROXY_BIND_INTERFACE", "0.0.0.0")]).await;
    assert!(printed.contains(&format!("WARNING: listening on 0.0.0.0:{port}")), "{printed}");
    assert!(printed.contains(&format!("http://127.0.0.1:{port}/console")), "{printed}");
    let _ = child.kill();
    let _ = child.wait();
}
