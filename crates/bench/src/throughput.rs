//! Throughput and CPU per record, produce and consume: each round runs every proxy variant and
//! then the direct librdkafka client (A B A B …), so each proxy run has a direct partner from
//! the same minutes; ratios are medians of the per-pair ratios. Rounds go on past the minimum
//! while a pair ratio strays more than ±15 % from its median, up to the maximum.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use crate::bare::Bare;
use crate::harness::*;
use crate::profile;
use crate::sockets::*;
use crate::stats::{pair_ratios, Stat};
use crate::Sizes;

/// Largest spread of pair ratios (±%) that stops adding rounds.
pub const SETTLED_PCT: f64 = 15.0;

/// Rounds a reference row (the Scala proxy) runs: its figures are 50 to 200 times from ours
/// and from any target, and each of its runs takes as long as a whole round of ours.
pub const CAPPED_ROUNDS: usize = 5;

/// One measured run: records per second and the measured process's CPU per record.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rate: f64,
    pub cpu_us_per_record: f64,
}

/// One client's row of a table: a run per round (None where it failed or did not run).
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub records: usize,
    pub runs: Vec<Option<Run>>,
    pub failure: Option<String>,
    /// Its runs are interleaved with the direct client's (Kafka's perf tools are not).
    pub paired: bool,
    /// A reference row (the Scala proxy): runs in the first [`CAPPED_ROUNDS`] rounds only and
    /// does not hold the rounds back while its spread is wide.
    pub capped: bool,
}

impl Row {
    fn new(name: impl Into<String>, records: usize, paired: bool) -> Row {
        Row { name: name.into(), records, runs: Vec::new(), failure: None, paired, capped: false }
    }

    fn capped(self, capped: bool) -> Row {
        Row { capped, ..self }
    }

    /// Whether it sits out round `round` (failed before, or capped and past its rounds).
    fn sits_out(&self, round: usize) -> bool {
        self.failure.is_some() || (self.capped && round >= CAPPED_ROUNDS)
    }

    pub fn rate(&self) -> Stat {
        Stat::of(self.runs.iter().flatten().map(|r| r.rate).collect())
    }

    pub fn cpu(&self) -> Stat {
        Stat::of(self.runs.iter().flatten().map(|r| r.cpu_us_per_record).collect())
    }

    fn push(&mut self, run: Outcome<Run>) {
        match run {
            Ok(r) => self.runs.push(Some(r)),
            Err(e) => {
                eprintln!("   {} failed: {e}", self.name);
                self.failure = Some(e);
                self.runs.push(None);
            }
        }
    }
}

/// A scenario's table: its rows, the last one the direct client.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub size: usize,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn direct(&self) -> &Row {
        self.rows.iter().find(|r| r.name == "direct librdkafka").expect("a direct row")
    }

    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Median and spread of the per-pair throughput ratios of row `name` to direct.
    pub fn ratio(&self, name: &str) -> Stat {
        self.ratio_of(name, |r| r.rate)
    }

    /// Median and spread of the per-pair CPU-per-record ratios of row `name` to direct.
    pub fn cpu_ratio(&self, name: &str) -> Stat {
        self.ratio_of(name, |r| r.cpu_us_per_record)
    }

    fn ratio_of(&self, name: &str, f: impl Fn(&Run) -> f64) -> Stat {
        let Some(row) = self.row(name).filter(|r| r.failure.is_none()) else {
            return Stat::of(Vec::new());
        };
        let direct: Vec<Option<f64>> = self.direct().runs.iter().map(|r| r.as_ref().map(&f)).collect();
        if !row.paired {
            let d = Stat::of(direct.into_iter().flatten().collect()).median;
            return Stat::of(row.runs.iter().flatten().map(|r| f(r) / d).collect());
        }
        let mine: Vec<Option<f64>> = row.runs.iter().map(|r| r.as_ref().map(&f)).collect();
        Stat::of(pair_ratios(&mine, &direct))
    }

    /// Every paired proxy row that still runs has a throughput ratio within ±15 %.
    fn settled(&self) -> bool {
        self.rows
            .iter()
            .filter(|r| r.paired && !r.capped && r.name != "direct librdkafka" && r.failure.is_none())
            .all(|r| self.ratio(&r.name).spread_pct() <= SETTLED_PCT)
    }
}

/// A proxy row of a produce scenario: which proxy, with which extra environment.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub target: Target,
    pub env: Vec<(&'static str, &'static str)>,
}

