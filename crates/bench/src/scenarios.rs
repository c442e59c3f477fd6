//! The benchmark scenarios. Each measures the proxy and, in the same run, the baseline on the
//! same topics and payloads.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rdkafka::consumer::Consumer;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// Sizes of one run (`--quick` shrinks everything).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub repeats: usize,
    pub produce_100b: usize,
    pub produce_1k: usize,
    pub parallel_sockets: usize,
    pub consume: usize,
    pub latency_secs: u64,
    pub idle_producers: usize,
    pub idle_consumers: usize,
    pub stall_backlog: usize,
    pub stall_secs: u64,
    pub churn_secs: u64,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            repeats: 3,
            produce_100b: 500_000,
            produce_1k: 200_000,
            parallel_sockets: 100,
            consume: 500_000,
            latency_secs: 30,
            idle_producers: 10_000,
            idle_consumers: 500,
            stall_backlog: 1_000_000,
            stall_secs: 30,
            churn_secs: 10,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            repeats: 1,
            produce_100b: 20_000,
            produce_1k: 10_000,
            parallel_sockets: 20,
            consume: 20_000,
            latency_secs: 3,
            idle_producers: 500,
            idle_consumers: 20,
            stall_backlog: 50_000,
            stall_secs: 5,
            churn_secs: 3,
        }
    }
}

/// Throughput of one variant: records per second over the repeats.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub name: String,
    pub records: usize,
    pub size: usize,
    pub rate: Stat,
}

impl Throughput {
    pub fn mb_per_s(&self) -> f64 {
        self.rate.median * self.size as f64 / 1e6
    }
}

