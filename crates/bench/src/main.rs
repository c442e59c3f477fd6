//! `wsproxy-bench`: measures the proxy against a direct librdkafka client and Kafka's perf
//! tools, in one run, on the broker from `scripts/kafka`, and writes `bench/report.md` with
//! plots. The last line on stdout is a JSON summary.
//!
//! `cargo run --release -p wsproxy-bench -- [--quick] [--out DIR]`

mod harness;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "wsproxy-bench", version, about)]
struct Cli {
    /// Every scenario, small enough to finish in under 3 minutes (one repetition).
    #[arg(long)]
    quick: bool,
    /// Where the report and plots go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The proxy binary; default: build and use target/release/kafka-websocket-proxy.
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Run only this scenario and print its figures (for profiling): produce or consume.
    #[arg(long)]
    only: Option<String>,
    /// Records for --only.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let root = harness::root();
    let bin = match cli.proxy_bin {
        Some(b) => b,
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
    let mut s = if cli.quick { scenarios::Sizes::quick() } else { scenarios::Sizes::full() };
    if let Some(only) = cli.only.as_deref() {
        s.repeats = 1;
        s.consume = cli.records;
        let rows = match only {
            "produce" => scenarios::produce(&bin, 100, cli.records, 1, s, &[]).await,
            "produce-parallel" => scenarios::produce(&bin, 100, cli.records, s.parallel_sockets, s, &[]).await,
            "consume" => scenarios::consume(&bin, s).await,
            other => panic!("--only {other}: use produce, produce-parallel or consume"),
        };
        for t in rows {
            println!("{:40} {:>10.0} records/s", t.name, t.rate.median);
        }
        return;
    }
    let step = |name: &str| eprintln!("== {name}");

    step("produce 100 B, one socket");
    let produce_100b = scenarios::produce(&bin, 100, s.produce_100b, 1, s, &[]).await;
    step("produce 1 KiB, one socket");
    let produce_1k = scenarios::produce(&bin, 1024, s.produce_1k, 1, s, &[]).await;
    step("produce 100 B, parallel sockets");
    let produce_parallel = scenarios::produce(&bin, 100, s.produce_100b, s.parallel_sockets, s, &[]).await;
    step("produce 100 B, one socket, metrics off");
    let mut produce_no_metrics =
        scenarios::produce(&bin, 100, s.produce_100b, 1, s, &[("WSPROXY_METRICS_ENABLED", "false")]).await;
    produce_no_metrics.retain(|t| t.name.starts_with("proxy"));
    if let Some(p) = produce_no_metrics.first_mut() {
        p.name = "proxy, 1 socket, metrics off".to_owned();
    }
    produce_no_metrics.extend(produce_100b.iter().filter(|t| !t.name.contains("Performance")).cloned());
    step("consume");
    let consume = scenarios::consume(&bin, s).await;
    step("latency at 1,000 records/s");
    let latency = scenarios::latency(&bin, s).await;
    step("idle producer sockets");
    let idle_producers = scenarios::idle(&bin, false, s.idle_producers).await;
    step("idle consumer sockets");
    let idle_consumers = scenarios::idle(&bin, true, s.idle_consumers).await;
    step("stalled consumer");
    let stall = scenarios::stall(&bin, s).await;
    step("connection churn");
    let churn_per_s = scenarios::churn(&bin, s).await;

    let results = report::Results {
        quick: cli.quick,
        produce_100b,
        produce_1k,
        produce_parallel,
        produce_no_metrics,
        consume,
        latency,
        idle_producers,
        idle_consumers,
        stall,
        churn_per_s,
        facts: facts(&bin),
    };
    std::fs::create_dir_all(&cli.out).expect("output directory");
    let cmd = format!(
        "scripts/kafka start\ncargo run --release -p wsproxy-bench --{}",
        if cli.quick { " --quick" } else { "" }
    );
    std::fs::write(cli.out.join("report.md"), results.markdown(&cmd)).expect("write report");
    results.write_plots(&cli.out).expect("write plots");
    eprintln!("report written to {}", cli.out.join("report.md").display());
    println!("{}", results.summary_json());
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
        ("proxy".to_owned(), sh(&format!("{} --version", bin.display()))),
        ("librdkafka".to_owned(), rdkafka::util::get_rdkafka_version().1),
        ("Kafka broker".to_owned(), "Apache Kafka 4.1.1 (KRaft, single node, scripts/kafka)".to_owned()),
        ("rustc".to_owned(), sh("rustc --version")),
        ("java".to_owned(), sh("java -version 2>&1 | head -1")),
    ]
}
