//! Exactly-once producing (`transactional=true`): each frame is one Kafka transaction, answered
//! after its commit; `read_committed` consumers (the independent client) see every acknowledged
//! record once, and nothing of a frame that failed or of a node that was killed mid-stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const EOS: [(&str, &str); 3] = [
    ("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"),
    ("WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED", "true"),
    ("WSPROXY_SESSION_NODE_TIMEOUT", "3 seconds"),
];

fn eos_url(p: &Proxy, topic: &str, client: &str) -> String {
    p.url(&format!("/socket/in?clientId={client}&instanceId=i1&topic={topic}&valType=string&transactional=true"))
}

fn values(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["value"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn results_come_after_the_commit_and_read_committed_consumers_see_every_record() {
    let proxy = Proxy::start(&EOS).await;
    let topic = unique("eos");
    create_topic(&topic, 1).await;
    let mut ws = connect(&eos_url(&proxy, &topic, &unique("tx"))).await;
    for i in 0..5 {
        send(&mut ws, record(None, &format!("single-{i}"), Some(&format!("s{i}")))).await;
        let r = recv_json(&mut ws).await;
        assert_eq!(r["clientMessageId"], format!("s{i}"), "{r}");
        assert!(r["offset"].as_i64().unwrap() >= 0, "{r}");
    }
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"value": {"value": format!("batch-{i}"), "format": "string"}, "messageId": format!("b{i}")}))
        .collect();
    send(&mut ws, Value::Array(batch).to_string()).await;
    let answers = recv_json(&mut ws).await;
    assert_eq!(answers.as_array().unwrap().len(), 3, "{answers}");
    let seen = values(&read_committed(&topic, Duration::from_secs(5)));
    assert_eq!(seen, ["single-0", "single-1", "single-2", "single-3", "single-4", "batch-0", "batch-1", "batch-2"]);
}

#[tokio::test]
async fn a_failed_record_aborts_its_whole_frame_and_the_socket_goes_on() {
    let proxy = Proxy::start(&EOS).await;
    let topic = unique("eosabort");
    create_topic_with(&topic, 1, &[("max.message.bytes", "2000")]).await;
    let mut ws = connect(&eos_url(&proxy, &topic, &unique("tx"))).await;
    // One good record and one the topic refuses (too large): neither may be read.
    let big = "x".repeat(5000);
    let frame = json!([
        {"value": {"value": "good-but-aborted", "format": "string"}, "messageId": "ok"},
        {"value": {"value": big, "format": "string"}, "messageId": "too-big"}
    ]);
    send(&mut ws, frame.to_string()).await;
    let answers = recv_json(&mut ws).await;
    // Kafka may refuse the whole batch the two records travel in; either way both fail.
    assert!(
        ["TRANSACTION_ABORTED", "RECORD_TOO_LARGE"].contains(&answers[0]["error"]["code"].as_str().unwrap()),
        "{answers}"
    );
    assert_eq!(answers[0]["messageId"], "ok", "{answers}");
    assert_eq!(answers[1]["error"]["code"], "RECORD_TOO_LARGE", "{answers}");
    // An invalid record in a frame: nothing of it is sent.
    let frame = json!([{"value": {"value": "valid", "format": "string"}, "messageId": "v"}, {"nope": 1}]);
    send(&mut ws, frame.to_string()).await;
    let answers = recv_json(&mut ws).await;
    assert_eq!(answers[0]["error"]["code"], "TRANSACTION_ABORTED", "{answers}");
    assert_eq!(answers[1]["error"]["code"], "INVALID_FRAME", "{answers}");
    // The same socket commits the next frame.
    send(&mut ws, record(None, "after", Some("a"))).await;
    let answer = recv_json(&mut ws).await;
    assert!(answer["offset"].is_i64(), "{answer}");
    assert_eq!(values(&read_committed(&topic, Duration::from_secs(5))), ["after"]);
}

#[tokio::test]
async fn a_second_socket_of_a_transactional_client_is_refused() {
    let proxy = Proxy::start(&EOS).await;
    let topic = unique("eoslimit");
    create_topic(&topic, 1).await;
    let client = unique("tx");
    let _first = connect(&eos_url(&proxy, &topic, &client)).await;
    let (status, _, body) =
        refused(&proxy.url(&format!(
            "/socket/in?clientId={client}&instanceId=i2&topic={topic}&valType=string&transactional=true"
        )))
        .await;
    assert_eq!(status, 400);
    assert!(
        body.contains(&format!("The max number of WebSockets for session {client} has been reached. Limit is 1")),
        "{body}"
    );
}

