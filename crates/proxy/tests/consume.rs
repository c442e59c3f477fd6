//! `/socket/out` end to end: records written by an independent client, consumed through a real
//! proxy process over a real WebSocket; commits, batching, rate, redelivery and backpressure;
//! poison records (header keys that are not UTF-8, records too large for a frame) and clients
//! that flood bad commits without reading.
// One test writes a header key that is not UTF-8, which rdkafka's safe API cannot express.
#![allow(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn consume_url(proxy: &Proxy, topic: &str, client: &str, query: &str) -> String {
    proxy.url(&format!("/socket/out?clientId={client}&topic={topic}{query}"))
}

/// Writes `n` string records `foo-i`/`bar-i` (key optional) with rdkafka, to one partition.
async fn fill(topic: &str, n: usize, keyed: bool) {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "5").create().unwrap();
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let (k, v) = (format!("foo-{i}"), format!("bar-{i}"));
        let mut r = FutureRecord::to(topic).payload(&v).partition(0);
        if keyed {
            r = r.key(&k);
        }
        futs.push(p.send_result(r).map_err(|(e, _)| e).unwrap());
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Reference scenarios of WebSocketRoutesNoSecuritySpec (consume side).
#[tokio::test]
async fn reference_consume_scenarios_keyed_with_headers_and_value_only() {
    let proxy = Proxy::start(&[]).await;
    // 10 keyed records, no headers.
    let topic = unique("ref-consume");
    create_topic(&topic, 1).await;
    fill(&topic, 10, true).await;
    let mut ws =
        connect(&consume_url(&proxy, &topic, &unique("c"), "&keyType=string&valType=string&autoCommit=false")).await;
    for i in 0..10 {
        let text = recv_text(&mut ws, Duration::from_secs(30)).await;
        let fields = ["wsProxyMessageId", "topic", "partition", "offset", "timestamp", "headers", "key", "value"];
        let positions: Vec<usize> = fields.iter().map(|f| text.find(&format!("\"{f}\":")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "field order of the reference: {text}");
        let r: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r["key"], json!({"value": format!("foo-{i}"), "format": "string"}));
        assert_eq!(r["value"], json!({"value": format!("bar-{i}"), "format": "string"}));
        assert_eq!(r["topic"], topic.as_str());
        assert_eq!(r["offset"], i);
        assert_eq!(r["headers"], Value::Null);
        let id = format!("{}-{}-{}-{}", topic, r["partition"], r["offset"], r["timestamp"]);
        assert_eq!(r["wsProxyMessageId"], id);
    }
    // With headers, written by the independent client.
    let topic = unique("ref-headers");
    create_topic(&topic, 1).await;
    let recs: Vec<Value> = (0..10)
        .map(|i| json!({"key": {"format": "string", "value": format!("foo-{i}")}, "value": {"format": "string", "value": format!("bar-{i}")}, "headers": [[format!("key{i}"), format!("value{i}")]]}))
        .collect();
    write_with_tool(&topic, &recs);
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&keyType=string&valType=string")).await;
    for i in 0..10 {
        let r = recv_json(&mut ws).await;
        assert_eq!(r["headers"], json!([{"key": format!("key{i}"), "value": format!("value{i}")}]));
    }
    // Value only: no key field at all.
    let topic = unique("ref-valonly");
    create_topic(&topic, 1).await;
    fill(&topic, 10, false).await;
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&valType=string")).await;
    for i in 0..10 {
        let r = recv_json(&mut ws).await;
        assert!(r.get("key").is_none(), "{r}");
        assert_eq!(r["value"]["value"], format!("bar-{i}"));
    }
}

#[tokio::test]
async fn records_of_every_format_written_by_an_independent_client_are_consumed_with_their_types() {
    let proxy = Proxy::start(&[]).await;
    let cases = [
        ("json", json!({"a": [1, "x", null]})),
        ("string", json!("grüße")),
        ("int", json!(-7)),
        ("short", json!(32000)),
        ("long", json!(-9007199254740993i64)),
        ("double", json!(-0.000123456789012345)),
        ("float", json!(0.25)),
        ("bytearray", json!("3q2+7w==")),
        ("avro", json!("AgZmb28=")),
    ];
    for (format, value) in cases {
        let topic = unique(&format!("cfmt-{format}"));
        create_topic(&topic, 1).await;
        write_with_tool(
            &topic,
            &[
                json!({"key": {"format": "int", "value": 5}, "value": {"format": format, "value": value}}),
                json!({"key": {"format": "int", "value": 6}, "value": null}),
            ],
        );
        let mut ws =
            connect(&consume_url(&proxy, &topic, &unique("c"), &format!("&keyType=int&valType={format}"))).await;
        let r = recv_json(&mut ws).await;
        assert_eq!(r["key"], json!({"value": 5, "format": "int"}), "{format}");
        assert_eq!(r["value"], json!({"value": value, "format": format}), "{format}");
        let tombstone = recv_json(&mut ws).await;
        assert_eq!(tombstone["value"], Value::Null, "{format}: {tombstone}");
    }
}

