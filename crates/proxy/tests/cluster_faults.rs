//! Fault injection on a three-broker cluster (`scripts/kafka start --brokers 3`: replication
//! factor 3, `min.insync.replicas=2`), with the checker of `tests/faults.rs`: 6 producer and 2
//! consumer sockets stream through a proxy while one broker fails; afterwards an independent
//! client (tests/support/kafka_tool.py) checks that every acknowledged record is in Kafka where
//! its acknowledgement said. Duplicates are counted and reported, not failed; the consumers'
//! longest pause and the sockets' survival are asserted.
//!
//! The tests kill and restart the cluster's brokers, so they are `#[ignore]`d and run one at a
//! time by `scripts/test` (`cargo test --test cluster_faults -- --ignored --test-threads=1`),
//! which starts the cluster and stops it again if it started it. The shared single broker on
//! 9092 is not touched.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The three brokers of `scripts/kafka start --brokers 3`.
const CLUSTER: &str = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094";

/// Each producer socket sends one record every PACE: 6 sockets, 300 records/s in all (the
/// machine's cores are shared with three brokers).
const PACE: Duration = Duration::from_millis(20);

/// How long the streams go on after the fault (and the broker's return) before they stop.
const AFTER_FAULT: Duration = Duration::from_secs(5);

/// The longest a consumer may go without a record while producers stream.
const MAX_CONSUMER_GAP: Duration = Duration::from_secs(30);

/// `scripts/kafka <args> --brokers 3`; panics with its output when it fails.
fn cluster_script(args: &[&str]) -> String {
    let out = Command::new(project_root().join("scripts/kafka"))
        .args(args)
        .args(["--brokers", "3"])
        .output()
        .expect("scripts/kafka");
    assert!(
        out.status.success(),
        "scripts/kafka {args:?} --brokers 3 failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a blocking `scripts/kafka` step off the runtime.
async fn cluster_step(args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || cluster_script(args)).await.unwrap()
}

fn kill_node(node: i32) -> String {
    let pid = cluster_script(&["pid", &node.to_string()]).trim().to_owned();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success(), "kill -KILL {pid}");
    pid
}

fn metadata_client() -> BaseConsumer {
    ClientConfig::new().set("bootstrap.servers", CLUSTER).create().expect("client")
}

/// Creates a topic with 3 replicas on the cluster and waits until every partition has a leader.
async fn create_cluster_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", CLUSTER).create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(3));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(&[topic], &opts).await.expect("create_topics") {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    let client = metadata_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.fetch_metadata(Some(name), Duration::from_secs(5));
        if md.is_ok_and(|m| {
            m.topics().iter().any(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0 && p.isr().len() == 3)
            })
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} did not get leaders and 3 in-sync replicas");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker leading `partition` of `topic`.
fn partition_leader(topic: &str, partition: i32) -> i32 {
    let md = metadata_client().fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    md.topics()[0].partitions().iter().find(|p| p.id() == partition).expect("partition").leader()
}

/// What one producer socket saw: acknowledged records and error frames.
#[derive(Default)]
struct Outcome {
    sent: usize,
    acked: Vec<(i64, i64, String)>,
    errors: Vec<String>,
}

