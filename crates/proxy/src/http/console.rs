//! `GET /console`: a browser console to produce and consume from, served from assets embedded in
//! the binary (plain HTML, CSS and one JavaScript module; no CDN, no build step).
//!
//! Routed only with `WSPROXY_CONSOLE_ENABLED` (on in `--demo`). The page talks to the proxy's
//! own `/socket/in` and `/socket/out`, so every check of those sockets applies to it; its own
//! origin may open them even when `WSPROXY_ALLOWED_ORIGINS` does not list it
//! ([`is_own_origin`]). Every answer carries a Content-Security-Policy that allows only the
//! page's origin and its WebSocket, and `X-Content-Type-Options: nosniff`.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::Config;
use crate::http::AppState;

const INDEX_HTML: &str = include_str!("../../assets/console/index.html");
const APP_JS: &str = include_str!("../../assets/console/app.js");
const APP_CSS: &str = include_str!("../../assets/console/app.css");

/// The console's routes (the caller adds them only when the console is enabled).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|h: HeaderMap| async move { asset(&h, "text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/console/app.js",
            get(|h: HeaderMap| async move { asset(&h, "text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/console/app.css", get(|h: HeaderMap| async move { asset(&h, "text/css; charset=utf-8", APP_CSS) }))
}

/// Total size of the embedded assets in bytes (the book's console chapter states it).
pub fn size_bytes() -> usize {
    INDEX_HTML.len() + APP_JS.len() + APP_CSS.len()
}

fn asset(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let csp = content_security_policy(host(headers));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("the policy is ASCII")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The request's `Host`, when it is a plain `host[:port]` (anything else is not echoed into a
/// header).
fn host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then_some(host)
}

/// Only the page's own origin: its scripts, styles, images and its WebSocket (`'self'` covers
/// `ws:` only in newer browsers, so the WebSocket origin is named when the host is known).
fn content_security_policy(host: Option<&str>) -> String {
    let sockets = host.map(|h| format!(" ws://{h} wss://{h}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'{sockets}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Whether `origin` is the console's own page (the request's host and port): with the console
/// on, it may open sockets even when `WSPROXY_ALLOWED_ORIGINS` does not list it.
///
/// Only for a host that is an IP address or `localhost`: a page of a DNS-rebinding attacker
/// sends its own name as both `Host` and `Origin`, so a matching name proves nothing. A console
/// reached by name needs its origin in `WSPROXY_ALLOWED_ORIGINS`.
pub fn is_own_origin(config: &Config, headers: &HeaderMap, origin: &str) -> bool {
    if !config.server.console_enabled {
        return false;
    }
    let Some(host) = host(headers) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let fixed = name.parse::<std::net::IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost");
    fixed && origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn the_policy_names_the_pages_own_websocket_origin_only() {
        let csp = content_security_policy(host(&headers("127.0.0.1:8078")));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8078 wss://127.0.0.1:8078;"), "{csp}");
        assert!(csp.starts_with("default-src 'none'; script-src 'self';"), "{csp}");
    }

    #[test]
    fn a_host_that_is_not_plain_is_not_echoed_into_the_policy() {
        assert_eq!(host(&headers("evil.example; script-src *")), None);
        let csp = content_security_policy(None);
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }

    #[test]
    fn own_origin_only_when_the_console_is_on_and_the_host_matches() {
        let vars = std::collections::HashMap::from([
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), "h:1".to_owned()),
            ("WSPROXY_CONSOLE_ENABLED".to_owned(), "true".to_owned()),
        ]);
        let on = Config::load(&vars, &Default::default(), true).unwrap();
        let h = headers("10.1.2.3:8078");
        assert!(is_own_origin(&on, &h, "http://10.1.2.3:8078"));
        assert!(is_own_origin(&on, &h, "https://10.1.2.3:8078"));
        assert!(!is_own_origin(&on, &h, "http://evil.example"));
        assert!(!is_own_origin(&on, &h, "http://10.1.2.3:8078.evil.example"));
        assert!(is_own_origin(&on, &headers("[::1]:8078"), "http://[::1]:8078"));
        assert!(is_own_origin(&on, &headers("localhost:8078"), "http://localhost:8078"));
        let mut off = on.clone();
        off.server.console_enabled = false;
        assert!(!is_own_origin(&off, &h, "http://10.1.2.3:8078"));
    }

    /// A DNS-rebinding page sends its own name as `Host` and `Origin`: a name is never "own".
    #[test]
    fn a_host_name_is_not_its_own_origin() {
        let vars = std::collections::HashMap::from([
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), "h:1".to_owned()),
            ("WSPROXY_CONSOLE_ENABLED".to_owned(), "true".to_owned()),
        ]);
        let on = Config::load(&vars, &Default::default(), true).unwrap();
        assert!(!is_own_origin(&on, &headers("rebind.evil.example:8078"), "http://rebind.evil.example:8078"));
    }
}
