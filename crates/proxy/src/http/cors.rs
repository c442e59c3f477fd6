//! CORS for the HTTP fallback (`POST /http/in`, `GET /sse/out`), which browsers call from
//! pages of other origins: WebSockets need no CORS, these do.
//!
//! It follows `WSPROXY_ALLOWED_ORIGINS`, the list that guards the sockets:
//! - with a list, an `Origin` on it gets `Access-Control-Allow-Origin: <that origin>` and
//!   `Access-Control-Allow-Credentials: true` (Basic credentials, cookies); others get no CORS
//!   header (and the handlers refuse them with 403, as the sockets do);
//! - without a list and without client authentication, any origin may read (`*`, never with
//!   credentials);
//! - without a list but with Basic or OpenID Connect authentication, no CORS header: a
//!   wildcard must not go with credentials, so cross-origin pages need the list.
//!
//! Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here, before
//! authentication: browsers send them without credentials.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;

/// The routes CORS applies to.
const ROUTES: [&str; 2] = ["/http/in", "/sse/out"];

/// What a request's origin may read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// This origin, with credentials.
    Origin(HeaderValue),
    /// Any origin, without credentials.
    Any,
}

/// The middleware: answers preflights, and adds the CORS headers to the routes' answers
/// (refusals included, so that a page can read why).
pub async fn cors(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let authenticated = state.basic_auth.is_some() || state.oidc.is_some();
    let allowed = allowed(&state.config.server.allowed_origins, authenticated, req.headers());
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(req).await };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    match allowed {
        Some(Allowed::Origin(origin)) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        Some(Allowed::Any) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        None => return response,
    }
    if preflight {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, Last-Event-ID, X-Kafka-Auth"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

/// What the request's `Origin` may read, if anything (see the module doc).
fn allowed(list: &[String], authenticated: bool, headers: &HeaderMap) -> Option<Allowed> {
    let origin = headers.get(header::ORIGIN)?;
    if !list.is_empty() {
        let text = origin.to_str().ok()?;
        return list.iter().any(|a| a == text).then(|| Allowed::Origin(origin.clone()));
    }
    (!authenticated).then_some(Allowed::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h
    }

    #[test]
    fn listed_origins_get_themselves_with_credentials_and_no_wildcard_goes_with_credentials() {
        let list = vec!["https://app.example".to_owned()];
        let app = from("https://app.example");
        assert_eq!(allowed(&list, true, &app), Some(Allowed::Origin("https://app.example".parse().unwrap())));
        assert_eq!(allowed(&list, false, &app), Some(Allowed::Origin("https://app.example".parse().unwrap())));
        assert_eq!(allowed(&list, false, &from("https://evil.example")), None);
        // No list: anyone may read an unauthenticated proxy, nobody cross-origin an authenticated one.
        assert_eq!(allowed(&[], false, &from("https://evil.example")), Some(Allowed::Any));
        assert_eq!(allowed(&[], true, &from("https://evil.example")), None);
        // Not a browser: nothing to say.
        assert_eq!(allowed(&list, false, &HeaderMap::new()), None);
    }
}
