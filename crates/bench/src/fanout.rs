//! Fan-out sockets (`/socket/out?…&fanOut=true`, issue 18): what an idle one costs, the
//! proxy's CPU per delivered record with many sockets on one topic, and the latency from the
//! producer's send to a socket's receipt with many sockets. Only our proxy has them.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::Message;

use crate::bare::{connect_raw, frame_at};
use crate::harness::*;
use crate::profile;
use crate::scenarios::IdleCost;
use crate::sockets::*;
use crate::stats::quantile;
use crate::Sizes;

/// The fan-out figures of one run.
pub struct FanOut {
    pub idle: Outcome<IdleCost>,
    /// (sockets, records each, proxy CPU µs per delivered record)
    pub cpu: Vec<(usize, usize, Outcome<f64>)>,
    /// (sockets, produce-to-socket latency) at 1 socket, a tenth of the largest count and the
    /// largest: the fixed part (Kafka, the shared consumer) against the part per socket.
    pub latency: Vec<(usize, Outcome<Latency>)>,
}

/// Every figure, or (`latency_only`, `--only fanout-latency`) only the latency rows.
pub async fn measure(target: &Target, s: Sizes, latency_only: bool) -> FanOut {
    let (idle, mut cpu) = (Err("not measured (--only fanout-latency)".to_owned()), Vec::new());
    let idle = if latency_only {
        idle
    } else {
        eprintln!("   idle fan-out sockets ({})", s.fanout_idle);
        let idle = self::idle(target, s.fanout_idle).await;
        for (sockets, records) in s.fanout_cpu {
            eprintln!("   CPU per delivered record, {sockets} sockets");
            cpu.push((sockets, records, cpu_per_record(target, sockets, records).await));
        }
        idle
    };
    let (most, secs) = s.fanout_latency;
    let mut counts = vec![1, most / 10, most];
    counts.dedup();
    let mut latency = Vec::new();
    for sockets in counts.into_iter().filter(|n| *n > 0) {
        eprintln!("   latency, {sockets} sockets");
        latency.push((sockets, self::latency(target, sockets, secs, 100).await));
    }
    FanOut { idle, cpu, latency }
}

fn url(proxy: &Proxy, topic: &str, i: usize) -> String {
    proxy.url(&format!("/socket/out?clientId=fan-{i}&topic={topic}&fanOut=true"))
}

/// Opens `n` fan-out sockets, 200 at a time.
async fn open(proxy: &Proxy, topic: &str, n: usize) -> Outcome<Vec<Ws>> {
    let mut socks = Vec::with_capacity(n);
    for start in (0..n).step_by(200) {
        let conns: Vec<_> = (start..(start + 200).min(n))
            .map(|i| {
                let url = url(proxy, topic, i);
                tokio::spawn(async move { connect(&url).await })
            })
            .collect();
        for c in conns {
            socks.push(c.await.map_err(|e| e.to_string())?.map_err(|e| format!("socket {}: {e}", socks.len() + 1))?);
        }
    }
    Ok(socks)
}

/// Opens `n` fan-out sockets with the bare client ([`connect_raw`]), 200 at a time.
async fn open_bare(proxy: &Proxy, topic: &str, n: usize) -> Outcome<Vec<(TcpStream, Vec<u8>)>> {
    let mut socks = Vec::with_capacity(n);
    for start in (0..n).step_by(200) {
        let conns: Vec<_> = (start..(start + 200).min(n))
            .map(|i| {
                let url = url(proxy, topic, i);
                tokio::spawn(async move { connect_raw(&url).await })
            })
            .collect();
        for c in conns {
            socks.push(c.await.map_err(|e| e.to_string())?.map_err(|e| format!("socket {}: {e}", socks.len() + 1))?);
        }
    }
    Ok(socks)
}

