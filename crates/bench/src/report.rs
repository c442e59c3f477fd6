//! The report: `report.md` with every figure and its ratio to the baseline, SVG plots, and the
//! one-line JSON summary.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::harness::quantile;
use crate::scenarios::{IdleCost, Latency, Stall, Throughput};

pub struct Results {
    pub quick: bool,
    pub produce_100b: Vec<Throughput>,
    pub produce_1k: Vec<Throughput>,
    pub produce_parallel: Vec<Throughput>,
    pub produce_no_metrics: Vec<Throughput>,
    pub consume: Vec<Throughput>,
    pub latency: Latency,
    pub idle_producers: IdleCost,
    pub idle_consumers: IdleCost,
    pub stall: Stall,
    pub churn_per_s: f64,
    pub facts: Vec<(String, String)>,
}

fn ratio(v: &[Throughput], name_prefix: &str) -> f64 {
    let proxy = v.iter().find(|t| t.name.starts_with(name_prefix)).map_or(0.0, |t| t.rate.median);
    let direct = v.iter().find(|t| t.name == "direct librdkafka").map_or(f64::NAN, |t| t.rate.median);
    proxy / direct
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Results {
    pub fn summary_json(&self) -> serde_json::Value {
        let p99_added = ms(quantile(&self.latency.proxy, 0.99)) - ms(quantile(&self.latency.direct, 0.99));
        serde_json::json!({
            "quick": self.quick,
            "produce_ratio_100b": round(ratio(&self.produce_100b, "proxy")),
            "produce_ratio_1k": round(ratio(&self.produce_1k, "proxy")),
            "produce_ratio_parallel": round(ratio(&self.produce_parallel, "proxy")),
            "consume_ratio": round(ratio(&self.consume, "proxy, batchSize 100")),
            "consume_ratio_batch1": round(ratio(&self.consume, "proxy, batchSize 1")),
            "p99_added_ms": round(p99_added),
            "idle_producer_socket_kb": round(self.idle_producers.per_socket_kib()),
            "idle_consumer_socket_kb": round(self.idle_consumers.per_socket_kib()),
            "stalled_consumer_rss_growth_mb": round((self.stall.peak_kib.saturating_sub(self.stall.start_kib)) as f64 / 1024.0),
            "churn_sockets_per_s": round(self.churn_per_s),
        })
    }

    pub fn markdown(&self, commands: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmark report\n");
        let _ = writeln!(
            md,
            "{}The proxy (release build) against the local Apache Kafka broker of `scripts/kafka`, beside a direct librdkafka client with the proxy's producer/consumer settings and Kafka's own perf tools, in the same run. Client, proxy and broker share the machine.\n",
            if self.quick { "**Quick run (`--quick`): small sizes, one repetition; figures are indicative only.**\n\n" } else { "" }
        );
        let _ = writeln!(md, "## Machine and versions\n");
        for (k, v) in &self.facts {
            let _ = writeln!(md, "- {k}: {v}");
        }
        let _ = writeln!(
            md,
            "\n## Summary\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&self.summary_json()).unwrap()
        );
        for (title, rows) in [
            ("1. Produce, one socket, 100 B values", &self.produce_100b),
            ("1. Produce, one socket, 1 KiB values", &self.produce_1k),
            ("2. Produce, many sockets in parallel, 100 B values", &self.produce_parallel),
            ("Cost of metrics: produce, one socket, 100 B, `WSPROXY_METRICS_ENABLED=false`", &self.produce_no_metrics),
            ("3. Consume, one socket, 100 B values", &self.consume),
        ] {
            let _ = writeln!(md, "## {title}\n");
            let _ = writeln!(
                md,
                "| client | records | records/s (median) | spread (min to max) | MB/s | ratio to direct |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            let direct = rows.iter().find(|t| t.name == "direct librdkafka").map_or(f64::NAN, |t| t.rate.median);
            for t in rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.0} to {:.0} | {:.1} | {:.2} |",
                    t.name,
                    t.records,
                    t.rate.median,
                    t.rate.min,
                    t.rate.max,
                    t.mb_per_s(),
                    t.rate.median / direct
                );
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "## 4. Produce acknowledgement latency at 1,000 records/s\n");
        let _ = writeln!(md, "| client | samples | p50 ms | p99 ms | p99.9 ms | max ms |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (name, v) in [("proxy", &self.latency.proxy), ("direct librdkafka", &self.latency.direct)] {
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
        let _ = writeln!(md, "\n![latency CDF](latency.svg)\n");
        let _ = writeln!(md, "## 5. Memory\n");
        let _ = writeln!(md, "| sockets | count | proxy RSS before | with sockets | per socket |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for (name, c) in
            [("idle producer sockets", &self.idle_producers), ("idle consumer sockets", &self.idle_consumers)]
        {
            let _ = writeln!(
                md,
                "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
                c.sockets,
                c.base_kib as f64 / 1024.0,
                c.with_sockets_kib as f64 / 1024.0,
                c.per_socket_kib()
            );
        }
        let _ = writeln!(
            md,
            "\nStalled consumer: backlog of {} records; RSS {:.1} MiB when it stopped reading, peak {:.1} MiB over the stall (growth {:.1} MiB).\n\n![RSS over time](stall_rss.svg)\n",
            self.stall.backlog,
            self.stall.start_kib as f64 / 1024.0,
            self.stall.peak_kib as f64 / 1024.0,
            (self.stall.peak_kib.saturating_sub(self.stall.start_kib)) as f64 / 1024.0
        );
        let _ = writeln!(
            md,
            "## 6. Connection churn\n\n{:.0} produce sockets opened and closed per second (8 clients in parallel).\n",
            self.churn_per_s
        );
        let _ = writeln!(md, "![throughput](throughput.svg)\n\n## How to reproduce\n\n```sh\n{commands}\n```");
        md
    }

    pub fn write_plots(&self, dir: &Path) -> std::io::Result<()> {
        let mut bars = Vec::new();
        for (group, rows) in [
            ("produce 100 B", &self.produce_100b),
            ("produce 1 KiB", &self.produce_1k),
            ("produce parallel", &self.produce_parallel),
            ("consume 100 B", &self.consume),
        ] {
            for t in rows {
                bars.push((format!("{group}: {}", t.name), t.rate.median));
            }
        }
        std::fs::write(dir.join("throughput.svg"), bar_chart("Throughput (records/s, median)", &bars))?;
        let lines = [("proxy", cdf(&self.latency.proxy)), ("direct librdkafka", cdf(&self.latency.direct))];
        std::fs::write(
            dir.join("latency.svg"),
            line_chart("Produce ack latency CDF at 1,000 records/s", "ms", "fraction", &lines),
        )?;
        let rss: Vec<(f64, f64)> = self.stall.samples.iter().map(|(t, k)| (*t, *k as f64 / 1024.0)).collect();
        std::fs::write(
            dir.join("stall_rss.svg"),
            line_chart("Proxy RSS while a consumer stalls", "s", "MiB", &[("RSS", rss)]),
        )?;
        Ok(())
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn cdf(sorted: &[Duration]) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1) as f64;
    let step = (sorted.len() / 500).max(1);
    sorted.iter().enumerate().step_by(step).map(|(i, d)| (ms(*d), (i + 1) as f64 / n)).collect()
}

const W: f64 = 900.0;
const H: f64 = 420.0;
const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars, one per label.
fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let row = 22.0;
    let h = 60.0 + row * bars.len() as f64;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/><text x='10' y='20' font-size='15'>{}</text>",
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let w = (W - 420.0) * v / max;
        let _ = write!(
            s,
            "<text x='10' y='{}'>{}</text><rect x='340' y='{}' width='{w:.1}' height='{}' fill='{}'/><text x='{:.1}' y='{}'>{v:.0}</text>",
            y + 14.0,
            esc(label),
            y + 3.0,
            row - 6.0,
            COLORS[i % COLORS.len()],
            345.0 + w,
            y + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Lines over shared axes.
fn line_chart(title: &str, x_label: &str, y_label: &str, lines: &[(&str, Vec<(f64, f64)>)]) -> String {
    let xs = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
    let (x_max, y_max) = (xs.fold(1e-9, f64::max), ys.fold(1e-9, f64::max));
    let (x0, y0, pw, ph) = (70.0, H - 50.0, W - 100.0, H - 100.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/><text x='10' y='20' font-size='15'>{}</text>\
         <line x1='{x0}' y1='{y0}' x2='{}' y2='{y0}' stroke='black'/><line x1='{x0}' y1='{y0}' x2='{x0}' y2='{}' stroke='black'/>\
         <text x='{}' y='{}'>{} (max {x_max:.2})</text><text x='5' y='{}'>{} (max {y_max:.2})</text>",
        esc(title),
        x0 + pw,
        y0 - ph,
        x0 + pw / 2.0,
        y0 + 35.0,
        esc(x_label),
        y0 - ph - 8.0,
        esc(y_label)
    );
    for (i, (name, pts)) in lines.iter().enumerate() {
        let path: Vec<String> =
            pts.iter().map(|(x, y)| format!("{:.1},{:.1}", x0 + pw * x / x_max, y0 - ph * y / y_max)).collect();
        let c = COLORS[i % COLORS.len()];
        let _ = write!(
            s,
            "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/><text x='{}' y='{}' fill='{c}'>{}</text>",
            path.join(" "),
            x0 + pw - 150.0,
            y0 - ph + 20.0 + 16.0 * i as f64,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}