#[tokio::test]
async fn undecodable_records_get_an_error_frame_and_consumption_goes_on() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("undecodable");
    create_topic(&topic, 1).await;
    write_with_tool(
        &topic,
        &[
            json!({"value": {"format": "int", "value": 1}}),
            json!({"value": {"format": "string", "value": "not four bytes"}}),
            json!({"value": {"format": "int", "value": 3}}),
        ],
    );
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&valType=int")).await;
    assert_eq!(recv_json(&mut ws).await["value"]["value"], 1);
    let err = recv_json(&mut ws).await;
    assert_eq!(err["error"]["code"], "DECODE_ERROR", "{err}");
    assert_eq!(
        (err["topic"].clone(), err["partition"].clone(), err["offset"].clone()),
        (json!(topic), json!(0), json!(1))
    );
    assert!(err["error"]["message"].as_str().unwrap().contains("offset 1"));
    assert_eq!(recv_json(&mut ws).await["value"]["value"], 3);
}

#[tokio::test]
async fn batch_size_sends_arrays_and_rate_limits_records_per_second() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("batching");
    create_topic(&topic, 1).await;
    fill(&topic, 250, false).await;
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&batchSize=100")).await;
    let mut offsets = Vec::new();
    while offsets.len() < 250 {
        let frame = recv_json(&mut ws).await;
        let items = frame.as_array().expect("batchSize gives array frames");
        assert!(!items.is_empty() && items.len() <= 100, "{} records in a frame", items.len());
        offsets.extend(items.iter().map(|r| r["offset"].as_i64().unwrap()));
    }
    assert_eq!(offsets, (0..250).collect::<Vec<_>>());

    // rate=20: 60 records take about 3 s (the first at once).
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&rate=20")).await;
    let first = recv_json(&mut ws).await;
    let t0 = Instant::now();
    assert_eq!(first["offset"], 0);
    for i in 1..60 {
        assert_eq!(recv_json(&mut ws).await["offset"], i);
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2700), "59 records at rate=20 took {took:?}");
    assert!(took <= Duration::from_secs(6), "59 records at rate=20 took {took:?}");
}

#[tokio::test]
async fn manual_commits_are_at_least_once_and_uncommitted_records_come_again() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("atleastonce");
    create_topic(&topic, 1).await;
    fill(&topic, 10, false).await;
    let group = unique("g");
    let url = |client: &str| consume_url(&proxy, &topic, client, &format!("&groupId={group}&autoCommit=false"));
    let mut ws = connect(&url("c1")).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = recv_json(&mut ws).await;
        assert_eq!(r["offset"], i);
        ids.push(r["wsProxyMessageId"].as_str().unwrap().to_owned());
    }
    // Commit offset 3: commits 0..=3.
    send(&mut ws, json!({"wsProxyMessageId": ids[3]}).to_string()).await;
    // No acknowledgement frame comes for a good commit.
    assert_eq!(maybe_json(&mut ws, Duration::from_millis(500)).await, None);
    hang_up(ws).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 4, "committed {committed}");

    // The next consumer of the group gets exactly the uncommitted records.
    let mut ws = connect(&url("c2")).await;
    for i in 4..10 {
        assert_eq!(recv_json(&mut ws).await["offset"], i);
    }
    assert_eq!(maybe_json(&mut ws, Duration::from_secs(1)).await, None, "nothing beyond the uncommitted records");
    hang_up(ws).await;
    // Reference 5.1: reconnecting without committing gets the same records again, every time.
    for _ in 0..3 {
        let mut ws = connect(&url("c3")).await;
        assert_eq!(recv_json(&mut ws).await["offset"], 4);
        hang_up(ws).await;
    }
}

#[tokio::test]
async fn auto_commit_does_not_repeat_what_was_sent() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("autocommit");
    create_topic(&topic, 1).await;
    fill(&topic, 10, false).await;
    let group = unique("g");
    let url = consume_url(&proxy, &topic, "c1", &format!("&groupId={group}"));
    let mut ws = connect(&url).await;
    for i in 0..10 {
        assert_eq!(recv_json(&mut ws).await["offset"], i);
    }
    ws.close(None).await.unwrap();
    // Let the proxy finish the socket (its final commit) before the next member joins.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fill(&topic, 5, false).await;
    let mut ws = connect(&url).await;
    for i in 10..15 {
        assert_eq!(recv_json(&mut ws).await["offset"], i);
    }
}

