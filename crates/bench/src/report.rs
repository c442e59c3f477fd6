//! The report: `report.md` with every figure, its ratio to the direct client (median of
//! interleaved pairs, with spread), CPU per record, failed rows with their reason, SVG plots,
//! and the one-line JSON summary (the same JSON as the report's summary block).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::harness::Outcome;
use crate::plots::{bar_chart, line_chart};
use crate::scenarios::{IdleCost, Latency, Stall};
use crate::stats::{quantile, Stat};
use crate::throughput::{Table, SETTLED_PCT};

/// A figure per proxy ("proxy", "Scala proxy").
pub type PerProxy<T> = Vec<(String, Outcome<T>)>;

pub struct Results {
    pub quick: bool,
    pub note: Option<String>,
    pub produce_100b: Table,
    pub produce_1k: Table,
    pub produce_array: Table,
    pub produce_parallel: Table,
    pub consume: Table,
    pub latency: Vec<Latency>,
    pub idle_producers: PerProxy<IdleCost>,
    pub idle_consumers: PerProxy<IdleCost>,
    pub stall: PerProxy<Stall>,
    pub churn: PerProxy<f64>,
    /// Fan-out sockets (our proxy only).
    pub fanout: crate::fanout::FanOut,
    pub facts: Vec<(String, String)>,
    /// The summary of the report this run replaces, to say how far two runs agree.
    pub previous: Option<Value>,
    /// Hand-written findings from the profile (`where-the-cpu-goes.md` beside the report).
    pub findings: Option<String>,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A number rounded to 2 decimals (3 significant digits below 1, so that a ratio of 0.0234
/// is not 0.02 in one run and 0.03 in the next), or null when it was not measured.
fn num(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let decimals = if v.abs() >= 1.0 || v == 0.0 { 2 } else { (2.0 - v.abs().log10().floor()) as i32 };
    let scale = 10f64.powi(decimals);
    Value::from((v * scale).round() / scale)
}

fn get<'a, T>(v: &'a PerProxy<T>, name: &str) -> Option<&'a T> {
    v.iter().find(|(n, _)| n == name).and_then(|(_, r)| r.as_ref().ok())
}

/// The keys of the summary whose name says they are ratios to compare between runs.
fn is_ratio(key: &str) -> bool {
    key.contains("ratio")
}

impl Results {
    /// The proxy's p99 less the direct client's of the same seconds (`in_order`: the direct
    /// client's had it answered in send order, as the proxy must).
    fn p99_added(&self, per_s: usize, name: &str, in_order: bool) -> f64 {
        let Some(l) = self.latency.iter().find(|l| l.per_s == per_s) else { return f64::NAN };
        let direct = if in_order { l.direct_in_order_beside(name) } else { l.direct_beside(name) };
        match (get(&l.proxies, name), direct) {
            (Some(p), Some(Ok(d))) => ms(quantile(p, 0.99)) - ms(quantile(d, 0.99)),
            _ => f64::NAN,
        }
    }

    /// The median over the window's seconds of the p99 the proxy added (ms).
    fn p99_added_per_second(&self, per_s: usize, name: &str) -> f64 {
        let l = self.latency.iter().find(|l| l.per_s == per_s);
        match l.and_then(|l| l.p99_added_per_second(name)) {
            Some(Ok(v)) => *v,
            _ => f64::NAN,
        }
    }

