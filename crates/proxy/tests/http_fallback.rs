//! The HTTP fallback (issue 19 part 3) against the real broker with real clients: `curl` for
//! `POST /http/in` (its records checked in Kafka with the independent client), a Python SSE
//! reader over raw HTTP and `curl -N` for `GET /sse/out`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use common::*;

/// `curl` with `args`, `body` on stdin (`--data-binary @-`): (status, body).
fn curl(args: &[&str], body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "60", "-w", "\n%{http_code}"]).args(args);
    if body.is_some() {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", "@-"]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("curl");
    child.stdin.take().unwrap().write_all(body.unwrap_or_default().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl printed no status: {text}"));
    (status.parse().unwrap_or_else(|_| panic!("curl: {}", String::from_utf8_lossy(&out.stderr))), body.to_owned())
}

/// `POST /http/in?query` with `body`: (status, body).
fn post(proxy: &Proxy, query: &str, body: &str) -> (u16, String) {
    curl(&[&format!("http://127.0.0.1:{}/http/in?{query}", proxy.port)], Some(body))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The `{"message": ..}` of a refusal.
fn message_of(body: &str) -> String {
    json_of(body)["message"].as_str().unwrap_or_else(|| panic!("no message: {body}")).to_owned()
}

#[tokio::test]
async fn post_one_record_is_answered_after_kafkas_ack_with_its_result() {
    let topic = unique("http-in-one");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[]).await;
    let (status, body) = post(&proxy, &format!("clientId=c1&topic={topic}"), &record(None, "hello", Some("m1")));
    assert_eq!(status, 200, "{body}");
    let answer = json_of(&body);
    assert_eq!((answer["topic"].as_str(), answer["partition"].as_i64()), (Some(topic.as_str()), Some(0)), "{body}");
    assert_eq!((answer["offset"].as_i64(), answer["messageId"].as_str()), (Some(0), Some("m1")), "{body}");
    assert_eq!(answer["clientMessageId"], "m1");
    // The offset in the answer is Kafka's: the record is there, at that offset, now.
    let back = read_back(&topic, 1, "string", "string");
    assert_eq!((back[0]["offset"].as_i64(), back[0]["value"].as_str()), (Some(0), Some("hello")));
    assert_eq!(back[0]["timestamp"], answer["timestamp"]);
}

#[tokio::test]
async fn post_an_array_keeps_its_order_bad_records_get_error_entries_nothing_is_lost() {
    let topic = unique("http-in-array");
    create_topic(&topic, 3).await;
    let proxy = Proxy::start(&[]).await;
    let bad = [7usize, 20, 41];
    let records: Vec<Value> = (0..60)
        .map(|i| {
            if bad.contains(&i) {
                // A number where the socket's valType (string) wants text.
                json!({"value": {"value": i}, "messageId": format!("m{i}")})
            } else {
                json!({"key": {"value": format!("k{}", i % 5)}, "value": {"value": format!("v{i}")}, "messageId": format!("m{i}")})
            }
        })
        .collect();
    let (status, body) =
        post(&proxy, &format!("clientId=c2&topic={topic}&keyType=string"), &json!(records).to_string());
    assert_eq!(status, 200, "{body}");
    let answers = json_of(&body);
    let answers = answers.as_array().expect("an array answers an array");
    assert_eq!(answers.len(), 60);
    let mut written = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["messageId"], format!("m{i}"), "entry {i} is in input order: {a}");
        if bad.contains(&i) {
            assert_eq!(a["error"]["code"], "INVALID_VALUE", "{a}");
        } else {
            assert!(a["offset"].as_i64().is_some_and(|o| o >= 0), "{a}");
            written.push((a["partition"].as_i64().unwrap(), a["offset"].as_i64().unwrap(), format!("v{i}")));
        }
    }
    // Every good record is in Kafka, where its entry says, and nothing else is.
    let back = read_back(&topic, 57, "string", "string");
    let mut found: Vec<(i64, i64, String)> = back
        .iter()
        .map(|r| (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap(), r["value"].as_str().unwrap().into()))
        .collect();
    found.sort();
    written.sort();
    assert_eq!(found, written);
    // Same key, same partition, in input order.
    let k0: Vec<i64> =
        answers.iter().enumerate().filter(|(i, _)| i % 5 == 0).filter_map(|(_, a)| a["offset"].as_i64()).collect();
    assert!(k0.windows(2).all(|w| w[0] < w[1]), "{k0:?}");
}

