//! Helpers of the OpenID Connect tests (`oidc*.rs`): the identity provider process (panva's
//! certified `oidc-provider`, started by `scripts/idp run`), its tokens, and the proxy's
//! settings for it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{free_port, open_with, project_root, record, recv_json, send, Proxy, Ws};

pub const AUDIENCE: &str = "urn:wsproxy:test";
pub const REALM: &str = "wsproxy-test";

/// The identity provider: a `node` child process on its own port; killed when dropped.
pub struct Idp {
    pub child: Option<Child>,
    pub port: u16,
    pub keys: PathBuf,
}

impl Idp {
    /// A provider that is not running yet (its port is reserved by number only).
    pub fn stopped() -> Idp {
        let port = free_port();
        let keys = std::env::temp_dir().join(format!("wsproxy-idp-keys-{}-{port}.json", std::process::id()));
        let _ = std::fs::remove_file(&keys);
        Idp { child: None, port, keys }
    }

    pub fn start() -> Idp {
        let mut idp = Idp::stopped();
        idp.run(false);
        idp
    }

    /// Starts the provider and waits for its `ready` line (the first run installs it).
    pub fn run(&mut self, rotate: bool) {
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

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts the provider; with `rotate` its keys are replaced by new ones.
    pub fn restart(&mut self, rotate: bool) {
        self.stop();
        self.run(rotate);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn well_known(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// An access token of `client` from the token endpoint.
    pub async fn token(&self, client: &str) -> String {
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
    pub async fn mint(&self, sign: &str, claims: Value, header: Value) -> String {
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
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The proxy's OpenID Connect settings for `idp`, plus `extra`.
pub fn oidc_env(idp: &Idp, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
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

pub async fn start_proxy(env: &[(&'static str, String)]) -> Proxy {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Proxy::start(&env).await
}

pub fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {token}"))]
}

pub fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("not JSON: {body}"))["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Opens a socket, retrying while the proxy answers 503: a key fetch that failed moments ago
/// (the provider was restarting) stands for `WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL`.
pub async fn open_when_provider_answers(url: &str, token: &str) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match open_with(url, &bearer(token)).await {
            Ok(ws) => return ws,
            Err((503, _, _)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Produces one record and checks it was acknowledged.
pub async fn produce_one(ws: &mut Ws, value: &str) {
    send(ws, record(None, value, None)).await;
    let answer = recv_json(ws).await;
    assert!(answer["offset"].is_number(), "{answer}");
}

/// Waits for the close frame: (code, reason).
pub async fn closed(ws: &mut Ws, within: Duration) -> (u16, String) {
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
