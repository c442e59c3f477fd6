//! Sessions shared by several proxy nodes through `_wsproxy.session.state`: consumer group
//! limits, duplicate clients, producer limits, the race for the last slot, slots of killed and
//! restarted nodes, and the reference's record format (read and written).
//!
//! Every test gives its nodes a session topic of their own, so tests do not see each other.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};

/// Two or more nodes sharing one session topic.
async fn nodes(n: usize, session_topic: &str, extra: &[(&str, &str)]) -> Vec<Proxy> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(node(session_topic, &unique("node"), extra).await);
    }
    out
}

async fn node(session_topic: &str, server_id: &str, extra: &[(&str, &str)]) -> Proxy {
    let mut env = vec![
        ("WSPROXY_SESSION_STATE_TOPIC", session_topic),
        ("WSPROXY_SERVER_ID", server_id),
        ("WSPROXY_SESSION_NODE_TIMEOUT", "3 seconds"),
    ];
    env.extend_from_slice(extra);
    Proxy::start(&env).await
}

fn out_url(p: &Proxy, topic: &str, group: &str, client: &str) -> String {
    p.url(&format!("/socket/out?clientId={client}&groupId={group}&topic={topic}&valType=string&autoCommit=false"))
}

fn in_url(p: &Proxy, topic: &str, client: &str, instance: Option<&str>) -> String {
    let instance = instance.map(|i| format!("&instanceId={i}")).unwrap_or_default();
    p.url(&format!("/socket/in?clientId={client}&topic={topic}&valType=string{instance}"))
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("not JSON: {body}"))["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The session records of `topic`, read with the independent client (key -> latest value).
fn session_records(topic: &str, at_least: usize) -> Vec<Value> {
    read_back(topic, at_least, "string", "string")
}

/// Tries to connect until it is accepted; returns how long it took.
async fn connect_eventually(url: &str, within: Duration) -> (Ws, Duration) {
    let t0 = Instant::now();
    loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            return (ws, t0.elapsed());
        }
        assert!(t0.elapsed() < within, "{url} still refused after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn consumer_groups_are_limited_across_nodes_and_a_closed_socket_frees_its_slot_at_once() {
    let state = unique("sessions");
    let nodes = nodes(2, &state, &[]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let topic = unique("grouplimit");
    create_topic(&topic, 2).await;
    let group = unique("g");

    let c1 = connect(&out_url(a, &topic, &group, "c1")).await;
    let (status, ct, body) = refused(&out_url(b, &topic, &group, "c1")).await;
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    assert_eq!(
        message(&body),
        format!("WebSocket for consumer c1 in session {group} not established because a consumer with the same ID is already registered.")
    );
    let _c2 = connect(&out_url(b, &topic, &group, "c2")).await;
    // The limit is the number of partitions (2): a third socket would sit idle.
    let (status, _, body) = refused(&out_url(a, &topic, &group, "c3")).await;
    assert_eq!(status, 400);
    assert_eq!(
        message(&body),
        format!("The max number of WebSockets for session {group} has been reached. Limit is 2")
    );

    // Closing c1 on node A frees the slot for node B at once (no sleep).
    hang_up(c1).await;
    let _c3 = connect(&out_url(b, &topic, &group, "c3")).await;
    // And the same client id reconnects at once on the node it left.
    let (status, _, _) = refused(&out_url(a, &topic, &group, "c1")).await;
    assert_eq!(status, 400, "the group is full again (c2, c3)");
}

#[tokio::test]
async fn the_configured_group_limit_is_capped_by_the_partitions() {
    // Reference 5.1: a group configured for 2 on a 1-partition topic allows 1.
    let state = unique("sessions");
    let a = node(&state, &unique("node"), &[("WSPROXY_CONSUMER_DEFAULT_MAX_CLIENT_CONNECTIONS", "2")]).await;
    let topic = unique("onepart");
    create_topic(&topic, 1).await;
    let _c1 = connect(&out_url(&a, &topic, "dummy-", "c1")).await;
    let (status, _, body) = refused(&out_url(&a, &topic, "dummy-", "c2")).await;
    assert_eq!(status, 400);
    assert_eq!(message(&body), "The max number of WebSockets for session dummy- has been reached. Limit is 1");

    // A configured limit below the partitions wins.
    let topic3 = unique("threepart");
    create_topic(&topic3, 3).await;
    let group = unique("g");
    let _x = connect(&out_url(&a, &topic3, &group, "x")).await;
    let _y = connect(&out_url(&a, &topic3, &group, "y")).await;
    let (status, _, body) = refused(&out_url(&a, &topic3, &group, "z")).await;
    assert_eq!(
        (status, message(&body)),
        (400, format!("The max number of WebSockets for session {group} has been reached. Limit is 2"))
    );
}

#[tokio::test]
async fn producer_sessions_limit_instances_and_refuse_duplicates() {
    let state = unique("sessions");
    let env = [("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"), ("WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS", "1")];
    let nodes = nodes(2, &state, &env).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let topic = unique("prodlimit");
    create_topic(&topic, 1).await;
    let client = unique("limit-test-producer-1");

    let (status, _, body) = refused(&in_url(a, &topic, &client, None)).await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("instanceId"), "{body}");

    let mut i1 = connect(&in_url(a, &topic, &client, Some("i1"))).await;
    let (status, _, body) = refused(&in_url(b, &topic, &client, Some("i2"))).await;
    assert_eq!(status, 400);
    assert_eq!(
        message(&body),
        format!("The max number of WebSockets for session {client} has been reached. Limit is 1")
    );
    // The open socket still produces.
    send(&mut i1, record(None, "still-here", Some("m1"))).await;
    assert_eq!(recv_json(&mut i1).await["clientMessageId"], "m1");

    // Reconnecting the same instance 4 times in a row, alternating nodes, always succeeds.
    hang_up(i1).await;
    for n in 0..4 {
        let node = if n % 2 == 0 { b } else { a };
        let ws = connect(&in_url(node, &topic, &client, Some("i1"))).await;
        hang_up(ws).await;
    }
}

#[tokio::test]
async fn unlimited_producer_sessions_still_refuse_a_duplicate_instance() {
    // The reference let two sockets share an instanceId (its defect 9); here the second is refused.
    let state = unique("sessions");
    let a = node(&state, &unique("node"), &[("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true")]).await;
    let topic = unique("produnlimited");
    create_topic(&topic, 1).await;
    let client = unique("limit-test-producer-3");
    let _one = connect(&in_url(&a, &topic, &client, Some("1"))).await;
    let _two = connect(&in_url(&a, &topic, &client, Some("2"))).await;
    let _three = connect(&in_url(&a, &topic, &client, Some("3"))).await;
    let (status, _, body) = refused(&in_url(&a, &topic, &client, Some("2"))).await;
    assert_eq!(status, 400);
    assert_eq!(
        message(&body),
        format!("WebSocket for producer {client} with instanceId 2 not established because a producer with the same ID is already registered.")
    );
}

#[tokio::test]
async fn two_sockets_racing_for_the_last_slot_on_two_nodes_never_both_win() {
    let state = unique("sessions");
    let env = [("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"), ("WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS", "1")];
    let nodes = nodes(2, &state, &env).await;
    let topic = unique("race");
    create_topic(&topic, 1).await;
    let mut single_winner = 0;
    for round in 0..100 {
        let client = format!("{}-{round}", unique("racer"));
        let (x, y) = tokio::join!(
            tokio_tungstenite::connect_async(in_url(&nodes[0], &topic, &client, Some("x"))),
            tokio_tungstenite::connect_async(in_url(&nodes[1], &topic, &client, Some("y"))),
        );
        let winners = usize::from(x.is_ok()) + usize::from(y.is_ok());
        assert!(winners <= 1, "round {round}: both sockets won the last slot of {client}");
        single_winner += winners;
    }
    println!("100 races for one slot: {single_winner} had a winner, none had two");
    assert_eq!(single_winner, 100, "the loser is refused only because the winner holds the slot");

    // The same race on consumer groups (1 partition: 1 slot).
    let group_topic = unique("grouprace");
    create_topic(&group_topic, 1).await;
    for round in 0..20 {
        let group = format!("{}-{round}", unique("g"));
        let (x, y) = tokio::join!(
            tokio_tungstenite::connect_async(out_url(&nodes[0], &group_topic, &group, "x")),
            tokio_tungstenite::connect_async(out_url(&nodes[1], &group_topic, &group, "y")),
        );
        assert_eq!(usize::from(x.is_ok()) + usize::from(y.is_ok()), 1, "round {round}: exactly one consumer wins");
    }
}

#[tokio::test]
async fn a_killed_nodes_slots_are_freed_by_the_others_after_the_node_timeout() {
    let state = unique("sessions");
    let mut nodes = nodes(2, &state, &[]).await;
    let topic = unique("killed");
    create_topic(&topic, 1).await;
    let group = unique("g");
    let _c1 = connect(&out_url(&nodes[0], &topic, &group, "c1")).await;
    assert_eq!(refused(&out_url(&nodes[1], &topic, &group, "c2")).await.0, 400);

    nodes[0].signal_and_wait("KILL", Duration::from_secs(5)).expect("kill -9");
    let (ws, took) = connect_eventually(&out_url(&nodes[1], &topic, &group, "c2"), Duration::from_secs(60)).await;
    println!("node timeout 3 s: the killed node's slot was free after {took:?}");
    drop(ws);
}

#[tokio::test]
async fn a_restarted_node_frees_its_own_leftovers_before_it_is_ready() {
    let state = unique("sessions");
    let server_id = unique("node");
    // A long node timeout: only the restart itself can free the slot in time.
    let long = [("WSPROXY_SESSION_NODE_TIMEOUT", "5 minutes")];
    let mut first = node(&state, &server_id, &long).await;
    let topic = unique("restart");
    create_topic(&topic, 1).await;
    let group = unique("g");
    let _c1 = connect(&out_url(&first, &topic, &group, "c1")).await;
    first.signal_and_wait("KILL", Duration::from_secs(5)).expect("kill -9");

    let t0 = Instant::now();
    let second = node(&state, &server_id, &long).await;
    let _again = connect(&out_url(&second, &topic, &group, "c1")).await;
    println!("restarted node ready and the slot free after {:?}", t0.elapsed());
}

#[tokio::test]
async fn a_graceful_shutdown_frees_the_nodes_slots() {
    let state = unique("sessions");
    let long = [("WSPROXY_SESSION_NODE_TIMEOUT", "5 minutes")];
    let mut nodes = nodes(2, &state, &long).await;
    let topic = unique("sigterm");
    create_topic(&topic, 1).await;
    let group = unique("g");
    let _c1 = connect(&out_url(&nodes[0], &topic, &group, "c1")).await;
    nodes[0].signal_and_wait("TERM", Duration::from_secs(20)).expect("exits on SIGTERM");
    let _c2 = connect(&out_url(&nodes[1], &topic, &group, "c2")).await;
}

/// Holds a consumer group open, as a live Scala node's session reader would.
fn hold_group(group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        let _ = c.poll(Duration::from_millis(100));
        assert!(Instant::now() < deadline, "the fake Scala node never joined its group");
    }
    c
}

