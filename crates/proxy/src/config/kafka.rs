//! `[kafka-client]`: what every Kafka client of the proxy shares (bootstrap servers, security
//! protocol, SASL, timeouts), and the one mapping from the reference's Java client properties
//! to librdkafka's, which the producer and consumer sections use for their own overrides.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;
use super::tls;
use super::{Overrides, Secret};

/// SASL credentials of the proxy's own Kafka clients.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: Secret,
}

/// Settings shared by every Kafka client of the proxy.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_hosts: String,
    pub security_protocol: String,
    pub request_timeout_ms: u32,
    pub retry_backoff_ms: u32,
    /// How many times start-up retries reaching the cluster.
    pub broker_resolution_retries: u32,
    pub broker_resolution_retry_interval: Duration,
    /// From `WSPROXY_KAFKA_SASL_MECHANISM` and the JAAS config's username and password.
    pub sasl: Option<SaslConfig>,
    /// The mechanism alone (per-socket credentials use it even when the proxy has none).
    pub sasl_mechanism: Option<String>,
    /// With `OAUTHBEARER`: the proxy's own client-credentials grant.
    pub oauthbearer: Option<super::OAuthBearerConfig>,
    /// The CAs that sign the brokers' certificates, from the truststore (`ssl.ca.pem`).
    pub ssl_trusted: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    /// The client certificate and key for mutual TLS to Kafka, from the keystore.
    pub ssl_identity: Option<crate::keystore::Identity>,
    /// `ssl.endpoint.identification.algorithm`: `https` checks the broker host name.
    pub ssl_endpoint_identification: bool,
}

/// Reads `WSPROXY_KAFKA_*` (the `--bootstrap-hosts` flag wins). `bootstrap_required` is false
/// when the proxy brings its own cluster.
pub(super) fn read(r: &mut Reader<'_>, o: &Overrides, bootstrap_required: bool) -> KafkaConfig {
    let bootstrap_hosts = o.bootstrap_hosts.clone().unwrap_or_else(|| r.string(WSPROXY_KAFKA_BOOTSTRAP_HOSTS));
    if bootstrap_required && bootstrap_hosts.is_empty() {
        r.fail(WSPROXY_KAFKA_BOOTSTRAP_HOSTS, "required (comma-separated host:port list), or use --demo");
    }
    for host in bootstrap_hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let ok = host.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            r.fail(WSPROXY_KAFKA_BOOTSTRAP_HOSTS, format!("'{host}' is not host:port"));
        }
    }
    let security_protocol = r.string(WSPROXY_KAFKA_SECURITY_PROTOCOL).to_ascii_uppercase();
    if !matches!(security_protocol.as_str(), "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
        r.fail(
            WSPROXY_KAFKA_SECURITY_PROTOCOL,
            format!("'{security_protocol}' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        );
    }
    let (sasl_mechanism, sasl) = sasl(r);
    let oauthbearer = super::oauthbearer::read(r, sasl_mechanism.as_deref() == Some("OAUTHBEARER"));
    let stores = tls::kafka_stores(r);
    KafkaConfig {
        bootstrap_hosts,
        security_protocol,
        request_timeout_ms: r.parse(WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS, "a number of milliseconds"),
        retry_backoff_ms: r.parse(WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS, "a number of milliseconds"),
        broker_resolution_retries: r.parse(WSPROXY_BROKER_RESOLUTION_RETRIES, "a number"),
        broker_resolution_retry_interval: r.duration(WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL),
        sasl,
        sasl_mechanism,
        oauthbearer,
        ssl_trusted: stores.trusted,
        ssl_identity: stores.identity,
        ssl_endpoint_identification: stores.endpoint_identification,
    }
}

/// The SASL mechanism, and the proxy's own credentials from the JAAS line when one is set.
fn sasl(r: &mut Reader<'_>) -> (Option<String>, Option<SaslConfig>) {
    let mechanism = Some(r.string(WSPROXY_KAFKA_SASL_MECHANISM).to_ascii_uppercase()).filter(|m| !m.is_empty());
    if let Some(m) = &mechanism {
        if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER") {
            r.fail(
                WSPROXY_KAFKA_SASL_MECHANISM,
                format!(
                    "'{m}' cannot be mapped to librdkafka here; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                ),
            );
        }
    }
    let jaas = r.string(WSPROXY_KAFKA_SASL_JAAS_CFG);
    let sasl = match (&mechanism, jaas.is_empty()) {
        (_, true) => None,
        // The JAAS line of OAUTHBEARER holds a client id and secret (`oauthbearer.rs`).
        (Some(m), false) if m == "OAUTHBEARER" => None,
        (None, false) => {
            r.fail(WSPROXY_KAFKA_SASL_JAAS_CFG, "set, but WSPROXY_KAFKA_SASL_MECHANISM is not");
            None
        }
        (Some(m), false) => match parse_jaas(&jaas) {
            Some((username, password)) => {
                Some(SaslConfig { mechanism: m.clone(), username, password: Secret(password) })
            }
            None => {
                r.fail(WSPROXY_KAFKA_SASL_JAAS_CFG, "cannot find username=\"...\" and password=\"...\" in it");
                None
            }
        },
    };
    (mechanism, sasl)
}

/// Takes `username` and `password` from a Java JAAS line such as
/// `org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";`.
pub fn parse_jaas(jaas: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
        let end = jaas[start..].find('"')? + start;
        Some(jaas[start..end].to_owned())
    };
    Some((value("username")?, value("password")?))
}

