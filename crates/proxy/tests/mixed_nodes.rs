//! Scala and Rust nodes side by side on the real broker, as during a migration: the real Scala
//! proxy (`scala-proxy/run`, see [`scala_run`]) and ours share one session topic (and one
//! dynamic config topic); a consumer group's limit and a duplicate `clientId` hold across the
//! two, the slots of a Scala node killed with SIGKILL are freed by the Rust node, a Rust node
//! given the server id of a Scala node says so at once and waits a bounded time, and a Scala
//! node started with a running Rust node's id is reported by the Rust node.
//!
//! Ignored by default (each test starts a JVM, 10 to 60 s on a loaded machine):
//! `scripts/test` runs them one at a time where Java and the Scala proxy's jars are available
//! and prints a SKIPPED line where they are not. Each test has its own session topic.
//!
//! The Scala proxy applies session changes when it reads them back from the topic (its
//! eventual consistency, reference section 7 item 7): before asking a Scala node to refuse,
//! a test waits for the record in Kafka, then gives the Scala reader [`SCALA_CATCH_UP`].

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{call, dynamic_proxy, eventually};
use common::*;
use serde_json::Value;

/// How long a Scala node is given to apply a record already in Kafka (its reader polls every
/// 50 ms; the reference's own tests sleep 4 to 10 s).
const SCALA_CATCH_UP: Duration = Duration::from_secs(3);
/// The Scala node's session-reader group timeout in these tests (Kafka's minimum; its default
/// is 45 s), and ours.
const NODE_TIMEOUT_MS: u32 = 6000;

/// The Scala proxy's start script: `WSPROXY_SCALA_PROXY_RUN`, else `../shared/scala-proxy/run`
/// beside the project (or beside its worktrees' parent).
pub fn scala_run() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("WSPROXY_SCALA_PROXY_RUN") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let root = project_root();
    [root.join("../shared/scala-proxy/run"), root.join("../../shared/scala-proxy/run")]
        .into_iter()
        .find(|p| p.is_file())
}

/// A Scala proxy node (a JVM); killed with SIGKILL when dropped.
struct ScalaNode {
    child: Child,
    port: u16,
    admin: Option<u16>,
    server_id: String,
    log: PathBuf,
}

