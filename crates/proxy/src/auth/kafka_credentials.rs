//! Per-socket Kafka credentials from `X-Kafka-Auth: <base64(user:pass)>` (reference 1.11; the
//! header may also carry a `Basic ` prefix). The socket's producer or consumer then
//! authenticates to Kafka as that user, so Kafka's ACLs apply per client.
//!
//! This file reads the header; the value itself, [`KafkaCredentials`], belongs to the Kafka
//! clients that log in with it (`kafka::credentials`).

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::kafka::credentials::KafkaCredentials;

/// The header name.
pub const HEADER: &str = "x-kafka-auth";

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
    fn malformed_headers_are_errors() {
        assert!(from_headers(&headers("%%%")).is_err());
        assert!(from_headers(&headers(&BASE64.encode("no-colon"))).is_err());
        assert!(from_headers(&headers(&BASE64.encode(":no-user"))).is_err());
    }
}