/// Which kind of Kafka client a Java property is mapped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Producer,
    Consumer,
}

/// What a Java Kafka client property becomes in librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The librdkafka property of that name takes the value.
    To(&'static str),
    /// Accepted, no librdkafka equivalent is needed (why).
    Ignored(&'static str),
}

/// Keystores and truststores are read by the proxy and handed to librdkafka as PEM.
pub(super) const STORES_READ_BY_THE_PROXY: &str =
    "read by the proxy (JKS, PKCS#12 or PEM) and handed to librdkafka as ssl.ca.pem, ssl.certificate.pem, ssl.key.pem";

/// The one table from the seed's Java property names to librdkafka's, per client kind.
/// Properties handled elsewhere (JAAS, truststores) are mapped where the Kafka section is read.
pub fn librdkafka_property(kind: ClientKind, java: &str) -> Option<Mapping> {
    use ClientKind::*;
    use Mapping::*;
    Some(match (kind, java) {
        (_, "security.protocol") => To("security.protocol"),
        (_, "sasl.mechanism") => To("sasl.mechanism"),
        (_, "retry.backoff.ms") => To("retry.backoff.ms"),
        (_, "ssl.cipher.suites") => To("ssl.cipher.suites"),
        (_, "ssl.endpoint.identification.algorithm") => To("ssl.endpoint.identification.algorithm"),
        (Producer, "request.timeout.ms") => To("request.timeout.ms"),
        (Consumer, "request.timeout.ms") => To("socket.timeout.ms"),
        (Producer, "retries") => To("message.send.max.retries"),
        (Consumer, "retries") => Ignored("librdkafka consumers retry fetches on their own"),
        (Producer, "max.in.flight.requests.per.connection") => To("max.in.flight.requests.per.connection"),
        (Producer, "delivery.timeout.ms") => To("delivery.timeout.ms"),
        (Producer, "compression.type") => To("compression.type"),
        (_, "ssl.key.password" | "ssl.keystore.location" | "ssl.keystore.password" | "ssl.truststore.location")
        | (_, "ssl.truststore.password") => Ignored(STORES_READ_BY_THE_PROXY),
        (_, "ssl.truststore.type") => Ignored("the format is read from the file"),
        (_, "ssl.provider") => Ignored("librdkafka uses OpenSSL"),
        (_, "ssl.enabled.protocols") => Ignored("OpenSSL negotiates TLS 1.2 or 1.3"),
        _ => return None,
    })
}

/// The per-kind Kafka settings: the shared `WSPROXY_KAFKA_CLIENT_*` values, overridden by the
/// producer- or consumer-specific ones, mapped to librdkafka through [`librdkafka_property`].
pub(super) fn client_properties(r: &mut Reader<'_>, kind: ClientKind) -> Vec<(&'static str, String)> {
    // (this kind's setting, the shared setting it overrides, the Java property)
    let settings: &[(EnvVar, Option<EnvVar>, &str)] = match kind {
        ClientKind::Producer => &[
            (
                WSPROXY_KAFKA_PRODUCER_REQUEST_TIMEOUT_MS,
                Some(WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS),
                "request.timeout.ms",
            ),
            (WSPROXY_KAFKA_PRODUCER_NUM_RETRIES, Some(WSPROXY_KAFKA_CLIENT_NUM_RETRIES), "retries"),
            (WSPROXY_KAFKA_PRODUCER_RETRY_BACKOFF_MS, Some(WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS), "retry.backoff.ms"),
            (WSPROXY_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQ, None, "max.in.flight.requests.per.connection"),
        ],
        ClientKind::Consumer => &[
            (
                WSPROXY_KAFKA_CONSUMER_REQUEST_TIMEOUT_MS,
                Some(WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS),
                "request.timeout.ms",
            ),
            (WSPROXY_KAFKA_CONSUMER_NUM_RETRIES, Some(WSPROXY_KAFKA_CLIENT_NUM_RETRIES), "retries"),
            (WSPROXY_KAFKA_CONSUMER_RETRY_BACKOFF_MS, Some(WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS), "retry.backoff.ms"),
        ],
    };
    let mut out = Vec::new();
    for &(specific, shared, java) in settings {
        let own = r.string(specific);
        let shared = shared.map(|s| r.string(s)).unwrap_or_default();
        let value = if own.is_empty() { shared } else { own };
        if value.is_empty() {
            continue;
        }
        let Ok(n) = value.parse::<u64>() else {
            r.fail(specific, format!("'{value}' is not a number"));
            continue;
        };
        if java == "max.in.flight.requests.per.connection" && !(1..=5).contains(&n) {
            r.fail(specific, format!("{n} is outside 1 to 5, which the idempotent producer requires"));
            continue;
        }
        if let Some(Mapping::To(target)) = librdkafka_property(kind, java) {
            // librdkafka caps the producer's retries lower than Java's Integer.MAX_VALUE.
            let value = if target == "message.send.max.retries" { n.min(2_147_483_647).to_string() } else { value };
            out.push((target, value));
        }
    }
    out
}
