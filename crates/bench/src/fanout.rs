//! Fan-out sockets (`/socket/out?…&fanOut=true`, issue 18): what an idle one costs, the
//! proxy's CPU per delivered record with many sockets on one topic, and the latency from the
//! producer's send to a socket's receipt with many sockets. Only our proxy has them.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rdkafka::producer::FutureRecord;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::scenarios::IdleCost;
use crate::sockets::*;
use crate::stats::quantile;
use crate::Sizes;

/// The fan-out figures of one run.
pub struct FanOut {
    pub idle: Outcome<IdleCost>,
    /// (sockets, records each, proxy CPU µs per delivered record)
    pub cpu: Vec<(usize, usize, Outcome<f64>)>,
    /// (sockets, produce-to-socket latencies of every delivery)
    pub latency: (usize, Outcome<Vec<Duration>>),
}

pub async fn measure(target: &Target, s: Sizes) -> FanOut {
    eprintln!("   idle fan-out sockets ({})", s.fanout_idle);
    let idle = idle(target, s.fanout_idle).await;
    let mut cpu = Vec::new();
    for (sockets, records) in s.fanout_cpu {
        eprintln!("   CPU per delivered record, {sockets} sockets");
        cpu.push((sockets, records, cpu_per_record(target, sockets, records).await));
    }
    let (sockets, secs) = s.fanout_latency;
    eprintln!("   latency, {sockets} sockets");
    let latency = (sockets, latency(target, sockets, secs, 100).await);
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

/// Produce-to-socket latency: `per_s` records a second for `secs` seconds, each carrying its
/// send time, to `sockets` sockets; one sample per delivery.
async fn latency(target: &Target, sockets: usize, secs: u64, per_s: u64) -> Outcome<Vec<Duration>> {
    let topic = unique("fanlat");
    create_topic(&topic, 4).await?;
    let proxy = Proxy::start(target, &[]).await?;
    let socks = open(&proxy, &topic, sockets).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = (secs * per_s) as usize;
    let readers: Vec<_> = socks
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n);
                while lat.len() < n {
                    match within(ANSWER_WAIT, "a fan-out record", ws.next()).await? {
                        Some(Ok(Message::Text(t))) => {
                            let received = now_us();
                            // The send time opens the value; no full parse (the client shares the cores).
                            const VALUE: &str = "\"value\":{\"value\":\"";
                            let at = t.rfind(VALUE).ok_or_else(|| format!("no value in {t}"))? + VALUE.len();
                            let sent: u64 =
                                t.get(at..at + 20).unwrap_or_default().parse().map_err(|e| format!("{e}: {t}"))?;
                            lat.push(Duration::from_micros(received.saturating_sub(sent)));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        other => return Err(format!("after {} records: {other:?}", lat.len())),
                    }
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let p = direct_producer();
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
    let mut all = Vec::with_capacity(n * sockets);
    for r in readers {
        all.extend(r.await.map_err(|e| e.to_string())??);
    }
    all.sort();
    Ok(all)
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
        let (sockets, r) = &self.latency;
        match r {
            Ok(v) => {
                let _ = writeln!(
                    md,
                    "| produce-to-socket latency, {sockets} sockets, 100 records/s | p50 {:.1} ms, p99 {:.1} ms ({} samples) |",
                    quantile(v, 0.5).as_secs_f64() * 1000.0,
                    quantile(v, 0.99).as_secs_f64() * 1000.0,
                    v.len()
                );
            }
            Err(e) => {
                let _ = writeln!(md, "| produce-to-socket latency, {sockets} sockets | failed: {e} |");
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
        let (p50, p99) = match &self.latency.1 {
            Ok(v) => (quantile(v, 0.5).as_secs_f64() * 1000.0, quantile(v, 0.99).as_secs_f64() * 1000.0),
            Err(_) => (f64::NAN, f64::NAN),
        };
        m.insert("fanout_latency_p50_ms".to_owned(), num(p50));
        m.insert("fanout_latency_p99_ms".to_owned(), num(p99));
    }
}