#[tokio::test]
async fn scala_session_records_are_honoured_and_ours_are_in_the_reference_format() {
    let state = unique("sessions");
    create_topic_with(&state, 1, &[("cleanup.policy", "compact")]).await;
    let topic = unique("scala");
    create_topic(&topic, 1).await;
    let group = unique("g");
    // A Scala node ("scala-node-1") is alive and owns client c-scala of the group.
    let scala = hold_group("ws-proxy-session-consumer-scala-node-1", &state);
    let scala_record = json!({
        "session_type": "ConsumerSession", "sessionId": group, "groupId": group, "maxConnections": 1,
        "instances": [{"client_instance_type": "ConsumerInstance",
                       "id": {"groupId": group, "clientId": "c-scala"}, "serverId": "scala-node-1"}]
    });
    write_with_tool(
        &state,
        &[
            json!({"key": {"value": group, "format": "string"}, "value": {"value": scala_record.to_string(), "format": "string"}}),
        ],
    );

    let server_id = unique("node");
    let a = node(&state, &server_id, &[]).await;
    let (status, _, body) = refused(&out_url(&a, &topic, &group, "c-scala")).await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("same ID is already registered"), "{body}");
    let (status, _, body) = refused(&out_url(&a, &topic, &group, "c2")).await;
    assert_eq!(
        (status, message(&body)),
        (400, format!("The max number of WebSockets for session {group} has been reached. Limit is 1"))
    );

    // The Scala node goes away: its group empties and its slot is freed.
    drop(scala);
    let (ws, took) = connect_eventually(&out_url(&a, &topic, &group, "c2"), Duration::from_secs(60)).await;
    println!("slot of the silent Scala node freed after {took:?}");

    // What we wrote is the reference's format, read with the independent client.
    let records = session_records(&state, 3);
    let ours: Value = serde_json::from_str(records.last().unwrap()["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        ours,
        json!({
            "session_type": "ConsumerSession", "sessionId": group, "groupId": group, "maxConnections": 1,
            "instances": [{"client_instance_type": "ConsumerInstance",
                           "id": {"groupId": group, "clientId": "c2"}, "serverId": server_id}]
        })
    );
    assert_eq!(records.last().unwrap()["key"], group.as_str());
    drop(ws);
}

