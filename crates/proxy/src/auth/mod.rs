//! Client-to-proxy authentication: who may open sockets and call the HTTP endpoints.
//!
//! - [`basic`]: HTTP Basic with one configured user, compared in constant time.
//! - [`oidc`]: OpenID Connect bearer tokens, the provider's keys, revalidation of open sockets.
//! - [`kafka_credentials`]: the per-socket Kafka credentials of `X-Kafka-Auth`.
//!
//! Failures are answered before any upgrade with 401, a `WWW-Authenticate` challenge and the
//! reference's JSON body; the credentials themselves never reach a log line.

pub mod basic;
pub mod kafka_credentials;
pub mod oidc;
