//! The test bed itself: the broker is real Apache Kafka, the independent client reads what
//! rdkafka wrote, and the binary behaves as a process should (flags, config errors, signals).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::test]
async fn rdkafka_round_trip_through_the_real_broker_read_by_an_independent_client() {
    let info = kafka_tool(&["version"], "");
    println!("independent client and broker: {info}");
    let topic = unique("testbed");
    create_topic(&topic, 2).await;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap()).set("acks", "all").create().unwrap();
    for i in 0..10 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        producer.send(FutureRecord::to(&topic).key(&k).payload(&v), Duration::from_secs(10)).await.unwrap();
    }
    let got = read_back(&topic, 10, "string", "string");
    assert_eq!(got.len(), 10);
    let mut values: Vec<String> = got.iter().map(|r| r["value"].as_str().unwrap().to_owned()).collect();
    values.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    for r in &got {
        assert_eq!(r["key"].as_str().unwrap()[1..], r["value"].as_str().unwrap()[1..]);
    }
}

#[test]
fn version_and_help_list_every_flag() {
    let bin = env!("CARGO_BIN_EXE_kafka-websocket-proxy");
    let v = Command::new(bin).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("kafka-websocket-proxy {}", env!("CARGO_PKG_VERSION"))
    );
    let h = String::from_utf8(Command::new(bin).arg("--help").output().unwrap().stdout).unwrap();
    for flag in
        ["--bootstrap-hosts", "--port", "--bind", "--server-id", "--demo", "--demo-topics", "--help-env", "--version"]
    {
        assert!(h.contains(flag), "--help lacks {flag}:\n{h}");
    }
    let env = String::from_utf8(Command::new(bin).arg("--help-env").output().unwrap().stdout).unwrap();
    for var in ["WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "WSPROXY_PORT", "WSPROXY_SERVER_ID", "WSPROXY_CH_MAX_STACK_SIZE"] {
        assert!(env.contains(var), "--help-env lacks {var}");
    }
}

#[test]
fn invalid_configuration_names_every_bad_key_and_exits_2_before_binding() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_PORT", "70000")
        .env("WSPROXY_CH_MAX_STACK_SIZE", "lots")
        .env("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", "3 fortnights")
        .env("WSPROXY_BIND_INTERFACE", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "WSPROXY_PORT",
        "WSPROXY_CH_MAX_STACK_SIZE",
        "WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL",
        "WSPROXY_KAFKA_BOOTSTRAP_HOSTS",
    ] {
        assert!(err.contains(key), "stderr does not name {key}:\n{err}");
    }
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn unreachable_kafka_fails_start_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", format!("127.0.0.1:{}", free_port()))
        .env("WSPROXY_BROKER_RESOLUTION_RETRIES", "2")
        .env("WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL", "100ms")
        .env("WSPROXY_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not reachable after 2 attempts"), "{err}");
}

#[tokio::test]
async fn healthcheck_is_the_reference_body_and_sigterm_stops_cleanly() {
    let mut proxy = Proxy::start(&[]).await;
    let (status, headers, body) = http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "{ \"response\": \"I'm healthy\" }");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    let (status, _, body) = http(proxy.port, "GET", "/no/such/path", &[]).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (404, "{\n  \"message\" : \"This is not the resource you are looking for.\"\n}")
    );
    let (status, _, body) = http(proxy.port, "POST", "/healthcheck", &[]).await.unwrap();
    assert_eq!(status, 405, "{body}");
    let (status, _, body) = http(proxy.port, "GET", "/ready", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http(proxy.port, "GET", "/kafka/cluster/info", &[]).await.unwrap();
    assert_eq!(status, 200);
    let brokers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(brokers[0]["port"], 9092, "{body}");
    assert!(brokers[0].get("rack").is_some());

    let status = proxy.signal_and_wait("TERM", Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", proxy.log_text());
    assert!(proxy.log_text().contains("stopped"));
}

/// The SASL and SSL listeners of `scripts/kafka` work and enforce ACLs, for the security tests.
#[tokio::test]
async fn broker_sasl_acl_and_ssl_listeners_work() {
    require_kafka();
    let ca = project_root().join(".cache/kafka/tls/ca.pem");
    let send = |extra: &[(&str, &str)], topic: &'static str| {
        let mut cfg = ClientConfig::new();
        cfg.set("message.timeout.ms", "8000");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let p: FutureProducer = cfg.create().unwrap();
        async move { p.send(FutureRecord::<(), _>::to(topic).payload("x"), Duration::from_secs(10)).await.map(|_| ()) }
    };
    let sasl = |mech: &'static str, user: &'static str, pass: &'static str| {
        [
            ("bootstrap.servers", "127.0.0.1:9093"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", mech),
            ("sasl.username", user),
            ("sasl.password", pass),
        ]
    };
    assert!(send(&sasl("SCRAM-SHA-512", "alice", "alice-secret"), "acl-ok").await.is_ok());
    let denied = send(&sasl("PLAIN", "alice", "alice-secret"), "acl-denied-topic").await;
    assert!(denied.is_err(), "alice may only write acl-ok");
    assert!(send(&sasl("PLAIN", "admin", "admin-secret"), "acl-ok").await.is_ok());
    let ssl = [
        ("bootstrap.servers", "127.0.0.1:9094"),
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.to_str().unwrap()),
    ];
    assert!(send(&ssl, "acl-ok").await.is_ok());
}