    /// The figures of one proxy under `prefix` ("" for ours, "scala_" for the Scala proxy).
    fn proxy_figures(&self, m: &mut Map<String, Value>, prefix: &str, name: &str) {
        let mut put = |k: &str, v: f64| {
            m.insert(format!("{prefix}{k}"), num(v));
        };
        put("produce_ratio_100b", self.produce_100b.ratio(name).median);
        put("produce_ratio_1k", self.produce_1k.ratio(name).median);
        put("produce_ratio_parallel", self.produce_parallel.ratio(name).median);
        put("produce_ratio_array100", self.produce_array.ratio(name).median);
        put("consume_ratio", self.consume.ratio(&format!("{name}, batchSize 100")).median);
        put("consume_ratio_batch1", self.consume.ratio(&format!("{name}, batchSize 1")).median);
        put("p99_added_ms", self.p99_added(1000, name, false));
        put("p99_added_ms_10k", self.p99_added(10_000, name, false));
        put("p99_added_in_order_ms", self.p99_added(1000, name, true));
        put("p99_added_in_order_ms_10k", self.p99_added(10_000, name, true));
        put("p99_added_median_second_ms", self.p99_added_per_second(1000, name));
        put("p99_added_median_second_ms_10k", self.p99_added_per_second(10_000, name));
        put("idle_producer_socket_kb", get(&self.idle_producers, name).map_or(f64::NAN, IdleCost::per_socket_kib));
        put("idle_consumer_socket_kb", get(&self.idle_consumers, name).map_or(f64::NAN, IdleCost::per_socket_kib));
        put("stalled_consumer_rss_growth_mb", get(&self.stall, name).map_or(f64::NAN, Stall::growth_mib));
        put("churn_sockets_per_s", get(&self.churn, name).copied().unwrap_or(f64::NAN));
        let cpu =
            |t: &Table, row: &str| t.row(row).filter(|r| r.failure.is_none()).map_or(f64::NAN, |r| r.cpu().median);
        let who = if prefix.is_empty() { "proxy_" } else { "" };
        put(&format!("{who}cpu_us_per_record_produce_100b"), cpu(&self.produce_100b, name));
        put(&format!("{who}cpu_us_per_record_consume_100b"), cpu(&self.consume, &format!("{name}, batchSize 100")));
        put("cpu_ratio_produce_100b", self.produce_100b.cpu_ratio(name).median);
        put("cpu_ratio_consume_100b", self.consume.cpu_ratio(&format!("{name}, batchSize 100")).median);
    }

