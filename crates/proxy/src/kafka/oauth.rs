//! SASL OAUTHBEARER tokens for the Kafka clients: each identity's current token and SASL
//! extensions live in a [`TokenCell`], which hands every newer token to the clients linked to
//! it (`oauth_admin`: librdkafka's own refresh request goes unanswered, since rdkafka 0.39
//! would answer it without the extensions).
//!
//! Two sources fill a cell: the proxy's own identity (an OAuth 2.0 client-credentials grant
//! fetched here and refreshed before it expires, [`start_client_credentials`]), and a socket's
//! own bearer token (`WSPROXY_JWT_KAFKA_OAUTHBEARER`, one cell per token subject, holding the
//! newest token of that subject).
//!
//! Why not librdkafka's built-in OIDC flow (`sasl.oauthbearer.method=oidc`): it needs rdkafka's
//! `curl` feature, a rebuild of librdkafka with a bundled libcurl (no libcurl headers here) in
//! every build, and the socket's own token must be handed over by the proxy anyway. (That flow
//! would send `sasl.oauthbearer.extensions` itself; here `WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS`
//! and the JAAS line's `extension_NAME` options go with every token the proxy hands over.)

use std::fmt;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use rdkafka::config::ClientConfig;

use crate::config::OAuthBearerConfig;
use crate::kafka::credentials::{BearerKey, KafkaCredentials};
use crate::kafka::oauth_admin::Slot;
use crate::kafka::Kafka;

/// A token as librdkafka takes it; `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    pub token: String,
    /// The Kafka principal the client reports (the broker takes its own from the token).
    pub principal: String,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken {{ principal: {:?}, expires_ms: {}, token: *** }}", self.principal, self.expires_ms)
    }
}

impl BearerToken {
    /// A JWT's `sub` and `exp` (read, not verified: the broker verifies it), or `fallback_sub`
    /// and `fallback_exp_ms` when the token is opaque or lacks them.
    pub fn from_jwt(token: String, fallback_sub: &str, fallback_exp_ms: i64) -> BearerToken {
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let principal = claims
            .as_ref()
            .and_then(|c| c["sub"].as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback_sub)
            .to_owned();
        let expires_ms = claims.as_ref().and_then(|c| c["exp"].as_i64()).map_or(fallback_exp_ms, |e| e * 1000);
        BearerToken { token, principal, expires_ms }
    }
}

/// The current token of one identity, its SASL extensions, and the clients it keeps fresh;
/// shared by every client of that identity.
#[derive(Clone, Default)]
pub struct TokenCell(Arc<Cell>);

#[derive(Default)]
struct Cell {
    token: RwLock<Option<BearerToken>>,
    /// `WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS`, sent with every token.
    extensions: Vec<(String, String)>,
    /// The live clients of this identity (see `oauth_admin::Linked`).
    links: Mutex<Vec<Weak<Slot>>>,
    /// Held while a new token is stored and pushed: two pushes at once could otherwise end
    /// with the older token on the clients and the newer one in the cell.
    pushing: Mutex<()>,
}

impl fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCell(***)")
    }
}

impl TokenCell {
    /// A cell with no token yet, whose tokens go with `extensions`.
    pub fn with_extensions(extensions: Vec<(String, String)>) -> TokenCell {
        TokenCell(Arc::new(Cell { extensions, ..Cell::default() }))
    }

    /// Replaces the token and hands it to the linked clients.
    pub fn set(&self, token: BearerToken) {
        let _pushing = self.0.pushing.lock().expect("token cell is never poisoned");
        *self.0.token.write().expect("token cell is never poisoned") = Some(token.clone());
        self.push(&token);
    }

    /// Keeps whichever of the current and `token` expires later (handed to the linked clients).
    pub fn offer(&self, token: BearerToken) {
        let _pushing = self.0.pushing.lock().expect("token cell is never poisoned");
        let mut cell = self.0.token.write().expect("token cell is never poisoned");
        if cell.as_ref().is_none_or(|t| t.expires_ms < token.expires_ms) {
            *cell = Some(token.clone());
            drop(cell);
            self.push(&token);
        }
    }

    pub fn get(&self) -> Option<BearerToken> {
        self.0.token.read().expect("token cell is never poisoned").clone()
    }

