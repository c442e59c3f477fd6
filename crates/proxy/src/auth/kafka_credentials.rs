//! Per-socket Kafka credentials from `X-Kafka-Auth: <base64(user:pass)>` (reference 1.11; the
//! header may also carry a `Basic ` prefix). The socket's producer or consumer then
//! authenticates to Kafka as that user, so Kafka's ACLs apply per client.

use std::fmt;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::kafka::oauth::TokenCell;

/// The header name.
pub const HEADER: &str = "x-kafka-auth";

/// A Kafka SASL user; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KafkaCredentials {
    pub username: String,
    pub password: String,
    /// A socket's own bearer token (`WSPROXY_JWT_KAFKA_OAUTHBEARER`): `username` is the token's
    /// subject and `password` is empty. Credentials compare and hash by subject only, so
    /// clients are shared per subject and never between subjects.
    pub bearer: Option<BearerKey>,
}

/// The token cell of a subject's bearer credentials; equal to any other (the subject is the key).
#[derive(Clone, Debug)]
pub struct BearerKey(pub TokenCell);

impl PartialEq for BearerKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for BearerKey {}

impl std::hash::Hash for BearerKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u8(1);
    }
}

impl fmt::Debug for KafkaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.bearer.is_some() { "bearer token" } else { "password" };
        write!(f, "KafkaCredentials {{ username: {:?}, {kind}: *** }}", self.username)
    }
}

/// Reads the header; `Ok(None)` when absent, `Err` with a client-safe text when malformed.
pub fn from_headers(headers: &HeaderMap) -> Result<Option<KafkaCredentials>, String> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let bad = || "The X-Kafka-Auth header must be base64(username:password).".to_owned();
    let value = value.to_str().map_err(|_| bad())?.trim();
    let encoded = value.strip_prefix("Basic ").unwrap_or(value);
    let decoded = BASE64.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    if username.is_empty() {
        return Err(bad());
    }
    Ok(Some(KafkaCredentials { username: username.to_owned(), password: password.to_owned(), bearer: None }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn round_trips_base64_user_and_password() {
        let c = from_headers(&headers(&BASE64.encode("alice:alice-secret"))).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "alice-secret"));
        let c = from_headers(&headers(&format!("Basic {}", BASE64.encode("bob:a:b")))).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "a:b"));
        assert_eq!(from_headers(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn malformed_headers_are_errors_and_debug_hides_the_password() {
        assert!(from_headers(&headers("%%%")).is_err());
        assert!(from_headers(&headers(&BASE64.encode("no-colon"))).is_err());
        let c = KafkaCredentials { username: "u".into(), password: "hunter2".into(), bearer: None };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
