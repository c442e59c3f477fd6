//! `[kafka-client.schema-registry]`: the Confluent-compatible schema registry that checks `avro`
//! keys and values, and how its URLs are shown without their credentials.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;
use super::Secret;

/// `WSPROXY_SCHEMA_*`: a Confluent-compatible schema registry.
#[derive(Debug, Clone)]
pub struct SchemaRegistryConfig {
    /// Base URLs (`http://host:port[/path]`, no trailing slash), tried in order.
    pub urls: Vec<String>,
    /// `user:password` for Basic authentication.
    pub user_info: Option<Secret>,
    /// Register the Avro wrapper schemas at start.
    pub auto_register: bool,
    /// Deadline of one registry request.
    pub timeout: Duration,
    /// Parsed schemas kept in memory.
    pub cache_size: usize,
}

/// `WSPROXY_SCHEMA_*`; `None` when no URL is set (the other settings are then ignored).
pub(super) fn read(r: &mut Reader<'_>) -> Option<SchemaRegistryConfig> {
    let raw = r.string(WSPROXY_SCHEMA_REGISTRY_URL);
    if raw.is_empty() {
        return None;
    }
    let source = r.string(WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC).to_ascii_uppercase();
    if !matches!(source.as_str(), "USER_INFO" | "URL") {
        r.fail(WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC, format!("'{source}' is not supported here; use USER_INFO or URL"));
    }
    let mut user_info = Some(r.string(WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO)).filter(|u| !u.is_empty());
    let mut urls = Vec::new();
    for url in raw.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let Some(rest) = url.strip_prefix("http://") else {
            r.fail(
                WSPROXY_SCHEMA_REGISTRY_URL,
                format!("'{}' is not an http:// URL (https registries are not supported yet)", redact_userinfo(url)),
            );
            continue;
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (creds, host) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        if host.is_empty() || host.parse::<axum::http::uri::Authority>().is_err() {
            r.fail(WSPROXY_SCHEMA_REGISTRY_URL, "a URL has no valid host[:port]");
            continue;
        }
        if source == "URL" && user_info.is_none() {
            user_info = creds.map(str::to_owned);
        }
        let path = path.trim_end_matches('/');
        urls.push(if path.is_empty() { format!("http://{host}") } else { format!("http://{host}/{path}") });
    }
    if source == "USER_INFO" && user_info.as_deref().is_some_and(|u| !u.contains(':')) {
        r.fail(WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO, "expected user:password");
    }
    let timeout = r.duration(WSPROXY_SCHEMA_REGISTRY_TIMEOUT);
    r.above_zero(WSPROXY_SCHEMA_REGISTRY_TIMEOUT, timeout.is_zero());
    Some(SchemaRegistryConfig {
        urls,
        user_info: user_info.map(Secret),
        auto_register: r.boolean(WSPROXY_SCHEMA_AUTO_REGISTER),
        timeout,
        cache_size: r.parse(WSPROXY_SCHEMA_REGISTRY_CACHE_SIZE, "a number"),
    })
}

/// A URL with any `user:password@` replaced by `***@`.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}
