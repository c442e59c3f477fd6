//! The admin API's listener end to end (reference section 3 and its AdminRoutesSpec, 5.5):
//! proxy processes with their admin listener on their own ports, plain HTTP over real
//! sockets; static configs, authentication, allowed users, HTTPS, and bad settings.
//!
//! Dynamic configs are in `admin_dynamic.rs`, consumer groups in `admin_groups.rs`, limits
//! applied to open sockets in `admin_rates.rs`; the shared helpers in `common/admin.rs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::admin::*;
use common::*;
use serde_json::{json, Value};

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
