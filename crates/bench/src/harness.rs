//! What every scenario needs: the proxy processes (ours and, with `--with-scala`, the reference
//! Scala proxy), their CPU time and memory, topics, a direct librdkafka producer and consumer
//! configured like the proxy's, and Kafka's own perf tools. Every wait here has a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BOOTSTRAP: &str = "127.0.0.1:9092";

/// A failed measurement: the reason, shown in the report (the figure becomes JSON `null`).
pub type Outcome<T> = Result<T, String>;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("project root")
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000;
    format!("bench-{prefix}-{}-{nanos}", std::process::id())
}

/// Awaits `fut` for at most `limit`; a miss is an error naming `what`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> Outcome<T> {
    tokio::time::timeout(limit, fut).await.map_err(|_| format!("{what}: no answer within {} s", limit.as_secs()))
}

/// Which proxy a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Scala,
}

/// A proxy to measure: its kind and the program that starts it.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub program: PathBuf,
}

impl Target {
    /// The row label.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Ours => "proxy",
            Kind::Scala => "Scala proxy",
        }
    }

    /// Records for this proxy: the Scala proxy gets `1/div` of ours (it is ~30× slower; the
    /// figures are per record or per second, so they compare).
    pub fn records(&self, n: usize, div: usize) -> usize {
        match self.kind {
            Kind::Ours => n,
            Kind::Scala => (n / div.max(1)).max(100),
        }
    }
}

/// A proxy process on a free port; killed when dropped.
pub struct Proxy {
    child: Child,
    log: PathBuf,
    pub port: u16,
    pub kind: Kind,
}

impl Proxy {
    pub async fn start(target: &Target, env: &[(&str, &str)]) -> Outcome<Proxy> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("wsproxy-bench-{}-{port}.log", std::process::id()));
        let mut cmd = Command::new(&target.program);
        cmd.env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", BOOTSTRAP)
            .env("WSPROXY_PORT", port.to_string())
            .env("WSPROXY_BIND_INTERFACE", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        let f = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        cmd.stdout(f.try_clone().map_err(|e| e.to_string())?).stderr(f);
        let limit = match target.kind {
            Kind::Ours => Duration::from_secs(60),
            Kind::Scala => {
                // Its own session topic and server id: both proxies default to node-1 and the
                // same topic on a shared broker.
                cmd.env(
                    "WSPROXY_SESSION_STATE_TOPIC",
                    format!("_wsproxy.bench-scala-{}.session.state", std::process::id()),
                )
                .env("WSPROXY_SERVER_ID", "bench-scala")
                .env("WSPROXY_ADMIN_ENDPOINT_ENABLED", "false");
                Duration::from_secs(120)
            }
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", target.program.display()))?;
        let mut proxy = Proxy { child, log: log.clone(), port, kind: target.kind };
        let deadline = Instant::now() + limit;
        loop {
            if http_status(port, "/healthcheck").await == Some(200) {
                return Ok(proxy);
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                return Err(format!("{} exited at start ({status}){}", target.name(), log_tail(&log)));
            }
            if Instant::now() > deadline {
                return Err(format!("{} not healthy within {} s{}", target.name(), limit.as_secs(), log_tail(&log)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// User+system CPU time of the whole process so far, in microseconds.
    pub fn cpu_us(&self) -> f64 {
        cpu_us(&self.child.id().to_string())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; log: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / "))
    }
}

/// The HTTP status of `GET path` on 127.0.0.1:port, or None (2 s deadline).
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).await.ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), ask).await.ok().flatten()
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

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ).
fn clock_ticks() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User+system CPU time of process `pid` ("self" for the bench) in microseconds, from
/// `/proc/PID/stat` (utime and stime, fields 14 and 15; threads that ended are included).
pub fn cpu_us(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    parse_stat_ticks(&stat).map_or(f64::NAN, |t| t as f64 * 1e6 / clock_ticks())
}

/// utime + stime of a `/proc/PID/stat` line (the command name may hold spaces and parens).
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ")" field 3 (state) is index 0, so field N is index N - 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub async fn create_topic(name: &str, partitions: i32) -> Outcome<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = within(
        Duration::from_secs(60),
        "create topic",
        admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &opts),
    )
    .await?
    .map_err(|e| e.to_string())?;
    for r in results {
        r.map_err(|(t, e)| format!("create {t}: {e}"))?;
    }
    CREATED.lock().expect("topic list").push(name.to_owned());
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let md = c.fetch_metadata(Some(name), Duration::from_secs(5));
        if md.is_ok_and(|m| {
            m.topics().iter().any(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
        }) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("topic {name} did not appear within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Topics created since the last [`drop_topics`].
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Deletes the topics created since the last call (the scenario's), so that every scenario of
/// a run, and every run, meets the broker holding the same partitions: a broker that keeps
/// every bench topic grows by hundreds of partitions and gigabytes per run and slows down
/// (measured: 6,776 partitions and 15 GB after a few runs and test suites).
pub async fn drop_topics() {
    let names = std::mem::take(&mut *CREATED.lock().expect("topic list"));
    delete_topics(&names).await;
    settle_deletions(&names).await;
}

/// Waits (at most 60 s) until the broker of `scripts/kafka` has removed the files of the
/// deleted topics `names` (a partition's directory `<topic>-<n>`, renamed `…-delete` once the
/// broker applies the deletion, which may be after the deletion's answer; it removes them at
/// once, `log.segment.delete.delay.ms=0`), then writes dirty pages out (`sync`, at most 60 s):
/// gigabytes of deleted or unwritten logs otherwise stall the disk, and the broker, in the
/// middle of the next scenario (measured: one-second stalls of every client's
/// acknowledgements a minute after a scenario's topics went).
async fn settle_deletions(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let data = root().join(".cache/kafka/run/data");
    let prefixes: Vec<String> = names.iter().map(|n| format!("{n}-")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let pending = std::fs::read_dir(&data)
            .map(|d| {
                d.flatten().any(|e| {
                    let f = e.file_name();
                    let f = f.to_string_lossy();
                    prefixes.iter().any(|p| f.starts_with(p.as_str()))
                })
            })
            .unwrap_or(false);
        if !pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = within(Duration::from_secs(60), "sync", tokio::process::Command::new("sync").status()).await;
}

/// Deletes every topic an earlier bench left (named `bench-…`, see [`unique`]); returns how
/// many.
pub async fn drop_leftover_topics() -> usize {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().expect("consumer");
    let Ok(md) = c.fetch_metadata(None, Duration::from_secs(30)) else { return 0 };
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with("bench-") && !made_by_a_live_bench(n))
        .collect();
    delete_topics(&names).await;
    settle_deletions(&names).await;
    names.len()
}

/// Whether topic `name` ([`unique`]: `bench-<what>-<pid>-<nanos>`) belongs to a bench process
/// still running (another `--only` run on the same broker keeps its topics).
fn made_by_a_live_bench(name: &str) -> bool {
    let Some(pid) = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else { return false };
    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

/// Partitions the broker holds (every topic's).
pub fn broker_partitions() -> Option<usize> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create().ok()?;
    let md = c.fetch_metadata(None, Duration::from_secs(30)).ok()?;
    Some(md.topics().iter().map(|t| t.partitions().len()).sum())
}

/// Deletes `names`, 100 per request; a failure is printed, not fatal (the figures stand).
async fn delete_topics(names: &[String]) {
    let Ok(admin) =
        ClientConfig::new().set("bootstrap.servers", BOOTSTRAP).create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for chunk in names.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        match within(Duration::from_secs(120), "delete topics", admin.delete_topics(&refs, &opts)).await {
            Ok(Ok(results)) => {
                for (t, e) in results.into_iter().filter_map(Result::err) {
                    eprintln!("   could not delete topic {t}: {e}");
                }
            }
            Ok(Err(e)) => eprintln!("   could not delete {} topics: {e}", refs.len()),
            Err(e) => eprintln!("   {e}"),
        }
    }
}

/// A producer with the proxy's own settings (see `crates/proxy/src/kafka`).
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
        // The proxy's own prefetch settings: WSPROXY_CONSUMER_QUEUED_MAX_KBYTES's default
        // (`config/env_vars.rs`) and FETCH_QUEUE_BACKOFF_MS (`kafka/consumer.rs`).
        .set("queued.max.messages.kbytes", "512")
        .set("fetch.queue.backoff.ms", "2")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    c
}

/// Sends records with the producer as fast as it takes them; returns when all are acknowledged
/// (each acknowledgement within 60 s).
pub async fn produce_direct(p: &FutureProducer, topic: &str, payload: &[u8], n: usize) -> Outcome<Duration> {
    let t0 = Instant::now();
    let mut futs = Vec::with_capacity(n);
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match p.send_result(FutureRecord::<(), [u8]>::to(topic).payload(payload)) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(format!("direct produce: {e}")),
            }
        }
    }
    for f in futs {
        within(Duration::from_secs(60), "direct delivery", f)
            .await?
            .map_err(|_| "delivery future dropped".to_owned())?
            .map_err(|(e, _)| format!("direct delivery: {e}"))?;
    }
    Ok(t0.elapsed())
}