/// Produce scenario: `size`-byte records, `per_frame` records per frame (1: single-record
/// frames, else array frames), over `sockets` sockets.
pub struct ProduceSpec {
    pub title: String,
    pub size: usize,
    pub records: usize,
    pub sockets: usize,
    pub per_frame: usize,
    pub kafka_tool: bool,
}

async fn rounds(s: &Sizes, table: &mut Table, mut round: impl AsyncRound) {
    for r in 0..s.max_pairs {
        if r >= s.min_pairs && table.settled() {
            break;
        }
        eprintln!("   round {}", r + 1);
        round.run(r, table).await;
    }
}

/// One round of a scenario (a trait rather than a closure: the round borrows the table).
trait AsyncRound {
    async fn run(&mut self, round: usize, table: &mut Table);
}

struct ProduceRound<'a> {
    spec: &'a ProduceSpec,
    variants: &'a [Variant],
    s: Sizes,
}

impl AsyncRound for ProduceRound<'_> {
    async fn run(&mut self, round: usize, table: &mut Table) {
        let spec = self.spec;
        for (i, v) in self.variants.iter().enumerate() {
            if table.rows[i].sits_out(round) {
                table.rows[i].runs.push(None);
                continue;
            }
            let n = v.target.records(spec.records, self.s.scala_div);
            table.rows[i].push(produce_once(v, spec, n).await);
        }
        let d = self.variants.len();
        table.rows[d].push(produce_direct_once(spec.size, spec.records, spec.sockets).await);
        if spec.kafka_tool && round == 0 {
            let rate = producer_perf(spec.size, spec.records).await;
            table.rows[d + 1].push(rate.map(|rate| Run { rate, cpu_us_per_record: f64::NAN }));
        }
    }
}

pub async fn produce(spec: ProduceSpec, variants: &[Variant], s: Sizes) -> Table {
    let mut rows: Vec<Row> = variants
        .iter()
        .map(|v| {
            Row::new(&v.label, v.target.records(spec.records, s.scala_div), true).capped(v.target.kind == Kind::Scala)
        })
        .collect();
    rows.push(Row::new("direct librdkafka", spec.records, true));
    if spec.kafka_tool {
        rows.push(Row::new("Kafka ProducerPerformance", spec.records, false));
    }
    let mut table = Table { title: spec.title.clone(), size: spec.size, rows, notes: Vec::new() };
    rounds(&s, &mut table, ProduceRound { spec: &spec, variants, s }).await;
    table
}