#[tokio::test]
async fn max_age_auto_commit_commits_old_records_of_manual_sockets() {
    let proxy = Proxy::start(&[
        ("WSPROXY_CH_AUTOCOMMIT_ENABLED", "true"),
        ("WSPROXY_CH_AUTOCOMMIT_INTERVAL", "200ms"),
        ("WSPROXY_CH_AUTOCOMMIT_MAX_AGE", "1 second"),
    ])
    .await;
    let topic = unique("maxage");
    create_topic(&topic, 1).await;
    fill(&topic, 5, false).await;
    let group = unique("g");
    let mut ws = connect(&consume_url(&proxy, &topic, "c1", &format!("&groupId={group}&autoCommit=false"))).await;
    for i in 0..5 {
        assert_eq!(recv_json(&mut ws).await["offset"], i);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 5, "records older than the max age are committed: {committed}");
}

#[tokio::test]
async fn a_stalled_consumer_costs_bounded_memory_and_gets_everything_afterwards() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("stall");
    create_topic(&topic, 1).await;
    let n = 100_000;
    fill(&topic, n, false).await;
    let before = proxy.rss_kib();
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&valType=string")).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    // Stop reading for 10 s while the rest waits in Kafka.
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(proxy.rss_kib());
    }
    println!("proxy RSS: {before} KiB idle, peak {peak} KiB while the consumer stalled with {n} records waiting");
    assert!(peak < before + 64 * 1024, "RSS grew from {before} KiB to {peak} KiB during the stall");
    for i in 1..n {
        let r = recv_json(&mut ws).await;
        assert_eq!(r["offset"], i as i64, "in order after the stall");
    }
}

#[tokio::test]
async fn offset_latest_and_from_timestamp_choose_where_a_new_group_starts() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("startpos");
    create_topic(&topic, 1).await;
    fill(&topic, 5, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fill(&topic, 5, false).await;

    // fromTimestamp: the first record at or after the cut.
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), &format!("&fromTimestamp={cut}"))).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 5);
    ws.close(None).await.unwrap();

    // offset=latest: only records produced after the socket joined.
    let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), "&offset=latest")).await;
    assert_eq!(maybe_json(&mut ws, Duration::from_secs(3)).await, None, "latest skips existing records");
    fill(&topic, 1, false).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 10);
}

/// Headers with these raw keys and values: keys need not be UTF-8, which `OwnedHeaders::insert`
/// (keys are `&str`) cannot write, so this adds them through librdkafka's C API.
fn raw_headers(headers: &[(&[u8], &[u8])]) -> OwnedHeaders {
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    // rdkafka's `BorrowedHeaders` reference is the native header list (a zero-sized view).
    let list = owned.as_borrowed() as *const BorrowedHeaders as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (key, value) in headers {
        // SAFETY: `list` is the live list of `owned`; librdkafka copies both byte ranges.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                list,
                key.as_ptr().cast(),
                key.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            )
        };
        assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    owned
}

/// M3 (code review): a record whose header key is not UTF-8 hit an `unwrap()` inside rdkafka
/// (`Headers::iter`), so the consume socket's task panicked on it, and so did every other
/// member of the group after it: a poison pill. Now the key is decoded lossily (as header
/// values are) and consumption goes on.
#[tokio::test]
async fn m3_a_header_key_that_is_not_utf8_reaches_the_client_and_consumption_goes_on() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("m3-header-key");
    create_topic(&topic, 1).await;
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    for (i, headers) in
        [None, Some(raw_headers(&[(b"\xffbad\xfe", b"x"), (b"good", b"y")])), None].into_iter().enumerate()
    {
        let value = format!("v{i}");
        let mut record = FutureRecord::<(), _>::to(&topic).payload(&value).partition(0);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        p.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
    // The independent client finds the key in Kafka, and cannot decode it as UTF-8 either.
    let back = read_back(&topic, 3, "string", "string");
    assert_eq!(back.len(), 3);
    let undecodable = back[1]["headers"]["undecodable"].as_str().unwrap_or_default();
    assert!(undecodable.contains("0xff"), "{:?}", back[1]);

    for query in ["&valType=string", "&valType=string&batchSize=10"] {
        let mut ws = connect(&consume_url(&proxy, &topic, &unique("c"), query)).await;
        let mut records = Vec::new();
        while records.len() < 3 {
            match recv_json(&mut ws).await {
                Value::Array(a) => records.extend(a),
                r => records.push(r),
            }
        }
        let offsets: Vec<_> = records.iter().map(|r| r["offset"].as_i64()).collect();
        assert_eq!(offsets, [Some(0), Some(1), Some(2)], "{query}: {records:?}");
        assert_eq!(
            records[1]["headers"],
            json!([{"key": "\u{FFFD}bad\u{FFFD}", "value": "x"}, {"key": "good", "value": "y"}]),
            "{query}"
        );
        assert_eq!(records[1]["value"]["value"], "v1");
        hang_up(ws).await;
    }
    assert!(proxy.log_text().contains("header key that is not UTF-8"), "the proxy logs the record");
}

