//! The HTTP fallback (issue 19 part 3) against the real broker with real clients: `curl` for
//! `POST /http/in` (its records checked in Kafka with the independent client), a Python SSE
//! reader over raw HTTP and `curl -N` for `GET /sse/out`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// The value of the metric `name` on the line that has every one of `labels`.
async fn metric(proxy: &Proxy, name: &str, labels: &[&str]) -> f64 {
    let (_, _, text) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
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
    // Counted like a socket's records and error frames.
    let topic_label = format!("topic=\"{topic}\"");
    assert_eq!(metric(&proxy, "wsproxy_records_total", &["direction=\"in\"", &topic_label]).await, 57.0);
    let invalid = metric(&proxy, "wsproxy_error_frames_total", &["direction=\"in\"", "code=\"INVALID_VALUE\""]).await;
    assert_eq!(invalid, 3.0);
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

/// What the SSE reader saw: the response, then its events and comments in order.
struct Sse {
    status: u16,
    headers: Value,
    body: String,
    events: Vec<Value>,
    /// Comment lines (`: keep-alive`).
    comments: Vec<String>,
}

impl Sse {
    /// The events' `data` as JSON, each checked to carry its `id:` as `wsProxyMessageId`.
    fn records(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.get("event").is_none())
            .map(|e| {
                let data = json_of(e["data"].as_str().unwrap());
                assert_eq!(e["id"], data["wsProxyMessageId"], "{e}");
                data
            })
            .collect()
    }

    fn offsets(&self) -> Vec<i64> {
        self.records().iter().map(|r| r["offset"].as_i64().unwrap()).collect()
    }
}

/// `tests/support/sse_client.py`: reads up to `n` events of `url` within `timeout_s`.
fn sse(url: &str, n: usize, timeout_s: u32, last_event_id: Option<&str>) -> Sse {
    let root = project_root();
    let python = root.join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(root.join("tests/support/sse_client.py"))
        .args([url, &n.to_string(), &timeout_s.to_string(), last_event_id.unwrap_or_default()])
        .output()
        .expect("python");
    assert!(out.status.success(), "sse_client failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines = std::str::from_utf8(&out.stdout).unwrap().lines().map(json_of);
    let head = lines.next().expect("a response line");
    let (mut events, mut comments) = (Vec::new(), Vec::new());
    for l in lines {
        match l["comment"].as_str() {
            Some(c) => comments.push(c.to_owned()),
            None => events.push(l),
        }
    }
    Sse {
        status: head["status"].as_u64().unwrap() as u16,
        headers: head["headers"].clone(),
        body: head["body"].as_str().unwrap_or_default().to_owned(),
        events,
        comments,
    }
}

/// Writes `v<from>`..`v<to - 1>` with the independent client.
fn write_values(topic: &str, from: usize, to: usize) {
    let records: Vec<Value> =
        (from..to).map(|i| json!({"value": {"format": "string", "value": format!("v{i}")}, "partition": 0})).collect();
    write_with_tool(topic, &records);
}

/// A reconnect as an `EventSource` makes it: again until the previous stream's place in the
/// session is free (the proxy notices the dropped connection at its next write at the latest).
/// Also returns how long until the accepted attempt.
fn reconnect(url: &str, n: usize, timeout_s: u32, last_event_id: &str) -> (Sse, Duration) {
    let start = Instant::now();
    loop {
        let attempt = start.elapsed();
        let got = sse(url, n, timeout_s, Some(last_event_id));
        if got.status == 200 || start.elapsed() > Duration::from_secs(30) {
            return (got, attempt);
        }
        assert!(got.body.contains("already registered"), "{} {}", got.status, got.body);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test]
async fn sse_streams_records_as_events_and_a_reconnect_with_last_event_id_resumes_right_after_it() {
    let topic = unique("sse-out");
    create_topic(&topic, 1).await;
    write_values(&topic, 0, 20);
    let proxy = Proxy::start(&[("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second")]).await;
    let url = format!("http://127.0.0.1:{}/sse/out?clientId=reader&groupId=g-{topic}&topic={topic}", proxy.port);

    let first = sse(&url, 8, 30, None);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.headers["content-type"], "text/event-stream");
    assert_eq!(first.headers["cache-control"], "no-cache");
    assert_eq!(first.headers["x-accel-buffering"], "no");
    assert_eq!(first.comments.first().map(String::as_str), Some("connected"));
    let records = first.records();
    assert_eq!(first.offsets(), (0..8).collect::<Vec<i64>>());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            (r["topic"].as_str(), r["value"]["value"].as_str()),
            (Some(topic.as_str()), Some(&*format!("v{i}")))
        );
    }
    let last = first.events[7]["id"].as_str().unwrap().to_owned();

    write_values(&topic, 20, 30);
    let (second, waited) = reconnect(&url, 22, 10, &last);
    assert_eq!(second.status, 200, "{}", second.body);
    // Nothing up to the last id again, nothing lost: what the first stream wrote past what its
    // reader took (committed, autoCommit semantics) comes again, as the group has no other reader.
    assert_eq!(second.offsets(), (8..30).collect::<Vec<i64>>());
    eprintln!("reconnect accepted after {waited:?}");
}