/// RSS per idle fan-out socket (one shared consumer, made by a warm-up socket, in the base).
async fn idle(target: &Target, n: usize) -> Outcome<IdleCost> {
    let topic = unique("fanidle");
    create_topic(&topic, 4).await?;
    let proxy = Proxy::start(target, &[]).await?;
    let warm = connect(&url(&proxy, &topic, n)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_kib = proxy.rss_kib();
    let socks = open(&proxy, &topic, n).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_sockets_kib = proxy.rss_kib();
    drop((socks, warm));
    Ok(IdleCost { sockets: n, base_kib, with_sockets_kib })
}

/// Reads `n` record frames (anything else fails the load).
async fn read_records(mut ws: Ws, n: usize) -> Outcome<()> {
    for got in 0..n {
        match within(ANSWER_WAIT, "a fan-out record", ws.next()).await? {
            Some(Ok(Message::Text(t))) if t.starts_with("{\"wsProxyMessageId\"") => {}
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return Err(format!("after {got} records: {other:?}")),
        }
    }
    Ok(())
}

/// Proxy CPU (user + system) per delivered record: `records` 100 B records to each of
/// `sockets` sockets.
async fn cpu_per_record(target: &Target, sockets: usize, records: usize) -> Outcome<f64> {
    let topic = unique("fancpu");
    create_topic(&topic, 4).await?;
    let proxy = Proxy::start(target, &[]).await?;
    let socks = open(&proxy, &topic, sockets).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let readers: Vec<_> = socks.into_iter().map(|ws| tokio::spawn(read_records(ws, records))).collect();
    let cpu0 = proxy.cpu_us();
    fill(&topic, records, 100).await?;
    for r in readers {
        r.await.map_err(|e| e.to_string())??;
    }
    Ok((proxy.cpu_us() - cpu0) / (sockets * records) as f64)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The latency phase's producer: the bench's direct producer without `linger.ms` (5 ms there,
/// to batch bulk loads; here each record would wait 5 ms in the producer before Kafka saw it).
fn latency_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// One latency row: the produce-to-socket latency of every delivery, and the CPU it cost.
pub struct Latency {
    pub samples: Vec<Duration>,
    /// Proxy CPU (user + system) per delivery, records coming one at a time.
    pub proxy_cpu_us: f64,
    /// The bench's own CPU per delivery (its readers and producer share the cores).
    pub bench_cpu_us: f64,
}

/// Reads `n` records from one bare socket ([`connect_raw`]); each sample is the time the read that
/// completed its frame returned minus the send time that opens the record's value. One
/// deadline for the whole read (a timer per frame would cost the bench more than the read).
async fn read_latencies(
    (mut s, mut buf): (TcpStream, Vec<u8>),
    n: usize,
    deadline: tokio::time::Instant,
) -> Outcome<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    let give_up = tokio::time::sleep_until(deadline);
    tokio::pin!(give_up);
    let mut received = now_us();
    loop {
        let mut at = 0;
        while let Some((fin, opcode, payload, len)) = frame_at(&buf[at..])? {
            let body = &buf[at + payload.start..at + payload.end];
            match (fin, opcode) {
                (true, OpCode::Data(Data::Text)) => {
                    let t = std::str::from_utf8(body).map_err(|e| e.to_string())?;
                    // The send time opens the value; no full parse (the client shares the cores).
                    const VALUE: &str = "\"value\":{\"value\":\"";
                    let v = t.rfind(VALUE).ok_or_else(|| format!("no value in {t}"))? + VALUE.len();
                    let sent: u64 = t.get(v..v + 20).unwrap_or_default().parse().map_err(|e| format!("{e}: {t}"))?;
                    lat.push(Duration::from_micros(received.saturating_sub(sent)));
                }
                (true, OpCode::Control(Control::Ping | Control::Pong)) => {}
                _ => {
                    let what = String::from_utf8_lossy(body);
                    return Err(format!("after {} records: frame fin {fin} opcode {opcode:?}: {what}", lat.len()));
                }
            }
            at += len;
        }
        buf.drain(..at);
        if lat.len() >= n {
            return Ok(lat);
        }
        buf.reserve(4096);
        let read = tokio::select! {
            biased;
            read = s.read_buf(&mut buf) => read.map_err(|e| e.to_string())?,
            () = &mut give_up => return Err(format!("after {} records: no record before the deadline", lat.len())),
        };
        received = now_us();
        if read == 0 {
            return Err(format!("after {} records: the proxy closed the socket", lat.len()));
        }
    }
}

/// Produce-to-socket latency: `per_s` records a second for `secs` seconds, each carrying its
/// send time, to `sockets` sockets; one sample per delivery.
async fn latency(target: &Target, sockets: usize, secs: u64, per_s: u64) -> Outcome<Latency> {
    let topic = unique("fanlat");
    create_topic(&topic, 4).await?;
    // Warmed up before the sockets open (so its record is before their live end): a cold
    // producer first fetches metadata and a producer id, and the records queued meanwhile
    // (a few hundred ms at 100 a second) would count that wait as the proxy's latency.
    let p = latency_producer();
    let warm = p.send_result(FutureRecord::<(), str>::to(&topic).payload("warm-up")).map_err(|(e, _)| e.to_string())?;
    within(ANSWER_WAIT, "the warm-up record", warm)
        .await?
        .map_err(|_| "dropped".to_owned())?
        .map_err(|(e, _)| e.to_string())?;
    let proxy = Proxy::start(target, &[]).await?;
    let socks = open_bare(&proxy, &topic, sockets).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = (secs * per_s) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs * 3 + 60);
    let readers: Vec<_> = socks.into_iter().map(|ws| tokio::spawn(read_latencies(ws, n, deadline))).collect();
    let recording = profile::attach(&proxy, &format!("fanout-latency-{sockets}")).await;
    let (proxy0, bench0) = (proxy.cpu_us(), cpu_us(&std::process::id().to_string()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_s));
    let until = Instant::now() + Duration::from_secs(secs * 3 + 30);
    let mut acks = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let body = format!("{:020}{}", now_us(), "x".repeat(80));
        acks.push(p.send_result(FutureRecord::<(), str>::to(&topic).payload(&body)).map_err(|(e, _)| e.to_string())?);
        if Instant::now() > until {
            return Err("producing took too long".to_owned());
        }
    }
    for ack in acks {
        within(ANSWER_WAIT, "a delivery", ack)
            .await?
            .map_err(|_| "dropped".to_owned())?
            .map_err(|(e, _)| e.to_string())?;
    }
    let mut samples = Vec::with_capacity(n * sockets);
    for r in readers {
        samples.extend(r.await.map_err(|e| e.to_string())??);
    }
    let deliveries = (n * sockets) as f64;
    let proxy_cpu_us = (proxy.cpu_us() - proxy0) / deliveries;
    let bench_cpu_us = (cpu_us(&std::process::id().to_string()) - bench0) / deliveries;
    profile::detach(recording).await;
    samples.sort();
    Ok(Latency { samples, proxy_cpu_us, bench_cpu_us })
}