/// Streams records on one socket, one every PACE until `stop`, then waits for every answer.
/// A socket that ends fails the test: no socket may close during a broker failure.
async fn stream_records(url: String, name: String, stop: Arc<AtomicBool>) -> Outcome {
    let ws = connect(&url).await;
    let (mut tx, mut rx) = ws.split();
    let (count_tx, count_rx) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move {
        let mut n = 0usize;
        let mut tick = tokio::time::interval(PACE);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let value = format!("{name}-{n}");
            if tx.send(Message::Text(record(None, &value, Some(&value)).into())).await.is_err() {
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
    let mut silent_since = Instant::now();
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
        match tokio::time::timeout(Duration::from_millis(500), rx.next()).await {
            Err(_) => {
                // Answers may wait for a new leader, never for minutes.
                assert!(silent_since.elapsed() < Duration::from_secs(180), "answers stopped coming for 180 s");
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                silent_since = Instant::now();
                let v: Value = serde_json::from_str(&t).unwrap();
                let id = v["clientMessageId"].as_str().unwrap_or_default().to_owned();
                if v.get("error").is_some() {
                    out.errors.push(format!("{id}: {}", v["error"]["code"]));
                } else {
                    out.acked.push((v["partition"].as_i64().unwrap(), v["offset"].as_i64().unwrap(), id));
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("a producer socket ended during the fault: {other:?}"),
        }
    }
    out.sent = expected.unwrap_or_default();
    let mut tx = sender.await.unwrap();
    let _ = tx.close().await;
    out
}

/// What the consume sockets received: values, and when each consumer received a record.
#[derive(Default)]
struct Received {
    values: HashSet<String>,
    redelivered: usize,
    times: HashMap<usize, Vec<Instant>>,
}

/// Reads one consume socket until it ends; returns the close frame if the proxy closed it.
async fn read_consumer(mut ws: Ws, index: usize, received: Arc<Mutex<Received>>) -> String {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if let Some(s) = v["value"]["value"].as_str() {
                    let mut r = received.lock().unwrap();
                    if !r.values.insert(s.to_owned()) {
                        r.redelivered += 1;
                    }
                    r.times.entry(index).or_default().push(Instant::now());
                }
            }
            Ok(Message::Close(f)) => return format!("closed by the proxy: {f:?}"),
            Ok(_) => {}
            Err(e) => return format!("failed: {e}"),
        }
    }
    "ended".to_owned()
}

/// The longest time any consumer went without a record between `from` and `to`.
fn longest_gap(received: &Received, from: Instant, to: Instant) -> Duration {
    received
        .times
        .values()
        .map(|times| {
            let mut last = from;
            let mut gap = Duration::ZERO;
            for t in times.iter().filter(|t| **t > from && **t <= to) {
                gap = gap.max(*t - last);
                last = *t;
            }
            gap.max(to.saturating_duration_since(last))
        })
        .max()
        .unwrap_or(to - from)
}

