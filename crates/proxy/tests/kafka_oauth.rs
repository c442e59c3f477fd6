//! SASL OAUTHBEARER against a real broker and the real identity provider (issue 17 part 2):
//! the proxy's own identity (client-credentials grant), and a socket's own bearer token as its
//! Kafka identity (`WSPROXY_JWT_KAFKA_OAUTHBEARER`), under the broker's ACLs.
//!
//! The test bed is `scripts/kafka-oauth`: the provider on 127.0.0.1:19710 and a private broker
//! whose OAUTH listener (19705) validates tokens against the provider's JWKS; its PLAINTEXT
//! listener (19700, anonymous super user) is where the independent client checks what landed.
//! ACLs (scripts/kafka): token subject `kafka-writer` may write and read topic `oauth-ok`,
//! `wsproxy-kafka` (the proxy) is a super user, any other subject may do nothing.

mod common;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::oidc::{bearer, closed, oidc_env, produce_one, start_proxy, Idp};
use common::{kafka_tool_with, open_with, project_root, record, recv_json, send, unique, Proxy, NO_HEADERS};
use serde_json::{json, Value};

const PLAIN: &str = "127.0.0.1:19700";
const OAUTH: &str = "127.0.0.1:19705";
const IDP_PORT: u16 = 19710;

/// Starts the test bed once per test binary. `false` (after a loud message) only when the
/// machine lacks what it needs (node or java); any other failure fails the test.
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
            let missing: Vec<&str> = ["node", "java"]
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
