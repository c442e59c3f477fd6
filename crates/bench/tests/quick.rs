//! Keeps the benchmark tool working: runs `--quick` against the test broker and the debug proxy
//! and checks the report and the JSON summary exist (speed is not asserted here).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn quick_run_writes_a_report_and_a_json_summary() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proxy = root.join("target/debug/kafka-websocket-proxy");
    assert!(proxy.exists(), "build the proxy first (cargo test --workspace builds it)");
    let out_dir = std::env::temp_dir().join(format!("wsproxy-bench-quick-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_wsproxy-bench"))
        .args(["--quick", "--out", out_dir.to_str().unwrap(), "--proxy-bin", proxy.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().expect("a JSON summary line");
    let summary: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in [
        "produce_ratio_100b",
        "produce_ratio_1k",
        "consume_ratio",
        "p99_added_ms",
        "idle_producer_socket_kb",
        "idle_consumer_socket_kb",
        "stalled_consumer_rss_growth_mb",
        "churn_sockets_per_s",
        "p99_added_ms_10k",
        "produce_ratio_array100",
        "proxy_cpu_us_per_record_produce_100b",
        "direct_cpu_us_per_record_produce_100b",
        "proxy_cpu_us_per_record_consume_100b",
        "direct_cpu_us_per_record_consume_100b",
    ] {
        assert!(summary[key].is_number(), "{key} missing in {summary}");
    }
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(report.contains("direct librdkafka"));
    assert!(report.contains("## CPU per record"));
    // The report's summary block is the JSON of the last line.
    let block = report.split("```json\n").nth(1).and_then(|b| b.split("```").next()).expect("a json block");
    assert_eq!(serde_json::from_str::<serde_json::Value>(block).unwrap(), summary);
    for plot in ["throughput.svg", "latency.svg", "latency_10k.svg", "stall_rss.svg"] {
        assert!(out_dir.join(plot).exists(), "{plot}");
    }
    let _ = std::fs::remove_dir_all(out_dir);
}