    pub fn extensions(&self) -> &[(String, String)] {
        &self.0.extensions
    }

    /// Registers a live client for the next tokens.
    pub(super) fn link(&self, slot: Weak<Slot>) {
        let mut links = self.0.links.lock().expect("token links are never poisoned");
        links.retain(|l| l.strong_count() > 0);
        links.push(slot);
    }

    /// The number of live clients linked (for tests).
    pub fn linked(&self) -> usize {
        self.0.links.lock().expect("token links are never poisoned").iter().filter(|l| l.strong_count() > 0).count()
    }

    fn push(&self, token: &BearerToken) {
        let live: Vec<_> = {
            let mut links = self.0.links.lock().expect("token links are never poisoned");
            links.retain(|l| l.strong_count() > 0);
            links.iter().filter_map(Weak::upgrade).collect()
        };
        for slot in live {
            slot.push(token, &self.0.extensions);
        }
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The context of the proxy's own auxiliary clients (admin, session and config logs): logs
/// like rdkafka's default one (their tokens come from `oauth_admin`).
#[derive(Clone, Default)]
pub struct OAuthContext;

impl ClientContext for OAuthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", %error, "{reason}");
    }
}

impl ConsumerContext for OAuthContext {}

impl Kafka {
    /// Where a client's OAUTHBEARER token comes from: the socket's subject's cell, or the
    /// proxy's own for a socket without credentials.
    pub(super) fn token_for(&self, creds: Option<&KafkaCredentials>) -> Option<TokenCell> {
        match creds {
            None => self.inner.proxy_token.clone(),
            Some(c) => c.bearer.as_ref().map(|b| b.0.clone()),
        }
    }

    /// The context of the proxy's own auxiliary clients (admin, session and config logs).
    pub fn oauth_context(&self) -> OAuthContext {
        OAuthContext
    }

    /// The proxy's own token, for a long-lived client of its own (see `oauth_admin::Linked`).
    pub(crate) fn proxy_token(&self) -> Option<&TokenCell> {
        self.inner.proxy_token.as_ref()
    }

    /// OAUTHBEARER: hands the proxy's token to a short-lived client of its own (see
    /// `oauth_admin`); nothing otherwise.
    pub(crate) fn give_token<C: ClientContext>(&self, client: &rdkafka::client::Client<C>) -> Result<(), KafkaError> {
        match &self.inner.proxy_token {
            Some(cell) => super::oauth_admin::set_token(client, cell).map_err(KafkaError::ClientCreation),
            None => Ok(()),
        }
    }

    /// Credentials for a socket that authenticates to Kafka with its own bearer token: keyed
    /// by `subject`, whose cell keeps the newest token any of its sockets brought (so a
    /// client shared by the subject's sockets can always hand librdkafka a live one).
    pub fn bearer_credentials(&self, subject: &str, token: BearerToken) -> KafkaCredentials {
        let mut cells = self.inner.bearer_cells.lock().expect("bearer cells are never poisoned");
        if cells.len() >= super::REFUSED_CREDENTIALS_MAX {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            cells.retain(|_, c| c.get().is_some_and(|t| t.expires_ms as u128 > now));
        }
        let extensions = self.inner.proxy_token.as_ref().map(|p| p.extensions().to_vec()).unwrap_or_default();
        let cell = cells.entry(subject.to_owned()).or_insert_with(|| TokenCell::with_extensions(extensions)).clone();
        drop(cells);
        cell.offer(token);
        KafkaCredentials { username: subject.to_owned(), password: String::new(), bearer: Some(BearerKey(cell)) }
    }
}

/// Sets a socket's own credentials: its SASL user and password, or (a bearer token) the
/// OAUTHBEARER mechanism, whose token the client's context hands over.
pub(super) fn set_credentials(cfg: &mut ClientConfig, c: &KafkaCredentials) {
    if c.bearer.is_some() {
        cfg.set("sasl.mechanism", "OAUTHBEARER");
    } else {
        cfg.set("sasl.username", &c.username).set("sasl.password", &c.password);
    }
}