/// Scenario 1 and 2: produce throughput through the proxy (1 or many sockets) vs direct vs
/// Kafka's ProducerPerformance.
pub async fn produce(
    bin: &Path,
    size: usize,
    n: usize,
    sockets: usize,
    s: Sizes,
    env: &[(&str, &str)],
) -> Vec<Throughput> {
    let mut proxy_rates = Vec::new();
    let mut direct_rates = Vec::new();
    let mut perf_rates = Vec::new();
    let text = frame(size);
    for _ in 0..s.repeats {
        let topic = unique(&format!("p{size}"));
        create_topic(&topic, 4).await;
        let proxy = Proxy::start(bin, env).await;
        let per = n / sockets;
        let mut socks = Vec::new();
        for i in 0..sockets {
            socks.push(connect(&proxy.url(&format!("/socket/in?clientId=bench-{i}&topic={topic}"))).await);
        }
        // Warm up the proxy's producer on this topic too.
        let warm = connect(&proxy.url(&format!("/socket/in?clientId=warm&topic={topic}"))).await;
        produce_via_socket(warm, &text, 100).await;
        let t0 = Instant::now();
        let tasks: Vec<_> = socks
            .into_iter()
            .map(|ws| {
                let text = text.clone();
                tokio::spawn(async move { produce_via_socket(ws, &text, per).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        proxy_rates.push((per * sockets) as f64 / t0.elapsed().as_secs_f64());
        drop(proxy);

        let topic = unique(&format!("d{size}"));
        create_topic(&topic, 4).await;
        let p = direct_producer();
        let payload = vec![b'x'; size];
        // Warm up like the proxy's producer is warm: connections, metadata, producer id.
        produce_direct(&p, &topic, &payload, 100).await;
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..sockets.min(8))
            .map(|_| {
                let (p, topic, payload) = (p.clone(), topic.clone(), payload.clone());
                let k = n / sockets.min(8);
                tokio::spawn(async move { produce_direct(&p, &topic, &payload, k).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        direct_rates.push((n / sockets.min(8) * sockets.min(8)) as f64 / t0.elapsed().as_secs_f64());

        if sockets == 1 {
            let topic = unique(&format!("k{size}"));
            create_topic(&topic, 4).await;
            let out = kafka_java_tool(
                "org.apache.kafka.tools.ProducerPerformance",
                &[
                    "--topic",
                    &topic,
                    "--num-records",
                    &n.to_string(),
                    "--record-size",
                    &size.to_string(),
                    "--throughput",
                    "-1",
                    "--producer-props",
                    &format!("bootstrap.servers={BOOTSTRAP}"),
                    "acks=all",
                    "linger.ms=5",
                    "batch.size=1048576",
                ],
            );
            if let Some(rate) = out.as_deref().and_then(parse_producer_perf) {
                perf_rates.push(rate);
            }
        }
    }
    let label = if sockets == 1 { "1 socket".to_owned() } else { format!("{sockets} sockets") };
    let mut v = vec![
        Throughput { name: format!("proxy, {label}"), records: n, size, rate: Stat::of(proxy_rates) },
        Throughput { name: "direct librdkafka".to_owned(), records: n, size, rate: Stat::of(direct_rates) },
    ];
    if !perf_rates.is_empty() {
        v.push(Throughput {
            name: "Kafka ProducerPerformance".to_owned(),
            records: n,
            size,
            rate: Stat::of(perf_rates),
        });
    }
    v
}

/// "500000 records sent, 123456.7 records/sec (11.77 MB/sec), ..." -> records/sec.
fn parse_producer_perf(out: &str) -> Option<f64> {
    let last = out.lines().rev().find(|l| l.contains("records sent"))?;
    let after = last.split("records sent,").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Scenario 3: consume throughput through one socket (`batchSize` 1 and 100) vs direct vs
/// Kafka's ConsumerPerformance, on the same prefilled topic.
pub async fn consume(bin: &Path, s: Sizes) -> Vec<Throughput> {
    let size = 100;
    let n = s.consume;
    let topic = unique("c100");
    create_topic(&topic, 4).await;
    fill(&topic, n, size).await;
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..s.repeats {
        for (i, batch) in [0u32, 100].into_iter().enumerate() {
            let proxy = Proxy::start(bin, &[]).await;
            let q = if batch > 0 { format!("&batchSize={batch}") } else { String::new() };
            let mut ws =
                connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}{q}", unique("reader")))).await;
            let d = consume_via_socket(&mut ws, n, batch > 0).await;
            rates[i].push(n as f64 / d.as_secs_f64());
        }
        let c = direct_consumer(&topic);
        let mut got = 0;
        let mut first = None;
        while got < n {
            let m = tokio::time::timeout(Duration::from_secs(60), c.recv()).await.expect("direct records").unwrap();
            first.get_or_insert_with(Instant::now);
            let _ = c.store_offset_from_message(&m);
            got += 1;
        }
        rates[2].push(n as f64 / first.unwrap().elapsed().as_secs_f64());
        let out = kafka_java_tool(
            "org.apache.kafka.tools.ConsumerPerformance",
            &[
                "--bootstrap-server",
                BOOTSTRAP,
                "--topic",
                &topic,
                "--messages",
                &n.to_string(),
                "--group",
                &unique("perf"),
                "--timeout",
                "60000",
            ],
        );
        if let Some(r) = out.as_deref().and_then(parse_consumer_perf) {
            rates[3].push(r);
        }
    }
    let [b1, b100, direct, perf] = rates;
    let mut v = vec![
        Throughput { name: "proxy, batchSize 1".to_owned(), records: n, size, rate: Stat::of(b1) },
        Throughput { name: "proxy, batchSize 100".to_owned(), records: n, size, rate: Stat::of(b100) },
        Throughput { name: "direct librdkafka".to_owned(), records: n, size, rate: Stat::of(direct) },
    ];
    if !perf.is_empty() {
        v.push(Throughput { name: "Kafka ConsumerPerformance".to_owned(), records: n, size, rate: Stat::of(perf) });
    }
    v
}

/// ConsumerPerformance prints a CSV header and line; take `fetch.nMsg.sec` (excludes the join).
fn parse_consumer_perf(out: &str) -> Option<f64> {
    let mut lines = out.lines().filter(|l| l.contains(','));
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let idx = header.iter().position(|h| *h == "fetch.nMsg.sec")?;
    values.get(idx)?.parse().ok()
}

/// Scenario 4: acknowledgement latency at 1,000 records/s, through the proxy and direct.
pub struct Latency {
    pub proxy: Vec<Duration>,
    pub direct: Vec<Duration>,
}

pub async fn latency(bin: &Path, s: Sizes) -> Latency {
    let n = (s.latency_secs * 1000) as usize;
    let payload = 100;
    let topic = unique("lat");
    create_topic(&topic, 4).await;
    let proxy = Proxy::start(bin, &[]).await;
    let ws = connect(&proxy.url(&format!("/socket/in?clientId=lat&topic={topic}"))).await;
    let (mut tx, mut rx) = ws.split();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let text = frame(payload);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..n {
            tick.tick().await;
            sent_tx.send(Instant::now()).unwrap();
            tx.send(Message::Text(text.clone().into())).await.unwrap();
        }
        tx
    });
    let mut proxy_lat = Vec::with_capacity(n);
    while proxy_lat.len() < n {
        match rx.next().await {
            Some(Ok(Message::Text(_))) => {
                let sent = sent_rx.recv().await.unwrap();
                proxy_lat.push(sent.elapsed());
            }
            Some(Ok(_)) => {}
            other => panic!("latency socket ended: {other:?}"),
        }
    }
    let _ = sender.await;
    drop(proxy);

    let p = direct_producer();
    let topic = unique("latd");
    create_topic(&topic, 4).await;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut waits = Vec::with_capacity(n);
    let body = vec![b'x'; payload];
    for _ in 0..n {
        tick.tick().await;
        let sent = Instant::now();
        let f = p.send_result(rdkafka::producer::FutureRecord::<(), [u8]>::to(&topic).payload(&body)).unwrap();
        waits.push(tokio::spawn(async move {
            f.await.unwrap().unwrap();
            sent.elapsed()
        }));
    }
    let mut direct_lat = Vec::with_capacity(n);
    for w in waits {
        direct_lat.push(w.await.unwrap());
    }
    proxy_lat.sort();
    direct_lat.sort();
    Latency { proxy: proxy_lat, direct: direct_lat }
}

/// Scenario 5a: RSS per idle socket.
pub struct IdleCost {
    pub sockets: usize,
    pub base_kib: u64,
    pub with_sockets_kib: u64,
}

impl IdleCost {
    pub fn per_socket_kib(&self) -> f64 {
        (self.with_sockets_kib.saturating_sub(self.base_kib)) as f64 / self.sockets.max(1) as f64
    }
}

pub async fn idle(bin: &Path, consumers: bool, n: usize) -> IdleCost {
    let topic = unique(if consumers { "idlec" } else { "idlep" });
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(bin, &[]).await;
    // Warm up allocator and runtime with one socket, so the base is a running proxy.
    let dir = if consumers { "out" } else { "in" };
    let warm = connect(&proxy.url(&format!("/socket/{dir}?clientId=warm&topic={topic}"))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_kib = proxy.rss_kib();
    let mut socks = Vec::with_capacity(n);
    let batch = if consumers { 10 } else { 200 };
    for start in (0..n).step_by(batch) {
        let conns: Vec<_> = (start..(start + batch).min(n))
            .map(|i| {
                let url = proxy.url(&format!("/socket/{dir}?clientId=idle-{i}&topic={topic}"));
                tokio::spawn(async move { connect(&url).await })
            })
            .collect();
        for c in conns {
            socks.push(c.await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_secs(if consumers { 8 } else { 3 })).await;
    let with_sockets_kib = proxy.rss_kib();
    drop(socks);
    drop(warm);
    IdleCost { sockets: n, base_kib, with_sockets_kib }
}

/// Scenario 5b: RSS over time while one consumer stalls with a large backlog.
pub struct Stall {
    pub backlog: usize,
    pub samples: Vec<(f64, u64)>,
    pub start_kib: u64,
    pub peak_kib: u64,
}

pub async fn stall(bin: &Path, s: Sizes) -> Stall {
    let topic = unique("stall");
    create_topic(&topic, 1).await;
    fill(&topic, s.stall_backlog, 100).await;
    let proxy = Proxy::start(bin, &[]).await;
    let t0 = Instant::now();
    let mut samples = vec![(0.0, proxy.rss_kib())];
    let mut ws = connect(&proxy.url(&format!("/socket/out?clientId=staller&topic={topic}"))).await;
    consume_via_socket(&mut ws, 100, false).await;
    let start_kib = proxy.rss_kib();
    samples.push((t0.elapsed().as_secs_f64(), start_kib));
    let mut peak_kib = start_kib;
    let until = Instant::now() + Duration::from_secs(s.stall_secs);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = proxy.rss_kib();
        peak_kib = peak_kib.max(r);
        samples.push((t0.elapsed().as_secs_f64(), r));
    }
    Stall { backlog: s.stall_backlog, samples, start_kib, peak_kib }
}

/// Scenario 6: produce sockets opened and closed per second (8 clients in parallel).
pub async fn churn(bin: &Path, s: Sizes) -> f64 {
    let topic = unique("churn");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(bin, &[]).await;
    let until = Instant::now() + Duration::from_secs(s.churn_secs);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let url = proxy.url(&format!("/socket/in?clientId=churn-{w}&topic={topic}"));
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let mut ws = connect(&url).await;
                    ws.close(None).await.unwrap();
                    while let Some(Ok(_)) = ws.next().await {}
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_perf_tool_output() {
        let p = "1000 records sent, 500.0 records/sec (0.05 MB/sec), 3.2 ms avg latency, 12.00 ms max latency.\n\
                 500000 records sent, 123456.7 records/sec (11.77 MB/sec), 12.3 ms avg latency, 99.0 ms max latency, 1 ms 50th.";
        assert_eq!(parse_producer_perf(p), Some(123456.7));
        let c = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                 2026-01-01 00:00:00:000, 2026-01-01 00:00:01:000, 47.6837, 47.6837, 500000, 500000.0, 300, 700, 68.1196, 714285.7143";
        assert_eq!(parse_consumer_perf(c), Some(714285.7143));
    }

    #[test]
    fn quantiles() {
        let v: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(500));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(990));
        assert_eq!(quantile(&v, 0.999), Duration::from_millis(999));
    }
}
