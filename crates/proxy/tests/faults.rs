//! Fault injection against the real broker and real proxy processes, with a checker in the
//! style of Kafka's replication tests: every record the proxy acknowledged must be readable
//! from Kafka where the acknowledgement said; duplicates are counted and reported.
//!
//! These tests kill or pause the shared broker, so they are `#[ignore]`d in the parallel suite and run
//! one at a time by `scripts/test` afterwards (`cargo test --test faults -- --ignored
//! --test-threads=1`).

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// What one producer socket saw: acknowledged records and error frames, by message id.
#[derive(Default)]
struct Outcome {
    sent: usize,
    acked: Vec<(i64, i64, String)>,
    errors: Vec<String>,
}

/// Streams records on one socket until `stop`, one every `pace`, then waits for every answer.
async fn stream_records(url: String, name: String, pace: Duration, stop: Instant) -> Outcome {
    let ws = connect(&url).await;
    let (mut tx, mut rx) = ws.split();
    let (count_tx, count_rx) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move {
        let mut n = 0usize;
        let mut tick = tokio::time::interval(pace);
        while Instant::now() < stop {
            tick.tick().await;
            let value = format!("{name}-{n}");
            let frame = record(None, &value, Some(&value));
            if tx.send(Message::Text(frame.into())).await.is_err() {
                break;
            }
            n += 1;
        }
        let _ = count_tx.send(n);
        tx
    });
    let mut out = Outcome::default();
    let mut expected: Option<usize> = None;
    let mut count_rx = Some(count_rx);
    let deadline = stop + Duration::from_secs(180);
    loop {
        if let Some(rx) = count_rx.as_mut() {
            if let Ok(n) = rx.try_recv() {
                expected = Some(n);
                count_rx = None;
            }
        }
        if expected.is_some_and(|n| out.acked.len() + out.errors.len() >= n) {
            break;
        }
        let next = tokio::time::timeout(Duration::from_millis(500), rx.next()).await;
        match next {
            Err(_) => assert!(Instant::now() < deadline, "answers stopped coming: silence is not allowed"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let id = v["clientMessageId"].as_str().unwrap_or_default().to_owned();
                if v.get("error").is_some() {
                    out.errors.push(format!("{id}: {}", v["error"]["code"]));
                } else {
                    out.acked.push((v["partition"].as_i64().unwrap(), v["offset"].as_i64().unwrap(), id));
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("producer socket ended: {other:?}"),
        }
    }
    out.sent = expected.unwrap_or_default();
    let mut tx = sender.await.unwrap();
    let _ = tx.close().await;
    out
}

/// Every acknowledged record is in Kafka at its acknowledged place; returns (found, duplicates).
fn check_acknowledged(topic: &str, outcomes: &[Outcome]) -> (usize, usize) {
    let acked: Vec<&(i64, i64, String)> = outcomes.iter().flat_map(|o| o.acked.iter()).collect();
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let stored = read_back(topic, sent, "raw", "string");
    let at: HashMap<(i64, i64), String> = stored
        .iter()
        .map(|r| {
            ((r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()), r["value"].as_str().unwrap().to_owned())
        })
        .collect();
    for (p, o, id) in &acked {
        assert_eq!(at.get(&(*p, *o)), Some(id), "acknowledged record {id} at {p}/{o} is missing from Kafka");
    }
    let mut seen = HashSet::new();
    let duplicates = stored.iter().filter(|r| !seen.insert(r["value"].as_str().unwrap().to_owned())).count();
    (acked.len(), duplicates)
}

/// The pid of the broker under test: the one on 9092, or with `KAFKA_INSTANCE` and
/// `KAFKA_PORT_BASE` (and `KAFKA_BOOTSTRAP` pointing at it) a private one of `scripts/kafka`.
fn broker_pid() -> String {
    assert_eq!(
        std::env::var_os("KAFKA_INSTANCE").is_some(),
        std::env::var_os("KAFKA_BOOTSTRAP").is_some(),
        "set KAFKA_INSTANCE, KAFKA_PORT_BASE and KAFKA_BOOTSTRAP together, or none of them"
    );
    let out = Command::new(project_root().join("scripts/kafka")).arg("pid").output().unwrap();
    let pid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(out.status.success() && !pid.is_empty(), "scripts/kafka pid: the broker is not running");
    pid
}

fn kafka_script(arg: &str) {
    let ok = Command::new(project_root().join("scripts/kafka")).arg(arg).status().unwrap().success();
    assert!(ok, "scripts/kafka {arg} failed");
}

async fn wait_ready(proxy: &Proxy, want: u16, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if let Ok((status, _, _)) = http(proxy.port, "GET", "/ready", &[]).await {
            if status == want {
                return t0.elapsed();
            }
        }
        assert!(t0.elapsed() < within, "/ready did not become {want} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "kills the shared broker; run by scripts/test after the parallel suite"]
async fn broker_sigkill_and_restart_loses_no_acknowledged_record() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("fault-broker");
    create_topic(&topic, 3).await;
    let stop = Instant::now() + Duration::from_secs(40);
    let producers: Vec<_> = (0..6)
        .map(|i| {
            let url = proxy.url(&format!("/socket/in?clientId=fp{i}&topic={topic}"));
            tokio::spawn(stream_records(url, format!("p{i}"), Duration::from_millis(5), stop))
        })
        .collect();
    // Two consumers in one group read along.
    let group = unique("fault-group");
    let mut consumers = Vec::new();
    for i in 0..2 {
        consumers.push(connect(&proxy.url(&format!("/socket/out?clientId=fc{i}&groupId={group}&topic={topic}"))).await);
    }
    let received = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let readers: Vec<_> = consumers
        .into_iter()
        .map(|mut ws| {
            let received = received.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if let Some(s) = v["value"]["value"].as_str() {
                            received.lock().unwrap().insert(s.to_owned());
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = broker_pid();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let went_unready = wait_ready(&proxy, 503, Duration::from_secs(20)).await;
    println!("broker killed; /ready said 503 after {went_unready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka_script("start");
    let back = wait_ready(&proxy, 200, Duration::from_secs(60)).await;
    println!("broker restarted; /ready back to 200 after {back:?}");

    let mut outcomes = Vec::new();
    for p in producers {
        outcomes.push(p.await.unwrap());
    }
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    for o in &outcomes {
        assert_eq!(o.acked.len() + o.errors.len(), o.sent, "every record gets exactly one answer");
    }
    let (acked, duplicates) = check_acknowledged(&topic, &outcomes);
    println!("sent {sent}, acknowledged {acked}, error frames {errors}, duplicates in Kafka {duplicates}");
    assert!(acked > 0);
    // The consumers resumed after the restart and got every acknowledged record.
    let all_acked: HashSet<String> = outcomes.iter().flat_map(|o| o.acked.iter().map(|a| a.2.clone())).collect();
    let t0 = Instant::now();
    loop {
        let missing = all_acked.difference(&received.lock().unwrap()).count();
        if missing == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "{missing} acknowledged records never reached the consumers");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in readers {
        r.abort();
    }
}

#[tokio::test]
#[ignore = "kills proxy processes; run by scripts/test after the parallel suite"]
async fn proxy_kill_9_keeps_every_acknowledged_record_and_clients_continue_elsewhere() {
    let mut first = Proxy::start(&[]).await;
    let second = Proxy::start(&[]).await;
    let topic = unique("fault-proxy");
    create_topic(&topic, 2).await;
    let mut ws = connect(&first.url(&format!("/socket/in?clientId=k&topic={topic}"))).await;
    for i in 0..5000 {
        ws.feed(Message::Text(record(None, &format!("k-{i}"), Some(&format!("k-{i}"))).into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let mut acked = Vec::new();
    while acked.len() < 2000 {
        let v = recv_json(&mut ws).await;
        acked.push((
            v["partition"].as_i64().unwrap(),
            v["offset"].as_i64().unwrap(),
            v["clientMessageId"].as_str().unwrap().to_owned(),
        ));
    }
    first.signal_and_wait("KILL", Duration::from_secs(10)).expect("killed");
    // Whatever else arrived before the connection died counts as acknowledged too.
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        let v: Value = serde_json::from_str(&t).unwrap();
        acked.push((
            v["partition"].as_i64().unwrap(),
            v["offset"].as_i64().unwrap(),
            v["clientMessageId"].as_str().unwrap().to_owned(),
        ));
    }
    // The client continues on the other node.
    let mut ws = connect(&second.url(&format!("/socket/in?clientId=k&topic={topic}"))).await;
    send(&mut ws, record(None, "after-failover", Some("after-failover"))).await;
    let v = recv_json(&mut ws).await;
    acked.push((v["partition"].as_i64().unwrap(), v["offset"].as_i64().unwrap(), "after-failover".to_owned()));
    let outcome = Outcome { sent: 5001, acked, errors: Vec::new() };
    let stored = read_back(&topic, 5001, "raw", "string");
    let at: HashMap<(i64, i64), &str> = stored
        .iter()
        .map(|r| ((r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()), r["value"].as_str().unwrap()))
        .collect();
    for (p, o, id) in &outcome.acked {
        assert_eq!(at.get(&(*p, *o)).copied(), Some(id.as_str()), "acknowledged {id} missing after kill -9");
    }
    println!(
        "{} acknowledged before/after kill -9, all in Kafka; {} records stored",
        outcome.acked.len(),
        stored.len()
    );
}

/// Sends SIGCONT to the broker when dropped, so a failing test never leaves it paused.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[tokio::test]
#[ignore = "pauses the shared broker; run by scripts/test after the parallel suite"]
async fn broker_paused_30_s_keeps_sockets_open_loses_nothing_and_memory_stays_bounded() {
    let proxy = Proxy::start(&[]).await;
    let topic = unique("fault-pause");
    create_topic(&topic, 3).await;
    let stop = Instant::now() + Duration::from_secs(45);
    let producers: Vec<_> = (0..6)
        .map(|i| {
            let url = proxy.url(&format!("/socket/in?clientId=pp{i}&topic={topic}"));
            tokio::spawn(stream_records(url, format!("q{i}"), Duration::from_millis(5), stop))
        })
        .collect();
    let group = unique("pause-group");
    let received = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    // When each consumer received its records, to see both resume after SIGCONT.
    let receipts = std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::<Instant>::new(); 2]));
    let mut readers = Vec::new();
    for i in 0..2 {
        let mut ws = connect(&proxy.url(&format!("/socket/out?clientId=pc{i}&groupId={group}&topic={topic}"))).await;
        let received = received.clone();
        let receipts = receipts.clone();
        readers.push(tokio::spawn(async move {
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if let Some(s) = v["value"]["value"].as_str() {
                            received.lock().unwrap().insert(s.to_owned());
                            receipts.lock().unwrap()[i].push(Instant::now());
                        }
                    }
                    Ok(Message::Close(f)) => return Some(f),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        }));
    }

    tokio::time::sleep(Duration::from_secs(4)).await;
    let rss_before = proxy.rss_kib();
    let pid = broker_pid();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let resume = Resume(pid);
    let paused_at = Instant::now();
    let went_unready = wait_ready(&proxy, 503, Duration::from_secs(25)).await;
    let mut rss_max = rss_before;
    while paused_at.elapsed() < Duration::from_secs(30) {
        rss_max = rss_max.max(proxy.rss_kib());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // While paused, no socket was closed: consumers are still reading along.
    assert!(readers.iter().all(|r| !r.is_finished()), "a consume socket closed while the broker was paused");
    drop(resume);
    let resumed_at = Instant::now();
    let back = wait_ready(&proxy, 200, Duration::from_secs(60)).await;
    println!(
        "broker paused 30 s: /ready 503 after {went_unready:?}; SIGCONT -> /ready 200 after {back:?}; \
         proxy RSS {rss_before} KiB before, at most {rss_max} KiB while paused (+{} KiB)",
        rss_max.saturating_sub(rss_before)
    );

    let mut outcomes = Vec::new();
    for p in producers {
        outcomes.push(p.await.expect("a produce socket failed during the pause"));
    }
    let first_answer_after = resumed_at.elapsed();
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let errors: usize = outcomes.iter().map(|o| o.errors.len()).sum();
    for o in &outcomes {
        assert_eq!(o.acked.len() + o.errors.len(), o.sent, "every record gets exactly one answer");
    }
    let (acked, duplicates) = check_acknowledged(&topic, &outcomes);
    println!(
        "sent {sent}, acknowledged {acked}, error frames {errors}, duplicates in Kafka {duplicates}; \
         the streams (45 s) ended and were all answered {first_answer_after:?} after SIGCONT"
    );
    assert!(acked > 0);
    // The consumers' group session (10 s) expires during the pause; both rejoin after SIGCONT
    // and get every acknowledged record (the book's Guarantees chapter).
    let all_acked: HashSet<String> = outcomes.iter().flat_map(|o| o.acked.iter().map(|a| a.2.clone())).collect();
    let t0 = Instant::now();
    let missing = loop {
        let missing = all_acked.difference(&received.lock().unwrap()).count();
        if missing == 0 || t0.elapsed() > Duration::from_secs(90) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The producers stop about 11 s after SIGCONT. A consumer that rejoins later than that
    // (3.8 to 22.4 s in the runs the book quotes) finds nothing new, and its partitions may
    // have been read meanwhile by the other, which rejoined first: a record to every
    // partition every half second, up to 30 s after SIGCONT, shows whether each one reads.
    while resumed_at.elapsed() < Duration::from_secs(30)
        && receipts.lock().unwrap().iter().any(|times| !times.iter().any(|t| *t > resumed_at))
    {
        let probes: Vec<Value> = (0..3)
            .map(|p| serde_json::json!({"partition": p, "value": {"format": "string", "value": format!("probe-{p}")}}))
            .collect();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || write_with_tool(&topic, &probes)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resumed: Vec<Option<Duration>> = receipts
        .lock()
        .unwrap()
        .iter()
        .map(|times| times.iter().find(|t| **t > resumed_at).map(|t| *t - resumed_at))
        .collect();
    println!(
        "consumers: {} of {} acknowledged records received {:?} after SIGCONT; \
         first record after SIGCONT per consumer: {resumed:?}",
        all_acked.len() - missing,
        all_acked.len(),
        resumed_at.elapsed()
    );
    assert!(readers.iter().all(|r| !r.is_finished()), "a consume socket closed after the pause");
    assert_eq!(missing, 0, "acknowledged records never reached the consumers within 90 s");
    // A liveness bound (the group rejoined), not a performance target.
    for (i, r) in resumed.iter().enumerate() {
        assert!(
            r.is_some_and(|d| d < Duration::from_secs(30)),
            "consumer {i} received nothing within 30 s of SIGCONT ({r:?})"
        );
    }
    // Bounded: 6 sockets x WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS (10,000) small records, the
    // consumers' prefetch, and the allocator; generous for a debug build on a busy machine.
    assert!(
        rss_max - rss_before < 256 * 1024,
        "proxy grew by {} KiB while the broker was paused",
        rss_max - rss_before
    );
    for r in readers {
        r.abort();
    }
}
