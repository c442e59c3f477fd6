//! Java keystores and truststores end to end (issue 17): the TLS listener from a JKS, PKCS#12
//! and PEM keystore (Python websockets over wss://), the Kafka client with JKS, PKCS#12 and PEM
//! truststores on the broker's SSL listener, mutual TLS to the broker's mTLS listener with a
//! client certificate from a JKS and a PKCS#12 keystore, and clear start-up errors for a wrong
//! password or a truststore that does not trust the broker. What landed is read back with the
//! independent Python client. The stores are made by `scripts/kafka` (in `.cache/kafka/tls`).
//!
//! `KAFKA_SSL_BOOTSTRAP` and `KAFKA_MTLS_BOOTSTRAP` name the broker's SSL and mTLS listeners
//! (default 127.0.0.1:9094 and 127.0.0.1:9096, the shared broker's).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PASS: &str = "wsproxy-test";

fn tls_dir() -> PathBuf {
    project_root().join(".cache/kafka/tls")
}

fn store(name: &str) -> String {
    tls_dir().join(name).to_str().unwrap().to_owned()
}

fn ssl_bootstrap() -> String {
    std::env::var("KAFKA_SSL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9094".to_owned())
}

fn mtls_bootstrap() -> String {
    std::env::var("KAFKA_MTLS_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9096".to_owned())
}

/// The log without the harness's topic names (`wsproxy-test-sessions-...`), which contain the
/// test stores' password.
fn without_test_topics(log: &str) -> String {
    log.replace("wsproxy-test-", "")
}

/// One record produced through the proxy's plain listener, then read back independently.
async fn produce_and_read_back(proxy: &Proxy, what: &str) {
    let topic = unique("keystore");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId=ks&topic={topic}"))).await;
    send(&mut ws, record(None, what, Some("m1"))).await;
    let ack = recv_json(&mut ws).await;
    assert_eq!(ack["offset"], 0, "{what}: {ack}");
    assert_eq!(read_back(&topic, 1, "raw", "string")[0]["value"], what);
    let mut out = connect(&proxy.url(&format!("/socket/out?clientId=ks&topic={topic}&autoCommit=false"))).await;
    assert_eq!(recv_json(&mut out).await["value"]["value"], what, "{what}: consumed back through the proxy");
}

/// The proxy binary with only these variables; (exit code, stderr), within a bound.
fn run_proxy(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let t0 = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"));
    cmd.env_clear().env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap()).env("WSPROXY_LOG_ANSI_OFF", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(90), "took {:?}", t0.elapsed());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.code(), text)
}

#[tokio::test]
async fn the_tls_listener_serves_wss_from_jks_pkcs12_and_pem_keystores() {
    let pem = std::env::temp_dir().join(format!("wsproxy-broker-{}.pem", std::process::id()));
    let both = [std::fs::read(store("broker.pem")).unwrap(), std::fs::read(store("broker.key")).unwrap()].concat();
    std::fs::write(&pem, both).unwrap();
    for keystore in [store("broker.jks"), store("broker.p12"), pem.to_str().unwrap().to_owned()] {
        let tls_port = free_port().to_string();
        let proxy = Proxy::start(&[
            ("WSPROXY_SSL_ENABLED", "true"),
            ("WSPROXY_SSL_PORT", &tls_port),
            ("WSPROXY_SSL_KEYSTORE_LOCATION", &keystore),
            ("WSPROXY_SSL_KEYSTORE_PASS", PASS),
        ])
        .await;
        let topic = unique("wss");
        create_topic(&topic, 1).await;
        let url = format!("wss://127.0.0.1:{tls_port}/socket/in?clientId=tls&topic={topic}");
        let out = produce_over_wss(&url, &store("ca.pem"));
        assert!(out.status.success(), "{keystore}: {}", String::from_utf8_lossy(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["offset"], 0, "{keystore}: {result}");
        assert_eq!(read_back(&topic, 1, "raw", "string")[0]["value"], "over wss", "{keystore}");
        assert!(!without_test_topics(&proxy.log_text()).contains(PASS), "{keystore}: the password is in the log");
        // The listener's certificates are exported with their expiry time.
        let (_, _, metrics) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("wsproxy_tls_certificate_expiry_timestamp_seconds") && l.contains("CN=localhost"))
            .unwrap_or_else(|| panic!("{keystore}: no expiry metric in {metrics}"));
        let end: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(end > now + 30.0 * 86_400.0, "{line}");
    }
    let _ = std::fs::remove_file(pem);
}

