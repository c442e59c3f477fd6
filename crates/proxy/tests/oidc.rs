//! OpenID Connect end to end: a real provider process (panva's certified `oidc-provider`,
//! started by `scripts/idp run` as a child of the test), real proxies, real WebSocket clients.
//!
//! Valid tokens come from the provider's token endpoint (client-credentials grant); broken ones
//! (expired, wrong audience, foreign signature, `alg: none`, ...) are signed by the provider's
//! own keys through its test-only `/test/mint` endpoint (tests/support/idp/provider.mjs).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const AUDIENCE: &str = "urn:wsproxy:test";
const REALM: &str = "wsproxy-test";

/// The identity provider: a `node` child process on its own port; killed when dropped.
struct Idp {
    child: Option<Child>,
    port: u16,
    keys: PathBuf,
}

impl Idp {
    /// A provider that is not running yet (its port is reserved by number only).
    fn stopped() -> Idp {
        let port = free_port();
        let keys = std::env::temp_dir().join(format!("wsproxy-idp-keys-{}-{port}.json", std::process::id()));
        let _ = std::fs::remove_file(&keys);
        Idp { child: None, port, keys }
    }

    fn start() -> Idp {
        let mut idp = Idp::stopped();
        idp.run(false);
        idp
    }

    /// Starts the provider and waits for its `ready` line (the first run installs it).
    fn run(&mut self, rotate: bool) {
        let mut cmd = Command::new(project_root().join("scripts/idp"));
        cmd.args([
            "run",
            "--port",
            &self.port.to_string(),
            "--keys",
            self.keys.to_str().unwrap(),
            "--audience",
            AUDIENCE,
        ]);
        if rotate {
            cmd.arg("--rotate");
        }
        let log = self.keys.with_extension("log");
        let stderr = std::fs::File::create(&log).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().expect("scripts/idp run");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(240)).is_err() {
            let _ = child.kill();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the identity provider did not start (scripts/idp run):\n{text}");
        }
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts the provider; with `rotate` its keys are replaced by new ones.
    fn restart(&mut self, rotate: bool) {
        self.stop();
        self.run(rotate);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn well_known(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// An access token of `client` from the token endpoint.
    async fn token(&self, client: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", "test-client-secret"),
            ])
            .send()
            .await
            .expect("token endpoint");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap_or_else(|| panic!("no token: {body}")).to_owned()
    }

    /// A token signed by the provider's keys (`sign`: rsa, ec, foreign, none,
    /// hs256-with-public-key) with `claims` over valid defaults.
    async fn mint(&self, sign: &str, claims: Value, header: Value) -> String {
        let now = now();
        let mut all = json!({"iss": self.issuer(), "aud": AUDIENCE, "sub": "minted", "iat": now, "exp": now + 300});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        let response = reqwest::Client::new()
            .post(format!("{}/test/mint", self.issuer()))
            .body(json!({"claims": all, "header": header, "sign": sign}).to_string())
            .send()
            .await
            .expect("mint");
        response.text().await.unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.keys);
        let _ = std::fs::remove_file(self.keys.with_extension("log"));
    }
}

