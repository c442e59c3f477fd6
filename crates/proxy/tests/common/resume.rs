//! Helpers of the resumable-session tests (`tests/resume.rs`, `tests/handover.rs`): topics
//! filled with known records, the group's members as the independent client sees them, the
//! session frame, cutting a connection off with a TCP reset, and the proxy's metrics.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::*;

/// The path of a resumable `/socket/out` of client `client` in `group` reading `topic`, with
/// `autoCommit=false` unless `auto_commit`; a reconnect appends `&resumeToken=<token>`.
pub fn resumable_out(client: &str, group: &str, topic: &str, auto_commit: bool) -> String {
    let commit = if auto_commit { "" } else { "&autoCommit=false" };
    format!("/socket/out?clientId={client}&groupId={group}&topic={topic}{commit}&resumable=true")
}

/// A new one-partition topic named `topic` holding `n` records (see [`fill`]).
pub async fn one_partition_with(topic: &str, n: usize) -> String {
    create_topic(topic, 1).await;
    fill(topic, 1, n).await;
    topic.to_owned()
}

/// Writes `n` string records `p{partition}-{i}` to each of `partitions` partitions.
pub async fn fill(topic: &str, partitions: i32, n: usize) {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "5").create().unwrap();
    let mut futs = Vec::with_capacity(n * partitions as usize);
    for partition in 0..partitions {
        for i in 0..n {
            let v = format!("p{partition}-{i}");
            let record = FutureRecord::<(), _>::to(topic).payload(&v).partition(partition);
            futs.push(p.send_result(record).map_err(|(e, _)| e).unwrap());
        }
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// The group's members and their partitions, as the independent client sees them.
pub fn members(group: &str) -> Vec<(String, Vec<i64>)> {
    let v: Value = serde_json::from_str(&kafka_tool(&["group-members", group], "")).unwrap_or(Value::Null);
    let mut out: Vec<(String, Vec<i64>)> = v
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let mut ps: Vec<i64> =
                        m["partitions"].as_array().unwrap().iter().map(|tp| tp[1].as_i64().unwrap()).collect();
                    ps.sort_unstable();
                    (m["client_id"].as_str().unwrap().to_owned(), ps)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits until the group's members are `want` (client id and partition count each).
pub fn await_members(group: &str, want: &[(&str, usize)]) -> Vec<(String, Vec<i64>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = members(group);
        let shape: Vec<(&str, usize)> = now.iter().map(|(c, p)| (c.as_str(), p.len())).collect();
        if shape == want {
            return now;
        }
        assert!(Instant::now() < deadline, "group {group} is {now:?}, expected {want:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The session frame's token; panics unless the first frame is one.
pub async fn session_token(ws: &mut Ws) -> String {
    let first = recv_json(ws).await;
    assert!(first["session"]["resumeWindowMs"].is_u64(), "not a session frame: {first}");
    first["session"]["resumeToken"].as_str().unwrap_or_else(|| panic!("not a session frame: {first}")).to_owned()
}

/// Makes the proxy hear from the client (a ping; its pong comes back after the proxy read it),
/// skipping the records that come meanwhile.
pub async fn heard(ws: &mut Ws) {
    use futures::SinkExt;
    ws.send(Message::Ping(b"here".to_vec().into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no pong within 30 s") {
            Some(Ok(Message::Pong(_))) => return,
            Some(Ok(_)) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    }
}

/// Cuts the connection without a close handshake: SO_LINGER 0, then close (a TCP reset).
pub fn reset(ws: Ws) {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().unwrap(),
        _ => unreachable!("plain test sockets"),
    }
    drop(ws);
}

/// The value of a metric line (`name{labels} value`) in the proxy's `/metrics`, 0 when absent.
pub async fn metric(proxy: &Proxy, line_start: &str) -> f64 {
    let (_, _, body) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub async fn eventually_metric(proxy: &Proxy, line_start: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(proxy, line_start).await != want {
        assert!(Instant::now() < deadline, "{line_start} never became {want}: {}", metric(proxy, line_start).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
