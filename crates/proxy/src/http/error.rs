//! Errors before the upgrade: one enum, mapped once to a status and a JSON body
//! `{"message": "..."}` (rendered like the reference: two-space indent, ` : ` separators).
//! Authentication's refusals ([`Refused`]) become [`ApiError`]s here, so every 401 with its
//! `WWW-Authenticate` challenge is written by [`ApiError::into_response`].

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::outcome::{Challenge, Refused, Scheme};

/// Why a request was refused before any WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is missing or malformed (reference texts).
    #[error("{0}")]
    BadRequest(String),
    #[error("Topic {0} does not exist")]
    TopicNotFound(String),
    #[error("This is not the resource you are looking for.")]
    NotFound,
    #[error("HTTP method not allowed, supported methods: {0}")]
    MethodNotAllowed(&'static str),
    #[error("Expected WebSocket Upgrade request")]
    NotAnUpgrade,
    /// Kafka cannot be reached or answered with an error; details go to the log.
    #[error("{0}")]
    KafkaUnavailable(String),
    /// Kafka refused the socket's own credentials.
    #[error("{0}")]
    KafkaUnauthenticated(String),
    /// Kafka's ACLs do not let the socket's user use the topic.
    #[error("{0}")]
    KafkaForbidden(String),
    /// The client must authenticate (again): 401 with the challenge's `WWW-Authenticate`.
    #[error("{}", .0.text)]
    Unauthorized(Challenge),
    /// The OpenID Connect provider cannot be reached.
    #[error("{}", crate::auth::outcome::PROVIDER_UNREACHABLE)]
    OidcUnavailable,
    /// A connection limit is reached.
    #[error("{0}")]
    Overloaded(String),
    /// A request body (`POST /http/in`) beyond the frame size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A request body (`POST /http/in`) that did not arrive within the socket idle timeout.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request is refused by the proxy's own policy (e.g. its Origin).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::TopicNotFound(_) | ApiError::NotAnUpgrade => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::KafkaUnavailable(_) | ApiError::Overloaded(_) | ApiError::OidcUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::KafkaUnauthenticated(_) | ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::KafkaForbidden(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        match refused {
            Refused::Challenge(c) => ApiError::Unauthorized(c),
            Refused::ProviderUnreachable => ApiError::OidcUnavailable,
        }
    }
}

/// The `WWW-Authenticate` value of a challenge, as the reference writes it (a `"` in the realm
/// becomes `'`).
fn www_authenticate(c: &Challenge) -> String {
    let realm = c.realm.replace('"', "'");
    match c.scheme {
        Scheme::Basic => format!("Basic realm=\"{realm}\",charset=UTF-8"),
        Scheme::Bearer => format!("Bearer realm=\"{realm}\""),
    }
}

/// `{"message": text}` in the reference's rendering.
pub fn message_body(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("strings always serialise");
    format!("{{\n  \"message\" : {quoted}\n}}")
}

/// A JSON response with the given status and raw body.
pub fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status(), message_body(&self.to_string()));
        if let ApiError::Unauthorized(challenge) = &self {
            if let Ok(v) = header::HeaderValue::from_str(&www_authenticate(challenge)) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_matches_the_reference_rendering() {
        assert_eq!(
            message_body("This is not the resource you are looking for."),
            "{\n  \"message\" : \"This is not the resource you are looking for.\"\n}"
        );
        assert_eq!(ApiError::TopicNotFound("t".into()).to_string(), "Topic t does not exist");
        assert_eq!(ApiError::TopicNotFound("t".into()).status(), StatusCode::BAD_REQUEST);
    }

    async fn rendered(e: ApiError) -> (StatusCode, Vec<(String, String)>, String) {
        let r = e.into_response();
        let headers = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned())).collect();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn header(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[tokio::test]
    async fn refusals_render_as_the_reference_answers() {
        let basic = Refused::Challenge(Challenge::missing(Scheme::Basic, "Test Server"));
        assert_eq!(
            rendered(basic.into()).await,
            (
                StatusCode::UNAUTHORIZED,
                vec![
                    header("content-type", "application/json"),
                    header("www-authenticate", "Basic realm=\"Test Server\",charset=UTF-8"),
                ],
                "{\n  \"message\" : \"The resource requires authentication, which was not supplied with the request\"\n}"
                    .to_owned()
            )
        );
        let bearer = Refused::Challenge(Challenge::invalid(Scheme::Bearer, "a \"quoted\" realm"));
        assert_eq!(
            rendered(bearer.into()).await,
            (
                StatusCode::UNAUTHORIZED,
                vec![
                    header("content-type", "application/json"),
                    header("www-authenticate", "Bearer realm=\"a 'quoted' realm\""),
                ],
                "{\n  \"message\" : \"The supplied authentication is invalid\"\n}".to_owned()
            )
        );
        assert_eq!(
            rendered(Refused::ProviderUnreachable.into()).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![header("content-type", "application/json")],
                "{\n  \"message\" : \"OpenID Connect server does not seem to be available.\"\n}".to_owned()
            )
        );
    }
}