/// M6 (code review): on an `autoCommit=false` socket the error answer to a bad commit was
/// written with no timeout. A client that sends bad commits and never reads filled the
/// buffers, and the socket's loop then waited on that write for good: no idle timeout, no
/// shutdown, its session slot and group consumer held as long as the peer kept the TCP
/// connection. Now that write is bounded by the idle timeout like every other.
#[tokio::test]
async fn m6_a_client_flooding_bad_commits_without_reading_is_closed_within_the_idle_timeout() {
    let idle = Duration::from_secs(3);
    let proxy = Proxy::start(&[("WSPROXY_SOCKET_IDLE_TIMEOUT", "3 seconds")]).await;
    let topic = unique("m6-flood");
    create_topic(&topic, 1).await;
    let group = unique("g");
    let url = consume_url(&proxy, &topic, "flooder", &format!("&groupId={group}&autoCommit=false"));
    let (mut sink, unread) = connect(&url).await.split();
    // Each bad commit names another (long) topic, and its answer repeats the id: 100 KB each.
    let bad = json!({"wsProxyMessageId": format!("{}-0-1-2", "x".repeat(100_000))}).to_string();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while sink.send(Message::Text(bad.clone().into())).await.is_ok() {
            sent += 1;
        }
        sent
    });
    let metric =
        |body: &str| body.lines().find(|l| l.starts_with("wsproxy_sockets_open{direction=\"out\"}")).map(str::to_owned);
    // The socket is closed once a write has waited the idle timeout (wide margin).
    let deadline = Instant::now() + idle + Duration::from_secs(30);
    loop {
        let (_, _, body) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
        if metric(&body).is_some_and(|l| l.ends_with(" 0")) && started.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flooding socket is still open after {:?}: {:?}",
            started.elapsed(),
            metric(&body)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("the flooding socket was closed {:?} after it started", started.elapsed());
    // Its session slot and group consumer are let go: the same client id of the same group
    // connects again (within the socket's bounded close: handshake and final commit).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut again = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "the flooder's slot is still taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    send(&mut again, json!({"wsProxyMessageId": "nope"}).to_string()).await;
    assert_eq!(recv_json(&mut again).await["error"]["code"], "UNKNOWN_MESSAGE_ID");
    drop(unread);
    let sent = tokio::time::timeout(Duration::from_secs(30), flood).await.expect("the flood ends").unwrap();
    println!("{sent} bad commits sent before the proxy let the client go");
}

/// M7 (code review): a consumed record whose frame is larger than a socket can write (here a
/// 13 MB `bytearray` value, 17 MB of base64) failed the write: the socket closed without a
/// commit and the record came first again on every reconnect, a partition stuck for good.
/// Now it gets a `RECORD_TOO_LARGE` error frame naming it, is committed like a
/// `DECODE_ERROR`, and consumption goes on.
#[tokio::test]
async fn m7_a_record_too_large_for_a_frame_gets_record_too_large_and_consumption_goes_on() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("m7-large");
    create_topic_with(&topic, 1, &[("max.message.bytes", "20000000")]).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", "30000000")
        .create()
        .unwrap();
    let huge = vec![7u8; 13_000_000];
    for value in [&b"small-0"[..], &huge, b"small-2"] {
        let record = FutureRecord::<(), _>::to(&topic).payload(value).partition(0);
        p.send(record, Duration::from_secs(60)).await.map_err(|(e, _)| e).unwrap();
    }
    // The independent client finds all three in Kafka.
    let back = kafka_tool(&["consume", &topic, "3", "30", "raw", "raw"], "");
    assert_eq!(back.lines().count(), 3);

    let group = unique("g");
    let mut ws =
        connect(&consume_url(&proxy, &topic, &unique("c"), &format!("&groupId={group}&valType=bytearray"))).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    let e = recv_json(&mut ws).await;
    assert_eq!((e["error"]["code"].as_str(), e["offset"].as_i64()), (Some("RECORD_TOO_LARGE"), Some(1)), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("offset 1"), "{e}");
    assert_eq!(recv_json(&mut ws).await["offset"], 2, "consumption goes on");
    hang_up(ws).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 3, "the large record is committed like a DECODE_ERROR: {committed}");
}