/// One client-credentials grant (RFC 6749 4.4, client authentication by HTTP Basic).
async fn fetch(http: &reqwest::Client, cfg: &OAuthBearerConfig) -> Result<BearerToken, String> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &cfg.scope {
        form.push(("scope", scope));
    }
    let response = http
        .post(&cfg.token_endpoint_url)
        .basic_auth(&cfg.client_id, Some(&cfg.client_secret.0))
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("token endpoint {}: {e}", cfg.token_endpoint_url))?;
    let status = response.status();
    let body: serde_json::Value =
        response.json().await.map_err(|e| format!("token endpoint answered {status}: {e}"))?;
    let Some(token) = body["access_token"].as_str().filter(|_| status.is_success()) else {
        // The error body of RFC 6749 5.2 names the problem and holds no secret.
        let error = body["error"].as_str().unwrap_or("no access_token");
        return Err(format!("token endpoint answered {status}: {error}"));
    };
    let expires_in = body["expires_in"].as_i64().unwrap_or(300);
    Ok(BearerToken::from_jwt(token.to_owned(), &cfg.client_id, now_ms() + expires_in * 1000))
}

/// When to fetch the next token: at 70% of the token's remaining lifetime (so the clients,
/// which re-authenticate with the token they hold, never hold a stale one), never sooner than
/// a second from now.
fn refresh_in(token: &BearerToken) -> Duration {
    let left = (token.expires_ms - now_ms()).max(0) as u64;
    Duration::from_millis(left * 7 / 10).max(Duration::from_secs(1))
}

/// Fetches the proxy's first token (trying `attempts` times, `interval` apart) and keeps it
/// fresh in the background until `stop` is cancelled.
pub async fn start_client_credentials(
    cfg: OAuthBearerConfig,
    timeout: Duration,
    attempts: u32,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> Result<TokenCell, String> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the OAUTHBEARER HTTP client: {e}"))?;
    let mut last = String::new();
    let mut first = None;
    for attempt in 1..=attempts.max(1) {
        match fetch(&http, &cfg).await {
            Ok(t) => {
                first = Some(t);
                break;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "OAUTHBEARER: no token for the proxy's own identity yet");
                last = e;
                tokio::time::sleep(interval).await;
            }
        }
    }
    let first = first.ok_or_else(|| format!("OAUTHBEARER: no token from the token endpoint: {last}"))?;
    tracing::info!(principal = %first.principal, "OAUTHBEARER: token of the proxy's own identity fetched");
    let cell = TokenCell::with_extensions(cfg.extensions.clone());
    cell.set(first);
    let kept = cell.clone();
    tokio::spawn(async move {
        let mut wait = kept.get().map_or(interval, |t| refresh_in(&t));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = match fetch(&http, &cfg).await {
                Ok(t) => {
                    let next = refresh_in(&t);
                    kept.set(t);
                    next
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OAUTHBEARER: refreshing the proxy's token failed; retrying");
                    Duration::from_secs(2)
                }
            };
        }
    });
    Ok(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    #[test]
    fn principal_and_lifetime_come_from_the_jwt_or_the_fallbacks() {
        let t = BearerToken::from_jwt(jwt(serde_json::json!({"sub": "alice", "exp": 2_000_000_000})), "x", 5);
        assert_eq!((t.principal.as_str(), t.expires_ms), ("alice", 2_000_000_000_000));
        let t = BearerToken::from_jwt("opaque".to_owned(), "client", 42);
        assert_eq!((t.principal.as_str(), t.expires_ms), ("client", 42));
        assert!(!format!("{t:?}").contains("opaque"));
    }

    #[test]
    fn a_cell_keeps_the_token_that_lives_longest() {
        let soon = BearerToken { token: "a".into(), principal: "p".into(), expires_ms: now_ms() + 10_000 };
        let later = BearerToken { token: "b".into(), principal: "p".into(), expires_ms: now_ms() + 60_000 };
        let cell = TokenCell::default();
        cell.set(later.clone());
        cell.offer(soon);
        assert_eq!(cell.get(), Some(later));
    }

    #[test]
    fn refresh_comes_before_librdkafka_asks() {
        let t = BearerToken { token: "a".into(), principal: "p".into(), expires_ms: now_ms() + 100_000 };
        let d = refresh_in(&t);
        assert!(d > Duration::from_secs(60) && d < Duration::from_secs(80), "{d:?}");
    }
}
