//! OpenID Connect end to end: a real provider process (panva's certified `oidc-provider`,
//! started by `scripts/idp run` as a child of the test), real proxies, real WebSocket clients.
//!
//! Valid tokens come from the provider's token endpoint (client-credentials grant); broken ones
//! (expired, wrong audience, foreign signature, `alg: none`, ...) are signed by the provider's
//! own keys through its test-only `/test/mint` endpoint (tests/support/idp/provider.mjs).
//! Tokens, keys and the provider's availability here; Kafka credentials from claims, the admin
//! API and the console in `oidc_clients.rs`; the shared helpers in `common/oidc.rs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::oidc::*;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn valid_tokens_in_the_header_and_in_access_token_open_sockets() {
    let idp = Idp::start();
    let proxy = start_proxy(&oidc_env(&idp, &[("RUST_LOG", "debug")])).await;
    let topic = unique("oidc-ok");
    create_topic(&topic, 1).await;
    let rs = idp.token("wsproxy-rs256").await;
    let es = idp.token("wsproxy-es256").await;

    // RS256 in the header.
    let url = proxy.url(&format!("/socket/in?clientId=oidc&topic={topic}"));
    let mut ws = open_with(&url, &bearer(&rs)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws, "header").await;
    // ES256 in the query, as a browser passes it.
    let mut ws2 = open_with(&format!("{url}&access_token={es}"), NO_HEADERS).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws2, "query").await;
    // A consumer socket too.
    let mut out =
        open_with(&proxy.url(&format!("/socket/out?clientId=oidc-c&topic={topic}&autoCommit=false")), &bearer(&rs))
            .await
            .map_err(|e| e.2)
            .unwrap();
    let first = recv_json(&mut out).await;
    assert_eq!(first["value"]["value"], "header", "{first}");

    let values: Vec<Value> = read_back(&topic, 2, "string", "string").iter().map(|r| r["value"].clone()).collect();
    assert_eq!(values, vec![json!("header"), json!("query")]);

    // HTTP endpoints take the same tokens.
    let (status, _, _) =
        http(proxy.port, "GET", "/kafka/cluster/info", &[("Authorization", &format!("Bearer {rs}"))]).await.unwrap();
    assert_eq!(status, 200);
    let (status, headers, body) = http(proxy.port, "GET", "/kafka/cluster/info", &[]).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer realm=\"wsproxy-test\""));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(message(&body), "The resource requires authentication, which was not supplied with the request");
    // Neither token reaches the (debug) log, although one travelled in the URL.
    let log = proxy.log_text();
    assert!(!log.contains(&es) && !log.contains(&rs), "a token appears in the log");
}

#[tokio::test]
async fn invalid_tokens_are_refused_with_401_and_never_logged() {
    let idp = Idp::start();
    let proxy =
        start_proxy(&oidc_env(&idp, &[("RUST_LOG", "debug"), ("WSPROXY_OPENID_ALLOW_DETAILED_LOGGING", "true")])).await;
    let topic = unique("oidc-bad");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=bad&topic={topic}"));
    let good = idp.token("wsproxy-rs256").await;
    let mut survivor = open_with(&url, &bearer(&good)).await.map_err(|e| e.2).unwrap();

    let now = now();
    let cases = [
        ("expired", idp.mint("rsa", json!({"exp": now - 120}), json!({})).await),
        ("not yet valid", idp.mint("rsa", json!({"nbf": now + 600}), json!({})).await),
        ("wrong audience", idp.mint("rsa", json!({"aud": "someone-else"}), json!({})).await),
        ("wrong issuer", idp.mint("rsa", json!({"iss": "http://127.0.0.1:1"}), json!({})).await),
        ("no exp", idp.mint("rsa", json!({"exp": null}), json!({})).await),
        ("foreign key, real kid", idp.mint("foreign", json!({}), json!({})).await),
        ("alg none", idp.mint("none", json!({}), json!({})).await),
        ("HS256 keyed with the public key", idp.mint("hs256-with-public-key", json!({}), json!({})).await),
        ("unknown kid", idp.mint("rsa", json!({}), json!({"kid": "not-a-key"})).await),
        ("garbage", "foo.bar.baz".to_owned()),
        ("not even a JWT", "hello".to_owned()),
    ];
    // A valid ES256 token of the provider's own EC key, and the same with a tampered signature.
    let ec_valid = idp.mint("ec", json!({}), json!({})).await;
    let (head, _) = ec_valid.rsplit_once('.').unwrap();
    let mut tokens: Vec<(&str, String)> = cases.to_vec();
    tokens.push(("EC signature tampered", format!("{head}.{}", "A".repeat(86))));
    for (what, token) in &tokens {
        for query in [false, true] {
            let result = if query {
                open_with(&format!("{url}&access_token={token}"), NO_HEADERS).await
            } else {
                open_with(&url, &bearer(token)).await
            };
            let (status, headers, body) = result.err().unwrap_or_else(|| panic!("{what}: accepted"));
            assert_eq!(status, 401, "{what}: {body}");
            assert_eq!(header(&headers, "www-authenticate"), Some("Bearer realm=\"wsproxy-test\""), "{what}");
            assert_eq!(header(&headers, "content-type"), Some("application/json"), "{what}");
            assert_eq!(message(&body), "The supplied authentication is invalid", "{what}");
        }
    }
    // A valid ES256 token of the provider's own EC key passes (the tampered one did not).
    let mut ec = open_with(&url, &bearer(&ec_valid)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ec, "ec").await;
    // Basic credentials are not a bearer token.
    let (status, _, _) =
        open_with(&url, &[("Authorization", format!("Basic {}", BASE64.encode("u:p")))]).await.err().unwrap();
    assert_eq!(status, 401);
    // The socket opened before all of this still works.
    produce_one(&mut survivor, "still here").await;

    let log = proxy.log_text();
    // Detailed logging names each refusal's reason (and only that).
    for reason in [
        "token expired",
        "token not yet valid",
        "wrong audience",
        "wrong issuer",
        "a required claim",
        "bad signature",
        "not a JWT",
        "algorithm HS256 is not accepted",
        "signing key not published",
    ] {
        assert!(log.lines().any(|l| l.contains("bearer token refused") && l.contains(reason)), "{reason} not logged");
    }
    for (what, token) in &tokens {
        if token.len() > 20 {
            // No token, nor its signature, ever reaches the log.
            let signature = token.rsplit('.').next().unwrap();
            assert!(!log.contains(token.as_str()), "{what}: token logged");
            assert!(signature.len() < 10 || !log.contains(signature), "{what}: signature logged");
        }
    }
    assert!(!log.contains(&good), "a valid token appears in the log");
}

