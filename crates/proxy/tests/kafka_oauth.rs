//! SASL OAUTHBEARER against a real broker and the real identity provider (issue 17 part 2):
//! the proxy's own identity (client-credentials grant), and a socket's own bearer token as its
//! Kafka identity (`WSPROXY_JWT_KAFKA_OAUTHBEARER`), under the broker's ACLs.
//!
//! The test bed is `scripts/kafka-oauth`: the provider on 127.0.0.1:19710 and a private broker
//! whose OAUTH listener (19705) validates tokens against the provider's JWKS; its PLAINTEXT
//! listener (19700, anonymous super user) is where the independent client checks what landed.
//! ACLs (scripts/kafka): token subject `kafka-writer` may write and read topic `oauth-ok`,
//! `wsproxy-kafka` (the proxy) is a super user, any other subject may do nothing.
//!
//! SASL extensions: the broker's OAUTHX listener (19706) refuses a client unless its extensions
//! hold `logicalCluster=lkc-wsproxy` and `identityPoolId=pool-wsproxy` (a validator of the test
//! bed's, scripts/kafka-oauth-ext/; Kafka's own accepts any), and makes clients re-authenticate
//! every 5 s, so a refreshed token that lost its extensions is refused too.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::oidc::{bearer, closed, oidc_env, produce_one, start_proxy, Idp};
use common::{kafka_tool_with, open_with, project_root, record, recv_json, send, unique, Proxy, NO_HEADERS};
use serde_json::{json, Value};

const PLAIN: &str = "127.0.0.1:19700";
const OAUTH: &str = "127.0.0.1:19705";
const OAUTHX: &str = "127.0.0.1:19706";
const IDP_PORT: u16 = 19710;

/// Starts the test bed once per test binary. `false` (after a loud message) only when the
/// machine lacks what it needs (node, java, or javac for the extension-checking validator); any
/// other failure fails the test.
fn test_bed() -> bool {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        let out = Command::new(project_root().join("scripts/kafka-oauth")).arg("start").output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(e.to_string()),
        }
    });
    match started {
        Ok(()) => true,
        Err(e) => {
            let missing: Vec<&str> = ["node", "java", "javac"]
                .into_iter()
                .filter(|t| {
                    !Command::new("sh").args(["-c", &format!("command -v {t}")]).status().is_ok_and(|s| s.success())
                })
                .collect();
            assert!(!missing.is_empty(), "scripts/kafka-oauth start failed:\n{e}");
            eprintln!("SKIPPED: the OAUTHBEARER test bed cannot start here (missing {missing:?}):\n{e}");
            false
        }
    }
}

/// The test bed's provider (not owned: dropping it stops nothing).
fn idp() -> Idp {
    let keys = std::env::temp_dir().join(format!("wsproxy-oauth-unused-{}.json", std::process::id()));
    Idp { child: None, port: IDP_PORT, keys }
}

/// The proxy's own OAUTHBEARER identity on the OAUTH listener, in the reference's JAAS form.
fn own_identity_env(idp: &Idp) -> Vec<(&'static str, String)> {
    vec![
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", OAUTH.to_owned()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        (
            "WSPROXY_KAFKA_SASL_JAAS_CFG",
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             clientId=\"wsproxy-kafka\" clientSecret=\"test-client-secret\" ;"
                .to_owned(),
        ),
        ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", format!("{}/token", idp.issuer())),
        ("WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka".to_owned()),
    ]
}

fn tool(args: &[&str], stdin: &str) -> String {
    kafka_tool_with(args, stdin, &[("KAFKA_BOOTSTRAP", PLAIN)])
}

/// The string values of `topic`'s first `n` records, read by the independent client.
fn values_in(topic: &str, n: usize) -> Vec<String> {
    tool(&["consume", topic, &n.to_string(), "30", "string", "string"], "")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["value"].as_str().map(str::to_owned))
        .collect()
}