/// Waits until `group` has `members` members and `client` owns partition 0 of `topic`, as the
/// independent client sees the group.
async fn wait_for_owner(group: &str, topic: &str, client: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members: Value = serde_json::from_str(&kafka_tool(&["group-members", group], "")).unwrap();
        let owns = |m: &Value| {
            m["client_id"] == client && m["partitions"].as_array().is_some_and(|p| p.contains(&json!([topic, 0])))
        };
        if members.as_array().is_some_and(|all| all.len() == count && all.iter().any(owns)) {
            return;
        }
        assert!(Instant::now() < deadline, "{client} does not own {topic}/0 among {count}: {members}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// L4 (code review): what a socket would commit at close (the next offset of each partition
/// it delivered) survived a revoke and re-assign. Socket Z reads 100 records, the partition
/// moves to socket A, which reads and commits up to 500 and leaves, and the partition comes
/// back to Z: Z's close committed its stale 100, moving the group back by 400 records
/// (duplicates for the group). Revoked partitions are now forgotten at the revoke.
#[tokio::test]
async fn l4_a_revoked_and_reassigned_partition_is_not_committed_back_at_close() {
    // Two partitions, so that the group takes two sockets; the records are all in partition 0.
    let proxy = Proxy::start(&[]).await;
    let topic = unique("l4-revoke");
    create_topic(&topic, 2).await;
    fill(&topic, 100, false).await;
    let group = unique("g");
    let url = |client: &str| consume_url(&proxy, &topic, client, &format!("&groupId={group}"));
    let mut z = connect(&url("z-first")).await;
    for i in 0..100 {
        assert_eq!(recv_json(&mut z).await["offset"], i);
    }
    // The range assignor gives partition 0 to the member whose id sorts first.
    let mut a = connect(&url("a-second")).await;
    wait_for_owner(&group, &topic, "a-second", 2).await;
    fill(&topic, 400, false).await;
    for i in 100..500 {
        assert_eq!(recv_json(&mut a).await["offset"], i);
    }
    hang_up(a).await;
    wait_for_owner(&group, &topic, "z-first", 1).await;
    hang_up(z).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 500, "the group's offset did not move back: {committed}");
}

/// Review (27 Nov): an eager rebalance revokes every partition and assigns them again; a
/// partition assigned straight back kept its commit stack, while Kafka sent its uncommitted
/// records again from the group's offset, so they were on the stack twice. Committing the
/// last record of the first delivery and then the first of the second committed 10, then 1:
/// the group moved back by 9 records. A commit never moves a partition's offset back now.
#[tokio::test]
async fn a_commit_after_a_rebalance_that_gave_the_partition_back_never_moves_the_group_back() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("rebalance-back");
    create_topic(&topic, 2).await;
    fill(&topic, 10, false).await;
    let group = unique("g");
    let url = |client: &str| consume_url(&proxy, &topic, client, &format!("&groupId={group}&autoCommit=false"));
    let mut a = connect(&url("a-first")).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = recv_json(&mut a).await;
        assert_eq!(r["offset"], i);
        ids.push(r["wsProxyMessageId"].as_str().unwrap().to_owned());
    }
    // A second member: the range assignor gives partition 0 back to "a-first", which reads
    // its uncommitted records again from the group's offset (none: the earliest).
    let z = connect(&url("z-second")).await;
    wait_for_owner(&group, &topic, "a-first", 2).await;
    let again = recv_json(&mut a).await;
    assert_eq!(again["offset"], 0, "partition 0 is read again from the group's offset");
    send(&mut a, json!({"wsProxyMessageId": ids[9]}).to_string()).await;
    send(&mut a, json!({"wsProxyMessageId": again["wsProxyMessageId"]}).to_string()).await;
    // Both commits are good ones (no error frame), among the rest of the records sent again.
    for i in 1..10 {
        assert_eq!(recv_json(&mut a).await["offset"], i);
    }
    assert_eq!(maybe_json(&mut a, Duration::from_millis(500)).await, None);
    hang_up(a).await;
    hang_up(z).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 10, "the group's offset did not move back: {committed}");
}
