//! The typed configuration tree, read from the `WSPROXY_*` environment (names and defaults of
//! the Scala proxy), then overridden by command-line flags.
//!
//! Every problem is collected and reported at once, before any port is bound. Secrets live in
//! [`Secret`], whose `Debug` prints `***`.
//!
//! One file per section, each with its struct(s) and a `read(&mut Reader) -> …Config`:
//! `server.rs` (the main listener, which also holds what `tls.rs`, `auth.rs` and `admin.rs`
//! read), `kafka.rs` (shared client settings and the Java-to-librdkafka mapping),
//! `producer.rs`, `consumer.rs`, `socket.rs`, `sessions.rs`, `limits.rs` (client limits and the
//! dynamic config topic), `registry.rs` and `metrics.rs`. Every setting is a row of
//! [`env_vars`], read through its `const` by the `Reader` of `reader.rs`; `file.rs` reads
//! `--config`, and `render.rs` prints `--print-config` and `--help-env`.
//!
//! Adding a setting: a row in `env_vars.rs`, a field in its section's struct, one read in that
//! section's `read`.

pub mod env_vars;

mod admin;
mod auth;
mod consumer;
mod fanout;
mod file;
mod kafka;
mod limits;
mod metrics;
mod oauthbearer;
mod producer;
mod reader;
mod registry;
mod render;
mod server;
mod sessions;
mod socket;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

pub use admin::AdminConfig;
pub use auth::{BasicAuthConfig, OpenIdConfig};
pub use consumer::ConsumerConfig;
pub use env_vars::{EnvVar, ENV_VARS};
pub use fanout::FanOutConfig;
pub use file::read_toml;
pub use kafka::{librdkafka_property, parse_jaas, ClientKind, KafkaConfig, Mapping, SaslConfig};
pub use limits::InternalTopicConfig;
pub use oauthbearer::OAuthBearerConfig;
pub use producer::ProducerConfig;
pub use reader::parse_duration;
pub use registry::{redact_userinfo, SchemaRegistryConfig};
pub use render::{markdown_table, render_effective};
pub use server::ServerConfig;
pub use sessions::SessionStateConfig;
pub use socket::SocketConfig;
pub use tls::{expiry_warnings, TlsConfig, EXPIRY_WARNING_DAYS};

use reader::Reader;

/// A value that must never reach a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole configuration of one proxy node.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub kafka: KafkaConfig,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    /// Fan-out sockets (`fanOut=true`) and their shared consumers.
    pub fanout: FanOutConfig,
    pub socket: SocketConfig,
    pub sessions: SessionStateConfig,
    /// Static client-specific limits and their defaults.
    pub limits: crate::limits::StaticLimits,
    /// The dynamic config topic, when enabled.
    pub dynamic_config: Option<InternalTopicConfig>,
    /// The schema registry that checks `avro` keys and values, when configured.
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Whether `/metrics` is served (and metrics recorded at all).
    pub metrics_enabled: bool,
    /// Topics that get their own label in metrics; the rest share `_other`.
    pub metrics_max_topic_labels: usize,
    /// Settings that are accepted but have no effect here, to log once at start.
    pub warnings: Vec<String>,
}

/// Command-line values that override the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bootstrap_hosts: Option<String>,
    pub port: Option<u16>,
    pub bind_interface: Option<IpAddr>,
    pub server_id: Option<String>,
}

impl Config {
    /// Builds the configuration from variables (normally the process environment) and flags.
    /// `bootstrap_required` is false in demo mode, where the proxy brings its own cluster.
    pub fn load(
        vars: &HashMap<String, String>,
        o: &Overrides,
        bootstrap_required: bool,
    ) -> Result<Config, Vec<String>> {
        let mut r = Reader::new(vars);
        let config = Config::read(&mut r, o, bootstrap_required);
        r.finish(config)
    }

    /// Every section in turn; problems and warnings are kept in `r`.
    fn read(r: &mut Reader<'_>, o: &Overrides, bootstrap_required: bool) -> Config {
        metrics::confluent_monitoring_warning(r);
        let server = server::read(r, o);
        let kafka = kafka::read(r, o, bootstrap_required);
        let producer = producer::read(r);
        let consumer = consumer::read(r);
        let fanout = fanout::read(r);
        let socket = socket::read(r);
        let sessions = sessions::read(r);
        let limits = limits::read(r);
        let dynamic_config = limits::dynamic_config(r);
        let schema_registry = registry::read(r);
        let (metrics_enabled, metrics_max_topic_labels) = metrics::read(r);
        let mut config = Config {
            server,
            kafka,
            producer,
            consumer,
            fanout,
            socket,
            sessions,
            limits,
            dynamic_config,
            schema_registry,
            metrics_enabled,
            metrics_max_topic_labels,
            warnings: std::mem::take(&mut r.warnings),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        config.warnings.extend(expiry_warnings(&config.certificates(), now));
        config
    }

    /// Every certificate the configuration holds, by the setting it comes from (expiry checks).
    pub fn certificates(&self) -> Vec<(&'static str, &[rustls_pki_types::CertificateDer<'static>])> {
        let mut out = Vec::new();
        if let Some(t) = &self.server.tls {
            out.push(("WSPROXY_SSL_KEYSTORE_LOCATION", &t.identity.chain[..]));
        }
        if let Some(certs) = &self.kafka.ssl_trusted {
            out.push(("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &certs[..]));
        }
        if let Some(id) = &self.kafka.ssl_identity {
            out.push(("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION", &id.chain[..]));
        }
        out
    }
}

#[cfg(test)]
mod tests;
