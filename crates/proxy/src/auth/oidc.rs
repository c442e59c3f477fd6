//! OpenID Connect bearer tokens (reference 1.11): the provider's discovery document and JWKS,
//! token validation, and the revalidation of open sockets.
//!
//! The keys are fetched at start and cached. A token signed with an unknown `kid` triggers one
//! refresh, at most once per `WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL` (concurrent requests
//! share it), so a key rotation needs no restart. Revalidation refreshes the keys once they are
//! older than the revalidation interval, so a withdrawn key ends the sockets it signed for.
//! Every call to the provider has a timeout; a provider that cannot be reached is
//! [`Refused::ProviderUnreachable`] (503). Refusals and revocations are returned as values
//! ([`super::outcome`]); `http/` renders them. Tokens never reach a log line, and neither do the
//! Kafka credentials they may carry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::auth::outcome::{Challenge, Refused, Revoked, Scheme};
use crate::config::{OpenIdConfig, Secret};
use crate::kafka::credentials::KafkaCredentials;

/// Signature algorithms a token may use. Symmetric (`HS*`) and `none` are never accepted:
/// the keys are public, so an HMAC "signed" with one proves nothing.
const ACCEPTED: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Why a request carries no valid token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// No bearer token in the header nor in `access_token`.
    #[error("no bearer token")]
    Missing,
    /// The token is not valid; the reason is for the log, never for the client.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `exp` has passed (beyond the allowed clock skew).
    #[error("invalid token: token expired")]
    Expired,
    /// The provider could not be reached (the reason is for the log).
    #[error("OpenID Connect server unavailable: {0}")]
    Unavailable(String),
}

/// A request's validated token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The raw token, kept to revalidate it; `Debug` prints `***`.
    pub token: Secret,
    /// `sub`, for log lines and the admin API's allowed users.
    pub subject: Option<String>,
    /// `preferred_username`, for the admin API's allowed users.
    pub username: Option<String>,
    /// Kafka credentials from the configured claims, when present.
    pub kafka: Option<KafkaCredentials>,
    /// `exp`, in seconds since the epoch.
    pub expires: Option<u64>,
}

/// One verification key from the JWKS.
struct Key {
    decoding: DecodingKey,
    /// The key's `alg`, when the JWKS pins one.
    alg: Option<Algorithm>,
}

/// The provider's issuer and its current keys.
struct KeySet {
    issuer: String,
    keys: HashMap<String, Arc<Key>>,
}

/// The provider as the proxy sees it: configuration, HTTP client and cached keys.
pub struct Oidc {
    config: OpenIdConfig,
    http: reqwest::Client,
    /// Never held across an await.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serialises fetches; holds when the last one was tried and why it failed.
    fetching: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
}