    pub fn summary_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("quick".to_owned(), Value::from(self.quick));
        self.proxy_figures(&mut m, "", "proxy");
        m.insert("direct_cpu_us_per_record_produce_100b".to_owned(), num(self.produce_100b.direct().cpu().median));
        m.insert("direct_cpu_us_per_record_consume_100b".to_owned(), num(self.consume.direct().cpu().median));
        self.fanout.summary(&mut m);
        if self.idle_producers.iter().any(|(n, _)| n == "Scala proxy") {
            self.proxy_figures(&mut m, "scala_", "Scala proxy");
        }
        Value::Object(m)
    }

    pub fn markdown(&self, commands: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmark report\n");
        if let Some(note) = &self.note {
            let _ = writeln!(md, "**{note}**\n");
        }
        if self.quick {
            let _ = writeln!(
                md,
                "**Quick run (`--quick`): small sizes, one pair per scenario; figures are indicative only.**\n"
            );
        }
        let _ = writeln!(
            md,
            "The proxy (release build) against the local Apache Kafka broker of `scripts/kafka`, beside a direct librdkafka client with the proxy's producer/consumer settings{} and Kafka's own perf tools, in the same run. Client, proxy and broker share the machine.\n",
            if self.idle_producers.len() > 1 { ", the reference Scala proxy (`../shared/scala-proxy/run`)" } else { "" }
        );
        md.push_str(METHOD);
        let _ = writeln!(md, "## Machine and versions\n");
        for (k, v) in &self.facts {
            let _ = writeln!(md, "- {k}: {v}");
        }
        let summary = serde_json::to_string_pretty(&self.summary_json()).unwrap();
        let _ = writeln!(md, "\n## Summary\n\n```json\n{summary}\n```\n");
        self.cpu_table(&mut md);
        for t in [&self.produce_100b, &self.produce_1k, &self.produce_array, &self.produce_parallel, &self.consume] {
            table_md(&mut md, t);
        }
        self.latency_md(&mut md);
        self.fanout.markdown(&mut md);
        self.memory_md(&mut md);
        self.failures_md(&mut md);
        let _ = writeln!(md, "## Where the CPU goes\n");
        match &self.findings {
            Some(f) => md.push_str(f.trim_end()),
            None => md.push_str("Not profiled in this run: see `scripts/flamegraph`."),
        }
        let _ = writeln!(md, "\n");
        self.agreement_md(&mut md);
        let _ = writeln!(md, "## How to reproduce\n\n```sh\n{commands}\n```");
        md
    }

    fn cpu_table(&self, md: &mut String) {
        let _ = writeln!(md, "## CPU per record\n");
        let _ = writeln!(md, "User+system CPU of the measured process per record, µs (median over the runs); ratio = median of the per-pair ratios to the direct client (± largest distance of a pair from it).\n");
        let scala = self.idle_producers.len() > 1;
        let _ = writeln!(
            md,
            "| scenario | proxy | direct librdkafka | proxy / direct |{}\n|---|---|---|---|{}",
            if scala { " Scala proxy | Scala / direct |" } else { "" },
            if scala { "---|---|" } else { "" }
        );
        let cons = [("consume 100 B, batchSize 1", "batchSize 1"), ("consume 100 B, batchSize 100", "batchSize 100")];
        let mut lines: Vec<(&str, &Table, String, String)> = vec![
            ("produce 100 B, single-record frames", &self.produce_100b, "proxy".into(), "Scala proxy".into()),
            ("produce 1 KiB, single-record frames", &self.produce_1k, "proxy".into(), "Scala proxy".into()),
            ("produce 100 B, 100-record array frames", &self.produce_array, "proxy".into(), "Scala proxy".into()),
        ];
        for (label, b) in cons {
            lines.push((label, &self.consume, format!("proxy, {b}"), format!("Scala proxy, {b}")));
        }
        for (label, t, ours, theirs) in lines {
            let _ = write!(
                md,
                "| {label} | {} | {} | {} |",
                cpu_cell(t, &ours),
                f2(t.direct().cpu().median),
                ratio_cell(t.cpu_ratio(&ours))
            );
            if scala {
                let _ = write!(md, " {} | {} |", cpu_cell(t, &theirs), ratio_cell(t.cpu_ratio(&theirs)));
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }

    fn latency_md(&self, md: &mut String) {
        for l in &self.latency {
            let _ = writeln!(md, "## 4. Produce acknowledgement latency at {} records/s\n", thousands(l.per_s));
            let _ =
                writeln!(md, "| client | samples | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|");
            let rows = l.proxies.iter().zip(l.directs.iter().zip(&l.directs_in_order)).flat_map(|((n, r), (d, o))| {
                let beside = if n == "proxy" {
                    "direct librdkafka".to_owned()
                } else {
                    format!("direct librdkafka, beside the {n}")
                };
                [(n.clone(), r), (beside.clone(), d), (format!("{beside}, answered in send order"), o)]
            });
            for (name, r) in rows {
                match r {
                    Ok(v) => {
                        let _ = writeln!(
                            md,
                            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                            v.len(),
                            ms(quantile(v, 0.5)),
                            ms(quantile(v, 0.99)),
                            ms(quantile(v, 0.999)),
                            ms(v.last().copied().unwrap_or_default())
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(md, "| {name} | failed: {} | | | | |", cell(e));
                    }
                }
            }
            let _ = writeln!(md);
            for ((name, _), added) in l.proxies.iter().zip(&l.p99_added_per_second) {
                if let Ok(v) = added {
                    let _ = writeln!(md, "p99 added by the {name}, the median over the window's seconds of its p99 less the direct client's in the same second: {v:.2} ms.\n");
                }
            }
            let _ = writeln!(md, "![latency CDF](latency{}.svg)\n", if l.per_s == 1000 { "" } else { "_10k" });
        }
    }

    fn memory_md(&self, md: &mut String) {
        let _ = writeln!(md, "## 5. Memory\n");
        let _ = writeln!(
            md,
            "| proxy | sockets | count | RSS before | with sockets | per socket |\n|---|---|---|---|---|---|"
        );
        for (what, v) in
            [("idle producer sockets", &self.idle_producers), ("idle consumer sockets", &self.idle_consumers)]
        {
            for (name, r) in v {
                match r {
                    Ok(c) => {
                        let _ = writeln!(
                            md,
                            "| {name} | {what} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
                            c.sockets,
                            c.base_kib as f64 / 1024.0,
                            c.with_sockets_kib as f64 / 1024.0,
                            c.per_socket_kib()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(md, "| {name} | {what} | failed: {} | | | |", cell(e));
                    }
                }
            }
        }
        let _ = writeln!(md);
        for (name, r) in &self.stall {
            match r {
                Ok(s) => {
                    let _ = writeln!(
                        md,
                        "Stalled consumer, {name}: backlog of {} records; RSS {:.1} MiB when it stopped reading, peak {:.1} MiB over the stall (growth {:.1} MiB).\n",
                        s.backlog,
                        s.start_kib as f64 / 1024.0,
                        s.peak_kib as f64 / 1024.0,
                        s.growth_mib()
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "Stalled consumer, {name}: failed: {e}\n");
                }
            }
        }
        let _ = writeln!(md, "![RSS over time](stall_rss.svg)\n\n## 6. Connection churn\n");
        for (name, r) in &self.churn {
            match r {
                Ok(v) => {
                    let _ = writeln!(
                        md,
                        "- {name}: {v:.0} produce sockets opened and closed per second (8 clients in parallel)."
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "- {name}: failed: {e}");
                }
            }
        }
        let _ = writeln!(md, "\n![throughput](throughput.svg)\n");
    }

    fn failures_md(&self, md: &mut String) {
        let mut failed = Vec::new();
        for t in [&self.produce_100b, &self.produce_1k, &self.produce_array, &self.produce_parallel, &self.consume] {
            for r in &t.rows {
                if let Some(e) = &r.failure {
                    failed.push(format!("{}: {}: {e}", t.title, r.name));
                }
            }
        }
        for l in &self.latency {
            let beside = l.proxies.iter().zip(&l.directs).map(|((n, _), d)| (format!("direct beside {n}"), d));
            for (n, r) in l.proxies.iter().map(|(n, r)| (n.clone(), r)).chain(beside) {
                if let Err(e) = r {
                    failed.push(format!("latency at {}/s: {n}: {e}", l.per_s));
                }
            }
        }
        for (what, v) in
            [("idle producer sockets", &self.idle_producers), ("idle consumer sockets", &self.idle_consumers)]
        {
            failed.extend(v.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{what}: {n}: {e}"))));
        }
        failed.extend(
            self.stall.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("stalled consumer: {n}: {e}"))),
        );
        failed.extend(self.churn.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("churn: {n}: {e}"))));
        if !failed.is_empty() {
            let _ = writeln!(md, "## Failed rows\n\nA failed row's figures are `null` in the summary.\n");
            for f in failed {
                let _ = writeln!(md, "- {f}");
            }
            let _ = writeln!(md);
        }
    }

    fn agreement_md(&self, md: &mut String) {
        let Some(prev) = self.previous.as_ref().and_then(Value::as_object) else { return };
        if prev.get("quick") != Some(&Value::from(self.quick)) {
            return;
        }
        let now = self.summary_json();
        let _ = writeln!(md, "## Agreement with the previous run\n");
        let _ = writeln!(md, "The ratios of this run beside those of the report it replaced (issue 16 asks two full runs in a row to agree within ±{SETTLED_PCT:.0} %).\n");
        let _ = writeln!(md, "| figure | previous run | this run | difference |\n|---|---|---|---|");
        let mut worst: f64 = 0.0;
        for (k, v) in now.as_object().unwrap() {
            if !is_ratio(k) {
                continue;
            }
            let (Some(a), Some(b)) = (prev.get(k).and_then(Value::as_f64), v.as_f64()) else { continue };
            let d = (b - a) / a * 100.0;
            worst = worst.max(d.abs());
            let _ = writeln!(md, "| `{k}` | {a:.2} | {b:.2} | {d:+.0} % |");
        }
        let _ = writeln!(md, "\nLargest difference: {worst:.0} %.\n");
    }

    pub fn write_plots(&self, dir: &Path) -> std::io::Result<()> {
        let mut bars = Vec::new();
        for (group, t) in [
            ("produce 100 B", &self.produce_100b),
            ("produce 1 KiB", &self.produce_1k),
            ("produce 100 B arrays", &self.produce_array),
            ("produce parallel", &self.produce_parallel),
            ("consume 100 B", &self.consume),
        ] {
            for r in t.rows.iter().filter(|r| r.failure.is_none()) {
                bars.push((format!("{group}: {}", r.name), r.rate().median));
            }
        }
        std::fs::write(dir.join("throughput.svg"), bar_chart("Throughput (records/s, median)", &bars))?;
        for l in &self.latency {
            let mut lines: Vec<(&str, Vec<(f64, f64)>)> =
                l.proxies.iter().filter_map(|(n, r)| r.as_ref().ok().map(|v| (n.as_str(), cdf(v)))).collect();
            if let Some(Ok(d)) = l.direct_beside("proxy") {
                lines.push(("direct librdkafka", cdf(d)));
            }
            let title = format!("Produce ack latency CDF at {} records/s", thousands(l.per_s));
            let file = if l.per_s == 1000 { "latency.svg".to_owned() } else { "latency_10k.svg".to_owned() };
            std::fs::write(dir.join(file), line_chart(&title, "ms", "fraction", &lines))?;
        }
        let rss: Vec<(&str, Vec<(f64, f64)>)> = self
            .stall
            .iter()
            .filter_map(|(n, r)| {
                r.as_ref().ok().map(|s| (n.as_str(), s.samples.iter().map(|(t, k)| (*t, *k as f64 / 1024.0)).collect()))
            })
            .collect();
        std::fs::write(dir.join("stall_rss.svg"), line_chart("RSS while a consumer stalls", "s", "MiB", &rss))?;
        Ok(())
    }
}

