//! The scenarios beside throughput: acknowledgement latency, memory per idle socket, memory of
//! a stalled consumer, connection churn. Each runs for one proxy and returns the figure or the
//! reason it failed; every wait has a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;

use crate::bare::Bare;
use crate::harness::*;
use crate::sockets::*;
use crate::stats::{quantile, Stat};

/// Acknowledgement latencies at one rate: per proxy, and the direct client's run beside it.
pub struct Latency {
    pub per_s: usize,
    pub proxies: Vec<(String, Outcome<Vec<Duration>>)>,
    /// The direct client's samples from the same seconds as each proxy's (same order).
    pub directs: Vec<Outcome<Vec<Duration>>>,
    /// The same direct samples had the client answered in send order, as the proxy must
    /// (one result per record, in input order): a record's answer waits for every earlier
    /// record's acknowledgement, which may come later from another partition's batch.
    pub directs_in_order: Vec<Outcome<Vec<Duration>>>,
    /// Per proxy: the p99 it adds in each second of the window (its p99 less the direct
    /// client's, records sent in that second), the median over the seconds, in ms. A stall
    /// that lands unevenly on the two clients moves one second's difference, not the figure.
    pub p99_added_per_second: Vec<Outcome<f64>>,
}

impl Latency {
    /// The direct client's samples taken beside proxy `name`.
    pub fn direct_beside(&self, name: &str) -> Option<&Outcome<Vec<Duration>>> {
        self.proxies.iter().position(|(n, _)| n == name).and_then(|i| self.directs.get(i))
    }

    /// The median over the window's seconds of the p99 `name` added.
    pub fn p99_added_per_second(&self, name: &str) -> Option<&Outcome<f64>> {
        self.proxies.iter().position(|(n, _)| n == name).and_then(|i| self.p99_added_per_second.get(i))
    }

    /// The same, answered in send order.
    pub fn direct_in_order_beside(&self, name: &str) -> Option<&Outcome<Vec<Duration>>> {
        self.proxies.iter().position(|(n, _)| n == name).and_then(|i| self.directs_in_order.get(i))
    }
}

/// Each proxy's window runs at the same time as a direct client's own (each client at
/// `per_s`, on its own topic): a stall of the machine or the broker lands in both, so the p99
/// the proxy adds is taken between samples of the same seconds.
pub async fn latency(targets: &[Target], secs: u64, per_s: usize) -> Latency {
    let per_ms = per_s / 1000;
    let n = secs as usize * per_s;
    let (mut proxies, mut directs, mut directs_in_order, mut per_second) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in targets {
        eprintln!("   {} beside the direct client", t.name());
        let start = tokio::sync::Barrier::new(2);
        let (p, d) = tokio::join!(latency_proxy(t, n, per_ms, &start), latency_direct(n, per_ms, &start));
        per_second.push(match (&p, &d) {
            (Ok(p), Ok(d)) => Ok(median_second_p99_added(p, d)),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        });
        proxies.push((t.name().to_owned(), p.map(|acks| latencies(&acks, false))));
        let (d, in_order) = match d {
            Ok(acks) => (Ok(latencies(&acks, false)), Ok(latencies(&acks, true))),
            Err(e) => (Err(e.clone()), Err(e)),
        };
        directs.push(d);
        directs_in_order.push(in_order);
    }
    Latency { per_s, proxies, directs, directs_in_order, p99_added_per_second: per_second }
}

/// The median over the window's seconds of the proxy's p99 less the direct client's (ms),
/// each from the records sent in that second (both windows start together, at a barrier).
fn median_second_p99_added(proxy: &[(Instant, Instant)], direct: &[(Instant, Instant)]) -> f64 {
    fn by_second(acks: &[(Instant, Instant)]) -> Vec<Vec<Duration>> {
        let Some(&(start, _)) = acks.first() else { return Vec::new() };
        let mut seconds: Vec<Vec<Duration>> = Vec::new();
        for &(sent, answered) in acks {
            let k = (sent - start).as_secs() as usize;
            if seconds.len() <= k {
                seconds.resize_with(k + 1, Vec::new);
            }
            seconds[k].push(answered - sent);
        }
        seconds.iter_mut().for_each(|s| s.sort());
        seconds
    }
    let p99_ms = |s: &[Duration]| quantile(s, 0.99).as_secs_f64() * 1000.0;
    let diffs = by_second(proxy)
        .iter()
        .zip(&by_second(direct))
        .filter(|(p, d)| !p.is_empty() && !d.is_empty())
        .map(|(p, d)| p99_ms(p) - p99_ms(d))
        .collect();
    Stat::of(diffs).median
}