impl ScalaNode {
    async fn start(server_id: &str, session_topic: &str, extra: &[(&str, &str)]) -> ScalaNode {
        let run = scala_run().expect("the Scala proxy's run script (set WSPROXY_SCALA_PROXY_RUN)");
        let port = free_port();
        let log = std::env::temp_dir().join(format!("wsproxy-scala-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let timeout = format!("-Dkafka.ws.proxy.consumer.kafka-client-properties.session.timeout.ms={NODE_TIMEOUT_MS}");
        let heartbeat =
            format!("-Dkafka.ws.proxy.consumer.kafka-client-properties.heartbeat.interval.ms={}", NODE_TIMEOUT_MS / 3);
        let mut cmd = Command::new(run);
        cmd.env_clear();
        // Its dependency cache lives under $HOME (~/.cache/scala-proxy and Maven's ~/.m2).
        for keep in ["PATH", "HOME", "JAVA_HOME", "SCALA_PROXY_CACHE"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("JAVA_OPTS", format!("-Xms64m -Xmx384m -XX:TieredStopAtLevel=1 {timeout} {heartbeat}"))
            .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
            .env("WSPROXY_PORT", port.to_string())
            .env("WSPROXY_BIND_INTERFACE", "127.0.0.1")
            .env("WSPROXY_SERVER_ID", server_id)
            .env("WSPROXY_SESSION_STATE_TOPIC", session_topic)
            .env("WSPROXY_SESSION_STATE_REPLICATION_FACTOR", "1");
        let mut admin = None;
        for (k, v) in extra {
            cmd.env(k, v);
            if *k == "WSPROXY_ADMIN_PORT" {
                admin = v.parse().ok();
            }
        }
        let child = cmd.stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file).spawn().expect("spawn");
        let mut node = ScalaNode { child, port, admin, server_id: server_id.to_owned(), log };
        node.wait_up().await;
        node
    }

    /// Until it answers `/healthcheck` and its session reader holds the state partition.
    async fn wait_up(&mut self) {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(240);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the Scala proxy exited with {status} during start:\n{}", self.log_text());
            }
            if let Ok((200, _, _)) = http(self.port, "GET", "/healthcheck", &[]).await {
                break;
            }
            assert!(Instant::now() < deadline, "the Scala proxy did not start in 240 s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let group = format!("ws-proxy-session-consumer-{}", self.server_id);
        while !group_members(&group).iter().any(|m| !m["partitions"].as_array().unwrap().is_empty()) {
            assert!(
                Instant::now() < deadline,
                "the Scala node's session reader has no partition:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("Scala node {} up after {:?}", self.server_id, t0.elapsed());
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("ws://127.0.0.1:{}{path_and_query}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: `run` execs the JVM, so this is the JVM
        let _ = self.child.wait();
    }
}

impl Drop for ScalaNode {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- Scala proxy log ({}) ---\n{}", self.log.display(), self.log_text());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Members of a consumer group, read with the independent client: `[{client_id, partitions}]`.
fn group_members(group: &str) -> Vec<Value> {
    serde_json::from_str(kafka_tool(&["group-members", group], "").trim()).unwrap_or_default()
}

async fn rust_node(session_topic: &str, server_id: &str, extra: &[(&str, &str)]) -> Proxy {
    let timeout = format!("{} seconds", NODE_TIMEOUT_MS / 1000);
    let mut env = vec![
        ("WSPROXY_SESSION_STATE_TOPIC", session_topic),
        ("WSPROXY_SERVER_ID", server_id),
        ("WSPROXY_SESSION_NODE_TIMEOUT", timeout.as_str()),
    ];
    env.extend_from_slice(extra);
    Proxy::start(&env).await
}

fn out_path(topic: &str, group: &str, client: &str) -> String {
    format!("/socket/out?clientId={client}&groupId={group}&topic={topic}&valType=string&autoCommit=false")
}

/// The `message` of a refusal, whichever proxy rendered it (ours compact, Scala's `spaces2`).
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("not JSON: {body}"))["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
        .to_owned()
}

fn duplicate(client: &str, group: &str) -> String {
    format!("WebSocket for consumer {client} in session {group} not established because a consumer with the same ID is already registered.")
}

fn full(group: &str, limit: u32) -> String {
    format!("The max number of WebSockets for session {group} has been reached. Limit is {limit}")
}

/// Waits until the session record of `group` in Kafka holds exactly these (clientId, serverId).
async fn wait_for_session(state_topic: &str, group: &str, expected: &[(&str, &str)]) {
    let mut want: Vec<(String, String)> = expected.iter().map(|(c, s)| (c.to_string(), s.to_string())).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let out = kafka_tool(&["consume", state_topic, "1000", "4", "string", "string"], "");
        let latest = out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).rfind(|r| r["key"] == group);
        seen = latest
            .and_then(|r| r["value"].as_str().map(str::to_owned))
            .map(|v| {
                let doc: Value = serde_json::from_str(&v).unwrap();
                let mut ids: Vec<(String, String)> = doc["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        (i["id"]["clientId"].as_str().unwrap().to_owned(), i["serverId"].as_str().unwrap().to_owned())
                    })
                    .collect();
                ids.sort();
                ids
            })
            .unwrap_or_default();
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("session {group} in {state_topic}: {seen:?}, expected {want:?}");
}

#[tokio::test]
#[ignore = "starts the Scala proxy (a JVM): scripts/test runs it where Java is available"]
async fn group_limits_and_client_ids_hold_across_a_scala_and_a_rust_node() {
    let state = unique("sessions");
    let (scala_id, rust_id) = (unique("scala"), unique("rust"));
    let (scala, rust) = tokio::join!(ScalaNode::start(&scala_id, &state, &[]), rust_node(&state, &rust_id, &[]));
    let topic = unique("mixedlimit");
    create_topic(&topic, 2).await;
    let group = unique("g");

    // c1 on the Scala node counts on the Rust node: the same clientId is refused there.
    let c1 = connect(&scala.url(&out_path(&topic, &group, "c1"))).await;
    wait_for_session(&state, &group, &[("c1", &scala_id)]).await;
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &group, "c1"))).await;
    assert_eq!((status, message(&body)), (400, duplicate("c1", &group)), "c1 of the Scala node, on the Rust node");

