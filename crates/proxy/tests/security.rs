//! Security end to end: Basic auth on every endpoint, the proxy on the broker's SASL and SSL
//! listeners, per-socket Kafka credentials with ACLs, and no secret in any log line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::*;
use serde_json::Value;

const BASIC: [(&str, &str); 4] = [
    ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
    ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
    ("WSPROXY_BASIC_AUTH_USERNAME", "wsuser"),
    ("WSPROXY_BASIC_AUTH_PASSWORD", "ws-basic-secret"),
];

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{pass}")))
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn basic_auth_guards_sockets_and_http_endpoints() {
    let proxy = Proxy::start(&BASIC).await;
    let topic = unique("basic");
    create_topic(&topic, 1).await;
    let good = basic("wsuser", "ws-basic-secret");
    for path in ["/healthcheck", "/metrics", "/kafka/cluster/info"] {
        let (status, headers, body) = http(proxy.port, "GET", path, &[]).await.unwrap();
        assert_eq!(status, 401, "{path}");
        let challenge = headers.iter().find(|(k, _)| k == "www-authenticate").map(|(_, v)| v.as_str());
        assert_eq!(challenge, Some("Basic realm=\"Test Server\",charset=UTF-8"));
        assert_eq!(message(&body), "The resource requires authentication, which was not supplied with the request");
        let (status, _, body) =
            http(proxy.port, "GET", path, &[("Authorization", &basic("wsuser", "nope"))]).await.unwrap();
        assert_eq!((status, message(&body).as_str()), (401, "The supplied authentication is invalid"), "{path}");
        let (status, _, _) = http(proxy.port, "GET", path, &[("Authorization", &good)]).await.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let url = proxy.url(&format!("/socket/in?clientId=b&topic={topic}"));
    assert_eq!(connect_with(&url, NO_HEADERS).await.err().map(|e| e.0), Some(401));
    assert_eq!(connect_with(&url, &[("Authorization", basic("wsuser", "x"))]).await.err().map(|e| e.0), Some(401));
    let mut ws = connect_with(&url, &[("Authorization", good.clone())]).await.unwrap();
    send(&mut ws, record(None, "authorised", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    let out = proxy.url(&format!("/socket/out?clientId=b&topic={topic}"));
    assert_eq!(connect_with(&out, NO_HEADERS).await.err().map(|e| e.0), Some(401));

    assert!(!proxy.log_text().contains("ws-basic-secret"));
    // Refusals are counted by reason (never by credential).
    let (_, _, metrics) = http(proxy.port, "GET", "/metrics", &[("Authorization", &good)]).await.unwrap();
    assert!(metrics.contains("wsproxy_auth_failures_total{reason=\"basic_missing\"}"), "{metrics}");
    assert!(metrics.contains("wsproxy_auth_failures_total{reason=\"basic_invalid\"}"));
    assert!(!metrics.contains("ws-basic-secret") && !metrics.contains("wsuser:"));
    // The probes can be opened for orchestrators.
    let mut env = BASIC.to_vec();
    env.push(("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT", "false"));
    let open = Proxy::start(&env).await;
    assert_eq!(http(open.port, "GET", "/healthcheck", &[]).await.unwrap().0, 200);
    assert_eq!(http(open.port, "GET", "/ready", &[]).await.unwrap().0, 200);
    assert_eq!(http(open.port, "GET", "/metrics", &[]).await.unwrap().0, 401);
}

#[tokio::test]
async fn proxy_runs_on_the_sasl_listener_with_plain_and_scram() {
    for mechanism in ["PLAIN", "SCRAM-SHA-512"] {
        let env = sasl_env(mechanism, "admin", "admin-secret");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proxy = Proxy::start(&env).await;
        let topic = unique("sasl");
        create_topic(&topic, 1).await;
        let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=s&topic={topic}"))).await;
        send(&mut ws, record(None, mechanism, None)).await;
        assert_eq!(recv_json(&mut ws).await["offset"], 0, "{mechanism}");
        let group = unique("s-group");
        let mut out = connect(&proxy.url(&format!("/socket/out?clientId=s&groupId={group}&topic={topic}"))).await;
        assert_eq!(recv_json(&mut out).await["value"]["value"], mechanism);
        assert!(!proxy.log_text().contains("admin-secret"));
    }
}

#[tokio::test]
async fn wrong_proxy_credentials_stop_the_start_with_a_clear_error() {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .envs(sasl_env("SCRAM-SHA-512", "admin", "wrong-password-123"))
        .env("WSPROXY_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the proxy's credentials"), "{err}");
    assert!(err.contains("SASL_PLAINTEXT") && err.contains("SCRAM-SHA-512"), "{err}");
    assert!(!err.contains("wrong-password-123"), "the password leaked: {err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
}

#[tokio::test]
async fn proxy_runs_on_the_ssl_listener_with_a_pem_truststore() {
    let ca = project_root().join(".cache/kafka/tls/ca.pem");
    let ca = ca.to_str().unwrap();
    let proxy = Proxy::start(&[
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "127.0.0.1:9094"),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", ca),
    ])
    .await;
    let topic = unique("ssl");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=t&topic={topic}"))).await;
    send(&mut ws, record(None, "over tls", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    let mut out = connect(&proxy.url(&format!("/socket/out?clientId=t&topic={topic}"))).await;
    assert_eq!(recv_json(&mut out).await["value"]["value"], "over tls");

    // A truststore the password does not open is a configuration error, before any port is bound.
    let p12 = project_root().join(".cache/kafka/tls/broker.p12");
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "127.0.0.1:9094")
        .env("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL")
        .env("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", p12.to_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS: the password does not open this PKCS#12 store"));
}

#[tokio::test]
async fn per_socket_kafka_credentials_apply_the_users_acls() {
    let env = sasl_env("PLAIN", "admin", "admin-secret");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("RUST_LOG", "debug"));
    let proxy = Proxy::start(&env).await;
    let other = unique("acl-denied");
    create_topic(&other, 1).await;
    let alice = vec![("X-Kafka-Auth", BASE64.encode("alice:alice-secret"))];

    // alice may write acl-ok.
    let mut ws = connect_with(&proxy.url("/socket/in?clientId=alice&topic=acl-ok"), &alice).await.unwrap();
    send(&mut ws, record(None, "from alice", Some("a1"))).await;
    let r = recv_json(&mut ws).await;
    assert!(r["offset"].is_number(), "{r}");
    // ... but not another topic: 403 before the upgrade.
    let (status, body) = connect_with(&proxy.url(&format!("/socket/in?clientId=alice&topic={other}")), &alice)
        .await
        .expect_err("refused");
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("Not authorized"), "{body}");
    let (status, _) =
        connect_with(&proxy.url(&format!("/socket/out?clientId=alice&topic={other}")), &alice).await.err().unwrap();
    assert_eq!(status, 403);
    // Wrong password: 401. A malformed header: 400.
    let bad = vec![("X-Kafka-Auth", BASE64.encode("alice:not-her-password"))];
    let (status, _) = connect_with(&proxy.url("/socket/in?clientId=alice&topic=acl-ok"), &bad).await.err().unwrap();
    assert_eq!(status, 401);
    // A consume socket too (its group consumer's errors wait on its own queue: they used to go
    // unseen, and the socket waited out the probe and got 503).
    // (Another password: a refusal is remembered for 5 s, and the consumer must meet its own.)
    let bad_out = vec![("X-Kafka-Auth", BASE64.encode("alice:not-her-password-either"))];
    let t0 = std::time::Instant::now();
    let (status, body) =
        connect_with(&proxy.url("/socket/out?clientId=alice&topic=acl-ok"), &bad_out).await.err().unwrap();
    assert_eq!((status, message(&body).as_str()), (401, "Authentication failed: invalid Kafka credentials"), "{body}");
    println!("consume socket with refused X-Kafka-Auth: 401 after {:?}", t0.elapsed());
    let junk = vec![("X-Kafka-Auth", "%%%".to_owned())];
    let (status, body) = connect_with(&proxy.url("/socket/in?clientId=alice&topic=acl-ok"), &junk).await.err().unwrap();
    assert_eq!((status, message(&body).as_str()), (400, "The X-Kafka-Auth header must be base64(username:password)."));
    // Other sockets are unaffected: the proxy's own principal still writes `other`.
    let mut admin = connect(&proxy.url(&format!("/socket/in?clientId=admin&topic={other}"))).await;
    send(&mut admin, record(None, "from the proxy", None)).await;
    assert_eq!(recv_json(&mut admin).await["offset"], 0);
    send(&mut ws, record(None, "alice again", None)).await;
    assert!(recv_json(&mut ws).await["offset"].is_number());

    // One line per socket opened and closed, with who, where and how it ended.
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.log_text();
    let closed =
        log.lines().find(|l| l.contains("socket closed") && l.contains("client_id=\"alice\"")).expect("close line");
    for field in ["direction=in", "topic=acl-ok", "remote=127.0.0.1:", "duration_ms=", "records=2", "close_code=1000"] {
        assert!(closed.contains(field), "{field} missing in: {closed}");
    }
    assert!(log.lines().any(|l| l.contains("socket opened") && l.contains("client_id=\"alice\"")));
    // No secret in the (debug) log of the whole run.
    for secret in ["admin-secret", "alice-secret", "not-her-password", &BASE64.encode("alice:alice-secret")] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
}

#[tokio::test]
async fn tls_listener_serves_https_and_wss_to_real_clients() {
    let tls_dir = project_root().join(".cache/kafka/tls");
    let (cert, key, ca) = (tls_dir.join("broker.pem"), tls_dir.join("broker.key"), tls_dir.join("ca.pem"));
    let tls_port = free_port().to_string();
    let proxy = Proxy::start(&[
        ("WSPROXY_SSL_ENABLED", "true"),
        ("WSPROXY_SSL_PORT", &tls_port),
        ("WSPROXY_SSL_CERTIFICATE_LOCATION", cert.to_str().unwrap()),
        ("WSPROXY_SSL_PRIVATE_KEY_LOCATION", key.to_str().unwrap()),
    ])
    .await;
    let topic = unique("tls");
    create_topic(&topic, 1).await;
    // curl verifies the chain against the test CA.
    let out = Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap(), &format!("https://127.0.0.1:{tls_port}/healthcheck")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{ \"response\": \"I'm healthy\" }", "{out:?}");
    // Python's websockets produces over wss://.
    let url = format!("wss://127.0.0.1:{tls_port}/socket/in?clientId=tls&topic={topic}");
    let out = produce_over_wss(&url, ca.to_str().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((result["clientMessageId"].as_str(), result["offset"].as_i64()), (Some("t1"), Some(0)));
    assert_eq!(read_back(&topic, 1, "raw", "string")[0]["value"], "over wss");
    // A client that does not trust the CA is refused; the plain listener still serves.
    let out =
        Command::new("curl").args(["-sS", &format!("https://127.0.0.1:{tls_port}/healthcheck")]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap().0, 200);

    // Missing key file: a configuration error before binding.
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
        .env("WSPROXY_SSL_ENABLED", "true")
        .env("WSPROXY_SSL_PORT", free_port().to_string())
        .env("WSPROXY_SSL_CERTIFICATE_LOCATION", cert.to_str().unwrap())
        .env("WSPROXY_SSL_PRIVATE_KEY_LOCATION", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WSPROXY_SSL_PRIVATE_KEY_LOCATION"));
}

#[tokio::test]
async fn allowed_origins_stop_cross_site_websocket_hijacking() {
    let proxy =
        Proxy::start(&[("WSPROXY_ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com")]).await;
    let topic = unique("origin");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=o&topic={topic}"));
    let (status, body) =
        connect_with(&url, &[("Origin", "https://evil.example.net".to_owned())]).await.expect_err("refused");
    assert_eq!(status, 403);
    assert_eq!(message(&body), "Origin 'https://evil.example.net' is not allowed to open sockets on this proxy.");
    let out = proxy.url(&format!("/socket/out?clientId=o&topic={topic}"));
    assert_eq!(
        connect_with(&out, &[("Origin", "https://app.example.com.evil".to_owned())]).await.err().map(|e| e.0),
        Some(403)
    );
    // An allowed browser origin, and a non-browser client without Origin, get through.
    let mut ws = connect_with(&url, &[("Origin", "https://admin.example.com".to_owned())]).await.unwrap();
    send(&mut ws, record(None, "from the app", None)).await;
    assert_eq!(recv_json(&mut ws).await["offset"], 0);
    assert!(connect_with(&url, NO_HEADERS).await.is_ok());
}

/// Review of M4: a transactional socket whose `X-Kafka-Auth` Kafka refuses gets 401 (it got 503
/// after the whole `init_transactions` wait), and the refusal is remembered like a failed
/// probe's: the next attempt with the same credentials is answered at once, without another
/// Kafka client holding a blocking-pool thread.
#[tokio::test]
async fn a_transactional_socket_with_refused_kafka_credentials_gets_401_and_is_remembered() {
    let env = sasl_env("PLAIN", "admin", "admin-secret");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"), ("WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED", "true")]);
    let proxy = Proxy::start(&env).await;
    let bad = vec![("X-Kafka-Auth", BASE64.encode("alice:not-her-password-txn"))];
    let url = proxy.url("/socket/in?clientId=alice-txn&instanceId=i1&topic=acl-ok&transactional=true");
    let (status, body) = connect_with(&url, &bad).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    let started = Instant::now();
    let (status, body) = connect_with(&url, &bad).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    // A wide bound: the first attempt waited for Kafka's refusal, this one must not.
    assert!(started.elapsed() < Duration::from_secs(5), "the second refusal took {:?}", started.elapsed());
    // The proxy's own transactional sockets are unaffected.
    let topic = unique("txn-after-refusal");
    create_topic(&topic, 1).await;
    let mut ws =
        connect(&proxy.url(&format!("/socket/in?clientId=admin-txn&instanceId=i1&topic={topic}&transactional=true")))
            .await;
    send(&mut ws, record(None, "committed", Some("t1"))).await;
    let r = recv_json(&mut ws).await;
    assert!(r["offset"].is_number(), "{r}");
}
