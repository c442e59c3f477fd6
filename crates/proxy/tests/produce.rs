//! `/socket/in` end to end: real proxy process, real WebSocket client, real broker, and what
//! landed in Kafka read back by an independent client (Python confluent-kafka).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn produce_url(proxy: &Proxy, topic: &str, query: &str) -> String {
    proxy.url(&format!("/socket/in?clientId={}&topic={topic}{query}", unique("p")))
}

/// Every format type, as the client sends it and as an independent client decodes it.
fn format_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("json", json!({"a": [1, "two", null, {"b": true}], "c": 1.5})),
        ("string", json!("héllo wörld \"quoted\"")),
        ("int", json!(-123456)),
        ("short", json!(-2000)),
        ("long", json!(9007199254740993i64)),
        ("double", json!(1234.5678901234567)),
        ("float", json!(1.5)),
        ("bytearray", json!("AAEC/f7/")),
        ("byte_array", json!("aGVsbG8=")),
        ("avro", json!("AgZmb28=")),
    ]
}

#[tokio::test]
async fn every_format_lands_in_kafka_as_java_serializers_write_it() {
    let proxy = Proxy::start(&[]).await;
    for (format, value) in format_cases() {
        let topic = unique(&format!("fmt-{format}"));
        create_topic(&topic, 1).await;
        let mut ws = connect(&produce_url(&proxy, &topic, &format!("&keyType=string&valType={format}"))).await;
        let frame = json!({
            "key": {"value": "k1", "format": "string"},
            "value": {"value": value, "format": format},
            "headers": [{"key": "h1", "value": "v1"}, {"key": "h2", "value": "v2"}],
            "messageId": format!("id-{format}"),
        });
        send(&mut ws, frame.to_string()).await;
        let result = recv_json(&mut ws).await;
        assert_eq!(result["topic"], topic.as_str(), "{result}");
        assert_eq!(result["clientMessageId"], format!("id-{format}"));
        assert_eq!(result["messageId"], format!("id-{format}"));
        assert_eq!(result["offset"], 0);
        // And without a key.
        send(&mut ws, json!({"value": {"value": value, "format": format}}).to_string()).await;
        let result = recv_json(&mut ws).await;
        assert_eq!(result["offset"], 1, "{result}");
        assert_eq!(result["clientMessageId"], Value::Null);

        let got = read_back(&topic, 2, "string", format);
        assert_eq!(got.len(), 2, "{format}: {got:?}");
        assert_eq!(got[0]["key"], "k1");
        assert_eq!(got[0]["headers"], json!([["h1", "v1"], ["h2", "v2"]]));
        assert_eq!(got[1]["key"], Value::Null, "no keyType value means no key");
        assert_eq!(got[1]["headers"], json!([]));
        for r in &got {
            assert_eq!(r["value"], value, "{format}: Kafka holds {r}");
        }
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn keys_of_every_numeric_type_and_tombstones() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("keys");
    create_topic(&topic, 1).await;
    let mut ws = connect(&produce_url(&proxy, &topic, "&keyType=long&valType=string")).await;
    send(
        &mut ws,
        json!({"key": {"value": 42, "format": "long"}, "value": {"value": "x", "format": "string"}}).to_string(),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    send(
        &mut ws,
        json!({"key": {"value": 43, "format": "long"}, "value": {"value": null, "format": "string"}}).to_string(),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["offset"], 1);
    let got = read_back(&topic, 2, "long", "string");
    assert_eq!((got[0]["key"].clone(), got[0]["value"].clone()), (json!(42), json!("x")));
    assert_eq!((got[1]["key"].clone(), got[1]["value"].clone()), (json!(43), Value::Null), "tombstone");
}

#[tokio::test]
async fn results_come_in_input_order_for_1000_pipelined_records() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("order");
    create_topic(&topic, 3).await;
    let mut ws = connect(&produce_url(&proxy, &topic, "&keyType=string&valType=string")).await;
    let n = 1000;
    // Send everything before reading anything.
    for i in 0..n {
        ws.feed(Message::Text(
            record(Some(&format!("key-{}", i % 17)), &format!("value-{i}"), Some(&format!("m{i}"))).into(),
        ))
        .await
        .unwrap();
    }
    ws.flush().await.unwrap();
    let mut last_offset: HashMap<i64, i64> = HashMap::new();
    let mut acked: HashMap<(i64, i64), String> = HashMap::new();
    for i in 0..n {
        let r = recv_json(&mut ws).await;
        assert_eq!(r["clientMessageId"], format!("m{i}"), "result {i} out of order: {r}");
        let (p, o) = (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap());
        if let Some(prev) = last_offset.insert(p, o) {
            assert!(o > prev, "offsets of partition {p} must grow: {prev} then {o}");
        }
        acked.insert((p, o), format!("value-{i}"));
    }
    // Every acknowledged record is in Kafka where the result said.
    let got = read_back(&topic, n, "string", "string");
    assert_eq!(got.len(), n);
    for r in got {
        let at = (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap());
        assert_eq!(acked.get(&at).map(String::as_str), r["value"].as_str(), "record at {at:?}");
    }
}

#[tokio::test]
async fn array_frames_are_answered_by_one_array_with_errors_in_place() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("batch");
    create_topic(&topic, 1).await;
    let mut ws = connect(&produce_url(&proxy, &topic, "&valType=int")).await;
    let frame = json!([
        {"value": {"value": 1, "format": "int"}, "messageId": "a"},
        {"value": {"value": "not a number", "format": "int"}, "messageId": "b"},
        {"value": {"value": 3, "format": "int"}, "messageId": "c"},
    ]);
    send(&mut ws, frame.to_string()).await;
    let answer = recv_json(&mut ws).await;
    let items = answer.as_array().expect("an array frame");
    assert_eq!(items.len(), 3);
    assert_eq!((items[0]["clientMessageId"].clone(), items[0]["offset"].clone()), (json!("a"), json!(0)));
    assert_eq!(items[1]["error"]["code"], "INVALID_VALUE");
    assert_eq!(items[1]["clientMessageId"], "b");
    assert_eq!((items[2]["clientMessageId"].clone(), items[2]["offset"].clone()), (json!("c"), json!(1)));
    send(&mut ws, "[]").await;
    assert_eq!(recv_json(&mut ws).await, json!([]));
    let got = read_back(&topic, 2, "raw", "int");
    assert_eq!(got.iter().map(|r| r["value"].clone()).collect::<Vec<_>>(), vec![json!(1), json!(3)]);
}