/// Sorted latencies of (sent, acknowledged) pairs given in send order; `in_order`: as if each
/// answer waited for every earlier record's acknowledgement.
fn latencies(acks: &[(Instant, Instant)], in_order: bool) -> Vec<Duration> {
    let mut latest = None::<Instant>;
    let mut lat: Vec<Duration> = acks
        .iter()
        .map(|&(sent, acked)| {
            // In order, a record is answered when it and every earlier one are acknowledged.
            let answered = if in_order { latest.map_or(acked, |l| l.max(acked)) } else { acked };
            latest = Some(answered);
            answered - sent
        })
        .collect();
    lat.sort();
    lat
}

/// Awaits `setup`, then `start` (whether it worked or not, so the other side never waits for
/// a side that failed).
async fn then_together<T>(start: &tokio::sync::Barrier, setup: impl Future<Output = Outcome<T>>) -> Outcome<T> {
    let ready = setup.await;
    start.wait().await;
    ready
}

async fn latency_proxy(
    target: &Target,
    n: usize,
    per_ms: usize,
    start: &tokio::sync::Barrier,
) -> Outcome<Vec<(Instant, Instant)>> {
    let text = frame(100);
    let (_proxy, ws) = then_together(start, async {
        let topic = unique("lat");
        create_topic(&topic, 4).await?;
        let proxy = Proxy::start(target, &[]).await?;
        let warm = Bare::connect(&proxy.url(&format!("/socket/in?clientId=latwarm&topic={topic}"))).await?;
        produce_via_socket(warm, &text, 100, 1).await.map_err(|e| format!("warm-up: {e}"))?;
        let ws = Bare::connect(&proxy.url(&format!("/socket/in?clientId=lat&topic={topic}"))).await?;
        Ok((proxy, ws))
    })
    .await?;
    latency_via_socket(ws, &text, n, per_ms).await
}

/// (sent, acknowledged) of every record, in send order.
async fn latency_direct(n: usize, per_ms: usize, start: &tokio::sync::Barrier) -> Outcome<Vec<(Instant, Instant)>> {
    let p = direct_producer();
    let topic = unique("latd");
    let body = vec![b'x'; 100];
    then_together(start, async {
        create_topic(&topic, 4).await?;
        produce_direct(&p, &topic, &body, 100).await.map(|_| ())
    })
    .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut waits = Vec::with_capacity(n);
    while waits.len() < n {
        tick.tick().await;
        for _ in 0..per_ms.min(n - waits.len()) {
            let sent = Instant::now();
            let f = p
                .send_result(FutureRecord::<(), [u8]>::to(&topic).payload(&body))
                .map_err(|(e, _)| format!("direct produce: {e}"))?;
            waits.push(tokio::spawn(async move {
                within(ANSWER_WAIT, "direct delivery", f)
                    .await?
                    .map_err(|_| "dropped".to_owned())?
                    .map_err(|(e, _)| e.to_string())?;
                Ok::<_, String>((sent, Instant::now()))
            }));
        }
    }
    let mut acks = Vec::with_capacity(n);
    for w in waits {
        acks.push(w.await.map_err(|e| e.to_string())??);
    }
    Ok(acks)
}

/// RSS per idle socket.
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

pub async fn idle(target: &Target, consumers: bool, n: usize) -> Outcome<IdleCost> {
    let topic = unique(if consumers { "idlec" } else { "idlep" });
    create_topic(&topic, 1).await?;
    let proxy = Proxy::start(target, &[]).await?;
    // Warm up allocator and runtime with one socket, so the base is a running proxy.
    let dir = if consumers { "out" } else { "in" };
    let warm = connect(&proxy.url(&format!("/socket/{dir}?clientId=warm&topic={topic}"))).await?;
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
            socks.push(c.await.map_err(|e| e.to_string())?.map_err(|e| format!("socket {}: {e}", socks.len() + 1))?);
        }
    }
    tokio::time::sleep(Duration::from_secs(if consumers { 8 } else { 3 })).await;
    let with_sockets_kib = proxy.rss_kib();
    drop(socks);
    drop(warm);
    Ok(IdleCost { sockets: n, base_kib, with_sockets_kib })
}

