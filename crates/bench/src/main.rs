//! `wsproxy-bench`: measures the proxy against a direct librdkafka client and Kafka's perf
//! tools (and, with `--with-scala`, the reference Scala proxy), in one run, on the broker from
//! `scripts/kafka`, and writes `bench/report.md` with plots. The last line on stdout is the
//! JSON summary.
//!
//! `cargo run --release -p wsproxy-bench -- [--quick] [--with-scala] [--out DIR]`

mod bare;
mod fanout;
mod harness;
mod plots;
mod profile;
mod report;
mod scenarios;
mod sockets;
mod stats;
mod throughput;

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;

use harness::{Kind, Target};
use throughput::{ProduceSpec, Variant};

#[derive(Parser, Debug)]
#[command(name = "wsproxy-bench", version, about)]
struct Cli {
    /// Every scenario, small enough to finish in a few minutes (one pair per scenario).
    #[arg(long)]
    quick: bool,
    /// Where the report and plots go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The proxy binary; default: build and use target/release/kafka-websocket-proxy.
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Also measure the reference Scala proxy (its `run` script: needs java and mvn).
    #[arg(long)]
    with_scala: bool,
    /// The Scala proxy's start script; default: `shared/scala-proxy/run` in the project's
    /// parent directory or the one above it (a git worktree).
    #[arg(long)]
    scala_run: Option<PathBuf>,
    /// Run only this scenario and print its figures (for profiling): produce, produce-1k,
    /// produce-array, produce-parallel, consume, latency (paired windows), fanout or fanout-latency
    /// (with --quick: small).
    #[arg(long)]
    only: Option<String>,
    /// Records for --only.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Record our proxy with `perf record` during each measured run into this directory.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// A line printed in bold at the top of the report (e.g. how busy the machine was).
    #[arg(long)]
    note: Option<String>,
}

