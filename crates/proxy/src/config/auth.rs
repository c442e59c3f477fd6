//! `[server.basic-auth]` and `[server.openid-connect]`: how clients authenticate (Basic, OpenID
//! Connect bearer tokens, or neither; never both).

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;
use super::Secret;

/// `WSPROXY_BASIC_AUTH_*`: one user for every endpoint.
#[derive(Debug, Clone)]
pub struct BasicAuthConfig {
    pub realm: String,
    pub username: Secret,
    pub password: Secret,
}

/// `WSPROXY_OPENID_*` and `WSPROXY_JWT_*`: bearer tokens from an OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct OpenIdConfig {
    /// The provider's discovery document (`.../.well-known/openid-configuration`).
    pub well_known_url: String,
    pub audience: String,
    pub realm: String,
    /// Log why a token was refused, with its subject (never the token itself).
    pub detailed_logging: bool,
    pub revalidation_interval: Duration,
    /// Provider failures in a row that close a socket while revalidating; `None`: never.
    pub revalidation_errors_limit: Option<u32>,
    /// Leeway on `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Timeout of every HTTP call to the provider.
    pub request_timeout: Duration,
    /// Least time between two key fetches caused by an unknown `kid`.
    pub jwks_min_refresh_interval: Duration,
    /// Claims (dotted paths) holding the socket's Kafka username and password.
    pub kafka_claims: Option<(String, String)>,
    /// Kafka credentials only from the token; `X-Kafka-Auth` is ignored.
    pub kafka_token_auth_only: bool,
    /// A socket's Kafka clients authenticate with its own bearer token (OAUTHBEARER).
    pub kafka_oauthbearer: bool,
}

/// Reads both ways to authenticate and refuses to enable the two at once.
pub(super) fn read(r: &mut Reader<'_>) -> (Option<BasicAuthConfig>, Option<OpenIdConfig>) {
    let basic = basic(r);
    let openid = openid(r);
    if openid.is_some() && basic.is_some() {
        r.error(
            "WSPROXY_OPENID_ENABLED, WSPROXY_BASIC_AUTH_ENABLED: Basic authentication and OpenID Connect cannot both be enabled; choose one",
        );
    }
    (basic, openid)
}

/// `WSPROXY_BASIC_AUTH_*`, when Basic authentication is enabled: every part is required.
fn basic(r: &mut Reader<'_>) -> Option<BasicAuthConfig> {
    if !r.boolean(WSPROXY_BASIC_AUTH_ENABLED) {
        return None;
    }
    let [realm, username, password] =
        [WSPROXY_BASIC_AUTH_REALM, WSPROXY_BASIC_AUTH_USERNAME, WSPROXY_BASIC_AUTH_PASSWORD].map(|var| {
            let value = r.string(var);
            if value.is_empty() {
                r.fail(var, "required when WSPROXY_BASIC_AUTH_ENABLED=true");
            }
            value
        });
    Some(BasicAuthConfig { realm, username: Secret(username), password: Secret(password) })
}

/// `WSPROXY_OPENID_*` and `WSPROXY_JWT_*`, when OpenID Connect is enabled.
fn openid(r: &mut Reader<'_>) -> Option<OpenIdConfig> {
    if !r.boolean(WSPROXY_OPENID_ENABLED) {
        return None;
    }
    let well_known_url = r.string(WSPROXY_OPENID_WELLKNOWN);
    if !(well_known_url.starts_with("https://") || well_known_url.starts_with("http://")) {
        r.fail(
            WSPROXY_OPENID_WELLKNOWN,
            format!("'{well_known_url}' is not an http(s) URL; required when WSPROXY_OPENID_ENABLED=true"),
        );
    }
    let audience = r.string(WSPROXY_OPENID_AUDIENCE);
    if audience.is_empty() {
        r.fail(WSPROXY_OPENID_AUDIENCE, "required when WSPROXY_OPENID_ENABLED=true");
    }
    let limit: i64 = r.parse(WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT, "a number (-1: no limit)");
    let (user_key, pass_key) = (r.string(WSPROXY_JWT_KAFKA_USERNAME_KEY), r.string(WSPROXY_JWT_KAFKA_PASSWORD_KEY));
    let kafka_claims = match (user_key.is_empty(), pass_key.is_empty()) {
        (false, false) => Some((user_key, pass_key)),
        (true, true) => None,
        _ => {
            r.error("WSPROXY_JWT_KAFKA_USERNAME_KEY, WSPROXY_JWT_KAFKA_PASSWORD_KEY: set both or neither");
            None
        }
    };
    let kafka_oauthbearer = r.boolean(WSPROXY_JWT_KAFKA_OAUTHBEARER);
    if kafka_oauthbearer && kafka_claims.is_some() {
        r.fail(
            WSPROXY_JWT_KAFKA_OAUTHBEARER,
            "the token is the Kafka credential; unset WSPROXY_JWT_KAFKA_USERNAME_KEY and WSPROXY_JWT_KAFKA_PASSWORD_KEY",
        );
    }
    let revalidation_interval = r.duration(WSPROXY_OPENID_REVALIDATION_INTERVAL);
    r.above_zero(WSPROXY_OPENID_REVALIDATION_INTERVAL, revalidation_interval.is_zero());
    let request_timeout = r.duration(WSPROXY_OPENID_REQUEST_TIMEOUT);
    r.above_zero(WSPROXY_OPENID_REQUEST_TIMEOUT, request_timeout.is_zero());
    Some(OpenIdConfig {
        well_known_url,
        audience,
        realm: r.string(WSPROXY_OPENID_REALM),
        detailed_logging: r.boolean(WSPROXY_OPENID_ALLOW_DETAILED_LOGGING),
        revalidation_interval,
        revalidation_errors_limit: u32::try_from(limit).ok(),
        clock_skew: r.duration(WSPROXY_OPENID_CLOCK_SKEW),
        request_timeout,
        jwks_min_refresh_interval: r.duration(WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL),
        kafka_claims,
        kafka_token_auth_only: r.boolean(WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY),
        kafka_oauthbearer,
    })
}