/// RSS over time while one consumer stalls with a large backlog.
pub struct Stall {
    pub backlog: usize,
    pub samples: Vec<(f64, u64)>,
    pub start_kib: u64,
    pub peak_kib: u64,
}

impl Stall {
    pub fn growth_mib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.start_kib) as f64 / 1024.0
    }
}

/// A topic holding the stall backlog, filled once for every proxy.
pub async fn stall_topic(backlog: usize) -> Outcome<String> {
    let topic = unique("stall");
    create_topic(&topic, 1).await?;
    fill(&topic, backlog, 100).await?;
    Ok(topic)
}

pub async fn stall(target: &Target, topic: &Outcome<String>, backlog: usize, secs: u64) -> Outcome<Stall> {
    let topic = topic.as_ref().map_err(|e| format!("backlog: {e}"))?;
    let proxy = Proxy::start(target, &[]).await?;
    let t0 = Instant::now();
    let mut samples = vec![(0.0, proxy.rss_kib())];
    let mut ws =
        Bare::connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}", unique("staller")))).await?;
    consume_via_socket(&mut ws, 100, false).await?;
    let start_kib = proxy.rss_kib();
    samples.push((t0.elapsed().as_secs_f64(), start_kib));
    let mut peak_kib = start_kib;
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = proxy.rss_kib();
        peak_kib = peak_kib.max(r);
        samples.push((t0.elapsed().as_secs_f64(), r));
    }
    Ok(Stall { backlog, samples, start_kib, peak_kib })
}

/// Produce sockets opened and closed per second (8 clients in parallel); each socket must
/// answer the client's close frame with its own within 5 s.
pub async fn churn(target: &Target, secs: u64) -> Outcome<f64> {
    let topic = unique("churn");
    create_topic(&topic, 1).await?;
    let proxy = Proxy::start(target, &[]).await?;
    let until = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let url = proxy.url(&format!("/socket/in?clientId=churn-{w}&topic={topic}"));
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    open_and_close(&url, Duration::from_secs(5))
                        .await
                        .map_err(|e| format!("after {n} sockets: {e}"))?;
                    n += 1;
                }
                Ok::<_, String>(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_second_figure_is_the_median_of_each_seconds_p99_difference() {
        let t0 = Instant::now();
        // 3 seconds of 100 records each; the proxy is 1 ms slower, and in second 1 a stall
        // of 500 ms hits the direct client only (the proxy's p99 there is 500 ms lower).
        let acks = |extra_ms: u64, stall_in: Option<u64>| -> Vec<(Instant, Instant)> {
            (0..300u64)
                .map(|i| {
                    let sent = t0 + Duration::from_millis(i * 10);
                    let stalled = stall_in == Some(i / 100) && i % 100 >= 90;
                    let took = 4 + extra_ms + if stalled { 500 } else { 0 };
                    (sent, sent + Duration::from_millis(took))
                })
                .collect()
        };
        let added = median_second_p99_added(&acks(1, None), &acks(0, Some(1)));
        assert!((added - 1.0).abs() < 1e-9, "{added}");
        assert!(median_second_p99_added(&[], &acks(0, None)).is_nan());
    }

    #[test]
    fn an_answer_in_send_order_waits_for_every_earlier_acknowledgement() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Record 0 is acknowledged late (its partition's batch); 1 and 2 early.
        let acks = [(at(0), at(9)), (at(1), at(3)), (at(2), at(4)), (at(10), at(11))];
        let ms = |v: Vec<Duration>| v.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>();
        assert_eq!(ms(latencies(&acks, false)), [1, 2, 2, 9]);
        assert_eq!(ms(latencies(&acks, true)), [1, 7, 8, 9]);
    }
}
