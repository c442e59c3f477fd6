//! HTTP Basic authentication against the configured user (`WSPROXY_BASIC_AUTH_*`).

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::auth::outcome::{Challenge, Scheme};
use crate::config::Secret;

/// The one user of Basic authentication.
#[derive(Clone)]
pub struct BasicAuth {
    pub realm: String,
    pub username: Secret,
    pub password: Secret,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuthError {
    /// No `Authorization: Basic` header.
    Missing,
    /// A header that does not decode or does not match.
    Invalid,
}

impl BasicAuth {
    /// Checks the `Authorization` header. Both fields are compared in constant time, and both
    /// are always compared, so timing tells nothing about which one was wrong.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), BasicAuthError> {
        let value = headers.get(header::AUTHORIZATION).ok_or(BasicAuthError::Missing)?;
        let value = value.to_str().map_err(|_| BasicAuthError::Invalid)?;
        let encoded =
            value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")).ok_or(BasicAuthError::Missing)?;
        let decoded = BASE64.decode(encoded.trim()).map_err(|_| BasicAuthError::Invalid)?;
        let (user, pass) = match decoded.iter().position(|b| *b == b':') {
            Some(i) => (&decoded[..i], &decoded[i + 1..]),
            None => return Err(BasicAuthError::Invalid),
        };
        let user_ok = user.ct_eq(self.username.0.as_bytes());
        let pass_ok = pass.ct_eq(self.password.0.as_bytes());
        if bool::from(user_ok & pass_ok) {
            Ok(())
        } else {
            Err(BasicAuthError::Invalid)
        }
    }

    /// What a refused request is told: a Basic challenge in the configured realm, with the
    /// reference's text for missing or invalid credentials.
    pub fn challenge(&self, e: BasicAuthError) -> Challenge {
        match e {
            BasicAuthError::Missing => Challenge::missing(Scheme::Basic, &self.realm),
            BasicAuthError::Invalid => Challenge::invalid(Scheme::Basic, &self.realm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> BasicAuth {
        BasicAuth { realm: "Test Server".into(), username: Secret("user".into()), password: Secret("p@ss:word".into()) }
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn accepts_the_user_and_a_password_containing_colons() {
        let good = format!("Basic {}", BASE64.encode("user:p@ss:word"));
        assert_eq!(auth().check(&with(&good)), Ok(()));
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_credentials() {
        assert_eq!(auth().check(&HeaderMap::new()), Err(BasicAuthError::Missing));
        assert_eq!(auth().check(&with("Bearer abc")), Err(BasicAuthError::Missing));
        assert_eq!(auth().check(&with("Basic !!!")), Err(BasicAuthError::Invalid));
        assert_eq!(auth().check(&with(&format!("Basic {}", BASE64.encode("nocolon")))), Err(BasicAuthError::Invalid));
        assert_eq!(
            auth().check(&with(&format!("Basic {}", BASE64.encode("user:wrong")))),
            Err(BasicAuthError::Invalid)
        );
        assert_eq!(
            auth().check(&with(&format!("Basic {}", BASE64.encode("User:p@ss:word")))),
            Err(BasicAuthError::Invalid)
        );
    }

    #[test]
    fn challenge_names_the_scheme_the_realm_and_why() {
        let c = auth().challenge(BasicAuthError::Invalid);
        assert_eq!((c.scheme, c.realm.as_str()), (Scheme::Basic, "Test Server"));
        assert_eq!(c.text, "The supplied authentication is invalid");
        let c = auth().challenge(BasicAuthError::Missing);
        assert_eq!(c.text, "The resource requires authentication, which was not supplied with the request");
    }
}