/// Reads frames until one holds `value` (a consume socket also gets older records).
async fn receive_value(ws: &mut common::Ws, value: &str) {
    let within = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(within, recv_json(ws)).await.expect("no record in 60 s");
        let items = frame.as_array().cloned().unwrap_or_else(|| vec![frame.clone()]);
        if items.iter().any(|r| r["value"]["value"] == json!(value)) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_oauthbearer_identity_produces_and_consumes() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    let topic = unique("oauth-own");
    tool(&["create", &topic, "1"], "");
    let env = own_identity_env(&idp);
    let proxy = start_proxy(&env).await;
    let value = unique("own");
    let mut ws = open_with(&proxy.url(&format!("/socket/in?clientId=oauth-own&topic={topic}")), NO_HEADERS)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.log_text()));
    produce_one(&mut ws, &value).await;
    assert_eq!(values_in(&topic, 1), vec![value.clone()], "what landed in Kafka");
    let url = format!("/socket/out?clientId=oauth-own-c&groupId={}&topic={topic}&autoCommit=false", unique("g"));
    let mut out = open_with(&proxy.url(&url), NO_HEADERS).await.unwrap_or_else(|e| panic!("{e:?}"));
    receive_value(&mut out, &value).await;
    let log = proxy.log_text();
    assert!(!log.contains("test-client-secret"), "the client secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_config_masks_the_client_secret() {
    let idp = idp();
    let env = own_identity_env(&idp);
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .arg("--print-config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("sasl.oauthbearer.token.endpoint.url"), "{text}");
    assert!(!text.contains("test-client-secret"), "{text}");
}

/// A proxy whose sockets use their own bearer token as their Kafka identity.
async fn token_proxy(idp: &Idp) -> Proxy {
    let mut env = oidc_env(idp, &[("WSPROXY_JWT_KAFKA_OAUTHBEARER", "true")]);
    env.extend(own_identity_env(idp));
    start_proxy(&env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tokens_on_one_topic_get_what_the_acls_give_their_subjects() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    let proxy = token_proxy(&idp).await;
    let writer = idp.mint("rsa", json!({"sub": "kafka-writer"}), json!({})).await;
    let stranger = idp.mint("rsa", json!({"sub": "kafka-stranger"}), json!({})).await;

    let value = unique("by-writer");
    let mut ws = open_with(&proxy.url("/socket/in?clientId=oauth-writer&topic=oauth-ok"), &bearer(&writer))
        .await
        .unwrap_or_else(|e| panic!("the writer's socket: {e:?}\n{}", proxy.log_text()));
    send(&mut ws, record(None, &value, None)).await;
    let answer = recv_json(&mut ws).await;
    let offset = answer["offset"].as_u64().unwrap_or_else(|| panic!("{answer}"));

    let refused = open_with(&proxy.url("/socket/in?clientId=oauth-stranger&topic=oauth-ok"), &bearer(&stranger)).await;
    match refused {
        Err((403, _, body)) => assert!(body.contains("oauth-ok"), "{body}"),
        Err(other) => panic!("expected 403 for the stranger's socket, got {other:?}"),
        Ok(_) => panic!("the stranger's socket was upgraded"),
    }
    let url = format!("/socket/out?clientId=oauth-stranger-c&groupId={}&topic=oauth-ok", unique("g"));
    assert!(matches!(open_with(&proxy.url(&url), &bearer(&stranger)).await, Err((403, _, _))));

    // The writer reads it back through the proxy, and it is in Kafka.
    let url = format!("/socket/out?clientId=oauth-writer-c&groupId={}&topic=oauth-ok&autoCommit=false", unique("g"));
    let mut out = open_with(&proxy.url(&url), &bearer(&writer)).await.unwrap_or_else(|e| panic!("{e:?}"));
    receive_value(&mut out, &value).await;
    let landed = values_in("oauth-ok", offset as usize + 1);
    assert_eq!(landed.get(offset as usize), Some(&value), "the writer's record in Kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_token_expires_is_closed_1008() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    let proxy = token_proxy(&idp).await;
    let exp = common::oidc::now() + 8;
    let short = idp.mint("rsa", json!({"sub": "kafka-writer", "exp": exp}), json!({})).await;
    let mut ws = open_with(&proxy.url("/socket/in?clientId=oauth-short&topic=oauth-ok"), &bearer(&short))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.log_text()));
    produce_one(&mut ws, &unique("short")).await;
    let (code, _) = closed(&mut ws, Duration::from_secs(60)).await;
    assert_eq!(code, 1008);
}

/// The proxy's own identity `client` on the OAUTHX listener, with the extension
/// `identityPoolId=pool-wsproxy` from the setting and `logicalCluster` (when given) from the
/// JAAS line, as a Java client's configuration carries it.
fn extensions_env(idp: &Idp, client: &str, logical_cluster: Option<&str>) -> Vec<(&'static str, String)> {
    let extension = logical_cluster.map_or(String::new(), |l| format!(" extension_logicalCluster=\"{l}\""));
    vec![
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", OAUTHX.to_owned()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER".to_owned()),
        (
            "WSPROXY_KAFKA_SASL_JAAS_CFG",
            format!(
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 clientId=\"{client}\" clientSecret=\"test-client-secret\"{extension} ;"
            ),
        ),
        ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", format!("{}/token", idp.issuer())),
        ("WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka".to_owned()),
        ("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS", "identityPoolId=pool-wsproxy".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_extensions_reach_the_broker_for_the_proxys_identity_and_a_clients_token() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    let topic = unique("oauth-ext");
    tool(&["create", &topic, "1"], "");
    let proxy = start_proxy(&extensions_env(&idp, "wsproxy-kafka", Some("lkc-wsproxy"))).await;
    let value = unique("ext");
    let mut ws = open_with(&proxy.url(&format!("/socket/in?clientId=oauth-ext&topic={topic}")), NO_HEADERS)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.log_text()));
    produce_one(&mut ws, &value).await;
    assert_eq!(values_in(&topic, 1), vec![value.clone()], "what landed in Kafka");
    let url = format!("/socket/out?clientId=oauth-ext-c&groupId={}&topic={topic}&autoCommit=false", unique("g"));
    let mut out = open_with(&proxy.url(&url), NO_HEADERS).await.unwrap_or_else(|e| panic!("{e:?}"));
    receive_value(&mut out, &value).await;
    drop((ws, out, proxy));

    // A socket's own token goes to Kafka with the same extensions.
    let mut env = oidc_env(&idp, &[("WSPROXY_JWT_KAFKA_OAUTHBEARER", "true")]);
    env.extend(extensions_env(&idp, "wsproxy-kafka", Some("lkc-wsproxy")));
    let proxy = start_proxy(&env).await;
    let writer = idp.mint("rsa", json!({"sub": "kafka-writer"}), json!({})).await;
    let value = unique("ext-writer");
    let mut ws = open_with(&proxy.url("/socket/in?clientId=oauth-ext-writer&topic=oauth-ok"), &bearer(&writer))
        .await
        .unwrap_or_else(|e| panic!("the writer's socket: {e:?}\n{}", proxy.log_text()));
    send(&mut ws, record(None, &value, None)).await;
    let answer = recv_json(&mut ws).await;
    let offset = answer["offset"].as_u64().unwrap_or_else(|| panic!("{answer}"));
    let landed = values_in("oauth-ok", offset as usize + 1);
    assert_eq!(landed.get(offset as usize), Some(&value), "the writer's record in Kafka");
}

