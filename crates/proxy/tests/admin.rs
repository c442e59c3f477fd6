//! The admin API end to end (reference section 3 and its AdminRoutesSpec, 5.5): proxy
//! processes with their admin listener on their own ports, plain HTTP over real sockets, the
//! dynamic config topic shared by two nodes, records in the Scala proxy's format written and
//! read by the independent client, and a producer rate changed on an open socket.
//!
//! Every test uses its own dynamic config topic and consumer group names.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (status, content-type, body) of one HTTP request with an optional JSON body.
async fn call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("admin listener");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let ct = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, ct, body.to_owned())
}

async fn get_json(port: u16, path: &str) -> Value {
    let (status, ct, body) = call(port, "GET", path, None, &[]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

/// A proxy with its admin API on a free port; returns it with that port.
async fn admin_proxy(env: &[(&str, &str)]) -> (Proxy, u16) {
    let admin = free_port();
    let admin_s = admin.to_string();
    let mut all = vec![
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", admin_s.as_str()),
        ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
    ];
    all.extend_from_slice(env);
    let proxy = Proxy::start(&all).await;
    wait_ready(&proxy).await;
    (proxy, admin)
}

/// A node with dynamic configs on `topic`.
async fn dynamic_proxy(topic: &str, env: &[(&str, &str)]) -> (Proxy, u16) {
    let mut all =
        vec![("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"), ("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME", topic)];
    all.extend_from_slice(env);
    admin_proxy(&all).await
}

async fn wait_ready(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _, _)) = http(proxy.port, "GET", "/ready", &[]).await {
            return;
        }
        assert!(Instant::now() < deadline, "proxy not ready in 60 s:\n{}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET path` until `done` holds (for reads on another node: eventually consistent).
async fn eventually(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = call(port, "GET", path, None, &[]).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "GET {path} still {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const STATIC_CONSUMERS: &str = r#"[{"group-id":"dummy","messages-per-second":10,"max-connections":2}]"#;
const STATIC_PRODUCERS: &str = r#"[{"producer-id":"limit-test-producer-1","messages-per-second":10,"max-connections":1},{"producer-id":"limit-test-producer-2","messages-per-second":10,"max-connections":2}]"#;
const INVALID_CONSUMER: &str = "{\n  \"message\" : \"Invalid JSON for consumer config.\"\n}";
const INVALID_PRODUCER: &str = "{\n  \"message\" : \"Invalid JSON for producer config.\"\n}";

fn static_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", STATIC_CONSUMERS),
        ("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", STATIC_PRODUCERS),
    ]
}

#[tokio::test]
async fn static_configs_cluster_info_and_routes_refused_while_dynamic_configs_are_off() {
    let (_proxy, admin) = admin_proxy(&static_env()).await;

    let info = get_json(admin, "/admin/kafka/info").await;
    let port: i64 = bootstrap().rsplit_once(':').unwrap().1.parse().unwrap();
    let brokers = info.as_array().unwrap();
    assert!(!brokers.is_empty() && brokers.iter().all(|b| b["id"].is_i64() && b["host"].is_string()), "{info}");
    assert!(brokers.iter().any(|b| b["port"] == port), "{info}");
    assert!(brokers.iter().all(|b| b.as_object().unwrap().contains_key("rack")), "{info}");
    // A Basic header is ignored while auth is off.
    let (status, _, _) =
        call(admin, "GET", "/admin/kafka/info", None, &[("Authorization", "Basic Zm9vOmJhcg==")]).await;
    assert_eq!(status, 200);

    let (status, _, body) = call(admin, "GET", "/admin/client/config", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"consumers":{"static":[{"batch-size":0,"group-id":"__DEFAULT__","max-connections":0,"messages-per-second":0},{"group-id":"dummy","max-connections":2,"messages-per-second":10}],"dynamic":[]},"producers":{"static":[{"max-connections":0,"messages-per-second":0,"producer-id":"__DEFAULT__"},{"max-connections":1,"messages-per-second":10,"producer-id":"limit-test-producer-1"},{"max-connections":2,"messages-per-second":10,"producer-id":"limit-test-producer-2"}],"dynamic":[]}}"#
    );
    assert_eq!(
        call(admin, "GET", "/admin/client/config/consumer/dummy", None, &[]).await.2,
        r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}"#
    );
    assert_eq!(
        call(admin, "GET", "/admin/client/config/producer/limit-test-producer-2", None, &[]).await.2,
        r#"{"max-connections":2,"messages-per-second":10,"producer-id":"limit-test-producer-2"}"#
    );
    for path in ["/admin/client/config/consumer/non-existing", "/admin/client/config/producer/non-existing"] {
        assert_eq!(
            call(admin, "GET", path, None, &[]).await,
            (404, "application/json".into(), String::new()),
            "{path}"
        );
    }

    // Dynamic configs are off: writes answer 405 (after the body was validated).
    let consumer = r#"{"group-id":"my-consumer","max-connections":3}"#;
    for (method, path, body) in [
        ("POST", "/admin/client/config/consumer", Some(consumer)),
        ("POST", "/admin/client/config/consumer/my-consumer", Some(consumer)),
        ("PUT", "/admin/client/config/consumer/my-consumer", Some(consumer)),
        ("DELETE", "/admin/client/config/consumer/my-consumer", None),
        ("POST", "/admin/client/config/producer", Some(r#"{"producer-id":"p"}"#)),
        ("DELETE", "/admin/client/config", None),
    ] {
        assert_eq!(
            call(admin, method, path, body, &[]).await,
            (405, "application/json".into(), String::new()),
            "{method} {path}"
        );
    }
    let typo = call(admin, "POST", "/admin/client/config/consumer", Some(r#"{"grop-id":"x"}"#), &[]).await;
    assert_eq!(typo, (400, "application/json".into(), INVALID_CONSUMER.to_owned()));
    // Unknown admin paths, and a method the route does not have.
    assert_eq!(call(admin, "GET", "/admin/nothing", None, &[]).await.0, 404);
    assert_eq!(call(admin, "DELETE", "/admin/client/config/consumer", None, &[]).await.0, 405);
    assert_eq!(call(admin, "POST", "/admin/kafka/info", None, &[]).await.0, 405);
}

#[tokio::test]
async fn admin_listener_uses_the_main_listeners_basic_auth() {
    let (proxy, admin) = admin_proxy(&[
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "admin"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
        ("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT", "false"),
    ])
    .await;
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:s3cret"));
    let bad = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:wrong"));
    for path in ["/admin/kafka/info", "/admin/client/config", "/admin/consumer-group/all"] {
        let (status, headers, body) = http(admin, "GET", path, &[("Authorization", &bad)]).await.unwrap();
        assert_eq!(status, 401, "{path}");
        let challenge = headers.iter().find(|(k, _)| k == "www-authenticate").map(|(_, v)| v.as_str());
        assert_eq!(challenge, Some("Basic realm=\"Test Server\",charset=UTF-8"));
        assert_eq!(body, "{\n  \"message\" : \"The supplied authentication is invalid\"\n}");
        assert_eq!(http(admin, "GET", path, &[]).await.unwrap().0, 401, "{path} without credentials");
        assert_eq!(http(admin, "GET", path, &[("Authorization", &good)]).await.unwrap().0, 200, "{path}");
    }
    // A refused admin request leaves the main listener alone.
    assert_eq!(http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap().0, 200);
}

#[tokio::test]
async fn dynamic_configs_add_update_delete_with_the_reference_answers() {
    let topic = unique("dyncfg");
    let (_proxy, admin) = dynamic_proxy(&topic, &static_env()).await;

    // The topic was created compacted, with one partition, and replicas capped at the brokers.
    let described: Value = serde_json::from_str(kafka_tool(&["topic-config", &topic], "").trim()).unwrap();
    assert_eq!(described["partitions"], 1);
    assert_eq!(described["replicas"], 1, "WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR=3 capped at one broker");
    assert_eq!(described["configs"]["cleanup.policy"], "compact");

    let c1 = r#"{"group-id":"c1","max-connections":3,"messages-per-second":0}"#;
    assert_eq!(
        call(admin, "POST", "/admin/client/config/consumer", Some(c1), &[]).await,
        (200, "application/json".into(), String::new())
    );
    // The answer comes after this node applied the record: a read right after sees it.
    assert_eq!(
        call(admin, "GET", "/admin/client/config/consumer/c1", None, &[]).await.2,
        r#"{"group-id":"c1","max-connections":3,"messages-per-second":0}"#
    );
    let p1 = r#"{"producer-id":"p1","messages-per-second":10}"#;
    assert_eq!(call(admin, "POST", "/admin/client/config/producer", Some(p1), &[]).await.0, 200);
    assert_eq!(
        call(admin, "GET", "/admin/client/config/producer/p1", None, &[]).await.2,
        r#"{"messages-per-second":10,"producer-id":"p1"}"#
    );

    // Many at once: the listing has the static entries and exactly the dynamic ones.
    for i in 2..=4 {
        let body = json!({"group-id": format!("c{i}"), "batch-size": i}).to_string();
        assert_eq!(call(admin, "POST", "/admin/client/config/consumer", Some(&body), &[]).await.0, 200);
    }
    for i in 2..=10 {
        let body = json!({"producer-id": format!("p{i}"), "max-connections": i}).to_string();
        assert_eq!(call(admin, "POST", "/admin/client/config/producer", Some(&body), &[]).await.0, 200);
    }
    let all = get_json(admin, "/admin/client/config").await;
    assert_eq!(all["consumers"]["static"].as_array().unwrap().len(), 2);
    assert_eq!(all["producers"]["static"].as_array().unwrap().len(), 3);
    let ids = |v: &Value, field: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            v.as_array().unwrap().iter().map(|c| c[field].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&all["consumers"]["dynamic"], "group-id"), ["c1", "c2", "c3", "c4"]);
    assert_eq!(ids(&all["producers"]["dynamic"], "producer-id").len(), 10);

    // Static entries are still found; a dynamic one with the same id takes precedence.
    assert_eq!(
        call(admin, "GET", "/admin/client/config/consumer/dummy", None, &[]).await.2,
        r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}"#
    );
    let dummy = r#"{"group-id":"dummy","max-connections":9}"#;
    assert_eq!(call(admin, "POST", "/admin/client/config/consumer", Some(dummy), &[]).await.0, 200);
    assert_eq!(call(admin, "GET", "/admin/client/config/consumer/dummy", None, &[]).await.2, dummy);

    // PUT replaces an existing dynamic config (the body's id is the key), 404 for unknown ones.
    let c1_5 = r#"{"group-id":"c1","max-connections":5}"#;
    assert_eq!(
        call(admin, "PUT", "/admin/client/config/consumer/whatever", Some(c1_5), &[]).await,
        (200, "application/json".into(), String::new())
    );
    assert_eq!(call(admin, "GET", "/admin/client/config/consumer/c1", None, &[]).await.2, c1_5);
    let p1_5 = r#"{"max-connections":5,"producer-id":"p1"}"#;
    assert_eq!(call(admin, "PUT", "/admin/client/config/producer/p1", Some(p1_5), &[]).await.0, 200);
    assert_eq!(call(admin, "GET", "/admin/client/config/producer/p1", None, &[]).await.2, p1_5);
    assert_eq!(
        call(admin, "PUT", "/admin/client/config/consumer/nope", Some(r#"{"group-id":"nope"}"#), &[]).await,
        (404, "application/json".into(), String::new())
    );
    assert_eq!(
        call(admin, "PUT", "/admin/client/config/producer/nope", Some(r#"{"producer-id":"nope"}"#), &[]).await.0,
        404
    );
    // The static-only `dummy` producer list entry is not dynamic: PUT and DELETE say 404.
    assert_eq!(call(admin, "DELETE", "/admin/client/config/producer/limit-test-producer-1", None, &[]).await.0, 404);

    // Bad bodies: typos, the other kind, wrong types, not JSON: 400 with the reference's text.
    for (method, path) in [("POST", "/admin/client/config/consumer"), ("PUT", "/admin/client/config/consumer/c1")] {
        for body in [
            r#"{"grop-id":"c1"}"#,
            r#"{"producer-id":"c1"}"#,
            r#"{"group-id":"c1","max-connections":"many"}"#,
            "{not json",
            "",
            r#"{"group-id":""}"#,
        ] {
            assert_eq!(
                call(admin, method, path, Some(body), &[]).await,
                (400, "application/json".into(), INVALID_CONSUMER.to_owned()),
                "{method} {body}"
            );
        }
    }
    for (method, path) in [("POST", "/admin/client/config/producer"), ("PUT", "/admin/client/config/producer/p1")] {
        for body in [r#"{"prod-id":"p1"}"#, r#"{"group-id":"p1"}"#, r#"{"producer-id":"p1","messages-per-second":-1}"#]
        {
            assert_eq!(
                call(admin, method, path, Some(body), &[]).await,
                (400, "application/json".into(), INVALID_PRODUCER.to_owned()),
                "{method} {body}"
            );
        }
    }
    // The docs' path with the id: accepted when the ids agree.
    assert_eq!(call(admin, "POST", "/admin/client/config/consumer/c9", Some(r#"{"group-id":"c9"}"#), &[]).await.0, 200);
    assert_eq!(call(admin, "GET", "/admin/client/config/consumer/c9", None, &[]).await.2, r#"{"group-id":"c9"}"#);
    let (status, _, body) =
        call(admin, "POST", "/admin/client/config/consumer/c8", Some(r#"{"group-id":"c9"}"#), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("differs"), "{body}");
    // Nothing bad got in.
    assert_eq!(call(admin, "GET", "/admin/client/config/consumer/c8", None, &[]).await.0, 404);

    // DELETE one: 200, then 404; DELETE of an unknown one: 404.
    assert_eq!(
        call(admin, "DELETE", "/admin/client/config/consumer/c2", None, &[]).await,
        (200, "application/json".into(), String::new())
    );
    assert_eq!(call(admin, "GET", "/admin/client/config/consumer/c2", None, &[]).await.0, 404);
    assert_eq!(call(admin, "DELETE", "/admin/client/config/producer/p2", None, &[]).await.0, 200);
    assert_eq!(call(admin, "GET", "/admin/client/config/producer/p2", None, &[]).await.0, 404);
    assert_eq!(call(admin, "DELETE", "/admin/client/config/consumer/c2", None, &[]).await.0, 404);
    // Removing the dynamic `dummy` brings the static one back.
    assert_eq!(call(admin, "DELETE", "/admin/client/config/consumer/dummy", None, &[]).await.0, 200);
    assert_eq!(
        call(admin, "GET", "/admin/client/config/consumer/dummy", None, &[]).await.2,
        r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}"#
    );

    // DELETE all: dynamic lists empty, static ones unchanged.
    assert_eq!(
        call(admin, "DELETE", "/admin/client/config", None, &[]).await,
        (200, "application/json".into(), String::new())
    );
    let all = get_json(admin, "/admin/client/config").await;
    assert_eq!(all["consumers"]["dynamic"], json!([]));
    assert_eq!(all["producers"]["dynamic"], json!([]));
    assert_eq!(all["producers"]["static"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_config_posted_on_one_node_is_applied_on_another_and_loaded_before_a_new_node_is_ready() {
    let topic = unique("dyncfg-nodes");
    let (_a, admin_a) = dynamic_proxy(&topic, &[("WSPROXY_SERVER_ID", "node-a")]).await;
    let (_b, admin_b) = dynamic_proxy(&topic, &[("WSPROXY_SERVER_ID", "node-b")]).await;
    let cfg = r#"{"max-connections":4,"messages-per-second":25,"producer-id":"shared-producer"}"#;
    assert_eq!(call(admin_a, "POST", "/admin/client/config/producer", Some(cfg), &[]).await.0, 200);
    let (_, body) = eventually(admin_b, "/admin/client/config/producer/shared-producer", |s, _| s == 200).await;
    assert_eq!(body, cfg);
    // A removal on B reaches A.
    assert_eq!(call(admin_b, "DELETE", "/admin/client/config/producer/shared-producer", None, &[]).await.0, 200);
    eventually(admin_a, "/admin/client/config/producer/shared-producer", |s, _| s == 404).await;

    // A node started later has every config by the time it reports ready.
    let c = r#"{"group-id":"late-group","max-connections":1}"#;
    assert_eq!(call(admin_a, "POST", "/admin/client/config/consumer", Some(c), &[]).await.0, 200);
    let (_c, admin_c) = dynamic_proxy(&topic, &[("WSPROXY_SERVER_ID", "node-c")]).await;
    assert_eq!(call(admin_c, "GET", "/admin/client/config/consumer/late-group", None, &[]).await.2, c);
    assert_eq!(call(admin_c, "GET", "/admin/client/config/producer/shared-producer", None, &[]).await.0, 404);
}

#[tokio::test]
async fn records_in_the_scala_proxys_format_are_read_and_ours_are_readable() {
    let topic = unique("dyncfg-format");
    kafka_tool(&["create", &topic, "1", "cleanup.policy=compact"], "");
    let s = |v: &str| json!({"format": "string", "value": v});
    // What a Scala node writes (HOCON, keys sorted), a JSON one, an unreadable one (skipped),
    // and a config that a later tombstone removes.
    write_with_tool(
        &topic,
        &[
            json!({"key": s("producer-scala-producer"), "value": s("max-connections=1,messages-per-second=10,producer-id=scala-producer")}),
            json!({"key": s("consumer-scala-group"), "value": s("{\"batch-size\":5,\"group-id\":\"scala-group\",\"max-connections\":2}")}),
            json!({"key": s("producer-broken"), "value": s("this is { not a config")}),
            json!({"key": s("producer-gone"), "value": s("producer-id=gone, max-connections=3")}),
            json!({"key": s("producer-gone"), "value": null}),
        ],
    );
    let (proxy, admin) = dynamic_proxy(&topic, &[]).await;
    assert_eq!(
        call(admin, "GET", "/admin/client/config/producer/scala-producer", None, &[]).await.2,
        r#"{"max-connections":1,"messages-per-second":10,"producer-id":"scala-producer"}"#
    );
    assert_eq!(
        call(admin, "GET", "/admin/client/config/consumer/scala-group", None, &[]).await.2,
        r#"{"batch-size":5,"group-id":"scala-group","max-connections":2}"#
    );
    assert_eq!(call(admin, "GET", "/admin/client/config/producer/gone", None, &[]).await.0, 404);
    assert_eq!(call(admin, "GET", "/admin/client/config/producer/broken", None, &[]).await.0, 404);
    assert!(proxy.log_text().contains("unreadable dynamic config record skipped"), "{}", proxy.log_text());

    // What we write, read by the independent client: the reference's key and HOCON value.
    let cfg = r#"{"producer-id":"rust-producer","messages-per-second":7,"max-connections":2}"#;
    assert_eq!(call(admin, "POST", "/admin/client/config/producer", Some(cfg), &[]).await.0, 200);
    assert_eq!(call(admin, "DELETE", "/admin/client/config/producer/scala-producer", None, &[]).await.0, 200);
    let records = read_back(&topic, 7, "string", "string");
    assert_eq!(records[5]["key"], "producer-rust-producer");
    assert_eq!(records[5]["value"], "max-connections=2,messages-per-second=7,producer-id=rust-producer");
    assert_eq!(records[6]["key"], "producer-scala-producer");
    assert_eq!(records[6]["value"], Value::Null, "a removal is a tombstone");
}

#[tokio::test]
async fn bad_client_limits_in_the_environment_stop_the_start_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
        .env("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", r#"[{"grop-id":"g"}]"#)
        .env("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", "not json")
        .env("WSPROXY_ADMIN_PORT", "123456")
        .env("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS",
        "unknown field `grop-id`",
        "WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS",
        "WSPROXY_ADMIN_PORT",
    ] {
        assert!(err.contains(key), "stderr does not name {key}:\n{err}");
    }
}

#[tokio::test]
async fn admin_listener_serves_https_when_the_main_listener_has_tls() {
    let tls_dir = project_root().join(".cache/kafka/tls");
    let (cert, key, ca) = (tls_dir.join("broker.pem"), tls_dir.join("broker.key"), tls_dir.join("ca.pem"));
    let tls_port = free_port().to_string();
    let admin = free_port();
    let admin_s = admin.to_string();
    let _proxy = Proxy::start(&[
        ("WSPROXY_SSL_ENABLED", "true"),
        ("WSPROXY_SSL_PORT", &tls_port),
        ("WSPROXY_SSL_CERTIFICATE_LOCATION", cert.to_str().unwrap()),
        ("WSPROXY_SSL_PRIVATE_KEY_LOCATION", key.to_str().unwrap()),
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", &admin_s),
    ])
    .await;
    let out = Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap(), &format!("https://127.0.0.1:{admin}/admin/client/config")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["consumers"]["static"][0]["group-id"], "__DEFAULT__");
    // Plain HTTP on the admin port gets no answer.
    let plain = Command::new("curl")
        .args(["-sS", "-m", "5", &format!("http://127.0.0.1:{admin}/admin/client/config")])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

/// A consumer group with committed offsets and no members, committed by the independent client.
fn commit_with_tool(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let mut args = vec!["commit".to_owned(), group.to_owned(), topic.to_owned()];
    args.extend(offsets.iter().map(|(p, o)| format!("{p}={o}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kafka_tool(&args, "");
}

fn committed_with_tool(group: &str, topic: &str) -> Value {
    serde_json::from_str(kafka_tool(&["committed", group, topic], "").trim()).unwrap()
}

#[tokio::test]
async fn consumer_groups_list_describe_offsets_alter_and_delete() {
    let (proxy, admin) = admin_proxy(&[]).await;
    let topic = unique("groups");
    let other = unique("groups-other");
    create_topic(&topic, 3).await;
    create_topic(&other, 1).await;
    let records: Vec<Value> =
        (0..3).map(|p| json!({"value": {"format": "string", "value": format!("r{p}")}, "partition": p})).collect();
    write_with_tool(&topic, &records);
    let idle = unique("test-group-idle");
    let active = unique("test-group-active");
    commit_with_tool(&idle, &topic, &[(0, 1), (1, 1), (2, 1)]);
    commit_with_tool(&idle, &other, &[(0, 0)]);

    // An active group: a consume socket of the proxy, a member once it got a record.
    let mut ws = connect(&proxy.url(&format!(
        "/socket/out?clientId=admin-test-client&groupId={active}&topic={topic}&autoCommit=false&valType=string"
    )))
    .await;
    recv_json(&mut ws).await;

    let all = get_json(admin, "/admin/consumer-group/all?includeInternals=true").await;
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|g| g["groupId"].as_str().unwrap()).collect();
    assert!(ids.contains(&idle.as_str()) && ids.contains(&active.as_str()), "{ids:?}");
    let visible = get_json(admin, "/admin/consumer-group/all").await;
    assert!(visible.as_array().unwrap().iter().all(|g| {
        let id = g["groupId"].as_str().unwrap();
        !id.starts_with('_')
            && !id.starts_with("ws-proxy-session-consumer")
            && !id.starts_with("ws-proxy-dynamic-config-handler-consumer")
    }));
    let active_only = get_json(admin, "/admin/consumer-group/all?activeOnly=true&includeInternals=false").await;
    let groups = active_only.as_array().unwrap();
    assert!(groups.iter().any(|g| g["groupId"] == active.as_str()), "{active_only}");
    assert!(!groups.iter().any(|g| g["groupId"] == idle.as_str()), "{active_only}");
    assert!(groups
        .iter()
        .all(|g| ["STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE"].contains(&g["state"].as_str().unwrap())));
    let listed = groups.iter().find(|g| g["groupId"] == active.as_str()).unwrap();
    assert_eq!(listed["members"], json!([]));
    assert_eq!(listed["isSimple"], false);
    assert_eq!(call(admin, "GET", "/admin/consumer-group/all?activeOnly=maybe", None, &[]).await.0, 400);

    let d = get_json(admin, &format!("/admin/consumer-group/{active}/describe")).await;
    assert_eq!(
        (d["groupId"].as_str(), d["state"].as_str(), d["isSimple"].as_bool()),
        (Some(active.as_str()), Some("STABLE"), Some(false))
    );
    assert_eq!(d["members"], json!(["admin-test-client"]));
    assert!(d["partitionAssignor"].is_string());
    let d = get_json(admin, &format!("/admin/consumer-group/{idle}/describe")).await;
    assert_eq!((d["state"].as_str(), d["members"].clone()), (Some("EMPTY"), json!([])));
    let d = get_json(admin, "/admin/consumer-group/no-such-group-ever/describe").await;
    assert_eq!(d["state"], "DEAD");

    // Offsets: every committed offset of the group, over all its topics.
    let offsets = get_json(admin, &format!("/admin/consumer-group/{idle}/offsets")).await;
    let mut want: Vec<Value> =
        (0..3).map(|p| json!({"topic": topic, "partition": p, "offset": 1, "metadata": null})).collect();
    want.push(json!({"topic": other, "partition": 0, "offset": 0, "metadata": null}));
    want.sort_by_key(|v| (v["topic"].as_str().unwrap().to_owned(), v["partition"].as_i64()));
    assert_eq!(offsets, Value::Array(want));
    assert_eq!(
        call(admin, "GET", "/admin/consumer-group/no-such-group-ever/offsets", None, &[]).await,
        (404, "application/json".into(), String::new())
    );

    // Alter an idle group: answers all its offsets after the change; Kafka has them.
    let alter: Value = (0..3).map(|p| json!({"topic": topic, "partition": p, "offset": 100})).collect();
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"),
        Some(&alter.to_string()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after.as_array().unwrap().iter().filter(|o| o["offset"] == 100).count(), 3, "{after}");
    assert_eq!(after.as_array().unwrap().len(), 4, "{after}");
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": 100, "1": 100, "2": 100}));
    // An active group refuses; bad JSON is a 400 naming the problem.
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{active}/offsets/alter/{topic}"),
        Some(&alter.to_string()),
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (412, "{\n  \"message\" : \"Unable to modify the consumer group offsets because the group is still considered to be active. Please ensure that all consumer clients are stopped before trying again.\"\n}"));
    let (status, _, body) = call(
        admin,
        "PUT",
        &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"),
        Some(r#"[{"topic":"t","partiton":0}]"#),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("partiton"), "{body}");
    for (body, text) in [
        (json!([{"topic": topic, "partition": 7, "offset": 1}]), format!("Topic {topic} has no partition 7.")),
        (
            json!([{"topic": "no-such-topic-here", "partition": 0, "offset": 1}]),
            "Topic no-such-topic-here has no partition 0.".to_owned(),
        ),
        (json!([{"topic": topic, "partition": 0, "offset": -5}]), format!("The offset -5 of {topic}-0 is negative.")),
    ] {
        let path = format!("/admin/consumer-group/{idle}/offsets/alter/{topic}");
        let (status, _, answer) = call(admin, "PUT", &path, Some(&body.to_string()), &[]).await;
        assert_eq!((status, answer), (400, format!("{{\n  \"message\" : \"{text}\"\n}}")));
    }
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": 100, "1": 100, "2": 100}), "nothing changed");
    // An empty list changes nothing and answers the offsets.
    let (status, _, body) =
        call(admin, "PUT", &format!("/admin/consumer-group/{idle}/offsets/alter/{topic}"), Some("[]"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(), 4);

    // Delete one topic's offsets: the other topic's stay.
    assert_eq!(
        call(admin, "DELETE", &format!("/admin/consumer-group/{active}/offsets/delete/{topic}"), None, &[]).await.0,
        412
    );
    assert_eq!(
        call(admin, "DELETE", &format!("/admin/consumer-group/{idle}/offsets/delete/{topic}"), None, &[]).await,
        (200, "application/json".into(), String::new())
    );
    assert_eq!(
        get_json(admin, &format!("/admin/consumer-group/{idle}/offsets")).await,
        json!([{"topic": other, "partition": 0, "offset": 0, "metadata": null}])
    );
    assert_eq!(committed_with_tool(&idle, &topic), json!({"0": -1001, "1": -1001, "2": -1001}));
    // The docs' `DELETE .../offsets`: all of them.
    assert_eq!(call(admin, "DELETE", &format!("/admin/consumer-group/{idle}/offsets"), None, &[]).await.0, 200);
    assert_eq!(call(admin, "GET", &format!("/admin/consumer-group/{idle}/offsets"), None, &[]).await.0, 404);

    // The consume socket was not disturbed.
    write_with_tool(&topic, &[json!({"value": {"format": "string", "value": "still here"}, "partition": 0})]);
    let mut seen = Vec::new();
    while !seen.contains(&json!("still here")) {
        seen.push(recv_json(&mut ws).await["value"]["value"].clone());
    }
}

/// Sends records with up to `window` unanswered and counts results for `span`.
async fn acks_during(ws: &mut Ws, window: usize, span: Duration, outstanding: &mut usize) -> usize {
    let end = tokio::time::Instant::now() + span;
    let mut acked = 0;
    loop {
        while *outstanding < window {
            send(ws, record(None, "x", None)).await;
            *outstanding += 1;
        }
        match tokio::time::timeout_at(end, recv_text(ws, Duration::from_secs(60))).await {
            Ok(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert!(v["offset"].is_i64(), "{v}");
                *outstanding -= 1;
                acked += 1;
            }
            Err(_) => return acked,
        }
    }
}

/// Waits for the answers of every record already sent.
async fn drain(ws: &mut Ws, outstanding: &mut usize) {
    while *outstanding > 0 {
        let v: Value = serde_json::from_str(&recv_text(ws, Duration::from_secs(60)).await).unwrap();
        assert!(v["offset"].is_i64(), "{v}");
        *outstanding -= 1;
    }
}

/// How long `n` records take to be acknowledged, sending with up to `window` unanswered.
async fn time_for(ws: &mut Ws, n: usize, window: usize) -> Duration {
    let started = Instant::now();
    let (mut sent, mut acked) = (0, 0);
    while acked < n {
        while sent < n && sent - acked < window {
            send(ws, record(None, "x", None)).await;
            sent += 1;
        }
        let v: Value = serde_json::from_str(&recv_text(ws, Duration::from_secs(120)).await).unwrap();
        assert!(v["offset"].is_i64(), "{v}");
        acked += 1;
    }
    started.elapsed()
}

// Timing on a loaded machine only ever slows things down, so a limit is checked from above
// (never more than the rate allows) and "unlimited" as "far faster than the limit would allow":
// at 2 records/s, 100 records need 50 s; the bound is 25 s.
const LIMIT: usize = 2;
const WINDOW: usize = 5;
const N: usize = 100;
const FASTER_THAN_LIMIT: Duration = Duration::from_secs(25);

#[tokio::test]
async fn a_dynamic_producer_rate_slows_an_open_socket_and_its_removal_frees_it() {
    let cfg_topic = unique("dyncfg-rate");
    let (proxy, admin) = dynamic_proxy(&cfg_topic, &[]).await;
    let topic = unique("rate");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=rate-producer&topic={topic}&valType=string"))).await;
    let before = time_for(&mut ws, N, WINDOW).await;

    let cfg = json!({"producer-id": "rate-producer", "messages-per-second": LIMIT}).to_string();
    assert_eq!(call(admin, "POST", "/admin/client/config/producer", Some(&cfg), &[]).await.0, 200);
    let mut outstanding = 0;
    let span = Duration::from_secs(5);
    let limited = acks_during(&mut ws, WINDOW, span, &mut outstanding).await;
    drain(&mut ws, &mut outstanding).await;

    assert_eq!(call(admin, "DELETE", "/admin/client/config/producer/rate-producer", None, &[]).await.0, 200);
    let after = time_for(&mut ws, N, WINDOW).await;
    eprintln!(
        "acks/s: before {:.0}, limited to {LIMIT}/s {:.1}, after removal {:.0}",
        N as f64 / before.as_secs_f64(),
        limited as f64 / span.as_secs_f64(),
        N as f64 / after.as_secs_f64()
    );
    assert!(before < FASTER_THAN_LIMIT, "unlimited: {N} records took {before:?}");
    // At most: the rate over the span, the records read before the change, one burst, slack.
    let most = LIMIT * span.as_secs() as usize + WINDOW + 3;
    assert!((1..=most).contains(&limited), "at {LIMIT} records/s, {span:?} gave {limited} acks");
    assert!(after < FASTER_THAN_LIMIT, "after removal: {N} records took {after:?}");
    assert!(proxy.log_text().contains("messages-per-second changed on an open socket"));
}

#[tokio::test]
async fn a_static_producer_rate_applies_and_a_dynamic_config_overrides_it_on_open_and_new_sockets() {
    let cfg_topic = unique("dyncfg-static-rate");
    let statics = format!(r#"[{{"producer-id":"static-limited","messages-per-second":{LIMIT}}}]"#);
    let (proxy, admin) = dynamic_proxy(&cfg_topic, &[("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", &statics)]).await;
    let topic = unique("static-rate");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=static-limited&topic={topic}&valType=string"));
    let mut ws = connect(&url).await;
    let mut outstanding = 0;
    let span = Duration::from_secs(4);
    let limited = acks_during(&mut ws, WINDOW, span, &mut outstanding).await;
    let most = LIMIT * span.as_secs() as usize + 3;
    assert!((1..=most).contains(&limited), "a static limit of {LIMIT} records/s gave {limited} acks in {span:?}");

    // messages-per-second 0 (unlimited) in a dynamic config wins over the static limit.
    let cfg = r#"{"producer-id":"static-limited","messages-per-second":0}"#;
    assert_eq!(call(admin, "POST", "/admin/client/config/producer", Some(cfg), &[]).await.0, 200);
    drain(&mut ws, &mut outstanding).await;
    let open = time_for(&mut ws, N, WINDOW).await;
    assert!(open < FASTER_THAN_LIMIT, "the open socket took {open:?} for {N} records after the override");
    let mut fresh = connect(&url).await;
    let new_socket = time_for(&mut fresh, N, WINDOW).await;
    assert!(new_socket < FASTER_THAN_LIMIT, "a new socket took {new_socket:?} for {N} records");
}

#[tokio::test]
async fn ready_only_after_every_dynamic_config_is_loaded() {
    let topic = unique("dyncfg-load");
    kafka_tool(&["create", &topic, "1", "cleanup.policy=compact"], "");
    let n = 5000;
    let records: Vec<Value> = (0..n)
        .map(|i| {
            json!({"key": {"format": "string", "value": format!("producer-load-{i}")},
                   "value": {"format": "string", "value": format!("producer-id=load-{i},max-connections={i}")}})
        })
        .collect();
    write_with_tool(&topic, &records);
    let admin = free_port();
    let admin_s = admin.to_string();
    // Proxy::start waits for /healthcheck only, which answers while loading.
    let proxy = Proxy::start(&[
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_PORT", &admin_s),
        ("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"),
        ("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME", &topic),
    ])
    .await;
    let sockets = unique("loading");
    create_topic(&sockets, 1).await;
    let mut starting = 0;
    let mut refused_sockets = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = http(proxy.port, "GET", "/ready", &[]).await.unwrap();
        if status == 200 {
            break;
        }
        assert_eq!((status, body.as_str()), (503, "{\n  \"message\" : \"The proxy is starting.\"\n}"));
        // Sockets wait too: opened now, they would miss their client's dynamic limits.
        if starting == 0 {
            let url = proxy.url(&format!("/socket/in?clientId=early&topic={sockets}"));
            if let Err(tokio_tungstenite::tungstenite::Error::Http(resp)) = tokio_tungstenite::connect_async(url).await
            {
                assert_eq!(resp.status(), 503);
                refused_sockets += 1;
            }
        }
        starting += 1;
        assert!(Instant::now() < deadline, "not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "/ready answered 503 {starting} times while loading {n} configs; early sockets refused: {refused_sockets}"
    );
    let last = format!("/admin/client/config/producer/load-{}", n - 1);
    assert_eq!(
        call(admin, "GET", &last, None, &[]).await.2,
        format!(r#"{{"max-connections":{},"producer-id":"load-{}"}}"#, n - 1, n - 1)
    );
    assert_eq!(get_json(admin, "/admin/client/config").await["producers"]["dynamic"].as_array().unwrap().len(), n);
}

#[tokio::test]
async fn a_dynamic_config_topic_that_cannot_be_created_fails_the_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
        .env("WSPROXY_PORT", free_port().to_string())
        .env("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true")
        .env("WSPROXY_SESSION_STATE_TOPIC", unique("wsproxy-test-sessions"))
        .env("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME", "not a valid topic name!")
        .env("WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_RETRIES", "2")
        .env("WSPROXY_DYNAMIC_CONFIG_TOPIC_RETRY_INTERVAL", "100ms")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dynamic configs: cannot create topic not a valid topic name!"), "{err}");
}

/// Kills the process when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn client_specific_limits_from_a_toml_file_are_served() {
    let dir = std::env::temp_dir().join(unique("wsproxy-admin-toml"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    let (port, admin) = (free_port(), free_port());
    std::fs::write(
        &file,
        format!(
            r#"[kafka.ws.proxy.server]
port = {port}
bind-interface = "127.0.0.1"
[kafka.ws.proxy.server.admin]
enabled = true
port = {admin}
[kafka.ws.proxy.kafka-client]
bootstrap-hosts = "{}"
[kafka.ws.proxy.producer.limits]
default-max-connections-per-client = 3
[[kafka.ws.proxy.producer.limits.client-specific-limits]]
producer-id = "toml-producer"
messages-per-second = 10
max-connections = 1
[[kafka.ws.proxy.consumer.limits.client-specific-limits]]
group-id = "toml-group"
batch-size = 50
"#,
            bootstrap()
        ),
    )
    .unwrap();
    let _proxy = Killed(
        Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
            .env_clear()
            .env("WSPROXY_SERVER_ID", unique("node"))
            .env("WSPROXY_SESSION_STATE_TOPIC", unique("wsproxy-test-sessions"))
            .arg("--config")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http(port, "GET", "/ready", &[]).await, Ok((200, _, _))) {
        assert!(Instant::now() < deadline, "proxy with --config did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = get_json(admin, "/admin/client/config").await;
    assert_eq!(
        all["producers"]["static"],
        json!([
            {"max-connections": 3, "messages-per-second": 0, "producer-id": "__DEFAULT__"},
            {"max-connections": 1, "messages-per-second": 10, "producer-id": "toml-producer"}
        ])
    );
    assert_eq!(all["consumers"]["static"][1], json!({"batch-size": 50, "group-id": "toml-group"}));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_dynamic_connection_limit_posted_on_one_node_limits_the_next_socket_on_another() {
    let configs = unique("dyncfg");
    let sessions = unique("sessions");
    let env = [("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"), ("WSPROXY_SESSION_STATE_TOPIC", sessions.as_str())];
    let (a, admin_a) = dynamic_proxy(&configs, &env).await;
    let (b, _) = dynamic_proxy(&configs, &env).await;
    let topic = unique("dynlimit");
    create_topic(&topic, 2).await;
    let client = unique("dyn-producer");
    let url = |p: &Proxy, instance: &str| {
        p.url(&format!("/socket/in?clientId={client}&instanceId={instance}&topic={topic}&valType=string"))
    };

    let cfg = json!({"producer-id": client, "max-connections": 1}).to_string();
    let (status, _, body) = call(admin_a, "POST", "/admin/client/config/producer", Some(&cfg), &[]).await;
    assert_eq!(status, 200, "{body}");
    let _first = connect(&url(&a, "one")).await;
    // Node B applies the record within its next fetch: wait until it refuses the second socket.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match tokio_tungstenite::connect_async(url(&b, "two")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                break String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned()
            }
            Ok((ws, _)) => drop(ws),
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "node B never applied the dynamic limit");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains(&format!("The max number of WebSockets for session {client} has been reached. Limit is 1")),
        "{body}"
    );

    // Raised to 2 through the admin API: the next socket is accepted, without a restart.
    let cfg = json!({"producer-id": client, "max-connections": 2}).to_string();
    let (status, _, _) =
        call(admin_a, "PUT", &format!("/admin/client/config/producer/{client}"), Some(&cfg), &[]).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio_tungstenite::connect_async(url(&b, "two")).await.is_err() {
        assert!(Instant::now() < deadline, "node B never applied the raised limit");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Consumer groups: a dynamic limit below the partitions wins.
    let group = unique("dyn-group");
    let cfg = json!({"group-id": group, "max-connections": 1}).to_string();
    assert_eq!(call(admin_a, "POST", "/admin/client/config/consumer", Some(&cfg), &[]).await.0, 200);
    let out = |p: &Proxy, c: &str| p.url(&format!("/socket/out?clientId={c}&groupId={group}&topic={topic}"));
    let _c1 = connect(&out(&a, "c1")).await;
    let (status, _, body) = refused(&out(&a, "c2")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Limit is 1"), "{body}");
}

/// M9: with `WSPROXY_ADMIN_ALLOWED_USERS` only the principals it names may use the admin API:
/// the Basic user when listed; when not, 403 with the reference's JSON body while the main
/// listener still serves it. An admin API without authentication on a non-loopback interface
/// is warned about at start (on 127.0.0.1 it is not).
#[tokio::test]
async fn m9_admin_api_only_for_allowed_users_and_a_warning_when_open_to_the_network() {
    let basic = |allowed: &'static str| {
        vec![
            ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
            ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
            ("WSPROXY_BASIC_AUTH_USERNAME", "admin"),
            ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
            ("WSPROXY_ADMIN_ALLOWED_USERS", allowed),
            ("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT", "false"),
        ]
    };
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:s3cret"));
    let auth = [("Authorization", good.as_str())];
    let (listed, listed_admin) = admin_proxy(&basic("ops, admin")).await;
    let (other, other_admin) = admin_proxy(&basic("ops")).await;
    for path in ["/admin/kafka/info", "/admin/client/config", "/admin/consumer-group/all"] {
        assert_eq!(call(listed_admin, "GET", path, None, &auth).await.0, 200, "{path}: the listed user");
        let (status, ct, body) = call(other_admin, "GET", path, None, &auth).await;
        assert_eq!((status, ct.as_str()), (403, "application/json"), "{path}: {body}");
        assert_eq!(body, "{\n  \"message\" : \"The authenticated user is not allowed to use the admin API.\"\n}");
        assert_eq!(call(other_admin, "GET", path, None, &[]).await.0, 401, "{path}: no credentials");
    }
    let (status, _, _) = call(other_admin, "DELETE", "/admin/consumer-group/some-group/offsets", None, &auth).await;
    assert_eq!(status, 403, "writes too");
    assert_eq!(http(other.port, "GET", "/healthcheck", &auth).await.unwrap().0, 200, "the main listener");
    assert!(other.log_text().contains("not in WSPROXY_ADMIN_ALLOWED_USERS"), "a refusal is logged");
    assert!(!other.log_text().contains("s3cret"));
    let metrics = http(other.port, "GET", "/metrics", &auth).await.unwrap().2;
    assert!(metrics.contains("wsproxy_auth_failures_total{reason=\"admin_not_allowed\"} 4"), "{metrics}");
    drop((listed, other));

    let warning = "the admin API listens on 0.0.0.0 without authentication";
    let (open, _) = admin_proxy(&[("WSPROXY_ADMIN_BIND_INTERFACE", "0.0.0.0")]).await;
    assert!(open.log_text().contains(warning), "{}", open.log_text());
    let (local, _) = admin_proxy(&[]).await;
    assert!(!local.log_text().contains("without authentication"), "{}", local.log_text());
}

/// M8: a dynamic consumer config caps the rate and batch size of an open socket (below what it
/// asked for) and the batch size of a new one, and its removal frees the open socket again. Checked from above
/// (a loaded machine only slows a socket down); "freed" as far faster than the cap allows.
#[tokio::test]
async fn m8_a_dynamic_consumer_limit_caps_open_and_new_sockets_and_its_removal_frees_them() {
    let cfg_topic = unique("dyncfg-consumer-rate");
    let (proxy, admin) = dynamic_proxy(&cfg_topic, &[]).await;
    let topic = unique("consumer-rate");
    create_topic(&topic, 1).await;
    let records: Vec<Value> =
        (0..600).map(|i| json!({"value": {"format": "string", "value": format!("v{i}")}})).collect();
    write_with_tool(&topic, &records);
    let (open_group, new_group) = (unique("open-g"), unique("new-g"));
    let url = |group: &str, extra: &str| {
        proxy.url(&format!("/socket/out?clientId={}&groupId={group}&topic={topic}&valType=string{extra}", unique("c")))
    };
    // Asks for 50 a second in frames of up to 20.
    let mut open = connect(&url(&open_group, "&rate=50&batchSize=20")).await;
    let mut got = 0;
    while got < 20 {
        got += records_in(&recv_json(&mut open).await);
    }
    // The open socket's group: 2 a second in frames of 2; the new socket's group: frames of 2.
    for cfg in [
        json!({"group-id": open_group, "messages-per-second": 2, "batch-size": 2}),
        json!({"group-id": new_group, "batch-size": 2}),
    ] {
        let cfg = cfg.to_string();
        assert_eq!(call(admin, "POST", "/admin/client/config/consumer", Some(&cfg), &[]).await.0, 200);
    }
    // What was on its way before the change.
    consumed_during(&mut open, Duration::from_secs(1)).await;
    let mut fresh = connect(&url(&new_group, "&rate=100&batchSize=20")).await;
    let span = Duration::from_secs(5);
    let ((open_n, open_frame), (new_n, new_frame)) =
        tokio::join!(consumed_during(&mut open, span), consumed_during(&mut fresh, span));

    assert_eq!(call(admin, "DELETE", &format!("/admin/client/config/consumer/{open_group}"), None, &[]).await.0, 200);
    consumed_during(&mut open, Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut freed = 0;
    while freed < 100 {
        freed += records_in(&recv_json(&mut open).await);
    }
    let freed_took = started.elapsed();
    eprintln!("in {span:?}: open socket capped at 2/s {open_n} (frames up to {open_frame}), new socket {new_n} (frames up to {new_frame}); after removal 100 records in {freed_took:?}");
    let most = 2 * span.as_secs() as usize + 2 + 2;
    assert!((1..=most).contains(&open_n), "the open socket got {open_n} records in {span:?} under a cap of 2/s");
    assert!(new_n > 0, "the new socket got nothing");
    assert!(open_frame <= 2 && new_frame <= 2, "frames of {open_frame} / {new_frame} records under a cap of 2");
    assert!(freed_took < Duration::from_secs(25), "after removal 100 records took {freed_took:?} (50 s at 2/s)");
    assert!(proxy.log_text().contains("changed on an open socket"));
}