#[tokio::test]
async fn the_kafka_client_trusts_the_broker_through_jks_pkcs12_and_pem_truststores() {
    for (truststore, kind) in [("truststore.jks", "JKS"), ("truststore.p12", "PKCS12"), ("ca.pem", "PEM")] {
        let path = store(truststore);
        let proxy = Proxy::start(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", &ssl_bootstrap()),
            ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &path),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", PASS),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE", kind),
        ])
        .await;
        produce_and_read_back(&proxy, &format!("trusted through {truststore}")).await;
    }
}

#[tokio::test]
async fn mutual_tls_to_the_broker_with_a_client_certificate_from_jks_and_pkcs12() {
    let key_line = std::fs::read_to_string(store("client.key")).unwrap().lines().nth(2).unwrap().to_owned();
    for keystore in ["client.jks", "client.p12"] {
        let proxy = Proxy::start(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", &mtls_bootstrap()),
            ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &store("truststore.jks")),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", PASS),
            ("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION", &store(keystore)),
            ("WSPROXY_KAFKA_SSL_KEYSTORE_PASS", PASS),
            ("WSPROXY_KAFKA_SSL_KEY_PASS", PASS),
            ("RUST_LOG", "debug"),
        ])
        .await;
        produce_and_read_back(&proxy, &format!("mutual tls with {keystore}")).await;
        let log = without_test_topics(&proxy.log_text());
        assert!(!log.contains(&key_line), "{keystore}: the private key is in the log");
        assert!(!log.contains(PASS), "{keystore}: the password is in the log");
    }
    // Without a client certificate the mTLS listener refuses the proxy: no start.
    let (code, text) = run_proxy(&[
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", &mtls_bootstrap()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &store("truststore.jks")),
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", PASS),
        ("WSPROXY_BROKER_RESOLUTION_RETRIES", "2"),
        ("WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL", "1 second"),
    ]);
    assert_eq!(code, Some(1), "{text}");
}

#[tokio::test]
async fn wrong_passwords_stop_the_start_naming_the_setting() {
    let listener = |keystore: &str, pass: &str| {
        run_proxy(&[
            ("WSPROXY_SSL_ENABLED", "true"),
            ("WSPROXY_SSL_PORT", &free_port().to_string()),
            ("WSPROXY_SSL_KEYSTORE_LOCATION", &store(keystore)),
            ("WSPROXY_SSL_KEYSTORE_PASS", pass),
        ])
    };
    for keystore in ["broker.jks", "broker.p12"] {
        let (code, text) = listener(keystore, "not-the-password");
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("WSPROXY_SSL_KEYSTORE_PASS: the password does not open this"), "{text}");
        assert!(!text.contains("not-the-password"), "the password leaked: {text}");
    }
    let (code, text) = listener("no-such-keystore.p12", PASS);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("WSPROXY_SSL_KEYSTORE_LOCATION: cannot read"), "{text}");
    let (code, text) = listener("truststore.jks", PASS);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("WSPROXY_SSL_KEYSTORE_LOCATION: this JKS store has no private key entry"), "{text}");

    let kafka = |extra: &[(&'static str, &'static str)]| {
        let mut env = vec![
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", ssl_bootstrap()),
            ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL".to_owned()),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", store("truststore.p12")),
            ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", PASS.to_owned()),
            ("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION", store("client.jks")),
            ("WSPROXY_KAFKA_SSL_KEYSTORE_PASS", PASS.to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_proxy(&env)
    };
    for (setting, wrong) in [
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", "bad-trust-pass"),
        ("WSPROXY_KAFKA_SSL_KEYSTORE_PASS", "bad-store-pass"),
        ("WSPROXY_KAFKA_SSL_KEY_PASS", "bad-key-pass"),
    ] {
        let (code, text) = kafka(&[(setting, wrong)]);
        assert_eq!(code, Some(2), "{setting}: {text}");
        assert!(text.contains(&format!("{setting}: the password does not")), "{setting}: {text}");
        assert!(!text.contains(wrong), "the password leaked: {text}");
    }
    let (code, text) = kafka(&[("WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS", "nobody")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS: this JKS store has no private key entry named 'nobody' (its key entries: wsproxy-client)"), "{text}");
}

#[tokio::test]
async fn a_truststore_that_does_not_trust_the_broker_fails_the_start_clearly() {
    // A truststore of another CA (the keystore module's fixtures).
    let other = project_root().join("crates/proxy/src/keystore/testdata/trust.jks");
    let t0 = Instant::now();
    let (code, text) = run_proxy(&[
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", &ssl_bootstrap()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", other.to_str().unwrap()),
        ("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS", "store-pass"),
        ("WSPROXY_BROKER_RESOLUTION_RETRIES", "2"),
        ("WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL", "1 second"),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
}