async fn produce_once(v: &Variant, spec: &ProduceSpec, n: usize) -> Outcome<Run> {
    let topic = unique(&format!("p{}", spec.size));
    create_topic(&topic, 4).await?;
    let proxy = Proxy::start(&v.target, &v.env).await?;
    let text = if spec.per_frame > 1 { array_frame(spec.size, spec.per_frame) } else { frame(spec.size) };
    let frames = n / spec.per_frame / spec.sockets;
    let mut socks = Vec::new();
    for i in 0..spec.sockets {
        socks.push(Bare::connect(&proxy.url(&format!("/socket/in?clientId=bench-{i}&topic={topic}"))).await?);
    }
    // Warm up the proxy's producer on this topic (and the JVM's JIT a little).
    let warm = Bare::connect(&proxy.url(&format!("/socket/in?clientId=warm&topic={topic}"))).await?;
    let warm_frames = if v.target.kind == Kind::Scala { 2000 } else { 100 } / spec.per_frame;
    produce_via_socket(warm, &text, warm_frames.max(1), spec.per_frame).await.map_err(|e| format!("warm-up: {e}"))?;
    let recording = profile::attach(&proxy, &format!("produce-{}-x{}", spec.size, spec.per_frame)).await;
    let cpu0 = proxy.cpu_us();
    let t0 = Instant::now();
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|ws| {
            let text = text.clone();
            let per = spec.per_frame;
            tokio::spawn(async move { produce_via_socket(ws, &text, frames, per).await })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let elapsed = t0.elapsed();
    let cpu = proxy.cpu_us() - cpu0;
    profile::detach(recording).await;
    let records = frames * spec.per_frame * spec.sockets;
    Ok(Run { rate: records as f64 / elapsed.as_secs_f64(), cpu_us_per_record: cpu / records as f64 })
}

/// The direct client in this process: its CPU is the bench process's own over the run
/// (`/proc/self/stat`; nothing else runs in the bench meanwhile).
async fn produce_direct_once(size: usize, n: usize, sockets: usize) -> Outcome<Run> {
    let topic = unique(&format!("d{size}"));
    create_topic(&topic, 4).await?;
    let p = direct_producer();
    let payload = vec![b'x'; size];
    // Warm up like the proxy's producer is warm: connections, metadata, producer id.
    produce_direct(&p, &topic, &payload, 100).await?;
    let workers = sockets.min(8);
    let k = n / workers;
    let cpu0 = cpu_us("self");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (p, topic, payload) = (p.clone(), topic.clone(), payload.clone());
            tokio::spawn(async move { produce_direct(&p, &topic, &payload, k).await })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_us("self") - cpu0;
    let records = k * workers;
    Ok(Run { rate: records as f64 / elapsed.as_secs_f64(), cpu_us_per_record: cpu / records as f64 })
}

async fn producer_perf(size: usize, n: usize) -> Outcome<f64> {
    let topic = unique(&format!("k{size}"));
    create_topic(&topic, 4).await?;
    let (num, rsize) = (n.to_string(), size.to_string());
    let bootstrap = format!("bootstrap.servers={BOOTSTRAP}");
    let args = [
        "--topic",
        &topic,
        "--num-records",
        &num,
        "--record-size",
        &rsize,
        "--throughput",
        "-1",
        "--producer-props",
        &bootstrap,
        "acks=all",
        "linger.ms=5",
        "batch.size=1048576",
    ];
    let out = kafka_java_tool("org.apache.kafka.tools.ProducerPerformance", &args).await;
    out.as_deref().and_then(parse_producer_perf).ok_or_else(|| "ProducerPerformance gave no figure".to_owned())
}

/// "500000 records sent, 123456.7 records/sec (11.77 MB/sec), ..." -> records/sec.
fn parse_producer_perf(out: &str) -> Option<f64> {
    let last = out.lines().rev().find(|l| l.contains("records sent"))?;
    let after = last.split("records sent,").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

struct ConsumeRound<'a> {
    targets: &'a [Target],
    topic: String,
    s: Sizes,
}

const BATCHES: [u32; 2] = [1, 100];

impl AsyncRound for ConsumeRound<'_> {
    async fn run(&mut self, round: usize, table: &mut Table) {
        let n = self.s.consume;
        for (t, target) in self.targets.iter().enumerate() {
            for (b, batch) in BATCHES.into_iter().enumerate() {
                let i = t * BATCHES.len() + b;
                if table.rows[i].sits_out(round) {
                    table.rows[i].runs.push(None);
                    continue;
                }
                let m = target.records(n, self.s.scala_div);
                table.rows[i].push(consume_once(target, &self.topic, m, batch).await);
            }
        }
        let d = self.targets.len() * BATCHES.len();
        table.rows[d].push(consume_direct_once(&self.topic, n).await);
        if round == 0 {
            let rate = consumer_perf(&self.topic, n).await;
            table.rows[d + 1].push(rate.map(|rate| Run { rate, cpu_us_per_record: f64::NAN }));
        }
    }
}

/// Consume scenario: one socket, `batchSize` 1 and 100, on one prefilled topic of 100 B records.
pub async fn consume(targets: &[Target], s: Sizes) -> Table {
    let n = s.consume;
    let mut rows = Vec::new();
    for t in targets {
        for batch in BATCHES {
            let row = Row::new(format!("{}, batchSize {batch}", t.name()), t.records(n, s.scala_div), true);
            rows.push(row.capped(t.kind == Kind::Scala));
        }
    }
    rows.push(Row::new("direct librdkafka", n, true));
    rows.push(Row::new("Kafka ConsumerPerformance", n, false));
    let mut table =
        Table { title: "3. Consume, one socket, 100 B values".to_owned(), size: 100, rows, notes: Vec::new() };
    if targets.iter().any(|t| t.kind == Kind::Scala) {
        table
            .notes
            .push("The Scala proxy parses `batchSize` and ignores it: it sends one record per frame.".to_owned());
    }
    let topic = unique("c100");
    if let Err(e) = async {
        create_topic(&topic, 4).await?;
        fill(&topic, n, 100).await
    }
    .await
    {
        for r in &mut table.rows {
            r.failure = Some(format!("prefill: {e}"));
        }
        return table;
    }
    rounds(&s, &mut table, ConsumeRound { targets, topic, s }).await;
    table
}

