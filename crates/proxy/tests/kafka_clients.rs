//! The proxy's librdkafka clients under failure: never destroyed on the runtime (H3, M4), the
//! proxy's own credentials refused for a while (H2).

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::*;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `/healthcheck` probed from a plain thread every 50 ms: the slowest answer, and how many
/// probes took longer than `bound` (or failed).
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Duration, Vec<String>)>,
}

impl Prober {
    fn start(port: u16, bound: Duration) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut probes, mut slowest, mut late) = (0usize, Duration::ZERO, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let ok = probe(port, bound);
                let took = t0.elapsed();
                probes += 1;
                slowest = slowest.max(took);
                if !ok || took > bound {
                    late.push(format!("probe {probes}: ok={ok} after {took:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (probes, slowest, late)
        });
        Prober { stop, thread }
    }

    fn finish(self) -> (usize, Duration, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// One `GET /healthcheck` with a blocking socket; true when it answered 200 within `limit`
/// (a little more is allowed to measure how late it was).
fn probe(port: u16, limit: Duration) -> bool {
    let limit = limit * 5;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), limit) else { return false };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if s.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

/// A metric's value summed over the label sets that contain `labels` (0 when absent).
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0
}

async fn metrics_text(port: u16) -> String {
    let (status, _, body) = http(port, "GET", "/metrics", &[]).await.unwrap();
    assert_eq!(status, 200);
    body
}

/// Sends a consume socket's upgrade request, then resets the connection (RST) after `delay`:
/// the proxy may have prepared the socket's consumer by then, and its upgrade fails.
async fn failing_upgrade(port: u16, path: String, delay: Duration) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let _ = s.write_all(req.as_bytes()).await;
    tokio::time::sleep(delay).await;
    let _ = s.set_zero_linger();
    drop(s);
}

