//! A Kafka SASL user and password: the value a socket's producer or consumer logs in with when
//! the client brings its own credentials (`X-Kafka-Auth`, or claims of its bearer token).
//!
//! Only the value lives here, where the Kafka clients that use it can see it; reading it from a
//! request is authentication's work (`auth::kafka_credentials`).
//!
//! Or, with `WSPROXY_JWT_KAFKA_OAUTHBEARER`, the socket's own bearer token as its OAUTHBEARER
//! token (see `kafka::oauth`).

use std::fmt;

use crate::kafka::oauth::TokenCell;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_user_and_hides_the_password() {
        let c = KafkaCredentials { username: "u".into(), password: "hunter2".into(), bearer: None };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "KafkaCredentials { username: \"u\", password: *** }");
    }
}
