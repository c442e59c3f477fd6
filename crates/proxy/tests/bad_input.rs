//! Hostile and broken input: every malformed frame and parameter gets a clear error, and the
//! same socket, the other sockets and the data survive it.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Sends a good record and expects its result: the socket still works.
async fn still_produces(ws: &mut Ws, value: Value) {
    send(ws, json!({"value": {"value": value, "format": "string"}, "messageId": "check"}).to_string()).await;
    let r = recv_json(ws).await;
    assert_eq!(r["clientMessageId"], "check", "socket no longer produces: {r}");
    assert!(r["offset"].is_number(), "{r}");
}

#[tokio::test]
async fn malformed_produce_frames_get_error_frames_and_the_socket_survives() {
    let proxy = Proxy::start(&[("WSPROXY_WS_MAX_FRAME_SIZE", "65536")]).await;
    let topic = unique("bad-frames");
    create_topic(&topic, 1).await;
    let small = unique("small-topic");
    create_topic_with(&small, 1, &[("max.message.bytes", "1000")]).await;

    // A bystander socket streams the whole time; it must not notice anything.
    let mut bystander = connect(&proxy.url(&format!("/socket/in?clientId=bystander&topic={topic}"))).await;

    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=bad&topic={topic}&valType=string"))).await;
    let cases: Vec<(&str, String, &str)> = vec![
        ("invalid JSON", "{\"value\": ".into(), "INVALID_JSON"),
        ("not JSON at all", "hello".into(), "INVALID_JSON"),
        ("a JSON number", "42".into(), "INVALID_FRAME"),
        ("a JSON string", "\"value\"".into(), "INVALID_FRAME"),
        ("no value", json!({"key": {"value": "k"}}).to_string(), "INVALID_FRAME"),
        ("value not an object", json!({"value": "bare"}).to_string(), "INVALID_FRAME"),
        ("unknown format name", json!({"value": {"value": "v", "format": "protobuf"}}).to_string(), "INVALID_FORMAT"),
        ("format not a string", json!({"value": {"value": "v", "format": 7}}).to_string(), "INVALID_FORMAT"),
        ("value of the wrong type", json!({"value": {"value": 12, "format": "string"}}).to_string(), "INVALID_VALUE"),
        ("key without keyType", json!({"key": {"value": "k"}, "value": {"value": "v"}}).to_string(), "INVALID_KEY"),
        ("headers not an array", json!({"value": {"value": "v"}, "headers": {"a": "b"}}).to_string(), "INVALID_FRAME"),
        (
            "header value a number",
            json!({"value": {"value": "v"}, "headers": [{"key": "a", "value": 1}]}).to_string(),
            "INVALID_FRAME",
        ),
        (
            "messageId not a string",
            json!({"value": {"value": "v"}, "messageId": {"x": 1}}).to_string(),
            "INVALID_FRAME",
        ),
        (
            "frame over the configured max",
            json!({"value": {"value": "x".repeat(70_000)}}).to_string(),
            "FRAME_TOO_LARGE",
        ),
        ("array of non-objects", "[1, 2]".into(), "INVALID_FRAME"),
        ("array of more than 1000 records", format!("[{}]", vec!["{}"; 1001].join(",")), "INVALID_FRAME"),
    ];
    for (what, frame, code) in &cases {
        send(&mut ws, frame.clone()).await;
        let answer = recv_json(&mut ws).await;
        let answer = if answer.is_array() { answer[0].clone() } else { answer };
        assert_eq!(answer["error"]["code"], *code, "{what}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty(), "{what}");
        still_produces(&mut ws, json!(format!("after {what}"))).await;
        still_produces(&mut bystander, json!("bystander")).await;
    }
    // The id of a bad record is echoed so the client can match it.
    send(&mut ws, json!({"value": {"value": 1}, "messageId": "bad-1"}).to_string()).await;
    let answer = recv_json(&mut ws).await;
    assert_eq!((answer["clientMessageId"].clone(), answer["messageId"].clone()), (json!("bad-1"), json!("bad-1")));

    // A binary frame on a JSON socket.
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "UNSUPPORTED_FRAME");
    still_produces(&mut ws, json!("after binary")).await;

    // Numbers that do not fit their type.
    let mut ints = connect(&proxy.url(&format!("/socket/in?clientId=ints&topic={topic}&valType=short"))).await;
    for bad in [json!(300000), json!(1.5), json!("12abc"), json!(true)] {
        send(&mut ints, json!({"value": {"value": bad, "format": "short"}}).to_string()).await;
        assert_eq!(recv_json(&mut ints).await["error"]["code"], "INVALID_VALUE", "{bad} as short");
    }
    // Bad base64.
    let mut bytes = connect(&proxy.url(&format!("/socket/in?clientId=bytes&topic={topic}&valType=bytearray"))).await;
    send(&mut bytes, json!({"value": {"value": "not base64!!", "format": "bytearray"}}).to_string()).await;
    assert_eq!(recv_json(&mut bytes).await["error"]["code"], "INVALID_VALUE");

    // A record Kafka refuses: larger than the topic's max.message.bytes.
    let mut big = connect(&proxy.url(&format!("/socket/in?clientId=big&topic={small}"))).await;
    send(&mut big, json!({"value": {"value": "y".repeat(5000)}, "messageId": "too-big"}).to_string()).await;
    let answer = recv_json(&mut big).await;
    assert_eq!(answer["error"]["code"], "RECORD_TOO_LARGE", "{answer}");
    assert_eq!(answer["clientMessageId"], "too-big");
    still_produces(&mut big, json!("small enough")).await;

    // A frame beyond the codec's hard limit (2 x max) closes that socket with 1009; others live on.
    let mut huge = connect(&proxy.url(&format!("/socket/in?clientId=huge&topic={topic}"))).await;
    let _ = huge.send(Message::Text("x".repeat(200_000).into())).await;
    let mut code = None;
    let mut reset = false;
    loop {
        match huge.next().await {
            Some(Ok(Message::Close(f))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => {}
            // The server closes while the rest of the frame is unread, so the kernel may
            // reset the connection before the client reads the close frame.
            Some(Err(_)) | None => {
                reset = true;
                break;
            }
        }
    }
    assert!(code == Some(1009) || reset, "oversized frame closes with 1009 (message too big), got {code:?}");
    still_produces(&mut ws, json!("after a neighbour's huge frame")).await;
    still_produces(&mut bystander, json!("bystander at the end")).await;

    // Nothing that was acknowledged went missing, and no bad record was written.
    let expected = cases.len() + 2; // the checks on `ws` after each case, after binary, after huge
    let bystander_records = cases.len() + 1;
    let got = read_back(&topic, expected + bystander_records, "raw", "string");
    assert_eq!(got.len(), expected + bystander_records, "exactly the good records are in Kafka");
    assert!(got
        .iter()
        .all(|r| r["value"].as_str().is_some_and(|v| v.starts_with("after") || v.starts_with("bystander"))));
}

#[tokio::test]
async fn malformed_consume_parameters_and_commits_get_clear_errors() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("bad-consume");
    create_topic(&topic, 1).await;
    let cases = [
        (format!("/socket/out?topic={topic}"), "Request param 'clientId' is missing."),
        ("/socket/out?clientId=c".to_owned(), "Request param 'topic' is missing."),
        (
            format!("/socket/out?clientId=c&topic={topic}&isolationLevel=uncommitted"),
            "Read isolation 'uncommitted' is not a valid value. Please use one of 'read_committed' or 'read_uncommitted'.",
        ),
        (format!("/socket/out?clientId=c&topic={topic}&offsetResetStrategy=middle"), "middle is not a valid offset reset strategy"),
        (format!("/socket/out?clientId=c&topic={topic}&rate=fast"), "'fast' is not a valid 32-bit signed integer value"),
        (format!("/socket/out?clientId=c&topic={topic}&batchSize=-1"), "Request param 'batchSize' must not be negative, got -1."),
        (format!("/socket/out?clientId=c&topic={topic}&autoCommit=perhaps"), "'perhaps' is not a valid Boolean value"),
        (
            format!("/socket/out?clientId=c&topic={topic}&batchSize=2147483647"),
            "Request param 'batchSize' must be at most 10000, got 2147483647.",
        ),
        (format!("/socket/out?clientId=c&topic={topic}&valType=xml"), "'xml' is not a valid format type"),
        (
            format!("/socket/out?clientId=c&topic={topic}&fromTimestamp=yesterday"),
            "'yesterday' is not a valid fromTimestamp. Please use milliseconds since the epoch.",
        ),
        ("/socket/out?clientId=c&topic=no-such-topic-here".to_owned(), "Topic no-such-topic-here does not exist"),
    ];
    for (path, text) in &cases {
        let (status, content_type, body) = refused(&proxy.url(path)).await;
        assert_eq!((status, content_type.as_str()), (400, "application/json"), "{path}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], *text, "{path}");
    }

    // Commits that name nothing this socket sent.
    write_with_tool(
        &topic,
        &[json!({"value": {"format": "string", "value": "a"}}), json!({"value": {"format": "string", "value": "b"}})],
    );
    let mut ws = connect(&proxy.url(&format!("/socket/out?clientId=c&topic={topic}&autoCommit=false"))).await;
    let first = recv_json(&mut ws).await;
    let second = recv_json(&mut ws).await;
    assert_eq!((first["offset"].clone(), second["offset"].clone()), (json!(0), json!(1)));
    let bad_commits = [
        ("not JSON", "{nope".to_owned(), "INVALID_FRAME"),
        ("wrong shape", json!({"id": 1}).to_string(), "INVALID_FRAME"),
        ("not an id", json!({"wsProxyMessageId": "garbage"}).to_string(), "UNKNOWN_MESSAGE_ID"),
        ("foreign topic", json!({"wsProxyMessageId": "other-topic-0-0-1"}).to_string(), "UNKNOWN_MESSAGE_ID"),
        ("never sent", json!({"wsProxyMessageId": format!("{topic}-0-99-1")}).to_string(), "UNKNOWN_MESSAGE_ID"),
    ];
    for (what, frame, code) in &bad_commits {
        send(&mut ws, frame.clone()).await;
        let e = recv_json(&mut ws).await;
        assert_eq!(e["error"]["code"], *code, "{what}: {e}");
    }
    ws.send(Message::Binary(vec![0].into())).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "UNSUPPORTED_FRAME");
    // The socket still consumes and commits.
    write_with_tool(&topic, &[json!({"value": {"format": "string", "value": "c"}})]);
    assert_eq!(recv_json(&mut ws).await["offset"], 2);
    send(&mut ws, json!({"wsProxyMessageId": first["wsProxyMessageId"]}).to_string()).await;
    assert_eq!(maybe_json(&mut ws, Duration::from_millis(500)).await, None, "a good commit is silent");
    send(&mut ws, json!({"wsProxyMessageId": first["wsProxyMessageId"]}).to_string()).await;
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "UNKNOWN_MESSAGE_ID", "a second commit of the same id");
}

#[tokio::test]
async fn connection_limits_answer_503_and_free_slots_at_once() {
    let topic = unique("limits");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[("WSPROXY_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let url = proxy.url(&format!("/socket/in?clientId=l&topic={topic}"));
    let mut first = connect(&url).await;
    let _second = connect(&proxy.url(&format!("/socket/out?clientId=l&topic={topic}"))).await;
    let (status, content_type, body) = refused(&url).await;
    assert_eq!((status, content_type.as_str()), (503, "application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "The limit of 2 open sockets from 127.0.0.1 has been reached."
    );
    // The sockets already open keep working, and closing one frees its slot at once.
    still_produces(&mut first, json!("under the limit")).await;
    first.close(None).await.unwrap();
    while let Some(Ok(_)) = first.next().await {}
    let mut again = connect(&url).await;
    still_produces(&mut again, json!("slot freed")).await;

    let node = Proxy::start(&[("WSPROXY_MAX_CONNECTIONS", "1")]).await;
    let _only = connect(&node.url(&format!("/socket/in?clientId=n&topic={topic}"))).await;
    let (status, _, body) = refused(&node.url(&format!("/socket/in?clientId=n2&topic={topic}"))).await;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "The proxy has reached its limit of 1 open sockets. Try again later."
    );
}