    // c2 on the Rust node fills the group (2 partitions); both nodes refuse a third.
    let c2 = connect(&rust.url(&out_path(&topic, &group, "c2"))).await;
    wait_for_session(&state, &group, &[("c1", &scala_id), ("c2", &rust_id)]).await;
    tokio::time::sleep(SCALA_CATCH_UP).await;
    let (status, _, body) = refused(&scala.url(&out_path(&topic, &group, "c3"))).await;
    assert_eq!((status, message(&body)), (400, full(&group, 2)), "a third socket on the Scala node");
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &group, "c3"))).await;
    assert_eq!((status, message(&body)), (400, full(&group, 2)), "a third socket on the Rust node");

    // The Scala node refuses c2 of the Rust node too, and then (its defect, on Scala-only
    // clusters as well) removes the registered c2 from the session: its clean-up of a refused
    // socket removes the instance with that clientId whichever node holds it.
    let (status, _, body) = refused(&scala.url(&out_path(&topic, &group, "c2"))).await;
    assert_eq!((status, message(&body)), (400, duplicate("c2", &group)), "c2 of the Rust node, on the Scala node");
    wait_for_session(&state, &group, &[("c1", &scala_id)]).await;
    hang_up(c2).await;

    // The slot is free for the Scala node; a socket closed on the Scala node frees its slot
    // for the Rust node.
    tokio::time::sleep(SCALA_CATCH_UP).await;
    let c3 = connect(&scala.url(&out_path(&topic, &group, "c3"))).await;
    wait_for_session(&state, &group, &[("c1", &scala_id), ("c3", &scala_id)]).await;
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &group, "c4"))).await;
    assert_eq!((status, message(&body)), (400, full(&group, 2)), "two sockets on the Scala node fill the group");
    hang_up(c1).await;
    wait_for_session(&state, &group, &[("c3", &scala_id)]).await;
    let _c4 = connect(&rust.url(&out_path(&topic, &group, "c4"))).await;
    wait_for_session(&state, &group, &[("c3", &scala_id), ("c4", &rust_id)]).await;
    drop(c3);
}

#[tokio::test]
#[ignore = "starts the Scala proxy (a JVM): scripts/test runs it where Java is available"]
async fn a_scala_node_killed_with_sigkill_has_its_slots_freed_by_the_rust_node() {
    let state = unique("sessions");
    let (scala_id, rust_id) = (unique("scala"), unique("rust"));
    let (mut scala, rust) = tokio::join!(ScalaNode::start(&scala_id, &state, &[]), rust_node(&state, &rust_id, &[]));
    let topic = unique("mixedkill");
    create_topic(&topic, 2).await;
    let group = unique("g");

    let _c1 = connect(&scala.url(&out_path(&topic, &group, "c1"))).await;
    wait_for_session(&state, &group, &[("c1", &scala_id)]).await;
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &group, "c1"))).await;
    assert_eq!((status, message(&body)), (400, duplicate("c1", &group)));

    scala.kill();
    let t0 = Instant::now();
    let within = Duration::from_secs(90);
    let _c1 = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&rust.url(&out_path(&topic, &group, "c1"))).await {
            break ws;
        }
        assert!(
            t0.elapsed() < within,
            "c1 of the killed Scala node still refused after {within:?}:\n{}",
            rust.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let freed = t0.elapsed();
    println!(
        "the Rust node freed the killed Scala node's slot {freed:?} after SIGKILL (node timeout {NODE_TIMEOUT_MS} ms)"
    );
    wait_for_session(&state, &group, &[("c1", &rust_id)]).await;
    assert!(rust.log_text().contains("freed the session slots of a node that went silent"));
}