impl Oidc {
    /// Builds the client; nothing is fetched yet (see [`Oidc::start`]).
    pub fn new(config: OpenIdConfig) -> Result<Oidc, String> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build the OpenID Connect HTTP client: {e}"))?;
        Ok(Oidc { config, http, keys: RwLock::new(None), fetching: tokio::sync::Mutex::new(None) })
    }

    /// The configuration this provider was built from.
    pub fn config(&self) -> &OpenIdConfig {
        &self.config
    }

    /// Fetches the discovery document and keys once at start. A provider that is down does not
    /// stop the proxy: requests answer 503 until it is back.
    pub async fn start(&self) {
        if !self.config.well_known_url.starts_with("https://") {
            tracing::warn!(url = %self.config.well_known_url, "the OpenID Connect discovery URL is plain http: use https outside tests");
        }
        match self.refresh(Duration::ZERO).await {
            Ok(set) => tracing::info!(issuer = %set.issuer, keys = set.keys.len(), "OpenID Connect keys loaded"),
            Err(e) => {
                tracing::warn!(error = %e, url = %self.config.well_known_url, "OpenID Connect provider not reachable at start; requests answer 503 until it is")
            }
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().expect("the key lock is never poisoned").clone()
    }

    /// Fetches the keys unless the last attempt is younger than `min_age`; then that attempt's
    /// outcome stands (the cached keys, or the provider is unavailable).
    async fn refresh(&self, min_age: Duration) -> Result<Arc<KeySet>, OidcError> {
        let mut last = self.fetching.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some((at, failure)) = &*last {
            if at.elapsed() < min_age {
                return match (failure, self.current()) {
                    (None, Some(set)) => Ok(set),
                    (Some(e), _) => Err(OidcError::Unavailable(e.clone())),
                    (None, None) => Err(OidcError::Unavailable("no keys yet".to_owned())),
                };
            }
        }
        match self.fetch().await {
            Ok(set) => {
                *last = Some((Instant::now(), None));
                let set = Arc::new(set);
                tracing::debug!(keys = set.keys.len(), "OpenID Connect keys fetched");
                *self.keys.write().expect("the key lock is never poisoned") = Some(set.clone());
                Ok(set)
            }
            Err(e) => {
                let reason = match &e {
                    OidcError::Unavailable(r) => r.clone(),
                    other => other.to_string(),
                };
                *last = Some((Instant::now(), Some(reason)));
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, OidcError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let discovery: Discovery = self.get_json(&self.config.well_known_url).await?;
        let raw: RawSet = self.get_json(&discovery.jwks_uri).await?;
        let mut keys = HashMap::new();
        for value in raw.keys {
            // One key of a type this proxy does not read must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match key_algorithm(a) {
                    Some(a) => Some(a),
                    None => continue,
                },
            };
            let (Some(kid), Ok(decoding)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(&jwk)) else {
                continue;
            };
            if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            keys.insert(kid, Arc::new(Key { decoding, alg }));
        }
        Ok(KeySet { issuer: discovery.issuer, keys })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let unavailable = |e: reqwest::Error| OidcError::Unavailable(format!("{url}: {}", e.without_url()));
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let response = response.error_for_status().map_err(unavailable)?;
        response.json().await.map_err(unavailable)
    }

    /// Validates a new request's token (refreshing the keys for an unknown `kid`) and reads
    /// its Kafka credentials.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, OidcError> {
        let result = self.verify(token, self.config.jwks_min_refresh_interval, true).await;
        self.log_refusal(token, &result);
        result
    }

    /// Checks an open socket's token again, with keys no older than the revalidation interval.
    pub async fn revalidate(&self, token: &str) -> Result<(), OidcError> {
        self.refresh(self.config.revalidation_interval).await?;
        let result = self.verify(token, self.config.revalidation_interval, false).await;
        self.log_refusal(token, &result);
        result.map(|_| ())
    }

    async fn verify(&self, token: &str, min_age: Duration, refresh_unknown: bool) -> Result<Authenticated, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Invalid(format!("malformed token ({})", describe(e.kind()))))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(OidcError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let set = match self.current() {
            Some(set) => set,
            None => self.refresh(min_age).await?,
        };
        let (set, key) = match lookup(&set, header.kid.as_deref()) {
            Some(key) => (set, key),
            None if refresh_unknown => {
                let set = self.refresh(min_age).await?;
                match lookup(&set, header.kid.as_deref()) {
                    Some(key) => (set, key),
                    None => return Err(OidcError::Invalid("signing key not published by the provider".to_owned())),
                }
            }
            None => return Err(OidcError::Invalid("signing key no longer published by the provider".to_owned())),
        };
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(OidcError::Invalid(format!("algorithm {:?} does not match the key's", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&self.config.audience]);
        validation.set_issuer(&[&set.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => OidcError::Expired,
                kind => OidcError::Invalid(describe(kind).to_owned()),
            })?
            .claims;
        let kafka = self.config.kafka_claims.as_ref().and_then(|(user, pass)| {
            let username = claim(&claims, user)?.to_owned();
            let password = claim(&claims, pass)?.to_owned();
            (!username.is_empty()).then_some(KafkaCredentials { username, password, bearer: None })
        });
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let username = claims.get("preferred_username").and_then(Value::as_str).map(str::to_owned);
        let expires = claims.get("exp").and_then(Value::as_f64).map(|e| e as u64);
        Ok(Authenticated { token: Secret(token.to_owned()), subject, username, kafka, expires })
    }

    fn log_refusal(&self, token: &str, result: &Result<Authenticated, OidcError>) {
        let Err(e) = result else { return };
        if self.config.detailed_logging {
            // The subject is read without verification: it is only a hint for the operator.
            let subject = unverified_subject(token);
            tracing::info!(reason = %e, subject = subject.as_deref().unwrap_or("-"), "bearer token refused");
        } else {
            tracing::debug!(reason = %e, "bearer token refused");
        }
    }

    /// What a request without a valid token is told: a Bearer challenge in this provider's
    /// realm, or that the provider cannot be reached.
    pub fn refusal(&self, e: &OidcError) -> Refused {
        match e {
            OidcError::Missing => Refused::Challenge(Challenge::missing(Scheme::Bearer, &self.config.realm)),
            OidcError::Unavailable(_) => Refused::ProviderUnreachable,
            OidcError::Invalid(_) | OidcError::Expired => Refused::Challenge(self.invalid()),
        }
    }

    /// The Bearer challenge for a token that does not hold, or does not carry what the socket
    /// needs (its Kafka credentials).
    pub fn invalid(&self) -> Challenge {
        Challenge::invalid(Scheme::Bearer, &self.config.realm)
    }
}

/// The bearer token of a request: `Authorization: Bearer <jwt>`, else the `access_token`
/// query parameter (browsers cannot set headers on a WebSocket).
pub fn bearer_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_owned());
        }
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default()).ok()?;
    pairs.into_iter().find(|(k, v)| k == "access_token" && !v.is_empty()).map(|(_, v)| v)
}