impl FanOut {
    /// The report's section.
    pub fn markdown(&self, md: &mut String) {
        let _ = writeln!(md, "## Fan-out sockets (`fanOut=true`)\n");
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        match &self.idle {
            Ok(c) => {
                let _ = writeln!(
                    md,
                    "| idle fan-out socket | {:.1} KiB each ({} sockets) |",
                    c.per_socket_kib(),
                    c.sockets
                );
            }
            Err(e) => {
                let _ = writeln!(md, "| idle fan-out socket | failed: {e} |");
            }
        }
        for (sockets, records, r) in &self.cpu {
            match r {
                Ok(us) => {
                    let _ = writeln!(
                        md,
                        "| proxy CPU per delivered record, {sockets} sockets × {records} records | {us:.2} µs |"
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| proxy CPU per delivered record, {sockets} sockets | failed: {e} |");
                }
            }
        }
        for (sockets, r) in &self.latency {
            match r {
                Ok(l) => {
                    let _ = writeln!(
                        md,
                        "| produce-to-socket latency, {sockets} sockets, 100 records/s | p50 {:.1} ms, p99 {:.1} ms ({} samples; CPU per delivery: proxy {:.2} µs, bench {:.2} µs) |",
                        quantile(&l.samples, 0.5).as_secs_f64() * 1000.0,
                        quantile(&l.samples, 0.99).as_secs_f64() * 1000.0,
                        l.samples.len(),
                        l.proxy_cpu_us,
                        l.bench_cpu_us,
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "| produce-to-socket latency, {sockets} sockets | failed: {e} |");
                }
            }
        }
        md.push('\n');
    }

    /// The summary's figures (`null` when not measured).
    pub fn summary(&self, m: &mut Map<String, Value>) {
        let num = |v: f64| serde_json::Number::from_f64((v * 100.0).round() / 100.0).map_or(Value::Null, Value::Number);
        m.insert(
            "fanout_idle_socket_kb".to_owned(),
            num(self.idle.as_ref().map_or(f64::NAN, IdleCost::per_socket_kib)),
        );
        for (sockets, _, r) in &self.cpu {
            m.insert(format!("fanout_cpu_us_per_record_{sockets}"), num(*r.as_ref().unwrap_or(&f64::NAN)));
        }
        // The largest socket count also under the unsuffixed names (issue 18's target).
        let largest = self.latency.iter().map(|(n, _)| *n).max();
        for (sockets, r) in &self.latency {
            let (p50, p99, cpu) = match r {
                Ok(l) => (
                    quantile(&l.samples, 0.5).as_secs_f64() * 1000.0,
                    quantile(&l.samples, 0.99).as_secs_f64() * 1000.0,
                    l.proxy_cpu_us,
                ),
                Err(_) => (f64::NAN, f64::NAN, f64::NAN),
            };
            m.insert(format!("fanout_latency_p50_ms_{sockets}"), num(p50));
            m.insert(format!("fanout_latency_p99_ms_{sockets}"), num(p99));
            m.insert(format!("fanout_latency_cpu_us_per_delivery_{sockets}"), num(cpu));
            if Some(*sockets) == largest {
                m.insert("fanout_latency_p50_ms".to_owned(), num(p50));
                m.insert("fanout_latency_p99_ms".to_owned(), num(p99));
            }
        }
    }
}