#[tokio::test]
async fn key_rotation_needs_no_restart_and_a_withdrawn_key_closes_its_sockets() {
    let mut idp = Idp::start();
    let proxy = start_proxy(&oidc_env(&idp, &[("WSPROXY_OPENID_REVALIDATION_INTERVAL", "1 second")])).await;
    let topic = unique("oidc-rotate");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=rot&topic={topic}"));
    let old = idp.token("wsproxy-rs256").await;
    let mut old_socket = open_with(&url, &bearer(&old)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut old_socket, "old key").await;

    // The provider rotates its keys: the old ones are withdrawn from the JWKS.
    idp.restart(true);
    let new = idp.token("wsproxy-rs256").await;
    let mut new_socket = open_when_provider_answers(&url, &new).await;
    produce_one(&mut new_socket, "new key").await;

    // The socket whose key was withdrawn is closed at its next revalidation.
    let (code, reason) = closed(&mut old_socket, Duration::from_secs(30)).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("no longer published"), "{reason}");
    // A new socket with the old token is refused; the new socket is unaffected.
    assert_eq!(open_with(&url, &bearer(&old)).await.err().map(|e| e.0), Some(401));
    produce_one(&mut new_socket, "new key again").await;
}

#[tokio::test]
async fn an_open_socket_is_closed_with_1008_when_its_token_expires() {
    let idp = Idp::start();
    // The default interval (10 minutes): a socket is re-checked as soon as its token expires.
    let proxy = start_proxy(&oidc_env(&idp, &[])).await;
    let topic = unique("oidc-expiry");
    create_topic(&topic, 1).await;
    let short = idp.token("wsproxy-short").await; // 10 s
    let long = idp.token("wsproxy-rs256").await;
    let expires = claims_of(&short)["exp"].as_u64().unwrap();
    let mut doomed_in =
        open_with(&proxy.url(&format!("/socket/in?clientId=short&topic={topic}")), &bearer(&short)).await.unwrap();
    let mut doomed_out =
        open_with(&proxy.url(&format!("/socket/out?clientId=short-c&topic={topic}")), &bearer(&short)).await.unwrap();
    let mut other =
        open_with(&proxy.url(&format!("/socket/in?clientId=long&topic={topic}")), &bearer(&long)).await.unwrap();
    produce_one(&mut doomed_in, "before expiry").await;

    let (code, reason) = closed(&mut doomed_in, Duration::from_secs(60)).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(now() >= expires, "closed before the token expired");
    let mut code_out = None;
    while code_out.is_none() {
        let next = tokio::time::timeout(Duration::from_secs(60), doomed_out.next()).await.expect("consumer closed");
        if let Some(Ok(Message::Close(Some(f)))) = next {
            code_out = Some(u16::from(f.code));
        }
    }
    assert_eq!(code_out, Some(1008));
    // The socket with a valid token is unaffected.
    produce_one(&mut other, "after").await;
    assert_eq!(
        open_with(&proxy.url(&format!("/socket/in?clientId=s&topic={topic}")), &bearer(&short))
            .await
            .err()
            .map(|e| e.0),
        Some(401)
    );
}

