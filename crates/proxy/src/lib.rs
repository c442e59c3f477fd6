//! Kafka WebSocket Proxy: lets any WebSocket client produce to and consume from Apache Kafka.
//!
//! Module map (data flows socket → pipeline → kafka for produce, and back for consume):
//! - [`config`] — the typed configuration tree from `WSPROXY_*` and flags.
//! - [`app`] — wiring and lifecycle (start-up checks, serve, graceful shutdown).
//! - [`auth`] — Basic authentication and per-socket Kafka credentials.
//! - [`http`] — routes, WebSocket upgrades, pre-upgrade errors.
//! - [`pipeline`] — one socket's produce or consume loop, commit stack, rate limit, close codes.
//! - [`sessions`] — socket limits per group and client, shared by all nodes through Kafka.
//! - [`kafka`] — the only module that names rdkafka (also the state log behind sessions, the
//!   admin operations and the dynamic config topic).
//! - [`limits`] — static and dynamic client-specific limits.
//! - [`schema_registry`] — the Confluent-compatible schema registry client (avro keys and values).
//! - [`demo`] — the zero-setup in-process cluster behind `--demo`.
//! - [`telemetry`] — logging.
//!
//! The wire contract itself (frames, formats, parameters) lives in the `wsproxy-protocol` crate.

pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod keystore;
pub mod limits;
pub mod pipeline;
pub mod schema_registry;
pub mod sessions;
pub mod telemetry;
