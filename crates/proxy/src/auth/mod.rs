//! Client-to-proxy authentication: who may open sockets and call the HTTP endpoints.
//!
//! - [`basic`]: HTTP Basic with one configured user, compared in constant time.
//! - [`oidc`]: OpenID Connect bearer tokens, the provider's keys, revalidation of open sockets.
//! - [`kafka_credentials`]: reads the per-socket Kafka credentials of `X-Kafka-Auth` (the value
//!   type is `kafka::credentials`, where the Kafka clients that log in with it live).
//! - [`outcome`]: what was decided, as values: a refusal with its challenge, an unreachable
//!   provider, a revoked token.
//!
//! Authentication says what happened and never how it is answered: `http/` renders a refusal
//! (401 with a `WWW-Authenticate` challenge and the reference's JSON body, or 503) and turns a
//! revoked token into a close code. The credentials themselves never reach a log line.
//! `auth` imports nothing from `http` or `pipeline` (`tests/layering.rs` checks it).

pub mod basic;
pub mod kafka_credentials;
pub mod oidc;
pub mod outcome;
