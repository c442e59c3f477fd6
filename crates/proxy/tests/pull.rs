//! Pull mode on `/socket/out` (`pull=true`), end to end against the real broker: no record
//! before the client grants credit with `{"request":N}`, exactly N records after, grants that
//! add up to `WSPROXY_CONSUMER_MAX_CREDIT`, batch frames counting their records, commits as
//! on any socket (checked with the independent client), error frames for bad requests, and
//! the memory a pull client that grants nothing costs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::{json, Value};

/// Writes `n` string records `v-i` with rdkafka, to partition 0.
async fn fill(topic: &str, n: usize) {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "5").create().unwrap();
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let v = format!("v-{i}");
        futs.push(
            p.send_result(FutureRecord::<(), _>::to(topic).payload(&v).partition(0)).map_err(|(e, _)| e).unwrap(),
        );
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Waits until the group has a member with an assigned partition (the socket is reading).
fn await_assignment(group: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members: Value = serde_json::from_str(&kafka_tool(&["group-members", group], "")).unwrap_or(Value::Null);
        let assigned =
            members.as_array().is_some_and(|m| m.iter().any(|m| !m["partitions"].as_array().unwrap().is_empty()));
        if assigned {
            return;
        }
        assert!(Instant::now() < deadline, "group {group} got no assignment: {members}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads frames until `n` records came; returns their offsets and the records per frame.
async fn take_records(ws: &mut Ws, n: usize) -> (Vec<i64>, Vec<usize>) {
    let (mut offsets, mut frames) = (Vec::new(), Vec::new());
    while offsets.len() < n {
        let frame = recv_json(ws).await;
        let items = frame.as_array().cloned().unwrap_or_else(|| vec![frame.clone()]);
        for r in &items {
            assert!(r.get("error").is_none(), "an error frame in place of a record: {r}");
            offsets.push(r["offset"].as_i64().unwrap());
        }
        frames.push(items.len());
    }
    (offsets, frames)
}

async fn nothing_more(ws: &mut Ws, why: &str) {
    assert_eq!(maybe_json(ws, Duration::from_secs(3)).await, None, "{why}");
}

fn request(n: i64) -> String {
    json!({"request": n}).to_string()
}

#[tokio::test]
async fn with_credit_10_the_client_gets_exactly_10_records_until_it_asks_again() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("pull");
    create_topic(&topic, 1).await;
    fill(&topic, 50).await;
    let group = unique("g");
    let url = proxy.url(&format!("/socket/out?clientId=c&groupId={group}&topic={topic}&pull=true&autoCommit=false"));
    let mut ws = connect(&url).await;
    await_assignment(&group);
    nothing_more(&mut ws, "no frame at all before the client grants credit").await;

    send(&mut ws, request(10)).await;
    let (offsets, _) = take_records(&mut ws, 10).await;
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    nothing_more(&mut ws, "exactly 10 records for a credit of 10").await;

    // Grants add up.
    send(&mut ws, request(3)).await;
    send(&mut ws, request(4)).await;
    let (offsets, _) = take_records(&mut ws, 7).await;
    assert_eq!(offsets, (10..17).collect::<Vec<_>>());
    nothing_more(&mut ws, "exactly 3 + 4 records").await;

    // Commits work as on any socket: committing offset 17 commits 0..=17, checked in Kafka.
    send(&mut ws, request(1)).await;
    let record = recv_json(&mut ws).await;
    assert_eq!(record["offset"], 17);
    send(&mut ws, json!({"wsProxyMessageId": record["wsProxyMessageId"]}).to_string()).await;
    nothing_more(&mut ws, "a good commit gets no answer and grants nothing").await;
    hang_up(ws).await;
    let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
    assert_eq!(committed["0"], 18, "{committed}");
}

#[tokio::test]
async fn a_batch_frame_counts_its_records_and_credit_stops_at_the_cap() {
    let proxy = Proxy::start(&[("WSPROXY_CONSUMER_MAX_CREDIT", "5")]).await;
    let topic = unique("pull-batch");
    create_topic(&topic, 1).await;
    fill(&topic, 40).await;
    let group = unique("g");
    let url = proxy.url(&format!("/socket/out?clientId=c&groupId={group}&topic={topic}&pull=true&batchSize=4"));
    let mut ws = connect(&url).await;
    await_assignment(&group);
    // 7 granted, capped at 5: frames of at most 4 records, 5 records in all.
    send(&mut ws, request(7)).await;
    let (offsets, frames) = take_records(&mut ws, 5).await;
    assert_eq!(offsets, (0..5).collect::<Vec<_>>());
    assert!(frames.iter().all(|n| *n <= 4), "batchSize=4: {frames:?}");
    nothing_more(&mut ws, "credit is capped at WSPROXY_CONSUMER_MAX_CREDIT=5").await;
    send(&mut ws, request(1_000_000)).await;
    let (offsets, frames) = take_records(&mut ws, 5).await;
    assert_eq!(offsets, (5..10).collect::<Vec<_>>(), "{frames:?}");
    nothing_more(&mut ws, "a huge grant is capped too").await;
}

#[tokio::test]
async fn bad_request_frames_get_an_error_frame_and_the_socket_lives() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("pull-bad");
    create_topic(&topic, 1).await;
    fill(&topic, 5).await;
    let group = unique("g");
    let url = proxy.url(&format!("/socket/out?clientId=c&groupId={group}&topic={topic}&pull=true"));
    let mut ws = connect(&url).await;
    await_assignment(&group);
    for (bad, shown) in [
        (r#"{"request":0}"#, "got 0"),
        (r#"{"request":-3}"#, "got -3"),
        (r#"{"request":"10"}"#, "got \"10\""),
        (r#"{"request":2.5}"#, "got 2.5"),
    ] {
        send(&mut ws, bad).await;
        let err = recv_json(&mut ws).await;
        assert_eq!(err["error"]["code"], "INVALID_FRAME", "{bad}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("'request' must be a whole number of records, at least 1"), "{bad}: {message}");
        assert!(message.ends_with(shown), "{bad}: {message}");
    }
    // autoCommit=true: anything but a credit frame is answered, not ignored.
    send(&mut ws, json!({"wsProxyMessageId": format!("{topic}-0-0-0")}).to_string()).await;
    let err = recv_json(&mut ws).await;
    assert_eq!(err["error"]["code"], "INVALID_FRAME", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("reads only credit frames"), "{err}");
    send(&mut ws, "not json").await;
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "INVALID_FRAME");
    nothing_more(&mut ws, "no bad frame granted credit").await;
    send(&mut ws, request(2)).await;
    let (offsets, _) = take_records(&mut ws, 2).await;
    assert_eq!(offsets, vec![0, 1], "the socket lives on");
    // A non-boolean pull is refused before the upgrade.
    let (status, _, body) = refused(&proxy.url(&format!("/socket/out?clientId=c&topic={topic}&pull=maybe"))).await;
    assert_eq!(status, 400);
    assert!(body.contains("'maybe' is not a valid Boolean value"), "{body}");
}

#[tokio::test]
async fn a_pull_client_that_grants_nothing_costs_bounded_memory_and_gets_everything_afterwards() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("pull-stall");
    create_topic(&topic, 1).await;
    let n = 100_000;
    fill(&topic, n).await;
    let before = proxy.rss_kib();
    let group = unique("g");
    let url = proxy.url(&format!("/socket/out?clientId=c&groupId={group}&topic={topic}&pull=true"));
    let mut ws = connect(&url).await;
    send(&mut ws, request(1)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    // No credit for 10 s while the rest waits in Kafka.
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(proxy.rss_kib());
    }
    println!(
        "proxy RSS: {before} KiB before, peak {peak} KiB while a pull socket held no credit with {n} records waiting"
    );
    assert!(peak < before + 64 * 1024, "RSS grew from {before} KiB to {peak} KiB while the client granted nothing");
    nothing_more(&mut ws, "nothing without credit").await;
    // In order and complete once credit comes.
    let mut next = 1i64;
    while next < n as i64 {
        send(&mut ws, request(10_000)).await;
        let (offsets, _) = take_records(&mut ws, 10_000.min(n - next as usize)).await;
        assert_eq!(offsets.first(), Some(&next));
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "in order");
        next = offsets.last().unwrap() + 1;
    }
}

#[tokio::test]
async fn a_pull_socket_paused_without_credit_goes_on_after_a_rebalance() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("pull-rebalance");
    create_topic(&topic, 2).await;
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"partition": i % 2, "value": {"format": "string", "value": format!("v-{i}")}}))
        .collect();
    write_with_tool(&topic, &records);
    let group = unique("g");
    let url = |client: &str, pull: &str| {
        proxy.url(&format!("/socket/out?clientId={client}&groupId={group}&topic={topic}{pull}&autoCommit=false"))
    };
    let mut puller = connect(&url("puller", "&pull=true")).await;
    send(&mut puller, request(1)).await;
    let first = recv_json(&mut puller).await;
    // Give the puller time to park a record and pause both partitions, then make the group
    // rebalance: a push socket joins and takes one partition.
    nothing_more(&mut puller, "no credit left").await;
    let mut pusher = connect(&url("pusher", "")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members: Value = serde_json::from_str(&kafka_tool(&["group-members", &group], "")).unwrap();
        let owners = members.as_array().unwrap().iter().filter(|m| m["partitions"].as_array().unwrap().len() == 1);
        if owners.count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not rebalance to one partition each: {members}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The puller's partition flows again once it grants credit; the pusher reads the other.
    send(&mut puller, request(100)).await;
    let mut seen: Vec<(i64, i64)> = vec![(first["partition"].as_i64().unwrap(), first["offset"].as_i64().unwrap())];
    let mut per_socket = [0usize; 2];
    let end = Instant::now() + Duration::from_secs(60);
    while seen.iter().collect::<std::collections::BTreeSet<_>>().len() < 40 {
        assert!(Instant::now() < end, "not every record arrived: {} distinct", seen.len());
        for (i, ws) in [&mut puller, &mut pusher].into_iter().enumerate() {
            if let Some(r) = maybe_json(ws, Duration::from_millis(200)).await {
                assert!(r.get("error").is_none(), "{r}");
                seen.push((r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()));
                per_socket[i] += 1;
            }
        }
    }
    assert!(per_socket[0] > 0 && per_socket[1] > 0, "both members read after the rebalance: {per_socket:?}");
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 40, "every record of both partitions, at least once");
}

