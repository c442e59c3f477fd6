//! End-to-end test harness: the real broker from `scripts/kafka`, real proxy processes, real
//! WebSocket clients, and an independent Kafka client (Python confluent-kafka) to check what
//! landed in Kafka.
//!
//! Every test makes its own topics (unique names), so tests run in parallel and again without
//! cleanup.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod admin;
pub mod avro;
pub mod browser;
pub mod oidc;
pub mod resume;

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The broker's bootstrap address (`KAFKA_BOOTSTRAP`, default the local `scripts/kafka`).
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("project root")
}

/// Panics with a clear message when no broker answers.
pub fn require_kafka() {
    let boot = bootstrap();
    let consumer: rdkafka::consumer::BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &boot).create().expect("client");
    if let Err(e) = consumer.fetch_metadata(None, Duration::from_secs(10)) {
        panic!("no Kafka broker answers at {boot} ({e}): start it with scripts/kafka start");
    }
}

/// A topic name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000;
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Creates a topic and waits until it is usable.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]).await
}

pub async fn create_topic_with(name: &str, partitions: i32, config: &[(&str, &str)]) {
    require_kafka();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = admin.create_topics(&[topic], &opts).await.expect("create_topics");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    // CreateTopics returns before every broker's metadata cache knows the topic.
    let consumer: rdkafka::consumer::BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("client");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let md = consumer.fetch_metadata(Some(name), Duration::from_secs(5));
        if md.is_ok_and(|m| {
            m.topics().iter().any(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear in the metadata");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the independent Kafka client (`tests/support/kafka_tool.py`) and returns its stdout.
pub fn kafka_tool(args: &[&str], stdin: &str) -> String {
    kafka_tool_with(args, stdin, &[])
}

/// Every record of `topic` a `read_committed` consumer sees within `wait` (values as strings).
pub fn read_committed(topic: &str, wait: Duration) -> Vec<Value> {
    let secs = wait.as_secs().max(1).to_string();
    kafka_tool_with(
        &["consume", topic, "100000000", &secs, "string", "string"],
        "",
        &[("KAFKA_TOOL_ISOLATION", "read_committed")],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// [`kafka_tool`] with extra environment variables.
pub fn kafka_tool_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> String {
    let root = project_root();
    let python =
        std::env::var("WSPROXY_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root.join(".venv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/test (it creates the Python venv)", python.display());
    let mut child = Command::new(&python)
        .arg(root.join("tests/support/kafka_tool.py"))
        .args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kafka_tool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reads `n` records of `topic` with the independent client, decoded with the given formats.
pub fn read_back(topic: &str, n: usize, key_format: &str, value_format: &str) -> Vec<Value> {
    kafka_tool(&["consume", topic, &n.to_string(), "30", key_format, value_format], "")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes records with the independent client (see `kafka_tool.py produce`).
pub fn write_with_tool(topic: &str, records: &[Value]) {
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    kafka_tool(&["produce", topic], &input);
}

/// A proxy process on a free port; killed when dropped.
pub struct Proxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// The proxy's command against the test broker, listening on 127.0.0.1:`port`, its stdout and
/// stderr going to a fresh log file (returned); `TEST_PROXY_LOG` sets `RUST_LOG` (default info).
pub fn proxy_command(port: u16) -> (Command, PathBuf) {
    let log = std::env::temp_dir().join(format!("wsproxy-test-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
        .env("WSPROXY_PORT", port.to_string())
        .env("WSPROXY_BIND_INTERFACE", "127.0.0.1")
        .env("RUST_LOG", std::env::var("TEST_PROXY_LOG").unwrap_or_else(|_| "info".to_owned()))
        .env("WSPROXY_LOG_ANSI_OFF", "true")
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    (cmd, log)
}

impl Proxy {
    /// Starts the proxy against the test broker with extra `WSPROXY_*` variables.
    ///
    /// The port is picked free, then bound by the proxy: in between, the kernel may hand it to
    /// one of the suite's many outgoing connections. A proxy that exits at start because its
    /// port is taken is started again on another port (up to five times).
    pub async fn start(env: &[(&str, &str)]) -> Proxy {
        require_kafka();
        let mut attempts = 0;
        loop {
            let port = free_port();
            let (mut cmd, log) = proxy_command(port);
            // Server ids must be unique per node: tests run many proxies at once.
            cmd.env("WSPROXY_SERVER_ID", unique("node"))
                // Each proxy its own session state, so that tests reusing a clientId (and proxies
                // killed with sockets open) do not hold slots for each other. Multi-node tests pass
                // a shared topic. scripts/test deletes these topics before a run.
                .env("WSPROXY_SESSION_STATE_TOPIC", unique("wsproxy-test-sessions"));
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn proxy");
            let mut proxy = Proxy { child, port, log };
            match proxy.wait_healthy().await {
                Ok(()) => return proxy,
                Err(log) if attempts < 4 && log.contains("Address already in use") => attempts += 1,
                Err(log) => panic!("proxy exited during start:\n{log}"),
            }
        }
    }

    /// Waits until the proxy answers; `Err` with its log if it exited first.
    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exit status {status}\n{}", self.log_text()));
            }
            // Any answer means it listens (with auth on, /healthcheck answers 401).
            if let Ok((200 | 401, _, _)) = http(self.port, "GET", "/healthcheck", &[]).await {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "proxy did not start in 30 s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory of the proxy process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Sends a signal and waits for the exit status (None on timeout).
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- proxy log ({}) ---\n{}", self.log.display(), self.log_text());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 request over a real socket: (status, headers lower-cased, body).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<(String, String)>, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body.to_owned()))
}

/// Opens a WebSocket; panics with the HTTP answer if the upgrade is refused.
pub async fn connect(url: &str) -> Ws {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            panic!("upgrade of {url} refused: {} {body}", resp.status())
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

/// No extra request headers, for [`connect_with`] and [`open_with`].
pub const NO_HEADERS: &[(&str, &str)] = &[];

/// Opens a WebSocket with extra request headers; the refusal as (status, headers, body).
pub async fn open_with<V: AsRef<str>>(
    url: &str,
    headers: &[(&str, V)],
) -> Result<Ws, (u16, Vec<(String, String)>, String)> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut()
            .insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.as_ref().parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((resp.status().as_u16(), headers, body))
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

/// Opens a WebSocket with extra request headers; the refusal as (status, body).
pub async fn connect_with<V: AsRef<str>>(url: &str, headers: &[(&str, V)]) -> Result<Ws, (u16, String)> {
    open_with(url, headers).await.map_err(|(status, _, body)| (status, body))
}

/// Tries to open a WebSocket and returns the refusal: (status, content-type, body).
pub async fn refused(url: &str) -> (u16, String, String) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("upgrade of {url} was accepted, expected a refusal"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (resp.status().as_u16(), ct, body)
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

/// Closes a WebSocket and waits for the server's close frame (the end of the handshake): from
/// then on the socket's session slot counts as leaving, so a reconnect is not refused.
pub async fn hang_up(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

pub async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::Text(text.into().into())).await.expect("send");
}

/// The next text frame (pings and pongs skipped); panics on close or timeout.
pub async fn recv_text(ws: &mut Ws, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within {timeout:?}"));
        match msg {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn recv_json(ws: &mut Ws) -> Value {
    let t = recv_text(ws, Duration::from_secs(30)).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t}"))
}

/// Waits for a text frame for at most `timeout`; `None` if none came.
pub async fn maybe_json(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// A produce frame with a string key and value.
pub fn record(key: Option<&str>, value: &str, id: Option<&str>) -> String {
    let mut v = serde_json::json!({"value": {"value": value, "format": "string"}});
    if let Some(k) = key {
        v["key"] = serde_json::json!({"value": k, "format": "string"});
    }
    if let Some(id) = id {
        v["messageId"] = Value::from(id);
    }
    v.to_string()
}

/// The proxy's own identity on the broker's SASL_PLAINTEXT listener (9093): `PLAIN` or a
/// `SCRAM-SHA-*` mechanism, in the reference's JAAS form.
pub fn sasl_env(mechanism: &'static str, user: &str, pass: &str) -> Vec<(&'static str, String)> {
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

/// Records in one consume frame: an array (`batchSize`) or a single record.
pub fn records_in(frame: &Value) -> usize {
    match frame.as_array() {
        Some(items) => items.len(),
        None => {
            assert!(frame["offset"].is_i64(), "a record frame: {frame}");
            1
        }
    }
}

/// Reads a consume socket for `span`; returns (records, largest frame in records).
pub async fn consumed_during(ws: &mut Ws, span: Duration) -> (usize, usize) {
    let end = tokio::time::Instant::now() + span;
    let (mut records, mut largest) = (0, 0);
    while let Some(frame) = maybe_json(ws, end.saturating_duration_since(tokio::time::Instant::now())).await {
        records += records_in(&frame);
        largest = largest.max(records_in(&frame));
    }
    (records, largest)
}

/// Python's websockets sends one record (`messageId` "t1", value "over wss") over `url`
/// (`wss://`), trusting only the CA certificates in `ca_pem`; stdout holds the proxy's answer.
pub fn produce_over_wss(url: &str, ca_pem: &str) -> std::process::Output {
    let script = r#"
import asyncio, ssl, sys, websockets
ctx = ssl.create_default_context(cafile=sys.argv[2])
async def main():
    async with websockets.connect(sys.argv[1], ssl=ctx) as s:
        await s.send('{"value":{"value":"over wss","format":"string"},"messageId":"t1"}')
        print(await s.recv())
asyncio.run(main())
"#;
    Command::new(project_root().join(".venv/bin/python")).args(["-c", script, url, ca_pem]).output().unwrap()
}
