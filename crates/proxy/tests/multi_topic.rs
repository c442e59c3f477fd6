//! Several topics on one `/socket/out` (`topic=a,b,c`) and topic patterns (`topicPattern`),
//! end to end: records written by the independent client, consumed through a real proxy over
//! a real WebSocket, commits checked in Kafka with the independent client; the 400s a client
//! sees for bad parameters; session limits over the partitions of every topic.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Percent-encodes a query value (patterns hold `^` and `\`, which a URI cannot carry as is).
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn string_records(values: &[&str]) -> Vec<Value> {
    values.iter().map(|v| json!({"value": {"format": "string", "value": v}})).collect()
}

/// Reads `n` record frames; returns them.
async fn records(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = recv_json(ws).await;
        assert!(r.get("error").is_none(), "an error frame in place of a record: {r}");
        out.push(r);
    }
    out
}

fn committed(group: &str, topic: &str) -> Value {
    serde_json::from_str(&kafka_tool(&["committed", group, topic], "")).unwrap()
}

#[tokio::test]
async fn a_socket_on_a_topic_list_reads_every_topic_and_commits_across_them() {
    let proxy = Proxy::start(&[]).await;
    let (a, b) = (unique("multi-a"), unique("multi-b"));
    create_topic(&a, 2).await;
    create_topic(&b, 1).await;
    write_with_tool(&a, &string_records(&["a0", "a1", "a2"]));
    write_with_tool(&b, &string_records(&["b0", "b1"]));
    let group = unique("g");
    let url = proxy.url(&format!("/socket/out?clientId=c1&groupId={group}&topic={a},{b}&autoCommit=false"));
    let mut ws = connect(&url).await;
    let got = records(&mut ws, 5).await;
    let values: BTreeSet<(String, String)> = got
        .iter()
        .map(|r| (r["topic"].as_str().unwrap().to_owned(), r["value"]["value"].as_str().unwrap().to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = [(&a, "a0"), (&a, "a1"), (&a, "a2"), (&b, "b0"), (&b, "b1")]
        .into_iter()
        .map(|(t, v)| (t.clone(), v.to_owned()))
        .collect();
    assert_eq!(values, expected);
    // Ids carry their topic: commit the newest record of every partition of both topics.
    let mut newest: BTreeMap<(String, i64), &Value> = BTreeMap::new();
    for r in &got {
        let key = (r["topic"].as_str().unwrap().to_owned(), r["partition"].as_i64().unwrap());
        if newest.get(&key).is_none_or(|n| n["offset"].as_i64() < r["offset"].as_i64()) {
            newest.insert(key, r);
        }
    }
    for r in newest.values() {
        send(&mut ws, json!({"wsProxyMessageId": r["wsProxyMessageId"]}).to_string()).await;
    }
    // A good commit gets no answer; an id of a topic the socket does not read gets an error frame.
    let other = format!("{}-0-0-0", unique("not-read"));
    send(&mut ws, json!({"wsProxyMessageId": other}).to_string()).await;
    let err = recv_json(&mut ws).await;
    assert_eq!(err["error"]["code"], "UNKNOWN_MESSAGE_ID", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains(&format!("this socket reads '{a},{b}'")), "{err}");
    hang_up(ws).await;
    let (in_a, in_b) = (committed(&group, &a), committed(&group, &b));
    for ((topic, partition), r) in &newest {
        let committed = if *topic == a { &in_a } else { &in_b };
        assert_eq!(committed[partition.to_string()], r["offset"].as_i64().unwrap() + 1, "{topic}: {committed}");
    }
}

#[tokio::test]
async fn a_topic_pattern_reads_matching_topics_and_one_created_after_the_socket_opened() {
    let prefix = unique("orders");
    // The proxy's own session topic matches the pattern too: it must never be read.
    let sessions = format!("{prefix}.sessions");
    let proxy = Proxy::start(&[
        ("WSPROXY_CONSUMER_METADATA_REFRESH_INTERVAL", "2 seconds"),
        ("WSPROXY_SESSION_STATE_TOPIC", &sessions),
    ])
    .await;
    let (eu, us, other) = (format!("{prefix}.eu"), format!("{prefix}.us"), format!("{prefix}-other"));
    for t in [&eu, &us, &other] {
        create_topic(t, 1).await;
    }
    write_with_tool(&eu, &string_records(&["eu0"]));
    write_with_tool(&us, &string_records(&["us0"]));
    write_with_tool(&other, &string_records(&["not matched"]));
    let group = unique("g");
    let pattern = format!("^{prefix}\\..*");
    let url =
        proxy.url(&format!("/socket/out?clientId=c1&groupId={group}&topicPattern={}&autoCommit=false", enc(&pattern)));
    let mut ws = connect(&url).await;
    let mut got = records(&mut ws, 2).await;
    // Committed before the new topic joins the assignment: its rebalance (eager) starts the
    // group's partitions again from their commits, so nothing comes twice.
    for r in &got {
        send(&mut ws, json!({"wsProxyMessageId": r["wsProxyMessageId"]}).to_string()).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while [&eu, &us].iter().any(|t| committed(&group, t)["0"] != 1) {
        assert!(std::time::Instant::now() < deadline, "commits of the first two records did not land");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Created after the socket opened: found by the next metadata refresh (2 s here).
    let apac = format!("{prefix}.apac");
    create_topic(&apac, 1).await;
    write_with_tool(&apac, &string_records(&["apac0"]));
    let last = tokio::time::timeout(Duration::from_secs(60), recv_json(&mut ws)).await.expect("the new topic's record");
    send(&mut ws, json!({"wsProxyMessageId": last["wsProxyMessageId"]}).to_string()).await;
    got.push(last);
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| (r["topic"].as_str().unwrap().to_owned(), r["value"]["value"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    let mut expected =
        vec![(apac.clone(), "apac0".to_owned()), (eu.clone(), "eu0".to_owned()), (us.clone(), "us0".to_owned())];
    expected.sort();
    assert_eq!(seen, expected, "no record of {other} nor of the session topic {sessions}");
    assert_eq!(
        maybe_json(&mut ws, Duration::from_secs(3)).await,
        None,
        "nothing more: no internal topic, no record twice, no answer to good commits"
    );
    hang_up(ws).await;
    for t in [&eu, &us, &apac] {
        assert_eq!(committed(&group, t)["0"], 1, "{t}");
    }
}

#[tokio::test]
async fn bad_topic_parameters_are_refused_with_400_and_a_reason() {
    let proxy = Proxy::start(&[]).await;
    let exists = unique("exists");
    create_topic(&exists, 1).await;
    let missing = unique("missing");
    let cases = [
        (
            "topic=,".to_owned(),
            "Request param 'topic' has an empty topic name in ','; list several topics as topic=a,b,c.",
        ),
        (format!("topic={exists},,{exists}"), "has an empty topic name in"),
        (format!("topic={exists},{missing}"), &*format!("Topic {missing} does not exist")),
        (format!("topic={missing},{exists}"), &*format!("Topic {missing} does not exist")),
        ("topicPattern=".to_owned(), "Request param 'topicPattern' is empty."),
        (
            format!("topicPattern={}", enc("^orders.(eu")),
            "Request param 'topicPattern' is not a valid regular expression",
        ),
        (
            format!("topic={exists}&topicPattern={}", enc("^x")),
            "Request params 'topic' and 'topicPattern' cannot be used together",
        ),
        (
            format!("topicPattern={}&fromTimestamp=0", enc("^x")),
            "Request param 'fromTimestamp' cannot be used with 'topicPattern'",
        ),
    ];
    for (query, text) in cases {
        let (status, content_type, body) = refused(&proxy.url(&format!("/socket/out?clientId=c&{query}"))).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(content_type, "application/json", "{query}");
        let message = serde_json::from_str::<Value>(&body).unwrap()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(text), "{query}: {message}");
    }
}

#[tokio::test]
async fn the_session_limit_of_a_group_counts_the_partitions_of_all_its_topics() {
    let proxy = Proxy::start(&[]).await;
    let (a, b) = (unique("limit-a"), unique("limit-b"));
    create_topic(&a, 1).await;
    create_topic(&b, 1).await;
    let group = unique("g");
    let url = |client: &str| proxy.url(&format!("/socket/out?clientId={client}&groupId={group}&topic={a},{b}"));
    let first = connect(&url("c1")).await;
    let second = connect(&url("c2")).await;
    let (status, _, body) = refused(&url("c3")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("The max number of WebSockets for session {group} has been reached. Limit is 2")),
        "{body}"
    );
    hang_up(first).await;
    hang_up(second).await;
}

#[tokio::test]
async fn with_its_own_credentials_a_socket_gets_403_naming_the_listed_topic_it_may_not_read() {
    // The broker's SASL listener: alice may describe `acl-ok` (scripts/kafka) and nothing else.
    let env = sasl_env("PLAIN", "admin", "admin-secret");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let proxy = Proxy::start(&env).await;
    let other = unique("acl-denied");
    create_topic(&other, 1).await;
    use base64::Engine;
    let alice = vec![("X-Kafka-Auth", base64::engine::general_purpose::STANDARD.encode("alice:alice-secret"))];
    let url = proxy.url(&format!("/socket/out?clientId=alice&topic=acl-ok,{other}"));
    let Err((status, body)) = connect_with(&url, &alice).await else { panic!("accepted: expected a 403") };
    assert_eq!(status, 403, "{body}");
    let message = serde_json::from_str::<Value>(&body).unwrap()["message"].as_str().unwrap().to_owned();
    assert_eq!(message, format!("Not authorized to access topics: [{other}]"));
}