/// Reference scenarios of WebSocketRoutesNoSecuritySpec (produce side).
#[tokio::test]
async fn reference_produce_scenarios() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("ref-produce");
    create_topic(&topic, 1).await;
    // key + value, value only, headers + key + value, headers + value, all with a messageId.
    let mut ws = connect(&produce_url(&proxy, &topic, "&keyType=string&valType=string")).await;
    let frames = [
        json!({"key": {"value": "foo-1", "format": "string"}, "value": {"value": "bar-1", "format": "string"}}),
        json!({"value": {"value": "bar-2", "format": "string"}}),
        json!({"headers": [{"key": "key-3", "value": "value-3"}], "key": {"value": "foo-3", "format": "string"}, "value": {"value": "bar-3", "format": "string"}}),
        json!({"headers": [{"key": "key-4", "value": "value-4"}], "value": {"value": "bar-4", "format": "string"}, "messageId": "msg-4"}),
    ];
    for f in &frames {
        send(&mut ws, f.to_string()).await;
        let r = recv_json(&mut ws).await;
        assert_eq!(r["topic"], topic.as_str());
        assert!(r["partition"].as_i64().unwrap() >= 0 && r["offset"].as_i64().unwrap() >= 0);
        assert!(r["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "{r}");
        assert_eq!(r["clientMessageId"], f.get("messageId").cloned().unwrap_or(Value::Null));
    }
    // The client completes: the server completes the socket too.
    ws.send(Message::Close(None)).await.unwrap();
    let mut closed = false;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(_) = m {
            closed = true;
        }
    }
    assert!(closed, "the server answers the close");
    let got = read_back(&topic, 4, "string", "string");
    let pairs: Vec<(Value, Value)> = got.iter().map(|r| (r["key"].clone(), r["value"].clone())).collect();
    assert_eq!(
        pairs,
        vec![
            (json!("foo-1"), json!("bar-1")),
            (Value::Null, json!("bar-2")),
            (json!("foo-3"), json!("bar-3")),
            (Value::Null, json!("bar-4"))
        ]
    );
    assert_eq!(got[2]["headers"], json!([["key-3", "value-3"]]));
}