/// H3 / M4: no librdkafka client is ever destroyed on a tokio worker. 300 consume upgrades
/// that the client resets (each after its consumer may have been created) and 300 produce
/// sockets with refused `X-Kafka-Auth` credentials (each a per-user producer, probed and
/// dropped), in bursts: `/healthcheck` answers every probe within 1 s throughout (a liveness
/// bound), and the proxy counts no client destroyed on a tokio thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upgrades_and_refused_credentials_never_destroy_clients_on_the_runtime() {
    let env = sasl_env("PLAIN", "admin", "admin-secret");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = Proxy::start(&env).await;
    let topic = unique("h3");
    create_topic(&topic, 1).await;
    let port = proxy.port;
    let bound = Duration::from_secs(1);
    let prober = Prober::start(port, bound);

    // 300 failing consume upgrades, each its own group (a session slot each), 30 at a time.
    let run = unique("h3g");
    let t0 = Instant::now();
    futures::stream::iter(0..300u32)
        .map(|i| {
            let path = format!("/socket/out?clientId=c{i}&groupId={run}-{i}&topic={topic}");
            failing_upgrade(port, path, Duration::from_millis(u64::from(i % 10) * 15))
        })
        .buffer_unordered(30)
        .collect::<Vec<()>>()
        .await;
    println!("300 failing upgrades sent in {:?}", t0.elapsed());

    // 300 sockets with refused credentials (distinct passwords, so nothing is shared), 30 at a time.
    let t0 = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..300u32)
        .map(|i| {
            let url = proxy.url("/socket/in?clientId=alice&topic=acl-ok");
            async move {
                let mut req = url.into_client_request().unwrap();
                let creds = BASE64.encode(format!("alice:wrong-{i}"));
                req.headers_mut().insert("X-Kafka-Auth", creds.parse().unwrap());
                match tokio_tungstenite::connect_async(req).await {
                    Ok(_) => 101,
                    Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(30)
        .collect()
        .await;
    println!("300 refused credentials in {:?}", t0.elapsed());
    assert!(statuses.iter().all(|s| *s == 401), "every bad X-Kafka-Auth gets 401: {statuses:?}");

    // Let the clients made for those sockets be destroyed, then look.
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        let text = metrics_text(port).await;
        if metric(&text, "wsproxy_kafka_clients_closing", "") == 0.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (probes, slowest, late) = prober.finish();
    println!(
        "healthcheck: {probes} probes, slowest {slowest:?}; clients closed: {} consumers, {} producers; on the runtime: {}",
        metric(&text, "wsproxy_kafka_clients_closed_total", "kind=\"consumer\""),
        metric(&text, "wsproxy_kafka_clients_closed_total", "kind=\"producer\""),
        metric(&text, "wsproxy_kafka_clients_dropped_on_runtime_total", ""),
    );
    assert!(late.is_empty(), "{} of {probes} probes took over {bound:?} (or failed): {late:?}", late.len());
    assert_eq!(metric(&text, "wsproxy_kafka_clients_dropped_on_runtime_total", ""), 0.0, "{text}");
    assert!(metric(&text, "wsproxy_kafka_clients_closed_total", "kind=\"producer\"") >= 1.0);
    assert_eq!(metric(&text, "wsproxy_kafka_clients_closing", ""), 0.0, "every client was destroyed");

    // The proxy still serves sockets.
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=after&topic={topic}"))).await;
    send(&mut ws, record(None, "still alive", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
}

/// Deletes a SCRAM user and its ACLs when dropped (the broker is shared).
struct ScramUser(String);

impl ScramUser {
    fn create(name: &str, password: &str) -> ScramUser {
        kafka_tool(&["scram-user", name, password], "");
        ScramUser(name.to_owned())
    }
}

impl Drop for ScramUser {
    fn drop(&mut self) {
        let py = project_root().join(".venv/bin/python");
        let tool = project_root().join("tests/support/kafka_tool.py");
        for cmd in ["scram-delete", "acl-delete"] {
            let _ = std::process::Command::new(&py)
                .arg(&tool)
                .args([cmd, &self.0])
                .env("KAFKA_BOOTSTRAP", bootstrap())
                .output();
        }
    }
}

/// Resets every TCP connection of process `pid` to `port` (as a broker restart or a network
/// blip would): its clients must connect, and log in, again.
fn reset_connections(pid: u32, port: u16) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-tnpH", "state", "established", &format!("( dport = :{port} )")])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let mine: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(2)?.rsplit(':').next().map(str::to_owned))
        .collect();
    for local in &mine {
        let filter = format!("( sport = :{local} and dport = :{port} )");
        let status = std::process::Command::new("ss").args(["-K", "-tn", "state", "established", &filter]).output();
        assert!(status.is_ok_and(|s| s.status.success()), "ss -K failed");
    }
    mine.len()
}

async fn ready(port: u16) -> (u16, String) {
    let (status, _, body) = http(port, "GET", "/ready", &[]).await.unwrap();
    (status, body)
}

/// H2: Kafka refusing the proxy's own credentials is visible (`/ready` 503 naming it, the
/// `wsproxy_kafka_credentials_refused` gauge) and not sticky: once Kafka accepts them again,
/// `/ready` says 200 and produce sockets work, and stay open, again. The proxy's SCRAM user is
/// deleted (and its connections reset so that it logs in again), then created again.
#[tokio::test]
async fn h2_refused_proxy_credentials_are_visible_and_clear_once_accepted_again() {
    let name = unique("h2-user");
    let user = ScramUser::create(&name, "h2-secret");
    let mut env = sasl_env("SCRAM-SHA-512", &name, "h2-secret");
    env.push(("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = Proxy::start(&env).await;
    let topic = unique("h2");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=h2&topic={topic}"));
    let mut ws = connect(&url).await;
    send(&mut ws, record(None, "before", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    hang_up(ws).await;

    // Kafka stops accepting the proxy's credentials; its clients must log in again.
    kafka_tool(&["scram-delete", &name], "");
    assert!(reset_connections(proxy.pid(), 9093) > 0, "the proxy has connections to 9093");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let (status, body) = ready(proxy.port).await;
        if (status == 503 && body.contains("credentials")) || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refuses the proxy's credentials"), "/ready names the reason: {body}");
    let text = metrics_text(proxy.port).await;
    assert_eq!(metric(&text, "wsproxy_kafka_credentials_refused", "credentials=\"proxy\""), 1.0, "{text}");
    let refused_at = Instant::now();

    // Kafka accepts them again.
    kafka_tool(&["scram-user", &name, "h2-secret"], "");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ready(proxy.port).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/ready did not recover: {status} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("ready again {:?} after the user was restored", refused_at.elapsed());
    let text = metrics_text(proxy.port).await;
    assert_eq!(metric(&text, "wsproxy_kafka_credentials_refused", "credentials=\"proxy\""), 0.0, "{text}");

    // Produce sockets work again and stay open (several keep-alive checks).
    let mut ws = connect(&url).await;
    send(&mut ws, record(None, "after", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    send(&mut ws, record(None, "still open", None)).await;
    let answer = recv_json(&mut ws).await;
    assert_eq!(answer["offset"], 2, "{answer}");
    let values: Vec<_> = read_back(&topic, 3, "raw", "string").iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, ["before", "after", "still open"]);
    drop(user);
}