fn lookup(set: &KeySet, kid: Option<&str>) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => set.keys.get(kid).cloned(),
        // Without a kid only a provider with a single key is unambiguous.
        None if set.keys.len() == 1 => set.keys.values().next().cloned(),
        None => None,
    }
}

/// A claim by name, or by a dotted path into nested objects (`kafka.user`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    if let Some(v) = claims.get(path) {
        return v.as_str();
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    value.as_str()
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// A reason for the log; never the token or its claims.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss, aud) is missing",
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => "not a JWT",
        _ => "token rejected",
    }
}

/// `sub` of a token, read without verifying it (for detailed logging only).
fn unverified_subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub").and_then(Value::as_str).map(|s| s.chars().take(64).collect())
}

/// Re-checks one socket's token every revalidation interval, and right after it expires, until
/// `stop` is cancelled (`None`: the socket ended first) or the token no longer holds. Provider
/// failures revoke it only once `WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT` of them happened in
/// a row (never with -1). What the socket does about it (a close code) is `http/`'s business.
pub async fn watch(oidc: Arc<Oidc>, auth: Authenticated, stop: tokio_util::sync::CancellationToken) -> Option<Revoked> {
    let interval = oidc.config.revalidation_interval;
    let expiry = auth.expires.map(|exp| exp.saturating_add(oidc.config.clock_skew.as_secs()).saturating_add(1));
    let mut failures = 0u32;
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let until_expiry = expiry.map_or(interval, |e| Duration::from_secs(e.saturating_sub(now)));
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(interval.min(until_expiry).max(Duration::from_millis(100))) => {}
        }
        match oidc.revalidate(&auth.token.0).await {
            Ok(()) => failures = 0,
            Err(OidcError::Unavailable(e)) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "token revalidation: provider not reachable");
                if oidc.config.revalidation_errors_limit.is_some_and(|limit| failures >= limit.max(1)) {
                    return Some(Revoked::ProviderDown);
                }
            }
            Err(e) => {
                let revoked = revoked(&e, auth.expires);
                tracing::info!(subject = auth.subject.as_deref().unwrap_or("-"), reason = %e, "closing a socket whose token is no longer valid");
                return Some(revoked);
            }
        }
    }
}

/// An open socket's token that failed its revalidation, for a token that expires at `expires`.
fn revoked(e: &OidcError, expires: Option<u64>) -> Revoked {
    match (e, expires) {
        (OidcError::Expired, Some(at)) => Revoked::Expired { at },
        (OidcError::Expired, None) => Revoked::Invalid("token expired".to_owned()),
        (OidcError::Invalid(why), _) => Revoked::Invalid(why.clone()),
        (OidcError::Unavailable(_), _) => Revoked::ProviderDown,
        (OidcError::Missing, _) => Revoked::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_from_header_first_then_query() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h, Some("clientId=a&access_token=q.t.x")), Some("q.t.x".to_owned()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h.t.x"));
        assert_eq!(bearer_token(&h, Some("access_token=q.t.x")), Some("h.t.x".to_owned()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        assert_eq!(bearer_token(&h, None), None);
        assert_eq!(bearer_token(&HeaderMap::new(), Some("access_token=")), None);
    }

    #[test]
    fn claims_by_flat_name_or_dotted_path() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"kafka.flat":"f","kafka":{"user":"alice","n":1}}"#).unwrap();
        assert_eq!(claim(&claims, "kafka.flat"), Some("f"));
        assert_eq!(claim(&claims, "kafka.user"), Some("alice"));
        assert_eq!(claim(&claims, "kafka.n"), None);
        assert_eq!(claim(&claims, "nope.user"), None);
    }

    #[test]
    fn a_failed_revalidation_says_what_happened() {
        assert_eq!(revoked(&OidcError::Expired, Some(1_800_000_000)), Revoked::Expired { at: 1_800_000_000 });
        assert_eq!(revoked(&OidcError::Expired, None).to_string(), "Bearer token is no longer valid: token expired");
        let withdrawn = OidcError::Invalid("signing key no longer published by the provider".into());
        assert_eq!(
            revoked(&withdrawn, Some(1)),
            Revoked::Invalid("signing key no longer published by the provider".into())
        );
        assert_eq!(revoked(&OidcError::Unavailable("timeout".into()), Some(1)), Revoked::ProviderDown);
    }

    #[test]
    fn debug_of_a_token_hides_it() {
        let a = Authenticated {
            token: Secret("eyJ.secret.sig".into()),
            subject: None,
            username: None,
            kafka: None,
            expires: None,
        };
        assert!(!format!("{a:?}").contains("secret"));
    }
}
