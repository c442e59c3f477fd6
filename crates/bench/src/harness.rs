//! What every scenario needs: the proxy process, topics, a direct librdkafka producer and
//! consumer configured like the proxy's, WebSocket clients, and Kafka's own perf tools.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub const BOOTSTRAP: &str = "127.0.0.1:9092";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("project root")
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000;
    format!("bench-{prefix}-{}-{nanos}", std::process::id())
}

/// A proxy process on a free port; killed when dropped.
pub struct Proxy {
    child: Child,
    pub port: u16,
}

impl Proxy {
    pub async fn start(bin: &Path, env: &[(&str, &str)]) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(bin);
        cmd.env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", BOOTSTRAP)
            .env("WSPROXY_PORT", port.to_string())
            .env("WSPROXY_BIND_INTERFACE", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let proxy = Proxy { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        proxy
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &opts).await.unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let md = c.fetch_metadata(Some(name), Duration::from_secs(5));
        if md.is_ok_and(|m| {
            m.topics().iter().any(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A producer with the proxy's own settings (see `crates/proxy/src/kafka.rs`).
pub fn direct_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .expect("producer")
}

/// A consumer with the proxy's socket-consumer settings, in a fresh group.
pub fn direct_consumer(topic: &str) -> rdkafka::consumer::StreamConsumer {
    let c: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", unique("direct"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "2048")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    c
}

/// Sends records with the producer as fast as it takes them; returns when all are acknowledged.
pub async fn produce_direct(p: &FutureProducer, topic: &str, payload: &[u8], n: usize) -> Duration {
    let t0 = Instant::now();
    let mut futs = Vec::with_capacity(n);
    for _ in 0..n {
        loop {
            match p.send_result(FutureRecord::<(), [u8]>::to(topic).payload(payload)) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    for f in futs {
        f.await.expect("delivery").expect("delivered");
    }
    t0.elapsed()
}

/// Fills a topic with `n` records of `size` bytes.
pub async fn fill(topic: &str, n: usize, size: usize) {
    let p = direct_producer();
    produce_direct(&p, topic, &vec![b'x'; size], n).await;
    p.flush(Duration::from_secs(30)).unwrap();
}

pub async fn connect(url: &str) -> Ws {
    // Like any latency-aware client, disable Nagle's algorithm.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ws
}

/// A produce frame holding `size` ASCII bytes.
pub fn frame(size: usize) -> String {
    format!("{{\"value\":{{\"value\":\"{}\",\"format\":\"string\"}}}}", "x".repeat(size))
}

/// Pipelines `n` frames on one socket and waits for every result; returns the elapsed time.
pub async fn produce_via_socket(ws: Ws, text: &str, n: usize) -> Duration {
    let (mut tx, mut rx) = ws.split();
    let t0 = Instant::now();
    let text = text.to_owned();
    let sender = tokio::spawn(async move {
        for _ in 0..n {
            tx.feed(Message::Text(text.clone().into())).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    let mut got = 0;
    while got < n {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => {
                assert!(!t.starts_with("{\"error\""), "the proxy refused a record: {t}");
                got += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended after {got} results: {other:?}"),
        }
    }
    let elapsed = t0.elapsed();
    let mut tx = sender.await.unwrap();
    let _ = tx.close().await;
    elapsed
}

/// Reads `n` records from a consume socket; time from the first record to the last.
pub async fn consume_via_socket(ws: &mut Ws, n: usize, batched: bool) -> Duration {
    let mut got = 0;
    let mut first = None;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("records keep coming") {
            Some(Ok(Message::Text(t))) => {
                first.get_or_insert_with(Instant::now);
                got += if batched {
                    serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&t).map(|v| v.len()).unwrap_or(1)
                } else {
                    1
                };
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended after {got} records: {other:?}"),
        }
    }
    first.map(|f| f.elapsed()).unwrap_or_default()
}

/// Runs one of Kafka's Java tools and returns its stdout.
pub fn kafka_java_tool(main: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(root().join("scripts/kafka")).arg("classpath").output().ok()?;
    let classpath = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    if classpath.is_empty() {
        return None;
    }
    let run_root = root().join(".cache/kafka/run/tools-log4j2.properties");
    let out = Command::new("java")
        .arg("-Xmx512m")
        .arg(format!("-Dlog4j2.configurationFile={}", run_root.display()))
        .arg("-cp")
        .arg(classpath)
        .arg(main)
        .args(args)
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The median and spread (min, max) of repeated measurements.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(mut v: Vec<f64>) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Stat { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }
}

/// The q-quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}