/// The (unverified) claims of a token, to read its `exp`.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The proxy's OpenID Connect settings for `idp`, plus `extra`.
fn oidc_env(idp: &Idp, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("WSPROXY_OPENID_ENABLED", "true".to_owned()),
        ("WSPROXY_OPENID_WELLKNOWN", idp.well_known()),
        ("WSPROXY_OPENID_AUDIENCE", AUDIENCE.to_owned()),
        ("WSPROXY_OPENID_REALM", REALM.to_owned()),
        ("WSPROXY_OPENID_REQUEST_TIMEOUT", "2 seconds".to_owned()),
        ("WSPROXY_OPENID_CLOCK_SKEW", "0 seconds".to_owned()),
        ("WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL", "500ms".to_owned()),
        // The harness polls /healthcheck to know the proxy listens.
        ("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT", "false".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

async fn start_proxy(env: &[(&'static str, String)]) -> Proxy {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Proxy::start(&env).await
}

/// Opens a socket with extra headers; the refusal as (status, headers, body) otherwise.
async fn open(url: &str, headers: &[(&str, String)]) -> Result<Ws, (u16, Vec<(String, String)>, String)> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((resp.status().as_u16(), headers, body))
        }
        Err(e) => panic!("connect {url}: {e}"),
    }
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("not JSON: {body}"))["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Opens a socket, retrying while the proxy answers 503: a key fetch that failed moments ago
/// (the provider was restarting) stands for `WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL`.
async fn open_when_provider_answers(url: &str, token: &str) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match open(url, &bearer(token)).await {
            Ok(ws) => return ws,
            Err((503, _, _)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Produces one record and checks it was acknowledged.
async fn produce_one(ws: &mut Ws, value: &str) {
    send(ws, record(None, value, None)).await;
    let answer = recv_json(ws).await;
    assert!(answer["offset"].is_number(), "{answer}");
}

/// Waits for the close frame: (code, reason).
async fn closed(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("no close frame in time") {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a close frame"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket failed before its close frame: {e}"),
        }
    }
}

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
    let mut ws = open(&url, &bearer(&rs)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws, "header").await;
    // ES256 in the query, as a browser passes it.
    let mut ws2 = open(&format!("{url}&access_token={es}"), &[]).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws2, "query").await;
    // A consumer socket too.
    let mut out =
        open(&proxy.url(&format!("/socket/out?clientId=oidc-c&topic={topic}&autoCommit=false")), &bearer(&rs))
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
    let mut survivor = open(&url, &bearer(&good)).await.map_err(|e| e.2).unwrap();

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
                open(&format!("{url}&access_token={token}"), &[]).await
            } else {
                open(&url, &bearer(token)).await
            };
            let (status, headers, body) = result.err().unwrap_or_else(|| panic!("{what}: accepted"));
            assert_eq!(status, 401, "{what}: {body}");
            assert_eq!(header(&headers, "www-authenticate"), Some("Bearer realm=\"wsproxy-test\""), "{what}");
            assert_eq!(header(&headers, "content-type"), Some("application/json"), "{what}");
            assert_eq!(message(&body), "The supplied authentication is invalid", "{what}");
        }
    }
    // A valid ES256 token of the provider's own EC key passes (the tampered one did not).
    let mut ec = open(&url, &bearer(&ec_valid)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ec, "ec").await;
    // Basic credentials are not a bearer token.
    let (status, _, _) =
        open(&url, &[("Authorization", format!("Basic {}", BASE64.encode("u:p")))]).await.err().unwrap();
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
    let mut old_socket = open(&url, &bearer(&old)).await.map_err(|e| e.2).unwrap();
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
    assert_eq!(open(&url, &bearer(&old)).await.err().map(|e| e.0), Some(401));
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
        open(&proxy.url(&format!("/socket/in?clientId=short&topic={topic}")), &bearer(&short)).await.unwrap();
    let mut doomed_out =
        open(&proxy.url(&format!("/socket/out?clientId=short-c&topic={topic}")), &bearer(&short)).await.unwrap();
    let mut other = open(&proxy.url(&format!("/socket/in?clientId=long&topic={topic}")), &bearer(&long)).await.unwrap();
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
        open(&proxy.url(&format!("/socket/in?clientId=s&topic={topic}")), &bearer(&short)).await.err().map(|e| e.0),
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
    let (status, headers, body) = open(&url, &bearer("a.b.c")).await.err().unwrap();
    // `a.b.c` is not even a JWT: the token is checked before any key is needed.
    assert_eq!(status, 401, "{body}");
    assert!(header(&headers, "www-authenticate").is_some());
    let unknown_yet = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln";
    let (status, headers, body) = open(&url, &bearer(unknown_yet)).await.err().unwrap();
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
        open(&strict.url(&format!("/socket/in?clientId=strict&topic={topic}")), &bearer(&token)).await.unwrap();
    let unknown_kid = idp.mint("rsa", json!({}), json!({"kid": "published-later"})).await;

    // A provider that accepts connections but never answers (the process frozen): 503 within
    // the request timeout (2 s per call here), never a hang.
    let frozen = Command::new("kill").args(["-STOP", &idp.pid().to_string()]).status().unwrap();
    assert!(frozen.success());
    // Past WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL since the last successful fetch, so an
    // unknown kid makes the proxy ask the frozen provider.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    let (status, _, body) = open(&url, &bearer(&unknown_kid)).await.err().unwrap();
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
    let mut again = open(&url, &bearer(&token)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut again, "cached key").await;
    let (status, _, body) = open(&url, &bearer(&unknown_kid)).await.err().unwrap();
    assert_eq!((status, message(&body).as_str()), (503, "OpenID Connect server does not seem to be available."));
    // The strict proxy closed its socket once the provider failed.
    let (code, reason) = closed(&mut strict_ws, Duration::from_secs(30)).await;
    assert_eq!((code, reason.as_str()), (1011, "OpenID Connect server does not seem to be available."));
}

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
    let mut ws = open(&proxy.url("/socket/in?clientId=alice-jwt&topic=acl-ok"), &bearer(&alice)).await.unwrap();
    let marker = unique("from-alice-token");
    produce_one(&mut ws, &marker).await;
    // ... but not another topic, nor read it.
    let (status, _, body) =
        open(&proxy.url(&format!("/socket/in?clientId=alice-jwt&topic={other}")), &bearer(&alice)).await.err().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("Not authorized"), "{body}");
    let (status, _, _) = open(&proxy.url(&format!("/socket/out?clientId=alice-jwt&topic={other}")), &bearer(&alice))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);
    // A valid token without the claims is refused, even with X-Kafka-Auth (token auth only).
    let mut headers = bearer(&plain);
    headers.push(("X-Kafka-Auth", BASE64.encode("admin:admin-secret")));
    let (status, hdrs, body) =
        open(&proxy.url(&format!("/socket/in?clientId=p&topic={other}")), &headers).await.err().unwrap();
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
    let mut via_header = open(&fallback.url("/socket/in?clientId=alice-hdr&topic=acl-ok"), &headers).await.unwrap();
    produce_one(&mut via_header, "alice by header").await;
    let (status, _, _) =
        open(&fallback.url(&format!("/socket/in?clientId=alice-hdr&topic={other}")), &headers).await.err().unwrap();
    assert_eq!(status, 403);
    let (status, _, _) =
        open(&fallback.url("/socket/in?clientId=p&topic=acl-ok"), &bearer(&plain)).await.err().unwrap();
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
    let answers = futures::future::join_all(headers.iter().map(|h| open(&url, h))).await;
    for a in answers {
        assert_eq!(a.err().map(|e| e.0), Some(401));
    }
    // The start-up fetch, and at most one more for the twenty unknown kids.
    let fetches = proxy.log_text().lines().filter(|l| l.contains("OpenID Connect keys fetched")).count();
    assert!((1..=2).contains(&fetches), "{fetches} key fetches");
    // Known keys still work meanwhile.
    let mut ws = open(&url, &bearer(&idp.token("wsproxy-rs256").await)).await.map_err(|e| e.2).unwrap();
    produce_one(&mut ws, "calm").await;
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