// --- Partial failures of the session state (issue 14: H4, L1, M3) ---------------------------

/// A session topic made by the test (compacted, like the proxy's), so that its configuration
/// can be changed under the running nodes.
async fn state_topic() -> String {
    let state = unique("sessions");
    create_topic_with(&state, 1, &[("cleanup.policy", "compact")]).await;
    state
}

/// Makes every write to the session topic fail, or work again: a lowered `max.message.bytes`
/// makes the broker refuse each record (MESSAGE_TOO_LARGE, not retried), as an outage longer
/// than the state producer's delivery timeout ends every write. Only this topic is affected
/// on the shared broker. Returns once an independent producer sees the new state.
async fn state_writes(topic: &str, available: bool) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).create().unwrap();
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", if available { "1048588" } else { "1" });
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.alter_configs(&[config], &opts).await.unwrap() {
        r.unwrap_or_else(|(resource, e)| panic!("alter {resource:?}: {e}"));
    }
    let probe: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A tombstone of a key no session uses: harmless when it lands.
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key("outage-probe");
        let landed = probe.send(record, Duration::from_secs(5)).await.is_ok();
        if landed == available {
            return;
        }
        assert!(Instant::now() < deadline, "writes to {topic} still available={landed} after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the proxy's log contains `text`.
async fn log_line(p: &Proxy, text: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    while !p.log_text().contains(text) {
        assert!(t0.elapsed() < within, "no log line '{text}' within {within:?}:\n{}", p.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t0.elapsed()
}

/// A Python helper process (the independent client) that is killed when dropped.
struct Helper(std::process::Child);

impl Helper {
    fn start(script: &str, args: &[&str]) -> Helper {
        let python = project_root().join(".venv/bin/python");
        let child = std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .env("KAFKA_BOOTSTRAP", bootstrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        Helper(child)
    }

    /// Blocks until the helper printed `line`.
    fn expect_line(&mut self, line: &str) {
        use std::io::BufRead;
        let out = self.0.stdout.as_mut().unwrap();
        let mut reader = std::io::BufReader::new(out);
        let mut got = String::new();
        reader.read_line(&mut got).unwrap();
        assert_eq!(got.trim(), line, "the Python helper said otherwise");
    }

    fn tell(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.0.stdin.as_mut().unwrap(), "{line}").unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// H4 (scenario 1): a socket closes while the session-state partition refuses writes (as in an
/// outage longer than the state producer's delivery timeout), so its removal write fails. Once
/// Kafka accepts writes again, the node frees its own slot within WSPROXY_SESSION_NODE_TIMEOUT
/// and the same client reconnects (before: "already registered" until the node restarted).
#[tokio::test]
async fn h4_a_slot_whose_removal_failed_in_an_outage_is_freed_after_it() {
    let state = state_topic().await;
    let env =
        [("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT", "3 seconds"), ("WSPROXY_SESSION_NODE_TIMEOUT", "6 seconds")];
    let a = node(&state, &unique("node"), &env).await;
    let topic = unique("outage");
    create_topic(&topic, 1).await;
    let group = unique("g");
    let c1 = connect(&out_url(&a, &topic, &group, "c1")).await;

    state_writes(&state, false).await;
    hang_up(c1).await;
    log_line(&a, "could not free a session slot", Duration::from_secs(60)).await;

    state_writes(&state, true).await;
    let (_ws, took) = connect_eventually(&out_url(&a, &topic, &group, "c1"), Duration::from_secs(6 + 20)).await;
    println!("node timeout 6 s: the node freed its own leaked slot {took:?} after Kafka's return");
}

/// H4 (scenario 2): a join whose record was written but not read back within the load timeout
/// (the reader is held at an open transaction's last stable offset) answers 503. Its record is
/// accepted later, a phantom instance without a socket; the node removes it once the log
/// advances again, so the same client gets in (before: refused as a duplicate until restart).
#[tokio::test]
async fn h4_a_join_that_timed_out_leaves_no_phantom_slot() {
    const HOLD_OPEN: &str = r#"
import os, sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"], "transactional.id": sys.argv[2]})
p.init_transactions(30)
p.begin_transaction()
p.produce(sys.argv[1], key=b"held-open-by-a-test", value=None)
p.flush(30)
print("open", flush=True)
sys.stdin.readline()
p.abort_transaction(30)
print("aborted", flush=True)
"#;
    let state = state_topic().await;
    let env =
        [("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT", "3 seconds"), ("WSPROXY_SESSION_NODE_TIMEOUT", "6 seconds")];
    let a = node(&state, &unique("node"), &env).await;
    let topic = unique("phantom");
    create_topic(&topic, 1).await;
    let group = unique("g");

    let mut txn = Helper::start(HOLD_OPEN, &[&state, &unique("hold-open")]);
    txn.expect_line("open");
    let (status, _, body) = refused(&out_url(&a, &topic, &group, "c1")).await;
    assert_eq!(status, 503, "the join's record cannot be read back past the open transaction: {body}");
    txn.tell("abort");
    txn.expect_line("aborted");

    let (_ws, took) = connect_eventually(&out_url(&a, &topic, &group, "c1"), Duration::from_secs(6 + 20)).await;
    println!("node timeout 6 s: the phantom slot was freed {took:?} after the log advanced");
    // The phantom was in the log: the independent client reads the join, its removal and ours.
    let records = session_records(&state, 3);
    assert!(records.iter().any(|r| r["key"] == group.as_str()), "{records:?}");
}

/// M3: a record on the session-state topic whose header key is not UTF-8 (any non-Java client
/// can write one) does not stop the node's state reader: later joins still work.
#[tokio::test]
async fn m3_a_state_record_with_a_non_utf8_header_key_does_not_stop_the_reader() {
    // confluent-kafka turns a bytes key into its repr; kafka-python encodes str keys with
    // `.encode("utf-8")`, which a str subclass can answer with any bytes.
    const POISON: &str = r#"
import os, sys
from kafka import KafkaProducer
class RawKey(str):
    def encode(self, *args, **kwargs):
        return b"\xff\xfe"
p = KafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"])
headers = [(RawKey("xx"), b"x"), ("wsproxy.based-on", b"-1")]
p.send(sys.argv[1], key=b"poison", value=None, headers=headers).get(timeout=30)
p.close()
print("written", flush=True)
"#;
    let state = state_topic().await;
    let a = node(&state, &unique("node"), &[("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT", "5 seconds")]).await;
    let topic = unique("poison");
    create_topic(&topic, 1).await;
    let group = unique("g");
    Helper::start(POISON, &[&state]).expect_line("written");

    let c1 = connect(&out_url(&a, &topic, &group, "c1")).await;
    hang_up(c1).await;
    let _again = connect(&out_url(&a, &topic, &group, "c1")).await;
}

/// L2: a produce socket whose client closed keeps its connection slot until its task ended,
/// that is until Kafka answered its in-flight records; before, the slot was freed at the
/// client's Close, so one client could keep more draining sockets than the per-IP cap.
#[tokio::test]
async fn l2_a_draining_produce_socket_keeps_its_connection_slot() {
    use futures::SinkExt;
    // A long linger keeps a record in the producer's queue: the socket drains for 15 s.
    let a =
        Proxy::start(&[("WSPROXY_MAX_CONNECTIONS_PER_IP", "1"), ("WSPROXY_KAFKA_PRODUCER_LINGER_MS", "15000")]).await;
    let topic = unique("draining");
    create_topic(&topic, 1).await;
    let url = a.url(&format!("/socket/in?clientId={}&topic={topic}&valType=string", unique("l2")));

    let mut ws = connect(&url).await;
    send(&mut ws, record(None, "in-flight", Some("m1"))).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Close(None)).await.unwrap();
    // Give the proxy a moment to read the Close (before the fix, that freed the slot). The
    // socket still waits for Kafka, so it counts against the per-IP limit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _, body) = refused(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("open sockets from"), "{body}");

    let (_again, took) = connect_eventually(&url, Duration::from_secs(45)).await;
    println!("the connection slot was free again {took:?} after the refusal (when the task ended)");
    // The record the socket drained landed, read with the independent client.
    assert_eq!(read_back(&topic, 1, "string", "string")[0]["value"], "in-flight");
}