const METHOD: &str = "## How it measures\n\n\
- **Interleaved pairs.** Each round runs every proxy variant and then the direct librdkafka client on fresh topics (A B A B …); a proxy run's ratio is taken against the direct run of its own round, and a table shows the median of those per-pair ratios with its spread (± the largest distance of a pair from the median). A full run does at least 5 rounds and goes on to 7 while a ratio of ours spreads more than ±15 %; each measured run lasts seconds (1M records of 100 B, 500k of 1 KiB, 2M consumed), not one.\n\
- **A broker in the same state for every run.** The bench deletes the topics of each scenario before the next one (waiting until the broker has removed their files, then `sync`), and at its start every `bench-…` topic an earlier run left (but those of a bench process still running) (a broker that kept them grew by hundreds of partitions and gigabytes per run and slowed down run after run).\n\
- **A lean load generator.** The proxy's WebSocket clients are bare (`crates/bench/src/bare.rs`): the upgrade by hand on a TCP stream, each produce frame encoded and masked once by tungstenite's codec and written 64 KiB at a time, answers read into one buffer with headers parsed by the same codec and checked (an error answer fails the run), a consume frame's records counted, not parsed (an error frame fails the run); a produce run's clock stops at its last answer, before the close handshake. The client shares the 2 cores with the proxy and the broker, and a direct librdkafka client has no such client to feed; tokio-tungstenite's full stream cost the load generator about as much CPU per record as the proxy itself. Clients of a deployed proxy run on other machines.\n\
- **CPU per record.** The measured process's user+system CPU time (`/proc/PID/stat`, utime+stime, all its threads, read before and after the measured records, warm-up excluded) divided by the records. The proxy is its own process. The direct client runs inside the bench process, so its figure is the bench process's own CPU (`/proc/self/stat`) over its run: librdkafka's threads plus the tokio tasks that hand it records and await the acknowledgements; nothing else runs in the bench meanwhile. Unlike records/s, this does not depend on how busy the machine is (but a busy machine's caches and frequency still move it somewhat).\n\
- **The Scala proxy** (`--with-scala`) is started for each run like ours, with its own `WSPROXY_SESSION_STATE_TOPIC` and `WSPROXY_SERVER_ID`, gets 1/20 of the records of a throughput run (it is 30 to 100 times slower; every figure is per record or per second), a JIT warm-up of 2,000 records, and runs in the first 5 rounds only (its figures are 50 to 200 times from ours; its wide spreads do not add rounds). A scenario it cannot do becomes a failed row with the reason.\n\
- **Latency in paired windows.** Each proxy's acknowledgement latency window (20 s at 1,000 and at 10,000 records/s, one socket) runs at the same time as a direct client's own window at the same rate on its own topic; the p99 a proxy adds is its p99 minus that of the direct client of the same seconds, so a stall of the machine or the broker lands on both. The price: the broker takes both clients' records and the direct client shares the cores with the proxy beside it (much more beside the Scala proxy), so the direct p99 is not that of a client alone. The proxy must answer in input order (one result per record), so a record's answer also waits for every earlier record's acknowledgement (another partition's batch may come back later); the direct client answers each record when it is acknowledged. The row \"answered in send order\" is that direct client's latency had it answered in send order, from the same acknowledgements, and `p99_added_in_order_ms` is the proxy's p99 less that one. A stall of the broker lands on both clients but not always on the same records, and moves a 20-second window's p99 by tens or hundreds of ms: `p99_added_median_second_ms` takes the p99 added in each second of the window (records sent in that second) and reports the median over the seconds, which a stall in a few seconds does not move.\n\
- **Deadlines.** Every wait has one (30 s without an answer on a socket, 5 s for a close frame in reply, 120 s for the Scala proxy's start); a proxy that does not answer makes its row fail with the reason, never a hang.\n\n";