/// Reference 5.1 and 5.8: parameter validation before the upgrade, exact texts, JSON bodies.
#[tokio::test]
async fn producer_parameters_are_validated_before_the_upgrade() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("params");
    create_topic(&topic, 1).await;
    let cases = [
        (format!("/socket/in?topic={topic}"), 400, "Request param 'clientId' is missing."),
        ("/socket/in?clientId=c".to_owned(), 400, "Request param 'topic' is missing."),
        (
            format!("/socket/in?clientId=c&topic={topic}&socketPayload=protobuf"),
            400,
            "'protobuf' is not a valid socket payload",
        ),
        (format!("/socket/in?clientId=c&topic={topic}&valType=foo"), 400, "'foo' is not a valid format type"),
        (format!("/socket/in?clientId=c&topic={topic}&keyType=bar"), 400, "'bar' is not a valid format type"),
        (
            format!("/socket/in?clientId=c&topic={topic}&transactional=maybe"),
            400,
            "'maybe' is not a valid Boolean value",
        ),
        (
            format!("/socket/in?clientId=c&topic={topic}&transactional=true"),
            400,
            "Unable to provide transactional producer. Server is not configured to allow producer transactions.",
        ),
        (
            "/socket/in?clientId=c&topic=no-such-topic-anywhere".to_owned(),
            400,
            "Topic no-such-topic-anywhere does not exist",
        ),
    ];
    for (path, status, text) in cases {
        let (got_status, content_type, body) = refused(&proxy.url(&path)).await;
        assert_eq!(got_status, status, "{path}: {body}");
        assert_eq!(content_type, "application/json", "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["message"], text, "{path}");
    }
    // A plain GET that is not an upgrade.
    let (status, _, body) =
        http(proxy.port, "GET", &format!("/socket/in?clientId=c&topic={topic}"), &[]).await.unwrap();
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["message"].clone()),
        (400, json!("Expected WebSocket Upgrade request"))
    );
    // Sessions off: the same clientId connects and disconnects repeatedly.
    for _ in 0..4 {
        let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=same&topic={topic}"))).await;
        send(&mut ws, record(None, "x", None)).await;
        assert!(recv_json(&mut ws).await["offset"].is_number());
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn producer_sessions_require_an_instance_id() {
    let proxy = Proxy::start(&[("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true")]).await;
    let topic = unique("sessions");
    create_topic(&topic, 1).await;
    let (status, _, body) = refused(&proxy.url(&format!("/socket/in?clientId=c&topic={topic}"))).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "Request param 'instanceId' is required when producer sessions are enabled on the proxy server."
    );
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=c&instanceId=i1&topic={topic}"))).await;
    send(&mut ws, record(None, "x", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
}

/// Issue 14, item 4: the client pipelines far more frames than the proxy reads before the stop
/// (20,000), so the proxy closes with input unread. It used to close the TCP socket at once,
/// which sends RST, and the client's kernel discarded the last answers and the close frame.
/// Now every answer the proxy sent and its 1001 reach the client.
#[tokio::test]
async fn sigterm_answers_in_flight_records_then_closes_with_1001() {
    let mut proxy = Proxy::start(&[]).await;
    let topic = unique("shutdown");
    create_topic(&topic, 1).await;
    let mut consumer = connect(&proxy.url(&format!("/socket/out?clientId=sd&topic={topic}"))).await;
    let ws = connect(&produce_url(&proxy, &topic, "")).await;
    let (mut sink, mut ws) = ws.split();
    let n = 20_000;
    // The writer runs beside the reader: the proxy stops reading while it has too much in
    // flight, and a client that only wrote would then never read an answer.
    let writer = tokio::spawn(async move {
        for i in 0..n {
            let frame = Message::Text(record(None, &format!("v{i}"), Some(&i.to_string())).into());
            if sink.feed(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.flush().await;
    });
    // Wait for the first answer so the proxy has read some of the frames.
    let first = ws.next().await.expect("an answer").expect("an answer");
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["clientMessageId"], "0");
    let pid = proxy.pid();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let mut answered = 1;
    let mut close_code = None;
    let mut ended = None;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no stall") {
        match m {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["clientMessageId"], answered.to_string(), "answers stay in order");
                assert!(v["offset"].is_number(), "{v}");
                answered += 1;
            }
            Ok(Message::Close(f)) => {
                close_code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                ended = Some(e.to_string());
                break;
            }
        }
    }
    writer.abort();
    eprintln!("{answered} of {n} pipelined frames answered before the 1001");
    assert_eq!(close_code, Some(1001), "closed with 1001 after {answered} answers (read ended with {ended:?})");
    // The consume socket closes with 1001 too, after the records it was sending.
    let mut consumer_close = None;
    while let Some(Ok(m)) = consumer.next().await {
        if let Message::Close(f) = m {
            consumer_close = f.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(consumer_close, Some(1001), "the consumer socket closes with 1001");
    let status = proxy.signal_and_wait("TERM", Duration::from_secs(20)).expect("exits within the grace period");
    assert!(status.success());
    // Everything answered is in Kafka.
    let got = read_back(&topic, answered, "raw", "string");
    assert_eq!(got.len(), answered);
}

/// Review (27 Nov): a client that sends its records and then its close at once (`send(x);
/// close()`, the usual shape of a short-lived producer) got no close reply: the loop waited
/// for Kafka's acknowledgements and then tried to write their answers, which tungstenite
/// refuses once the peer closed, and the socket was dropped (the client saw 1006). Answers
/// after the client's close are not sent; the close reply is, and every record lands.
#[tokio::test]
async fn a_client_that_closes_right_after_its_records_gets_a_close_reply_and_they_land() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("close-early");
    create_topic(&topic, 1).await;
    let mut ws = connect(&produce_url(&proxy, &topic, "&keyType=string&valType=string")).await;
    for i in 0..200 {
        let frame = json!({"key": {"value": format!("k-{i}"), "format": "string"}, "value": {"value": format!("v-{i}"), "format": "string"}});
        ws.feed(Message::Text(frame.to_string().into())).await.unwrap();
    }
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame { code: 1000.into(), reason: "".into() };
    ws.send(Message::Close(Some(normal))).await.unwrap();
    let mut reply = None;
    let mut answers = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        match m {
            Ok(Message::Close(f)) => reply = Some(f.map_or(1005, |f| u16::from(f.code))),
            Ok(Message::Text(_)) => answers += 1,
            Ok(_) => {}
            Err(e) => panic!("the connection failed after {answers} answers, without a close reply: {e}"),
        }
    }
    assert_eq!(reply, Some(1000), "the close reply ({answers} answers before it)");
    let got = read_back(&topic, 200, "string", "string");
    assert_eq!(got.len(), 200);
    assert_eq!(got[199]["value"], "v-199");
}