/// What a user sees for each bad input: status and the message that says why.
#[tokio::test]
async fn post_bad_inputs_are_refused_with_a_status_and_a_reason() {
    let topic = unique("http-in-bad");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[("WSPROXY_WS_MAX_FRAME_SIZE", "100000")]).await;
    let q = format!("clientId=c3&topic={topic}");
    let one = record(None, "v", None);

    let (status, body) = post(&proxy, &q, "{\"value\": ");
    assert_eq!(
        (status, message_of(&body).starts_with("The body is not JSON: EOF while parsing")),
        (400, true),
        "{body}"
    );
    let (status, body) = post(&proxy, &q, "42");
    assert_eq!(
        (status, message_of(&body)),
        (400, "The body is neither a record (a JSON object) nor an array of records.".to_owned())
    );
    let (status, body) = post(&proxy, &q, "");
    assert_eq!(status, 400, "{body}");
    let many = format!("[{}]", vec![one.as_str(); 1001].join(","));
    let (status, body) = post(&proxy, &q, &many);
    assert_eq!(
        (status, message_of(&body)),
        (400, "INVALID_FRAME: an array frame holds at most 1000 records, this one has 1001".to_owned())
    );
    let large = record(None, &"x".repeat(150_000), None);
    let (status, body) = post(&proxy, &q, &large);
    assert_eq!(
        (status, message_of(&body)),
        (413, format!("the frame has {} bytes; the limit is 100000 (WSPROXY_WS_MAX_FRAME_SIZE)", large.len()))
    );
    let (status, body) = post(&proxy, "clientId=c3&topic=no-such-topic-http-in", &one);
    assert_eq!((status, message_of(&body)), (400, "Topic no-such-topic-http-in does not exist".to_owned()));
    let (status, body) = post(&proxy, &format!("topic={topic}"), &one);
    assert_eq!((status, message_of(&body)), (400, "Request param 'clientId' is missing.".to_owned()));
    // Nothing of it reached Kafka.
    assert_eq!(kafka_tool(&["consume", &topic, "1", "3", "string", "string"], ""), "");
}

#[tokio::test]
async fn post_checks_credentials_and_origins_as_the_sockets_do() {
    let topic = unique("http-in-auth");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "user"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
        ("WSPROXY_ALLOWED_ORIGINS", "https://app.example"),
    ])
    .await;
    let url = format!("http://127.0.0.1:{}/http/in?clientId=c4&topic={topic}", proxy.port);
    let one = record(None, "authorised", None);
    let (status, body) = curl(&[&url], Some(&one));
    assert_eq!(
        (status, message_of(&body)),
        (401, "The resource requires authentication, which was not supplied with the request".to_owned())
    );
    let (status, body) = curl(&["-u", "user:wrong", &url], Some(&one));
    assert_eq!((status, message_of(&body)), (401, "The supplied authentication is invalid".to_owned()));
    let (status, body) = curl(&["-u", "user:s3cret", "-H", "Origin: https://evil.example", &url], Some(&one));
    assert_eq!(
        (status, message_of(&body)),
        (403, "Origin 'https://evil.example' is not allowed to open sockets on this proxy.".to_owned())
    );
    let (status, body) = curl(&["-u", "user:s3cret", "-H", "Origin: https://app.example", &url], Some(&one));
    assert_eq!(status, 200, "{body}");
    let back = read_back(&topic, 1, "string", "string");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["value"], "authorised");
}