async fn consume_once(target: &Target, topic: &str, n: usize, batch: u32) -> Outcome<Run> {
    let proxy = Proxy::start(target, &[]).await?;
    let q = if batch > 1 { format!("&batchSize={batch}") } else { String::new() };
    let recording = profile::attach(&proxy, &format!("consume-batch{batch}")).await;
    let cpu0 = proxy.cpu_us();
    let mut ws =
        Bare::connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}{q}", unique("reader")))).await?;
    let d = consume_via_socket(&mut ws, n, batch > 1).await?;
    let cpu = proxy.cpu_us() - cpu0;
    profile::detach(recording).await;
    Ok(Run { rate: n as f64 / d.as_secs_f64(), cpu_us_per_record: cpu / n as f64 })
}

async fn consume_direct_once(topic: &str, n: usize) -> Outcome<Run> {
    let cpu0 = cpu_us("self");
    let c = direct_consumer(topic);
    let mut got = 0;
    let mut first = None;
    while got < n {
        let m = within(ANSWER_WAIT, "direct consumer", c.recv()).await?.map_err(|e| e.to_string())?;
        first.get_or_insert_with(Instant::now);
        let _ = c.store_offset_from_message(&m);
        got += 1;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    let cpu = cpu_us("self") - cpu0;
    Ok(Run { rate: n as f64 / elapsed.as_secs_f64(), cpu_us_per_record: cpu / n as f64 })
}

async fn consumer_perf(topic: &str, n: usize) -> Outcome<f64> {
    let (num, group) = (n.to_string(), unique("perf"));
    let args = [
        "--bootstrap-server",
        BOOTSTRAP,
        "--topic",
        topic,
        "--messages",
        &num,
        "--group",
        &group,
        "--timeout",
        "60000",
    ];
    let out = kafka_java_tool("org.apache.kafka.tools.ConsumerPerformance", &args).await;
    out.as_deref().and_then(parse_consumer_perf).ok_or_else(|| "ConsumerPerformance gave no figure".to_owned())
}

/// ConsumerPerformance prints a CSV header and line; take `fetch.nMsg.sec` (excludes the join).
fn parse_consumer_perf(out: &str) -> Option<f64> {
    let mut lines = out.lines().filter(|l| l.contains(','));
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let idx = header.iter().position(|h| *h == "fetch.nMsg.sec")?;
    values.get(idx)?.parse().ok()
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

    fn run(rate: f64) -> Option<Run> {
        Some(Run { rate, cpu_us_per_record: rate / 10.0 })
    }

    #[test]
    fn ratios_are_medians_of_pairs_and_failures_are_null() {
        let mut proxy = Row::new("proxy", 10, true);
        proxy.runs = vec![run(1.0), run(2.0), run(1.5)];
        let mut scala = Row::new("Scala proxy", 1, true);
        scala.runs = vec![None, None, None];
        scala.failure = Some("no answer".to_owned());
        let mut direct = Row::new("direct librdkafka", 10, true);
        direct.runs = vec![run(2.0), run(4.0), run(2.0)];
        let t = Table { title: String::new(), size: 100, rows: vec![proxy, scala, direct], notes: vec![] };
        let r = t.ratio("proxy");
        assert_eq!((r.median, r.min, r.max, r.n), (0.5, 0.5, 0.75, 3));
        assert!(!t.settled(), "0.75 is 50 % off the median");
        assert_eq!(t.ratio("Scala proxy").n, 0);
        assert_eq!(t.cpu_ratio("proxy").median, 0.5);
    }

    #[test]
    fn a_capped_row_sits_out_later_rounds_and_does_not_hold_them_back() {
        let mut proxy = Row::new("proxy", 10, true);
        proxy.runs = vec![run(1.0), run(1.0), run(1.0)];
        let mut scala = Row::new("Scala proxy", 1, true).capped(true);
        scala.runs = vec![run(0.01), run(0.03), run(0.01)];
        let mut direct = Row::new("direct librdkafka", 10, true);
        direct.runs = vec![run(2.0), run(2.0), run(2.0)];
        assert!(!scala.sits_out(CAPPED_ROUNDS - 1));
        assert!(scala.sits_out(CAPPED_ROUNDS));
        assert!(!proxy.sits_out(CAPPED_ROUNDS));
        let t = Table { title: String::new(), size: 100, rows: vec![proxy, scala, direct], notes: vec![] };
        assert!(t.ratio("Scala proxy").spread_pct() > SETTLED_PCT);
        assert!(t.settled(), "only the capped row is wide");
    }
}