#[tokio::test]
#[ignore = "starts the Scala proxy (a JVM): scripts/test runs it where Java is available"]
async fn the_dynamic_config_topic_written_by_one_is_read_by_the_other() {
    let state = unique("sessions");
    let configs = unique("dyncfg-mixed");
    let (scala_id, rust_id) = (unique("scala"), unique("rust"));
    let scala_admin = free_port().to_string();
    let scala_env = [
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", scala_admin.as_str()),
        ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
        ("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"),
        ("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME", configs.as_str()),
        ("WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR", "1"),
    ];
    let rust_env = [
        ("WSPROXY_SESSION_STATE_TOPIC", state.as_str()),
        ("WSPROXY_SERVER_ID", rust_id.as_str()),
        ("WSPROXY_SESSION_NODE_TIMEOUT", "6 seconds"),
    ];
    let (scala, (rust, rust_admin)) =
        tokio::join!(ScalaNode::start(&scala_id, &state, &scala_env), dynamic_proxy(&configs, &rust_env));
    let scala_admin = scala.admin.unwrap();
    let topic = unique("mixeddyn");
    create_topic(&topic, 2).await;

    // Written by the Scala node's admin API, read and enforced by the Rust node.
    let (g1, g2) = (unique("g1"), unique("g2"));
    let limit = |g: &str| format!(r#"{{"group-id":"{g}","max-connections":1}}"#);
    let (status, _, body) = call(scala_admin, "POST", "/admin/client/config/consumer", Some(&limit(&g1)), &[]).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/admin/client/config/consumer/{g1}");
    let (_, body) = eventually(rust_admin, &path, |s, _| s == 200).await;
    let read: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((read["group-id"].as_str(), read["max-connections"].as_u64()), (Some(g1.as_str()), Some(1)), "{body}");
    let _a = connect(&rust.url(&out_path(&topic, &g1, "a"))).await;
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &g1, "b"))).await;
    assert_eq!((status, message(&body)), (400, full(&g1, 1)), "the Scala node's limit on the Rust node");

    // Written by the Rust node's admin API, read and enforced by the Scala node.
    let (status, _, body) = call(rust_admin, "POST", "/admin/client/config/consumer", Some(&limit(&g2)), &[]).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/admin/client/config/consumer/{g2}");
    let (_, body) = eventually(scala_admin, &path, |s, _| s == 200).await;
    let read: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((read["group-id"].as_str(), read["max-connections"].as_u64()), (Some(g2.as_str()), Some(1)), "{body}");
    let _x = connect(&scala.url(&out_path(&topic, &g2, "x"))).await;
    wait_for_session(&state, &g2, &[("x", &scala_id)]).await;
    tokio::time::sleep(SCALA_CATCH_UP).await;
    let (status, _, body) = refused(&scala.url(&out_path(&topic, &g2, "y"))).await;
    assert_eq!((status, message(&body)), (400, full(&g2, 1)), "the Rust node's limit on the Scala node");
    let (status, _, body) = refused(&rust.url(&out_path(&topic, &g2, "y"))).await;
    assert_eq!((status, message(&body)), (400, full(&g2, 1)), "and on the Rust node");
}

