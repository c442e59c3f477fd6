//! A Kafka SASL user and password: the value a socket's producer or consumer logs in with when
//! the client brings its own credentials (`X-Kafka-Auth`, or claims of its bearer token).
//!
//! Only the value lives here, where the Kafka clients that use it can see it; reading it from a
//! request is authentication's work (`auth::kafka_credentials`).

use std::fmt;

/// A Kafka SASL user; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KafkaCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for KafkaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaCredentials {{ username: {:?}, password: *** }}", self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_user_and_hides_the_password() {
        let c = KafkaCredentials { username: "u".into(), password: "hunter2".into() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "KafkaCredentials { username: \"u\", password: *** }");
    }
}