/// Sizes of one run (`--quick` shrinks everything).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub min_pairs: usize,
    pub max_pairs: usize,
    /// The Scala proxy gets 1/scala_div of the records (and idle sockets).
    pub scala_div: usize,
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
    /// Idle fan-out sockets; (sockets, records each) for CPU per delivered record; (sockets,
    /// seconds at 100 records/s) for produce-to-socket latency.
    pub fanout_idle: usize,
    pub fanout_cpu: [(usize, usize); 2],
    pub fanout_latency: (usize, u64),
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            min_pairs: 5,
            max_pairs: 7,
            scala_div: 20,
            produce_100b: 1_000_000,
            produce_1k: 500_000,
            parallel_sockets: 100,
            consume: 2_000_000,
            latency_secs: 20,
            idle_producers: 10_000,
            idle_consumers: 500,
            stall_backlog: 1_000_000,
            stall_secs: 30,
            churn_secs: 10,
            fanout_idle: 10_000,
            fanout_cpu: [(100, 10_000), (1_000, 1_000)],
            fanout_latency: (1_000, 10),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            min_pairs: 1,
            max_pairs: 1,
            scala_div: 4,
            produce_100b: 20_000,
            produce_1k: 10_000,
            parallel_sockets: 20,
            consume: 20_000,
            latency_secs: 2,
            idle_producers: 500,
            idle_consumers: 20,
            stall_backlog: 50_000,
            stall_secs: 5,
            churn_secs: 3,
            fanout_idle: 500,
            fanout_cpu: [(10, 1_000), (100, 100)],
            fanout_latency: (100, 2),
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let root = harness::root();
    let bin = match &cli.proxy_bin {
        Some(b) => b.clone(),
        None => {
            eprintln!("building the proxy (release)");
            let ok = Command::new(env!("CARGO"))
                .args(["build", "--release", "-q", "-p", "kafka-websocket-proxy", "--bin", "kafka-websocket-proxy"])
                .current_dir(&root)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cargo build --release of the proxy failed");
            root.join("target/release/kafka-websocket-proxy")
        }
    };
    let probe = Command::new(root.join("scripts/kafka")).arg("status").output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("no broker at {}: start it with scripts/kafka start", harness::BOOTSTRAP);
        std::process::exit(1);
    }
    if let Some(dir) = &cli.perf_dir {
        profile::enable(dir.clone());
    }
    let ours = Target { kind: Kind::Ours, program: bin.clone() };
    let mut targets = vec![ours.clone()];
    if cli.with_scala {
        let run = cli.scala_run.clone().unwrap_or_else(|| {
            let found =
                ["..", "../.."].iter().map(|up| root.join(up).join("shared/scala-proxy/run")).find(|p| p.exists());
            found.unwrap_or_else(|| root.join("../shared/scala-proxy/run"))
        });
        targets.push(Target { kind: Kind::Scala, program: run });
    }
    let mut s = if cli.quick { Sizes::quick() } else { Sizes::full() };
    let variants = |with_metrics_off: bool| {
        let mut v: Vec<Variant> =
            targets.iter().map(|t| Variant { label: t.name().to_owned(), target: t.clone(), env: vec![] }).collect();
        if with_metrics_off {
            v.insert(
                1,
                Variant {
                    label: "proxy, metrics off".to_owned(),
                    target: ours.clone(),
                    env: vec![("WSPROXY_METRICS_ENABLED", "false")],
                },
            );
        }
        v
    };
    let spec = |title: &str, size, records, sockets, per_frame| ProduceSpec {
        title: title.to_owned(),
        size,
        records,
        sockets,
        per_frame,
        kafka_tool: sockets == 1 && per_frame == 1,
    };

    let left = harness::drop_leftover_topics().await;
    let partitions_at_start = harness::broker_partitions();
    eprintln!("deleted {left} topics left by earlier runs; the broker holds {partitions_at_start:?} partitions");

    if let Some(only) = cli.only.as_deref() {
        (s.min_pairs, s.max_pairs, s.consume) = (1, 1, cli.records);
        // One scenario for a profile: no Kafka perf tool beside it.
        let spec = |title: &str, size, records, sockets, per_frame| ProduceSpec {
            kafka_tool: false,
            ..spec(title, size, records, sockets, per_frame)
        };
        let n = cli.records;
        let table = match only {
            "produce" => throughput::produce(spec("produce 100 B", 100, n, 1, 1), &variants(false), s).await,
            "produce-1k" => throughput::produce(spec("produce 1 KiB", 1024, n, 1, 1), &variants(false), s).await,
            "produce-array" => throughput::produce(spec("produce arrays", 100, n, 1, 100), &variants(false), s).await,
            "produce-parallel" => {
                throughput::produce(spec("produce parallel", 100, n, s.parallel_sockets, 1), &variants(false), s).await
            }
            "consume" => throughput::consume(&targets, s).await,
            "latency" => {
                for per_s in [1000, 10_000] {
                    let l = scenarios::latency(&targets, s.latency_secs, per_s).await;
                    for (name, p) in &l.proxies {
                        let d = l.direct_beside(name).expect("a direct window beside each proxy");
                        let o = l.direct_in_order_beside(name).expect("a direct window beside each proxy");
                        if let Some(Ok(v)) = l.p99_added_per_second(name) {
                            println!("{per_s}/s {name}: p99 added, median over the window's seconds: {v:.2} ms");
                        }
                        match (p, d, o) {
                            (Ok(p), Ok(d), Ok(o)) => println!(
                                "{per_s}/s {name}: p50 {:.2} ms, p99 {:.2} ms; direct beside it: p50 {:.2} ms, p99 {:.2} ms; answered in send order: p50 {:.2} ms, p99 {:.2} ms",
                                report::ms(stats::quantile(p, 0.5)),
                                report::ms(stats::quantile(p, 0.99)),
                                report::ms(stats::quantile(d, 0.5)),
                                report::ms(stats::quantile(d, 0.99)),
                                report::ms(stats::quantile(o, 0.5)),
                                report::ms(stats::quantile(o, 0.99))
                            ),
                            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => println!("{per_s}/s {name}: failed: {e}"),
                        }
                    }
                }
                harness::drop_topics().await;
                return;
            }
            "fanout" | "fanout-latency" => {
                let sizes = if cli.quick { Sizes::quick() } else { Sizes::full() };
                let f = fanout::measure(&ours, sizes, only == "fanout-latency").await;
                let mut md = String::new();
                f.markdown(&mut md);
                println!("{md}");
                let mut m = serde_json::Map::new();
                f.summary(&mut m);
                println!("{}", serde_json::Value::Object(m));
                return;
            }
            other => {
                panic!("--only {other}: use produce, produce-1k, produce-array, produce-parallel, consume, latency, fanout or fanout-latency")
            }
        };
        harness::drop_topics().await;
        for r in &table.rows {
            match &r.failure {
                Some(e) => println!("{:40} failed: {e}", r.name),
                None => {
                    println!("{:40} {:>10.0} records/s {:>8.2} µs CPU/record", r.name, r.rate().median, r.cpu().median)
                }
            }
        }
        return;
    }
    let t0 = std::time::Instant::now();

    step("produce 100 B, one socket").await;
    let produce_100b = throughput::produce(
        spec("1. Produce, one socket, 100 B values, single-record frames", 100, s.produce_100b, 1, 1),
        &variants(true),
        s,
    )
    .await;
    step("produce 1 KiB, one socket").await;
    let produce_1k = throughput::produce(
        spec("1. Produce, one socket, 1 KiB values, single-record frames", 1024, s.produce_1k, 1, 1),
        &variants(false),
        s,
    )
    .await;
    step("produce 100 B, one socket, 100-record array frames").await;
    let produce_array = throughput::produce(
        spec("1. Produce, one socket, 100 B values, 100-record array frames", 100, s.produce_100b, 1, 100),
        &variants(false),
        s,
    )
    .await;
    step("produce 100 B, parallel sockets").await;
    let title = format!("2. Produce, {} sockets in parallel, 100 B values", s.parallel_sockets);
    let produce_parallel =
        throughput::produce(spec(&title, 100, s.produce_100b, s.parallel_sockets, 1), &variants(false), s).await;
    step("consume").await;
    let consume = throughput::consume(&targets, s).await;
    let mut latency = Vec::new();
    for per_s in [1000, 10_000] {
        step(&format!("latency at {per_s} records/s")).await;
        latency.push(scenarios::latency(&targets, s.latency_secs, per_s).await);
    }
    let (mut idle_producers, mut idle_consumers, mut stall, mut churn) = (vec![], vec![], vec![], vec![]);
    step("stall backlog").await;
    let stall_topic = scenarios::stall_topic(s.stall_backlog).await;
    for t in &targets {
        let name = t.name().to_owned();
        eprintln!("== {name}: idle producer sockets");
        idle_producers.push((name.clone(), scenarios::idle(t, false, t.records(s.idle_producers, s.scala_div)).await));
        eprintln!("== {name}: idle consumer sockets");
        let consumers = t.records(s.idle_consumers, s.scala_div).min(s.idle_consumers);
        idle_consumers.push((name.clone(), scenarios::idle(t, true, consumers).await));
        eprintln!("== {name}: stalled consumer");
        stall.push((name.clone(), scenarios::stall(t, &stall_topic, s.stall_backlog, s.stall_secs).await));
        eprintln!("== {name}: connection churn");
        churn.push((name, scenarios::churn(t, s.churn_secs).await));
    }
    step("fan-out sockets").await;
    let fanout = fanout::measure(&ours, s, false).await;
    harness::drop_topics().await;
    eprintln!("measured in {:.0} s", t0.elapsed().as_secs_f64());

    let report_path = cli.out.join("report.md");
    let results = report::Results {
        quick: cli.quick,
        note: cli.note.clone(),
        produce_100b,
        produce_1k,
        produce_array,
        produce_parallel,
        consume,
        latency,
        idle_producers,
        idle_consumers,
        stall,
        churn,
        fanout,
        facts: {
            let mut f = facts(&bin);
            let p = partitions_at_start.map_or("unknown".to_owned(), |p| p.to_string());
            f.push(("broker partitions at the start (earlier bench topics deleted)".to_owned(), p));
            f
        },
        previous: std::fs::read_to_string(&report_path).ok().as_deref().and_then(report::summary_of),
        findings: std::fs::read_to_string(cli.out.join("where-the-cpu-goes.md")).ok(),
    };
    std::fs::create_dir_all(&cli.out).expect("output directory");
    let cmd = format!(
        "scripts/kafka start\ncargo run --release -p wsproxy-bench --{}{}\nscripts/flamegraph",
        if cli.quick { " --quick" } else { "" },
        if cli.with_scala { " --with-scala" } else { "" }
    );
    std::fs::write(&report_path, results.markdown(&cmd)).expect("write report");
    results.write_plots(&cli.out).expect("write plots");
    eprintln!("report written to {}", report_path.display());
    println!("{}", results.summary_json());
}

/// Prints a scenario's heading after deleting the previous scenario's topics.
async fn step(name: &str) {
    harness::drop_topics().await;
    eprintln!("== {name}");
}

fn facts(bin: &std::path::Path) -> Vec<(String, String)> {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    vec![
        ("CPU".to_owned(), sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")),
        ("cores".to_owned(), sh("nproc")),
        ("memory".to_owned(), sh("free -h | awk '/Mem:/ {print $2}'")),
        ("kernel".to_owned(), sh("uname -r")),
        ("load average at the end".to_owned(), sh("cut -d' ' -f1-3 /proc/loadavg")),
        ("proxy".to_owned(), sh(&format!("{} --version", bin.display()))),
        ("librdkafka".to_owned(), rdkafka::util::get_rdkafka_version().1),
        ("Kafka broker".to_owned(), "Apache Kafka 4.1.1 (KRaft, single node, scripts/kafka)".to_owned()),
        ("rustc".to_owned(), sh("rustc --version")),
        ("java".to_owned(), sh("java -version 2>&1 | head -1")),
    ]
}