/// Every acknowledged record is in Kafka at its acknowledged place (read with the independent
/// client from the cluster); returns the number of duplicates stored.
fn check_acknowledged(topic: &str, outcomes: &[Outcome]) -> usize {
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let stored: Vec<Value> = kafka_tool_with(
        &["consume", topic, &sent.to_string(), "30", "raw", "string"],
        "",
        &[("KAFKA_BOOTSTRAP", CLUSTER)],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let at: HashMap<(i64, i64), &str> = stored
        .iter()
        .map(|r| ((r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()), r["value"].as_str().unwrap()))
        .collect();
    let lost: Vec<&String> = outcomes
        .iter()
        .flat_map(|o| o.acked.iter())
        .filter(|(p, o, id)| at.get(&(*p, *o)).copied() != Some(id.as_str()))
        .map(|(_, _, id)| id)
        .collect();
    // Where the missing ones are, if anywhere: written at another offset (a retried batch
    // acknowledged with the wrong offset) or absent (lost).
    let elsewhere: Vec<String> = lost
        .iter()
        .take(5)
        .map(|id| {
            let found: Vec<(i64, i64)> = at.iter().filter(|(_, v)| **v == id.as_str()).map(|(k, _)| *k).collect();
            let acked =
                outcomes.iter().flat_map(|o| o.acked.iter()).find(|(_, _, i)| i == *id).map(|(p, o, _)| (*p, *o));
            format!("{id}: acknowledged at {acked:?}, found at {found:?}")
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records are missing from Kafka at their acknowledged offsets ({} records read): {elsewhere:?}",
        lost.len(),
        stored.len()
    );
    let mut seen = HashSet::new();
    stored.iter().filter(|r| !seen.insert(r["value"].as_str().unwrap())).count()
}

/// Streams through a proxy on the cluster while `fault` runs (blocking, off the runtime), then
/// checks and prints the figures. Starts any node an earlier test left stopped.
async fn under_fault(name: &str, fault: impl FnOnce(String) -> String + Send + 'static) {
    let t_start = Instant::now();
    cluster_step(&["start"]).await;
    let proxy =
        Proxy::start(&[("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", CLUSTER), ("WSPROXY_SESSION_STATE_REPLICATION_FACTOR", "3")])
            .await;
    let topic = unique(name);
    create_cluster_topic(&topic, 3).await;

    // Two consumers in one group read along; they start first so that they are assigned.
    let group = unique(&format!("{name}-group"));
    let received = Arc::new(Mutex::new(Received::default()));
    let mut readers = Vec::new();
    for i in 0..2 {
        let ws = connect(&proxy.url(&format!("/socket/out?clientId={name}-c{i}&groupId={group}&topic={topic}"))).await;
        readers.push(tokio::spawn(read_consumer(ws, i, received.clone())));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..6)
        .map(|i| {
            let url = proxy.url(&format!("/socket/in?clientId={name}-p{i}&topic={topic}"));
            tokio::spawn(stream_records(url, format!("{name}-p{i}"), stop.clone()))
        })
        .collect();

    // Steady state first: both consumers are receiving.
    let t0 = Instant::now();
    while received.lock().unwrap().times.len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the consumers did not both receive within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let fault_at = Instant::now();
    let fault_topic = topic.clone();
    let what = tokio::task::spawn_blocking(move || fault(fault_topic)).await.unwrap();
    let fault_took = fault_at.elapsed();
    tokio::time::sleep(AFTER_FAULT).await;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();

    let mut outcomes = Vec::new();
    for p in producers {
        outcomes.push(p.await.expect("a producer socket failed"));
    }
    for o in &outcomes {
        assert_eq!(o.acked.len() + o.errors.len(), o.sent, "every record gets exactly one answer");
    }
    let sent: usize = outcomes.iter().map(|o| o.sent).sum();
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let errors: Vec<&String> = outcomes.iter().flat_map(|o| o.errors.iter()).collect();
    let duplicates = check_acknowledged(&topic, &outcomes);

    // The consumers get every acknowledged record.
    let all_acked: HashSet<&String> = outcomes.iter().flat_map(|o| o.acked.iter().map(|a| &a.2)).collect();
    let t0 = Instant::now();
    let missing = loop {
        let missing = {
            let r = received.lock().unwrap();
            all_acked.iter().filter(|id| !r.values.contains(id.as_str())).count()
        };
        if missing == 0 || t0.elapsed() > Duration::from_secs(90) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut closed = Vec::new();
    for r in readers {
        if r.is_finished() {
            closed.push(r.await.unwrap());
        } else {
            r.abort();
        }
    }
    let r = received.lock().unwrap();
    let gap = longest_gap(&r, fault_at, stopped_at);
    println!(
        "{name}: {what} (took {fault_took:.1?}); sent {sent}, acknowledged {acked}, lost 0, error frames {} {:?}, \
         duplicates in Kafka {duplicates}, redelivered to consumers {}, consumers' longest gap {gap:.1?}, \
         acknowledged records not consumed {missing}; test took {:.0?}",
        errors.len(),
        &errors[..errors.len().min(3)],
        r.redelivered,
        t_start.elapsed(),
    );
    drop(r);
    assert!(acked > 0);
    assert!(closed.is_empty(), "{closed:?}");
    assert_eq!(missing, 0, "acknowledged records never reached the consumers");
    assert!(gap < MAX_CONSUMER_GAP, "a consumer received nothing for {gap:?} while producers streamed");
}

#[tokio::test]
#[ignore = "kills a broker of the three-node cluster; run by scripts/test"]
async fn cluster_partition_leader_sigkill_loses_no_acknowledged_record() {
    under_fault("cl-leader", |topic| {
        let leader = partition_leader(&topic, 0);
        let pid = kill_node(leader);
        // The streams go on with one broker down, then it comes back and catches up.
        std::thread::sleep(Duration::from_secs(10));
        cluster_script(&["start"]);
        format!("SIGKILL of node {leader} (pid {pid}), leader of partition 0, restarted 10 s later")
    })
    .await;
}

#[tokio::test]
#[ignore = "restarts every broker of the three-node cluster; run by scripts/test"]
async fn cluster_rolling_restart_loses_no_acknowledged_record() {
    under_fault("cl-rolling", |_| {
        cluster_script(&["rolling-restart"]);
        "rolling restart of nodes 1, 2, 3, each after every partition was back in sync".to_owned()
    })
    .await;
}

#[tokio::test]
#[ignore = "kills the controller of the three-node cluster; run by scripts/test"]
async fn cluster_controller_leader_sigkill_loses_no_acknowledged_record() {
    under_fault("cl-controller", |_| {
        let leader: i32 = cluster_script(&["controller"]).trim().parse().expect("controller id");
        let pid = kill_node(leader);
        std::thread::sleep(Duration::from_secs(10));
        cluster_script(&["start"]);
        format!("SIGKILL of node {leader} (pid {pid}), the active controller, restarted 10 s later")
    })
    .await;
}