/// A Rust node started with the process running or exited; its log as it goes.
struct Starting {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Starting {
    fn spawn(env: &[(&str, &str)]) -> Starting {
        let port = free_port();
        let (mut cmd, log) = proxy_command(port);
        // These tests wait for info lines, whatever TEST_PROXY_LOG says.
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn proxy");
        Starting { child, log, port }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How long until a log line contains `text`.
    async fn line(&self, text: &str, within: Duration) -> Duration {
        let t0 = Instant::now();
        while !self.log_text().contains(text) {
            assert!(t0.elapsed() < within, "no log line with {text:?} in {within:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        t0.elapsed()
    }

    /// Waits for the exit status.
    async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(t0.elapsed() < within, "still running after {within:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn listening(&mut self, within: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited with {status}:\n{}", self.log_text());
            }
            if let Ok((200, _, _)) = http(self.port, "GET", "/healthcheck", &[]).await {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < within, "not listening after {within:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- proxy log ({}) ---\n{}", self.log.display(), self.log_text());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[tokio::test]
#[ignore = "starts the Scala proxy (a JVM): scripts/test runs it where Java is available"]
async fn a_rust_node_given_a_running_scala_nodes_server_id_says_so_at_once_and_stops_waiting() {
    let state = unique("sessions");
    let shared_id = unique("clash");
    let mut scala = ScalaNode::start(&shared_id, &state, &[]).await;
    let topic = unique("mixedclash");
    create_topic(&topic, 2).await;
    let group = unique("g");
    let _c1 = connect(&scala.url(&out_path(&topic, &group, "c1"))).await;
    wait_for_session(&state, &group, &[("c1", &shared_id)]).await;

    // The Scala node is alive: the Rust node names the clash at once and gives up within its
    // load timeout, leaving the Scala node's slot and its session reader alone.
    let env = [
        ("WSPROXY_SESSION_STATE_TOPIC", state.as_str()),
        ("WSPROXY_SERVER_ID", shared_id.as_str()),
        ("WSPROXY_SESSION_NODE_TIMEOUT", "6 seconds"),
        ("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT", "15 seconds"),
    ];
    let mut clash = Starting::spawn(&env);
    let said = clash.line("another node uses WSPROXY_SERVER_ID", Duration::from_secs(20)).await;
    let status = clash.exit(Duration::from_secs(60)).await;
    println!("the clash was logged after {said:?}; the node exited with {status}");
    assert!(!status.success(), "{status}");
    assert!(said < Duration::from_secs(10), "the clash was logged only after {said:?}");
    let reader = format!("ws-proxy-session-consumer-{shared_id}");
    let members = group_members(&reader);
    assert_eq!(members.len(), 1, "only the Scala node's reader is in {reader}: {members:?}");
    assert!(!members[0]["partitions"].as_array().unwrap().is_empty(), "the Scala reader kept its partition");
    wait_for_session(&state, &group, &[("c1", &shared_id)]).await;
    drop(clash);

    // The Scala node is killed: a Rust node with its id waits until its reader's membership
    // expired, then takes the id over and frees what the Scala node held.
    scala.kill();
    let mut successor = Starting::spawn(&env);
    let said = successor.line("another node uses WSPROXY_SERVER_ID", Duration::from_secs(20)).await;
    let up = successor.listening(Duration::from_secs(60)).await;
    println!("the successor logged the clash after {said:?} and listened after {up:?}");
    wait_for_session(&state, &group, &[]).await;
}

#[tokio::test]
#[ignore = "starts the Scala proxy (a JVM): scripts/test runs it where Java is available"]
async fn a_scala_node_started_with_a_running_rust_nodes_server_id_is_reported() {
    let state = unique("sessions");
    let shared_id = unique("clash");
    let rust = rust_node(&state, &shared_id, &[]).await;
    let gauge = "wsproxy_server_id_clash 0";
    assert!(http(rust.port, "GET", "/metrics", &[]).await.unwrap().2.contains(gauge), "{gauge} before");

    let _scala = ScalaNode::start(&shared_id, &state, &[]).await;
    // The Rust node's next sweep (every node timeout / 3) names the clash and sets the gauge.
    let t0 = Instant::now();
    while !rust.log_text().contains("another node uses WSPROXY_SERVER_ID") {
        assert!(t0.elapsed() < Duration::from_secs(30), "no clash reported:\n{}", rust.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http(rust.port, "GET", "/metrics", &[]).await.unwrap().2;
    assert!(metrics.contains("wsproxy_server_id_clash 1"), "{metrics}");
    println!("the running Rust node reported the Scala node's clash {:?} after the Scala node was up", t0.elapsed());
}