#[tokio::test]
async fn an_unreachable_provider_answers_503_at_start_and_during_a_run() {
    // Down at start: the proxy starts, and requests answer 503 quickly instead of hanging.
    let mut idp = Idp::stopped();
    let proxy = start_proxy(&oidc_env(&idp, &[("WSPROXY_OPENID_REVALIDATION_INTERVAL", "1 second")])).await;
    let topic = unique("oidc-down");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=down&topic={topic}"));
    let asked = Instant::now();
    let (status, headers, body) = open_with(&url, &bearer("a.b.c")).await.err().unwrap();
    // `a.b.c` is not even a JWT: the token is checked before any key is needed.
    assert_eq!(status, 401, "{body}");
    assert!(header(&headers, "www-authenticate").is_some());
    let unknown_yet = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln";
    let (status, headers, body) = open_with(&url, &bearer(unknown_yet)).await.err().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(message(&body), "OpenID Connect server does not seem to be available.");
    assert!(asked.elapsed() < Duration::from_secs(20), "the refusal took {:?}", asked.elapsed());

    // The provider comes up: tokens work without restarting the proxy.
    idp.run(false);
    let token = idp.token("wsproxy-rs256").await;
    let mut ws = open_when_provider_answers(&url, &token).await;
    produce_one(&mut ws, "provider up").await;
    // A second proxy whose sockets close at the first failed revalidation.
    let strict = start_proxy(&oidc_env(
        &idp,
        &[("WSPROXY_OPENID_REVALIDATION_INTERVAL", "1 second"), ("WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT", "1")],
    ))
    .await;
    let mut strict_ws =
        open_with(&strict.url(&format!("/socket/in?clientId=strict&topic={topic}")), &bearer(&token)).await.unwrap();
    let unknown_kid = idp.mint("rsa", json!({}), json!({"kid": "published-later"})).await;

    // A provider that accepts connections but never answers (the process frozen): 503 within
    // the request timeout (2 s per call here), never a hang.
    let frozen = Command::new("kill").args(["-STOP", &idp.pid().to_string()]).status().unwrap();
    assert!(frozen.success());
    // Past WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL since the last successful fetch, so an
    // unknown kid makes the proxy ask the frozen provider.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    let (status, _, body) = open_with(&url, &bearer(&unknown_kid)).await.err().unwrap();
    let waited = asked.elapsed();
    eprintln!("frozen provider: 503 after {waited:?}");
    Command::new("kill").args(["-CONT", &idp.pid().to_string()]).status().unwrap();
    assert_eq!((status, message(&body).as_str()), (503, "OpenID Connect server does not seem to be available."));
    assert!(waited < Duration::from_secs(15), "the refusal took {waited:?}");

    // Down during the run: open sockets keep working (no error limit), a token whose key is
    // cached still opens sockets, and one that needs a key fetch gets 503.
    idp.stop();
    tokio::time::sleep(Duration::from_secs(3)).await; // several revalidation intervals
    produce_one(&mut ws, "provider down").await;
    let mut again = open_with(&url, &bearer(&token)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut again, "cached key").await;
    let (status, _, body) = open_with(&url, &bearer(&unknown_kid)).await.err().unwrap();
    assert_eq!((status, message(&body).as_str()), (503, "OpenID Connect server does not seem to be available."));
    // The strict proxy closed its socket once the provider failed.
    let (code, reason) = closed(&mut strict_ws, Duration::from_secs(30)).await;
    assert_eq!((code, reason.as_str()), (1011, "OpenID Connect server does not seem to be available."));
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_proxy_hammer_the_provider() {
    let idp = Idp::start();
    let mut env = oidc_env(&idp, &[("RUST_LOG", "kafka_websocket_proxy=debug")]);
    env.retain(|(k, _)| *k != "WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL");
    env.push(("WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL", "1 minute".to_owned()));
    let proxy = start_proxy(&env).await;
    let topic = unique("oidc-storm");
    create_topic(&topic, 1).await;
    let url = proxy.url(&format!("/socket/in?clientId=storm&topic={topic}"));
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(idp.mint("rsa", json!({}), json!({"kid": format!("random-{i}")})).await);
    }
    let headers: Vec<_> = tokens.iter().map(|t| bearer(t)).collect();
    let answers = futures::future::join_all(headers.iter().map(|h| open_with(&url, h))).await;
    for a in answers {
        assert_eq!(a.err().map(|e| e.0), Some(401));
    }
    // The start-up fetch, and at most one more for the twenty unknown kids.
    let fetches = proxy.log_text().lines().filter(|l| l.contains("OpenID Connect keys fetched")).count();
    assert!((1..=2).contains(&fetches), "{fetches} key fetches");
    // Known keys still work meanwhile.
    let mut ws = open_with(&url, &bearer(&idp.token("wsproxy-rs256").await)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws, "calm").await;
}