fn table_md(md: &mut String, t: &Table) {
    let _ = writeln!(md, "## {}\n", t.title);
    let _ = writeln!(
        md,
        "| client | records | records/s (median) | spread (min to max) | MB/s | ratio to direct (median of pairs) | pairs, spread | CPU µs/record | CPU ratio to direct |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let direct = t.direct();
    for r in &t.rows {
        if let Some(e) = &r.failure {
            let _ = writeln!(md, "| {} | {} | failed: {} | | | | | | |", r.name, r.records, cell(e));
            continue;
        }
        let rate = r.rate();
        let (ratio, pairs) = if r.name == direct.name {
            ("1.00".to_owned(), format!("{} runs", rate.n))
        } else {
            let q = t.ratio(&r.name);
            let pairs = if r.paired { format!("{}, ±{:.0} %", q.n, q.spread_pct()) } else { "not paired".to_owned() };
            (f2(q.median), pairs)
        };
        let cpu_ratio = if r.name == direct.name { "1.00".to_owned() } else { f2(t.cpu_ratio(&r.name).median) };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} to {:.0} | {:.1} | {ratio} | {pairs} | {} | {cpu_ratio} |",
            r.name,
            r.records,
            rate.median,
            rate.min,
            rate.max,
            rate.median * t.size as f64 / 1e6,
            f2(r.cpu().median),
        );
    }
    for n in &t.notes {
        let _ = writeln!(md, "\n{n}");
    }
    let _ = writeln!(md);
}