/// The README's first command: `--demo` serves produce and consume with an in-process cluster.
#[tokio::test]
async fn demo_mode_produces_and_consumes_without_a_broker() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .args(["--demo", "--demo-topics", "demo,other", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(http(port, "GET", "/healthcheck", &[]).await, Ok((200, _, _))) {
        assert!(std::time::Instant::now() < deadline, "demo did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = |p: &str| format!("ws://127.0.0.1:{port}{p}");
    let mut ws = connect(&url("/socket/in?clientId=demo&topic=demo&keyType=string&valType=string")).await;
    send(&mut ws, record(Some("k1"), "hello", Some("m1"))).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(
        (r["topic"].clone(), r["clientMessageId"].clone()),
        (serde_json::json!("demo"), serde_json::json!("m1"))
    );
    let mut ws = connect(&url("/socket/out?clientId=reader&topic=demo&keyType=string&valType=string")).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(r["value"]["value"], "hello");
    assert_eq!(r["key"]["value"], "k1");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("ws://127.0.0.1:{port}/socket/in?clientId=demo&topic=demo")), "{printed}");
}

#[tokio::test]
async fn json_log_format_writes_one_object_per_line() {
    let proxy = Proxy::start(&[("WS_PROXY_USE_JSON_LOG_FORMAT", "true")]).await;
    let log = proxy.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
}

/// The book's configuration chapter carries the table `--help-env` prints (`scripts/config-table`
/// writes it there).
#[test]
fn book_configuration_table_matches_the_code() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy")).arg("--help-env").output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let chapter = std::fs::read_to_string(project_root().join("docs/src/configuration.md")).unwrap();
    let start =
        chapter.find("<!-- config-table:start -->\n").expect("start marker") + "<!-- config-table:start -->\n".len();
    let end = chapter.find("<!-- config-table:end -->").expect("end marker");
    assert_eq!(&chapter[start..end], table, "the book's configuration table drifted: run scripts/config-table");
}

#[test]
fn config_file_env_and_flags_layer_and_print_config_masks_secrets() {
    let dir = std::env::temp_dir().join(format!("wsproxy-print-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "[kafka.ws.proxy.server]\nport = 9100\nserver-id = \"from-file\"\n[server.basic-auth]\nenabled = true\nrealm = \"r\"\nusername = \"u\"\npassword = \"file-secret-pw\"\n[kafka-client]\nbootstrap-hosts = \"file:9092\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .args(["--config", file.to_str().unwrap(), "--print-config", "--server-id", "from-flag"])
        .env_clear()
        .env("WSPROXY_PORT", "9200")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("\"server.port\" = \"9200\""), "env overrides the file:\n{printed}");
    assert!(printed.contains("\"server.server-id\" = \"from-flag\""), "flags override env and file");
    assert!(printed.contains("\"kafka-client.bootstrap-hosts\" = \"file:9092\""));
    assert!(printed.contains("\"server.basic-auth.password\" = \"***\""));
    assert!(!printed.contains("file-secret-pw"));

    std::fs::write(&file, "[server]\nport = \"not a port\"\nmystery = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .args(["--config", file.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key 'server.mystery'"));
}
