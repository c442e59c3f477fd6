//! OpenID Connect tokens end to end for what they open beyond a socket: Kafka credentials from
//! the token's claims (the broker's ACLs apply), the admin API (allowed users too), the
//! browser console, and Basic together with OpenID Connect refused at start.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::oidc::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn kafka_credentials_from_token_claims_apply_the_brokers_acls() {
    let idp = Idp::start();
    let mut env = oidc_env(
        &idp,
        &[
            ("WSPROXY_JWT_KAFKA_USERNAME_KEY", "kafka.user"),
            ("WSPROXY_JWT_KAFKA_PASSWORD_KEY", "kafka.password"),
            ("WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY", "true"),
            ("RUST_LOG", "debug"),
        ],
    );
    env.extend([
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "127.0.0.1:9093".to_owned()),
        ("WSPROXY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_owned()),
        ("WSPROXY_KAFKA_SASL_MECHANISM", "PLAIN".to_owned()),
        (
            "WSPROXY_KAFKA_SASL_JAAS_CFG",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\";"
                .to_owned(),
        ),
    ]);
    let proxy = start_proxy(&env).await;
    let other = unique("oidc-acl-denied");
    create_topic(&other, 1).await;
    let alice = idp.token("wsproxy-alice").await;
    let plain = idp.token("wsproxy-rs256").await;

    // alice's token carries her Kafka credentials: she may write acl-ok ...
    let mut ws = open_with(&proxy.url("/socket/in?clientId=alice-jwt&topic=acl-ok"), &bearer(&alice)).await.unwrap();
    let marker = unique("from-alice-token");
    produce_one(&mut ws, &marker).await;
    // ... but not another topic, nor read it.
    let (status, _, body) =
        open_with(&proxy.url(&format!("/socket/in?clientId=alice-jwt&topic={other}")), &bearer(&alice))
            .await
            .err()
            .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("Not authorized"), "{body}");
    let (status, _, _) =
        open_with(&proxy.url(&format!("/socket/out?clientId=alice-jwt&topic={other}")), &bearer(&alice))
            .await
            .err()
            .unwrap();
    assert_eq!(status, 403);
    // A valid token without the claims is refused, even with X-Kafka-Auth (token auth only).
    let mut headers = bearer(&plain);
    headers.push(("X-Kafka-Auth", BASE64.encode("admin:admin-secret")));
    let (status, hdrs, body) =
        open_with(&proxy.url(&format!("/socket/in?clientId=p&topic={other}")), &headers).await.err().unwrap();
    assert_eq!((status, message(&body).as_str()), (401, "The supplied authentication is invalid"));
    assert_eq!(header(&hdrs, "www-authenticate"), Some("Bearer realm=\"wsproxy-test\""));
    // alice's socket is unaffected by the refusals.
    produce_one(&mut ws, "alice again").await;

    // Without WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY a token lacking the claims falls back to
    // X-Kafka-Auth, and is refused without it.
    let fallback_env: Vec<(&'static str, String)> =
        env.iter().filter(|(k, _)| *k != "WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY" && *k != "RUST_LOG").cloned().collect();
    let fallback = start_proxy(&fallback_env).await;
    let mut headers = bearer(&plain);
    headers.push(("X-Kafka-Auth", BASE64.encode("alice:alice-secret")));
    let mut via_header =
        open_with(&fallback.url("/socket/in?clientId=alice-hdr&topic=acl-ok"), &headers).await.unwrap();
    produce_one(&mut via_header, "alice by header").await;
    let (status, _, _) = open_with(&fallback.url(&format!("/socket/in?clientId=alice-hdr&topic={other}")), &headers)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);
    let (status, _, _) =
        open_with(&fallback.url("/socket/in?clientId=p&topic=acl-ok"), &bearer(&plain)).await.err().unwrap();
    assert_eq!(status, 401);

    let log = proxy.log_text();
    for secret in ["alice-secret", "admin-secret", alice.as_str(), plain.as_str()] {
        assert!(!log.contains(secret), "a secret appears in the debug log");
    }
}

#[test]
fn basic_auth_and_openid_together_stop_the_start_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-websocket-proxy"))
        .env_clear()
        .env("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", bootstrap())
        .env("WSPROXY_BASIC_AUTH_ENABLED", "true")
        .env("WSPROXY_BASIC_AUTH_REALM", "r")
        .env("WSPROXY_BASIC_AUTH_USERNAME", "u")
        .env("WSPROXY_BASIC_AUTH_PASSWORD", "p")
        .env("WSPROXY_OPENID_ENABLED", "true")
        .env("WSPROXY_OPENID_WELLKNOWN", "http://127.0.0.1:1/.well-known/openid-configuration")
        .env("WSPROXY_OPENID_AUDIENCE", "a")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Basic authentication and OpenID Connect cannot both be enabled"), "{stderr}");
}

