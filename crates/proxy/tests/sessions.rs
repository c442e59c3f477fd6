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
