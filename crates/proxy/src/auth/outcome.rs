//! What authentication decided, as plain values: `auth/` says what happened, `http/` renders it
//! (a 401 with its `WWW-Authenticate` challenge, a 503 before the upgrade, a close code on an
//! open socket). Nothing here knows a status code, a header or a close frame.

use std::fmt;

/// The reference's text for a request that carries no credentials.
pub const MISSING: &str = "The resource requires authentication, which was not supplied with the request";

/// The reference's text for credentials that do not hold.
pub const INVALID: &str = "The supplied authentication is invalid";

/// The reference's text for an identity provider that cannot be reached.
pub const PROVIDER_UNREACHABLE: &str = "OpenID Connect server does not seem to be available.";

/// The HTTP authentication scheme a challenge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 7617, the configured user (`WSPROXY_BASIC_AUTH_*`).
    Basic,
    /// RFC 6750, an OpenID Connect token (`WSPROXY_OPENID_*`).
    Bearer,
}

/// A refusal the client can answer by authenticating: which scheme and realm to use, and why
/// the request was refused (one of the reference's texts, safe to show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub realm: String,
    pub text: &'static str,
}

impl Challenge {
    /// No credentials of the scheme came with the request.
    pub fn missing(scheme: Scheme, realm: &str) -> Challenge {
        Challenge { scheme, realm: realm.to_owned(), text: MISSING }
    }

    /// The credentials came but do not hold (wrong, expired, or lacking what the socket needs).
    pub fn invalid(scheme: Scheme, realm: &str) -> Challenge {
        Challenge { scheme, realm: realm.to_owned(), text: INVALID }
    }
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The client must (again) authenticate.
    Challenge(Challenge),
    /// The identity provider cannot be reached, so no token can be checked; the client is not
    /// at fault and may retry.
    ProviderUnreachable,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Challenge(c) => f.write_str(c.text),
            Refused::ProviderUnreachable => f.write_str(PROVIDER_UNREACHABLE),
        }
    }
}

/// Why the token of an open socket no longer holds, found by its revalidation
/// ([`super::oidc::watch`]). The `Display` text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The token expired at `at` (its `exp`, seconds since the Unix epoch).
    Expired { at: u64 },
    /// The token no longer holds for another reason, e.g. its signing key was withdrawn;
    /// the reason names no claim and no part of the token.
    Invalid(String),
    /// The provider could not be reached `WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT` times in a
    /// row: the token may still be good, but it can no longer be checked.
    ProviderDown,
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoked::Expired { .. } => f.write_str("Bearer token is no longer valid: token expired"),
            Revoked::Invalid(why) => write!(f, "Bearer token is no longer valid: {why}"),
            Revoked::ProviderDown => f.write_str(PROVIDER_UNREACHABLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_carry_the_reference_texts() {
        let missing = Challenge::missing(Scheme::Basic, "r");
        assert_eq!(missing, Challenge { scheme: Scheme::Basic, realm: "r".into(), text: MISSING });
        assert_eq!(Challenge::invalid(Scheme::Bearer, "r").text, "The supplied authentication is invalid");
        assert_eq!(Refused::Challenge(missing).to_string(), MISSING);
        assert_eq!(Refused::ProviderUnreachable.to_string(), "OpenID Connect server does not seem to be available.");
    }

    #[test]
    fn revocation_texts_are_the_close_reasons_of_before() {
        assert_eq!(Revoked::Expired { at: 1 }.to_string(), "Bearer token is no longer valid: token expired");
        assert_eq!(
            Revoked::Invalid("signing key no longer published by the provider".into()).to_string(),
            "Bearer token is no longer valid: signing key no longer published by the provider"
        );
        assert_eq!(Revoked::ProviderDown.to_string(), PROVIDER_UNREACHABLE);
    }
}