/// The proxy binary with `env`: (exit code, output), within a bound.
fn run_proxy(env: &[(&'static str, String)]) -> (Option<i32>, String) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_LOG_ANSI_OFF", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(90), "took {:?}", t0.elapsed());
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_extension_is_refused_by_the_broker_at_start() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    for logical_cluster in [Some("lkc-other"), None] {
        let (code, text) = run_proxy(&extensions_env(&idp, "wsproxy-kafka", logical_cluster));
        assert!(code.is_some_and(|c| c != 0), "{logical_cluster:?}: the proxy started\n{text}");
        assert!(text.contains("refused the proxy's credentials"), "{logical_cluster:?}: {text}");
        assert!(text.contains("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS"), "{text}");
        // The broker's reason, relayed by librdkafka, names the extension.
        assert!(text.contains("logicalCluster"), "{logical_cluster:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_tokens_keep_their_extensions() {
    if !test_bed() {
        return;
    }
    let idp = idp();
    let topic = unique("oauth-ext-refresh");
    tool(&["create", &topic, "1"], "");
    // 12 s tokens, fetched again at 70% of their lifetime; the broker re-authenticates every
    // connection every 5 s with the client's current token and extensions.
    let proxy = start_proxy(&extensions_env(&idp, "wsproxy-kafka-short", Some("lkc-wsproxy"))).await;
    let url = format!("/socket/out?clientId=oauth-refresh-c&groupId={}&topic={topic}&autoCommit=false", unique("g"));
    let mut out = open_with(&proxy.url(&url), NO_HEADERS).await.unwrap_or_else(|e| panic!("{e:?}"));
    let mut ws = open_with(&proxy.url(&format!("/socket/in?clientId=oauth-refresh&topic={topic}")), NO_HEADERS)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.log_text()));
    let t0 = Instant::now();
    let mut sent = Vec::new();
    // Three token lifetimes: every connection re-authenticated about 8 times, with 3 new tokens.
    while t0.elapsed() < Duration::from_secs(36) {
        let value = unique("refresh");
        send(&mut ws, record(None, &value, None)).await;
        let answer = tokio::time::timeout(Duration::from_secs(30), recv_json(&mut ws))
            .await
            .unwrap_or_else(|_| panic!("no answer in 30 s after {:?}\n{}", t0.elapsed(), proxy.log_text()));
        assert!(answer["offset"].is_number(), "after {:?}: {answer}\n{}", t0.elapsed(), proxy.log_text());
        sent.push(value);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = sent.last().cloned().unwrap();
    receive_value(&mut out, &last).await;
    assert_eq!(values_in(&topic, sent.len()), sent, "what landed in Kafka");
    let log = proxy.log_text();
    assert!(!log.contains("Failed to acquire SASL OAUTHBEARER token"), "{log}");
    // No client of the proxy's (the shared producer, the socket's consumer, the session topic's
    // reader and writer) was refused at a re-authentication.
    assert!(!log.contains("SASL authentication error"), "{log}");
    assert!(!log.contains("mechanism handshake failed"), "{log}");
}