/// Streams frames without waiting for answers until the socket breaks or `stop_after` frames;
/// returns the values whose results said "committed".
async fn stream_until_broken(ws: &mut Ws, prefix: &str, stop_after: usize, acked: &mut HashSet<String>) {
    let (mut tx, mut rx) = ws.split();
    let sender = async {
        for i in 0..stop_after {
            let value = format!("{prefix}-{i}");
            if tx.send(Message::Text(record(None, &value, Some(&value)).into())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let receiver = async {
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["offset"].is_i64() {
                    acked.insert(v["clientMessageId"].as_str().unwrap().to_owned());
                }
                if acked.iter().filter(|a| a.starts_with(prefix)).count() >= stop_after {
                    break;
                }
            }
        }
    };
    tokio::join!(sender, receiver);
}

#[tokio::test]
async fn a_node_killed_mid_stream_leaves_no_unacknowledged_record_visible_and_loses_no_acknowledged_one() {
    let mut a = Proxy::start(&EOS).await;
    let b = Proxy::start(&EOS).await;
    let topic = unique("eoskill");
    create_topic(&topic, 1).await;
    let client = unique("tx");
    let mut acked = HashSet::new();

    let mut ws = connect(&eos_url(&a, &topic, &client)).await;
    let killer = async {
        // Kill node A while its socket is mid-stream.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.signal_and_wait("KILL", Duration::from_secs(5)).expect("kill -9");
    };
    tokio::join!(stream_until_broken(&mut ws, "a", 100_000, &mut acked), killer);
    let before = acked.len();
    assert!(before > 0, "node A acknowledged nothing before the kill");

    // The client reconnects to node B (its slot of the dead node frees after the node timeout);
    // B's producer has the same transactional id: it fences A's and aborts its open transaction.
    let t0 = Instant::now();
    let mut ws = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(eos_url(&b, &topic, &client)).await {
            break ws;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "node B never accepted the client");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("reconnected to node B after {:?}", t0.elapsed());
    stream_until_broken(&mut ws, "b", 200, &mut acked).await;

    let seen = values(&read_committed(&topic, Duration::from_secs(10)));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in &seen {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|v| !counts.contains_key(v.as_str())).collect();
    let dup: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unacked: Vec<&&str> = counts.keys().filter(|v| !acked.contains(**v)).collect();
    println!(
        "exactly-once checker: {} acknowledged ({before} by node A before kill -9), {} read committed, {} lost, {} duplicated, {} visible without an ack",
        acked.len(),
        seen.len(),
        lost.len(),
        dup.len(),
        unacked.len()
    );
    assert!(lost.is_empty(), "acknowledged records missing: {lost:?}");
    assert!(dup.is_empty(), "duplicates: {dup:?}");
    // A frame committed in the instant between Kafka's commit answer and the kill has no ack:
    // at most that one frame may be visible without one.
    assert!(unacked.len() <= 1, "records visible without an ack: {unacked:?}");
}

/// Review (27 Nov): the book says a client that hangs up before a POST's answer does not stop
/// its records. A transactional POST whose client closes the connection right after its body
/// is still committed whole (checked with a read_committed consumer).
#[tokio::test]
async fn a_transactional_post_whose_client_hangs_up_is_still_committed_whole() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start(&EOS).await;
    let topic = unique("eos-hangup");
    create_topic(&topic, 1).await;
    let body =
        json!((0..50).map(|i| json!({"value": {"value": format!("v-{i}"), "format": "string"}})).collect::<Vec<_>>())
            .to_string();
    let client = unique("tx-post");
    let head = format!(
        "POST /http/in?clientId={client}&instanceId=i1&topic={topic}&valType=string&transactional=true HTTP/1.1\r\n\
         Host: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    drop(tcp);
    let committed = read_committed(&topic, Duration::from_secs(15));
    assert_eq!(values(&committed).len(), 50, "every record of the hung-up transaction: {committed:?}");
}