/// Review (27 Nov): a record a pull socket took while it had no credit waited in the proxy
/// for credit; a rebalance that gave its partition back made Kafka read the partition again
/// from the group's offset, and the waiting record went out first: offsets 0, 1, 0, 1, 2…
/// (a client committing in arrival order commits 2, then 1). Records taken from a partition
/// revoked since are now dropped: the partition is read again in order.
#[tokio::test]
async fn a_pull_socket_sends_a_partition_in_offset_order_across_a_rebalance_that_gives_it_back() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("pull-order");
    create_topic(&topic, 2).await;
    let records: Vec<Value> =
        (0..20).map(|i| json!({"partition": 0, "value": {"format": "string", "value": format!("v-{i}")}})).collect();
    write_with_tool(&topic, &records);
    let group = unique("g");
    let url = |client: &str, pull: &str| {
        proxy.url(&format!("/socket/out?clientId={client}&groupId={group}&topic={topic}{pull}&autoCommit=false"))
    };
    // The range assignor gives partition 0 to the member whose id sorts first.
    let mut puller = connect(&url("a-puller", "&pull=true")).await;
    send(&mut puller, request(1)).await;
    let mut offsets = vec![recv_json(&mut puller).await["offset"].as_i64().unwrap()];
    nothing_more(&mut puller, "no credit left").await;
    let _pusher = connect(&url("z-pusher", "")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members: Value = serde_json::from_str(&kafka_tool(&["group-members", &group], "")).unwrap();
        let puller_has_p0 =
            members.as_array().unwrap().iter().any(|m| {
                m["client_id"] == "a-puller" && m["partitions"].as_array().unwrap().contains(&json!([topic, 0]))
            });
        if members.as_array().unwrap().len() == 2 && puller_has_p0 {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not rebalance: {members}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The group's view changes before the puller's consumer has taken its new assignment
    // (it does in its next poll, which nothing outside the proxy sees): give it time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send(&mut puller, request(100)).await;
    while offsets.last() != Some(&19) {
        let r = recv_json(&mut puller).await;
        assert!(r.get("error").is_none(), "{r}");
        offsets.push(r["offset"].as_i64().unwrap());
    }
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "offsets of partition 0 in order: {offsets:?}");
}