fn cpu_cell(t: &Table, row: &str) -> String {
    match t.row(row) {
        Some(r) if r.failure.is_none() => f2(r.cpu().median),
        Some(_) => "failed".to_owned(),
        None => "-".to_owned(),
    }
}

fn ratio_cell(s: Stat) -> String {
    if s.n == 0 {
        "-".to_owned()
    } else {
        format!("{:.2} (±{:.0} %, {} pairs)", s.median, s.spread_pct(), s.n)
    }
}

fn f2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".to_owned()
    }
}

fn cell(e: &str) -> String {
    e.replace('|', "/").replace('\n', " ")
}

fn thousands(n: usize) -> String {
    if n >= 1000 {
        format!("{},{:03}", n / 1000, n % 1000)
    } else {
        n.to_string()
    }
}

fn cdf(sorted: &[Duration]) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1) as f64;
    let step = (sorted.len() / 500).max(1);
    sorted.iter().enumerate().step_by(step).map(|(i, d)| (ms(*d), (i + 1) as f64 / n)).collect()
}

/// The fenced `json` summary block of an earlier report.
pub fn summary_of(report: &str) -> Option<Value> {
    let start = report.find("```json\n")? + "```json\n".len();
    let end = start + report[start..].find("```")?;
    serde_json::from_str(&report[start..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_block_back() {
        let md = "# r\n\n## Summary\n\n```json\n{\n  \"quick\": false,\n  \"consume_ratio\": 0.26\n}\n```\n\n## more\n```sh\nx\n```";
        let v = summary_of(md).unwrap();
        assert_eq!(v["consume_ratio"], 0.26);
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(num(1.234), Value::from(1.23));
        assert_eq!(num(0.5371), Value::from(0.537));
        assert_eq!(num(0.02345), Value::from(0.0235));
        assert_eq!(num(0.0), Value::from(0.0));
        assert_eq!(num(215.234), Value::from(215.23));
        assert_eq!(thousands(10_000), "10,000");
    }
}
