//! Errors before the upgrade: one enum, mapped once to a status and a JSON body
//! `{"message": "..."}` (rendered like the reference: two-space indent, ` : ` separators).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

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
    /// The bearer token does not carry what the socket needs (its Kafka credentials); the
    /// value is the realm of the Bearer challenge.
    #[error("The supplied authentication is invalid")]
    BearerRefused(String),
    /// The OpenID Connect provider cannot be reached.
    #[error("OpenID Connect server does not seem to be available.")]
    OidcUnavailable,
    /// A connection limit is reached.
    #[error("{0}")]
    Overloaded(String),
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
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::KafkaUnavailable(_) | ApiError::Overloaded(_) | ApiError::OidcUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::KafkaUnauthenticated(_) | ApiError::BearerRefused(_) => StatusCode::UNAUTHORIZED,
            ApiError::KafkaForbidden(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
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
        if let ApiError::BearerRefused(realm) = &self {
            let challenge = format!("Bearer realm=\"{}\"", realm.replace('"', "'"));
            if let Ok(v) = header::HeaderValue::from_str(&challenge) {
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
}