#[tokio::test]
async fn the_admin_api_takes_the_same_bearer_tokens() {
    // Reference AdminRoutesOpenIdSpec: a valid bearer opens the admin routes, "invalid-token" gets 401.
    let idp = Idp::start();
    let admin = free_port();
    let mut env =
        oidc_env(&idp, &[("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"), ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1")]);
    env.push(("WSPROXY_ADMIN_PORT", admin.to_string()));
    let _proxy = start_proxy(&env).await;
    let token = idp.token("wsproxy-rs256").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (status, _, body) = loop {
        let answer = http(admin, "GET", "/admin/kafka/info", &[("Authorization", &format!("Bearer {token}"))]).await;
        match answer {
            Ok((503, _, _)) | Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => break other.expect("admin listener answers"),
        }
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"port\""), "{body}");
    let (status, headers, body) =
        http(admin, "GET", "/admin/kafka/info", &[("Authorization", "Bearer invalid-token")]).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")), "{headers:?}");
    let (status, _, _) = http(admin, "GET", "/admin/client/config", &[]).await.unwrap();
    assert_eq!(status, 401);
}

/// M9: with `WSPROXY_ADMIN_ALLOWED_USERS` the admin API takes the tokens whose `sub` or
/// `preferred_username` it names; other valid tokens get 403 (and invalid ones still 401).
#[tokio::test]
async fn m9_the_admin_api_takes_only_tokens_of_allowed_users() {
    let idp = Idp::start();
    let admin = free_port();
    let mut env = oidc_env(
        &idp,
        &[
            ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
            ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
            ("WSPROXY_ADMIN_ALLOWED_USERS", "ops-robot,jane"),
        ],
    );
    env.push(("WSPROXY_ADMIN_PORT", admin.to_string()));
    let _proxy = start_proxy(&env).await;
    let cases = [
        ("sub listed", idp.mint("rsa", json!({"sub": "ops-robot"}), json!({})).await, 200),
        (
            "preferred_username listed",
            idp.mint("rsa", json!({"sub": "u-1", "preferred_username": "jane"}), json!({})).await,
            200,
        ),
        (
            "not listed",
            idp.mint("rsa", json!({"sub": "mallory", "preferred_username": "mallory"}), json!({})).await,
            403,
        ),
        ("expired", idp.mint("rsa", json!({"sub": "ops-robot", "exp": now() - 120}), json!({})).await, 401),
    ];
    for (name, token, want) in cases {
        let auth = format!("Bearer {token}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _, body) =
                http(admin, "GET", "/admin/client/config", &[("Authorization", &auth)]).await.unwrap();
            // 503 while the provider's keys are first fetched.
            if status != 503 || Instant::now() > deadline {
                assert_eq!(status, want, "{name}: {body}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Issue 20: with OpenID Connect the browser console loads without a token (a browser cannot
/// send one when it opens a page) and its sockets carry the one typed into its "Access token"
/// field as `access_token`; without it they are refused. Skipped, loudly, without Chromium.
#[tokio::test]
async fn the_browser_console_sends_its_token_field_as_access_token() {
    let Some(browser) = common::browser::chromium() else { return };
    let idp = Idp::start();
    let proxy = start_proxy(&oidc_env(&idp, &[("WSPROXY_CONSOLE_ENABLED", "true")])).await;
    let topic = unique("oidc-console");
    create_topic(&topic, 1).await;
    let (status, _, _) = http(proxy.port, "GET", "/console", &[]).await.unwrap();
    assert_eq!(status, 200, "the console page itself needs no token");
    let (status, _, _) = http(proxy.port, "GET", "/kafka/cluster/info", &[]).await.unwrap();
    assert_eq!(status, 401, "only the console's own files are open");
    let token = idp.token("wsproxy-rs256").await;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let lines = common::browser::drive(
        &browser,
        &[&base, &topic, &unique("oidc-console-group"), "unused.png", "--token", &token],
    );
    assert_eq!(lines.last().unwrap()["ok"], true);
    assert_eq!(read_back(&topic, 1, "string", "string")[0]["value"], "through a token");
}