/// Fills a topic with `n` records of `size` bytes.
pub async fn fill(topic: &str, n: usize, size: usize) -> Outcome<()> {
    let p = direct_producer();
    produce_direct(&p, topic, &vec![b'x'; size], n).await?;
    p.flush(Duration::from_secs(30)).map_err(|e| format!("flush: {e}"))
}

/// Runs one of Kafka's Java tools (at most 5 minutes) and returns its stdout.
pub async fn kafka_java_tool(main: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(root().join("scripts/kafka")).arg("classpath").output().ok()?;
    let classpath = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    if classpath.is_empty() {
        return None;
    }
    let log_config = root().join(".cache/kafka/run/tools-log4j2.properties");
    let run = tokio::process::Command::new("java")
        .arg("-Xmx512m")
        .arg(format!("-Dlog4j2.configurationFile={}", log_config.display()))
        .arg("-cp")
        .arg(classpath)
        .arg(main)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.ok()?.ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_proc_stat() {
        let line = "1234 (tokio (rt) w) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 5 1000 10 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert!(cpu_us("self") >= 0.0);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn leftover_topics_of_a_running_bench_are_kept() {
        assert!(!made_by_a_live_bench(&unique("p100")), "this process's own");
        assert!(made_by_a_live_bench("bench-p100-1-123456"), "pid 1 runs");
        assert!(!made_by_a_live_bench("bench-p100-4294967295-1"));
        assert!(!made_by_a_live_bench("bench-odd"));
    }

    #[test]
    fn scala_gets_a_share_of_the_records() {
        let t = Target { kind: Kind::Scala, program: PathBuf::new() };
        assert_eq!(t.records(500_000, 10), 50_000);
        assert_eq!(Target { kind: Kind::Ours, ..t }.records(500_000, 10), 500_000);
    }
}
