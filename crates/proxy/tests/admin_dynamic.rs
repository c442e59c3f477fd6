//! The admin API's dynamic configs end to end: add, update and delete with the reference's
//! answers, the dynamic config topic shared by several nodes, records in the Scala proxy's
//! format written and read by the independent client, and readiness after loading.
//!
//! Every test uses its own dynamic config topic and consumer group names.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use serde_json::{json, Value};

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