/// Even when the group committed less (a node that died before committing), a reconnect with
/// `Last-Event-ID` does not send the records up to that id again; the stream commits what
/// it wrote.
#[tokio::test]
async fn sse_skips_records_up_to_last_event_id_whatever_the_group_committed() {
    let topic = unique("sse-resume");
    create_topic(&topic, 1).await;
    write_values(&topic, 0, 20);
    let proxy = Proxy::start(&[]).await;
    let group = format!("g-{topic}");
    let url = format!("http://127.0.0.1:{}/sse/out?clientId=r&groupId={group}&topic={topic}", proxy.port);
    // The group has no offset: it starts at the earliest record.
    let got = sse(&url, 10, 30, Some(&format!("{topic}-0-9-0")));
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.offsets(), (10..20).collect::<Vec<i64>>());
    // The reader left: its stream commits what it wrote (everything, here).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = json_of(kafka_tool(&["committed", &group, &topic], "").trim());
        if committed["0"] == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the group's committed offset: {committed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `topic=a,b` works on an event stream as on a socket (the same consume loop).
#[tokio::test]
async fn an_event_stream_reads_several_topics() {
    let (a, b) = (unique("sse-a"), unique("sse-b"));
    create_topic(&a, 1).await;
    create_topic(&b, 1).await;
    write_values(&a, 0, 3);
    write_values(&b, 3, 5);
    let proxy = Proxy::start(&[]).await;
    let got = sse(&format!("http://127.0.0.1:{}/sse/out?clientId=r&topic={a},{b}", proxy.port), 5, 30, None);
    assert_eq!(got.status, 200, "{}", got.body);
    let mut seen: Vec<(String, String)> = got
        .records()
        .iter()
        .map(|r| (r["topic"].as_str().unwrap().to_owned(), r["value"]["value"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    let mut expected: Vec<(String, String)> =
        (0..5).map(|i| (if i < 3 { a.clone() } else { b.clone() }, format!("v{i}"))).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn curl_receives_records_and_keep_alive_comments() {
    let topic = unique("sse-curl");
    create_topic(&topic, 1).await;
    write_values(&topic, 0, 3);
    let proxy = Proxy::start(&[("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second")]).await;
    let url = format!("http://127.0.0.1:{}/sse/out?clientId=curl&topic={topic}", proxy.port);
    // curl ends the stream after 4 s (exit code 28): what it printed until then.
    let out = Command::new("curl").args(["-N", "-s", "--max-time", "4", &url]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let data: Vec<Value> = text.lines().filter_map(|l| l.strip_prefix("data: ")).map(json_of).collect();
    assert_eq!(ids.len(), 3, "{text}");
    for (i, (id, d)) in ids.iter().zip(&data).enumerate() {
        assert_eq!((d["wsProxyMessageId"].as_str(), d["offset"].as_i64()), (Some(*id), Some(i as i64)), "{text}");
        assert_eq!(d["value"]["value"], format!("v{i}"));
    }
    assert!(text.contains("\n: keep-alive\n\n"), "{text}");
    // Counted like a consume socket's records, and closed once curl left.
    let topic_label = format!("topic=\"{topic}\"");
    assert_eq!(metric(&proxy, "wsproxy_records_total", &["direction=\"out\"", &topic_label]).await, 3.0);
    assert_eq!(metric(&proxy, "wsproxy_sockets_opened_total", &["direction=\"out\""]).await, 1.0);
}

/// What a user sees when a stream is refused: status and the reason.
#[tokio::test]
async fn sse_refusals_say_why() {
    let topic = unique("sse-bad");
    create_topic(&topic, 1).await;
    let proxy = Proxy::start(&[
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "user"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
    ])
    .await;
    let base = format!("http://127.0.0.1:{}/sse/out", proxy.port);
    let get = |auth: &str, query: &str| curl(&["-u", auth, &format!("{base}?{query}")], None);
    let (status, body) = get("user:wrong", &format!("clientId=c&topic={topic}"));
    assert_eq!((status, message_of(&body)), (401, "The supplied authentication is invalid".to_owned()));
    let (status, body) = get("user:s3cret", "clientId=c&topic=no-such-topic-sse");
    assert_eq!((status, message_of(&body)), (400, "Topic no-such-topic-sse does not exist".to_owned()));
    let (status, body) = get("user:s3cret", &format!("clientId=c&topic={topic}&batchSize=10"));
    assert_eq!(
        (status, message_of(&body)),
        (400, "batchSize is not supported on an event stream: each record is one event.".to_owned())
    );
    let (status, body) = get("user:s3cret", &format!("clientId=c&topic={topic}&autoCommit=false"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = get("user:s3cret", &format!("clientId=c&topic={topic}&pull=true"));
    assert_eq!(
        (status, message_of(&body)),
        (400, "pull=true is not supported on an event stream: it cannot send {\"request\":N}.".to_owned())
    );
    let (status, body) =
        curl(&["-u", "user:s3cret", "-H", "Last-Event-ID: garbage", &format!("{base}?clientId=c&topic={topic}")], None);
    assert_eq!(
        (status, message_of(&body)),
        (400, "Last-Event-ID 'garbage' is not a record id (topic-partition-offset-timestamp).".to_owned())
    );
}

/// Opens `GET /sse/out` over a raw connection, checks the 200 and then never reads again.
async fn stalled_stream(port: u16, query: String) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET /sse/out?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the stream ended in its head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s
}

/// 100 event streams held open (each its own group member with a backlog, none read) cost
/// about what 100 consume sockets do: the stream is the socket's loop over a small channel.
/// A safety bound with a wide margin, not a target; the figures are printed.
#[tokio::test]
async fn held_event_streams_cost_no_more_than_consume_sockets() {
    const N: usize = 100;
    let topic = unique("sse-held");
    create_topic(&topic, 1).await;
    let records: Vec<Value> =
        (0..500).map(|i| json!({"value": {"format": "string", "value": format!("{i:0>200}")}})).collect();
    write_with_tool(&topic, &records);
    let settle = Duration::from_secs(10);

    let proxy = Proxy::start(&[]).await;
    let before = proxy.rss_kib();
    let mut sockets = Vec::new();
    for i in 0..N {
        sockets.push(
            connect(&proxy.url(&format!("/socket/out?clientId=ws{i}&groupId={}&topic={topic}", unique("g")))).await,
        );
    }
    tokio::time::sleep(settle).await;
    let ws_cost = proxy.rss_kib().saturating_sub(before);
    drop(sockets);
    drop(proxy);

    let proxy = Proxy::start(&[]).await;
    let before = proxy.rss_kib();
    let mut streams = Vec::new();
    for i in 0..N {
        streams
            .push(stalled_stream(proxy.port, format!("clientId=sse{i}&groupId={}&topic={topic}", unique("g"))).await);
    }
    tokio::time::sleep(settle).await;
    let sse_cost = proxy.rss_kib().saturating_sub(before);
    println!(
        "{N} held consume sockets: RSS +{ws_cost} KiB ({} KiB each); {N} held event streams: RSS +{sse_cost} KiB ({} KiB each)",
        ws_cost / N as u64,
        sse_cost / N as u64
    );
    assert!(sse_cost <= ws_cost * 3 / 2 + 32 * 1024, "streams {sse_cost} KiB, sockets {ws_cost} KiB");
}

/// With OpenID Connect: an `EventSource` cannot set headers, so the token goes in
/// `access_token`; `POST` takes it in the `Authorization` header. Without one: 401.
#[tokio::test]
async fn with_openid_connect_streams_take_access_token_and_posts_the_bearer_header() {
    let idp = oidc::Idp::start();
    let proxy = oidc::start_proxy(&oidc::oidc_env(&idp, &[])).await;
    let token = idp.token("wsproxy-rs256").await;
    let topic = unique("http-oidc");
    create_topic(&topic, 1).await;
    let post_url = format!("http://127.0.0.1:{}/http/in?clientId=c&topic={topic}", proxy.port);
    let (status, body) = curl(&[&post_url], Some(&record(None, "no token", None)));
    assert_eq!(status, 401, "{body}");
    let bearer = format!("Authorization: Bearer {token}");
    let (status, body) = curl(&["-H", &bearer, &post_url], Some(&record(None, "with token", None)));
    assert_eq!(status, 200, "{body}");

    let sse_url = format!("http://127.0.0.1:{}/sse/out?clientId=r&topic={topic}", proxy.port);
    let refused = sse(&sse_url, 1, 10, None);
    assert_eq!(refused.status, 401, "{}", refused.body);
    let got = sse(&format!("{sse_url}&access_token={token}"), 1, 30, None);
    assert_eq!(got.status, 200, "{}", got.body);
    let records = got.records();
    assert_eq!(records[0]["value"]["value"], "with token");
}

/// A body trickled slower than the idle timeout gets 408, and while it is read it holds a
/// connection slot (one per IP here: a second POST meanwhile gets 503); the slot is free after.
#[tokio::test]
async fn a_trickled_post_body_holds_a_connection_slot_and_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::start(&[
        ("WSPROXY_SOCKET_IDLE_TIMEOUT", "2 seconds"),
        ("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "1 second"),
        ("WSPROXY_MAX_CONNECTIONS_PER_IP", "1"),
    ])
    .await;
    let topic = unique("post-slow");
    create_topic(&topic, 1).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let head = format!(
        "POST /http/in?clientId=slow&topic={topic} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"value\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let record = r#"{"value":{"value":"after"}}"#;
    let (status, body) = post(&proxy, &format!("clientId=other&topic={topic}"), record);
    assert_eq!(status, 503, "the trickled body holds the IP's one slot: {body}");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("The request body did not arrive within 2s."), "{answer}");
    drop(slow);
    let (status, body) = post(&proxy, &format!("clientId=other&topic={topic}"), record);
    assert_eq!(status, 200, "the slot is free again: {body}");
    let back = read_back(&topic, 1, "string", "string");
    assert_eq!(back.len(), 1, "only the complete record is in Kafka: {back:?}");
    assert_eq!(back[0]["value"], "after");
}
