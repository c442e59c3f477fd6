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

fn sasl_env(mechanism: &'static str, user: &str, pass: &str) -> Vec<(&'static str, String)> {
    let module = if mechanism == "PLAIN" { "plain.PlainLoginModule" } else { "scram.ScramLoginModule" };
    vec![
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "127.0.0.1:9093".to_owned()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("WSPROXY_KAFKA_SASL_MECHANISM", mechanism.to_owned()),
        (
            "WSPROXY_KAFKA_SASL_JAAS_CFG",
            format!("org.apache.kafka.common.security.{module} required username=\"{user}\" password=\"{pass}\";"),
        ),
    ]
}

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
        .sum()
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
