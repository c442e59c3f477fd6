//! `/metrics` scraped and parsed by Prometheus' own client parser: the values move as records
//! flow, and every metric the Grafana dashboard queries exists.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Scrapes `/metrics` and parses it with `prometheus_client`; returns the samples.
async fn scrape(proxy: &Proxy) -> Vec<Value> {
    let (status, headers, body) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
    let root = project_root();
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/support/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python venv (run scripts/test)");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .find(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[tokio::test]
async fn metrics_move_as_records_flow_and_parse_with_the_prometheus_parser() {
    let proxy = Proxy::start(&[("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second")]).await;
    let topic = unique("metrics");
    create_topic(&topic, 1).await;
    let before = scrape(&proxy).await;
    assert_eq!(value(&before, "wsproxy_build_info", &[]), Some(1.0));
    assert_eq!(value(&before, "wsproxy_sockets_open", &[("direction", "in")]), Some(0.0));

    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=m&topic={topic}"))).await;
    for i in 0..10 {
        send(&mut ws, record(None, &format!("value-{i}"), None)).await;
        recv_json(&mut ws).await;
    }
    send(&mut ws, "{broken").await;
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "INVALID_JSON");
    let mut out = connect(&proxy.url(&format!("/socket/out?clientId=m&topic={topic}"))).await;
    for _ in 0..10 {
        recv_json(&mut out).await;
    }
    let during = scrape(&proxy).await;
    let t = topic.as_str();
    assert_eq!(value(&during, "wsproxy_sockets_open", &[("direction", "in")]), Some(1.0));
    assert_eq!(value(&during, "wsproxy_sockets_open", &[("direction", "out")]), Some(1.0));
    assert_eq!(value(&during, "wsproxy_records_total", &[("direction", "in"), ("topic", t)]), Some(10.0));
    assert_eq!(value(&during, "wsproxy_records_total", &[("direction", "out"), ("topic", t)]), Some(10.0));
    assert_eq!(value(&during, "wsproxy_record_bytes_total", &[("direction", "in"), ("topic", t)]), Some(70.0));
    assert_eq!(
        value(&during, "wsproxy_error_frames_total", &[("direction", "in"), ("code", "INVALID_JSON")]),
        Some(1.0)
    );
    assert!(value(&during, "wsproxy_produce_ack_seconds_count", &[]).unwrap() >= 10.0);
    assert!(value(&during, "wsproxy_produce_ack_seconds_bucket", &[("le", "+Inf")]).unwrap() >= 10.0);
    assert!(value(&during, "wsproxy_http_requests_total", &[("route", "/metrics"), ("status", "200")]).unwrap() >= 1.0);

    // librdkafka statistics arrive every 5 s: queue depth, broker round trip.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stats = scrape(&proxy).await;
    assert!(stats.iter().any(|s| s["name"] == "wsproxy_kafka_broker_rtt_seconds"), "broker rtt is exported");
    assert_eq!(value(&stats, "wsproxy_kafka_producer_queue_messages", &[]), Some(0.0));
    assert_eq!(value(&stats, "wsproxy_consumer_lag_records", &[("topic", t)]), Some(0.0));

    ws.close(None).await.unwrap();
    out.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = scrape(&proxy).await;
    assert_eq!(value(&after, "wsproxy_sockets_open", &[("direction", "in")]), Some(0.0));
    let closes: Vec<&Value> = after.iter().filter(|s| s["name"] == "wsproxy_socket_closes_total").collect();
    assert_eq!(
        value(&after, "wsproxy_socket_closes_total", &[("direction", "in"), ("code", "1000")]),
        Some(1.0),
        "{closes:?}"
    );
    assert_eq!(value(&after, "wsproxy_socket_closes_total", &[("direction", "out"), ("code", "1000")]), Some(1.0));
}

/// The lag is read from the consumer's own view (end of each partition it reads, as last
/// fetched, minus the next offset to take), not from librdkafka statistics, which the consume
/// sockets' consumers no longer keep (they cost ~140 KiB per socket).
#[tokio::test]
async fn the_consumer_lag_counts_the_records_a_throttled_socket_has_not_taken() {
    let proxy = Proxy::start(&[("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second")]).await;
    let topic = unique("lag");
    create_topic(&topic, 1).await;
    let records: Vec<Value> =
        (0..60).map(|i| json!({"value": {"format": "string", "value": format!("v{i}")}})).collect();
    write_with_tool(&topic, &records);
    let mut out = connect(&proxy.url(&format!("/socket/out?clientId=l&topic={topic}&rate=1"))).await;
    recv_json(&mut out).await;
    let t0 = std::time::Instant::now();
    let lag = loop {
        let lag = value(&scrape(&proxy).await, "wsproxy_consumer_lag_records", &[("topic", topic.as_str())]);
        if lag.is_some_and(|l| l >= 30.0) || t0.elapsed() > Duration::from_secs(30) {
            break lag;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // About 60 minus the few taken at one record per second; wide bounds for a busy machine.
    assert!(lag.is_some_and(|l| (30.0..=60.0).contains(&l)), "lag of a socket reading 1 of 60 records/s: {lag:?}");
    out.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = value(&scrape(&proxy).await, "wsproxy_consumer_lag_records", &[("topic", topic.as_str())]);
    assert_eq!(after, Some(0.0), "a closed socket's lag leaves the gauge");
}

#[tokio::test]
async fn topic_labels_are_capped() {
    let proxy = Proxy::start(&[("WSPROXY_METRICS_MAX_TOPIC_LABELS", "1")]).await;
    let (a, b) = (unique("cap-a"), unique("cap-b"));
    create_topic(&a, 1).await;
    create_topic(&b, 1).await;
    for t in [&a, &b] {
        let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=m&topic={t}"))).await;
        send(&mut ws, record(None, "x", None)).await;
        recv_json(&mut ws).await;
    }
    let samples = scrape(&proxy).await;
    assert_eq!(value(&samples, "wsproxy_records_total", &[("direction", "in"), ("topic", &a)]), Some(1.0));
    assert_eq!(value(&samples, "wsproxy_records_total", &[("direction", "in"), ("topic", "_other")]), Some(1.0));
    assert_eq!(value(&samples, "wsproxy_records_total", &[("direction", "in"), ("topic", &b)]), None);
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_exists() {
    let dashboard = project_root().join("deploy/grafana/dashboard.json");
    let text = std::fs::read_to_string(&dashboard).expect("deploy/grafana/dashboard.json");
    let json: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has queries");

    // Make every metric appear: traffic in and out, an error frame, a close, a stats round.
    let proxy = Proxy::start(&[]).await;
    let topic = unique("dash");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=d&topic={topic}"))).await;
    send(&mut ws, record(None, "x", None)).await;
    recv_json(&mut ws).await;
    send(&mut ws, "nope").await;
    recv_json(&mut ws).await;
    ws.close(None).await.unwrap();
    let mut out = connect(&proxy.url(&format!("/socket/out?clientId=d&topic={topic}"))).await;
    recv_json(&mut out).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let samples = scrape(&proxy).await;
    let names: std::collections::HashSet<String> =
        samples.iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
    let re_metric = |e: &str| -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = e;
        while let Some(i) = rest.find("wsproxy_") {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            found.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
        found
    };
    for e in &exprs {
        for m in re_metric(e) {
            assert!(names.contains(&m), "dashboard queries {m} ({e}) which /metrics does not export; have {names:?}");
        }
    }
    let _ = json!(null);
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if (k == "expr" || k == "query") && v.is_string() {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
