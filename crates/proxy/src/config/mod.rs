//! The typed configuration tree, read from the `WSPROXY_*` environment (names and defaults of
//! the Scala proxy), then overridden by command-line flags.
//!
//! Every problem is collected and reported at once, before any port is bound. Secrets live in
//! [`Secret`], whose `Debug` prints `***`.

mod env_vars;
mod oauthbearer;

pub use oauthbearer::OAuthBearerConfig;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

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

/// The HTTP listener and node identity.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Unique per node (`WSPROXY_SERVER_ID`).
    pub server_id: String,
    pub bind_interface: IpAddr,
    pub port: u16,
    /// How long a SIGTERM waits for sockets to flush before the process exits.
    pub shutdown_grace: Duration,
    /// HTTP Basic authentication of clients, when enabled.
    pub basic_auth: Option<BasicAuthConfig>,
    /// OpenID Connect bearer tokens, when enabled.
    pub openid: Option<OpenIdConfig>,
    /// Whether `/healthcheck` and `/ready` require authentication too.
    pub secure_healthcheck: bool,
    /// The HTTPS/WSS listener, when enabled.
    pub tls: Option<TlsConfig>,
    /// Browser origins allowed to open sockets (exact match); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Open sockets this node accepts in all (0: unlimited).
    pub max_connections: usize,
    /// Open sockets this node accepts from one client IP (0: unlimited).
    pub max_connections_per_ip: usize,
    /// The admin API listener, when enabled.
    pub admin: Option<AdminConfig>,
    /// A client has this long to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Accept queue of each listener (`listen(2)` backlog; the kernel caps it at
    /// `net.core.somaxconn`). The old 128 dropped SYNs when 1,000 clients connected at once.
    pub listen_backlog: u32,
    /// Whether `/socket/echo` is served.
    pub echo_enabled: bool,
    /// Whether the browser console is served at `/console` (its own origin may then open
    /// sockets even when `allowed_origins` does not name it).
    pub console_enabled: bool,
}

/// `WSPROXY_ADMIN_*`: the admin API's own listener (HTTPS when the main one has TLS).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind_interface: IpAddr,
    pub port: u16,
    /// Principals allowed to use the admin API (the Basic user, or a token's `sub` or
    /// `preferred_username`); empty allows any authenticated client.
    pub allowed_users: Vec<String>,
}

/// A compacted internal topic (name, replication, retention, start-up patience).
#[derive(Debug, Clone)]
pub struct InternalTopicConfig {
    pub topic: String,
    /// Wanted replicas; the topic gets min(this, brokers).
    pub replication_factor: i32,
    /// `retention.ms`; zero keeps records forever.
    pub retention: Duration,
    /// How long one attempt to create or load the topic may take.
    pub init_timeout: Duration,
    pub init_retries: u32,
    pub retry_interval: Duration,
}

/// `WSPROXY_SSL_*`: the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub bind_interface: IpAddr,
    pub port: u16,
    /// Serve only TLS (no plain listener).
    pub only: bool,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

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
    pub oauthbearer: Option<OAuthBearerConfig>,
    /// PEM file of the CAs that sign the brokers' certificates (`ssl.ca.location`).
    pub ssl_ca_location: Option<String>,
    /// PKCS#12 keystore for TLS client authentication to Kafka.
    pub ssl_keystore: Option<(String, Secret)>,
    /// `ssl.endpoint.identification.algorithm`: `https` checks the broker host name.
    pub ssl_endpoint_identification: bool,
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

/// The one table from the seed's Java property names to librdkafka's, per client kind.
/// Properties handled elsewhere (JAAS, truststores) are mapped in [`Config::load`].
pub fn librdkafka_property(kind: ClientKind, java: &str) -> Option<Mapping> {
    use ClientKind::*;
    use Mapping::*;
    Some(match (kind, java) {
        (_, "security.protocol") => To("security.protocol"),
        (_, "sasl.mechanism") => To("sasl.mechanism"),
        (_, "retry.backoff.ms") => To("retry.backoff.ms"),
        (_, "ssl.key.password") => To("ssl.key.password"),
        (_, "ssl.keystore.location") => To("ssl.keystore.location"),
        (_, "ssl.keystore.password") => To("ssl.keystore.password"),
        (_, "ssl.cipher.suites") => To("ssl.cipher.suites"),
        (_, "ssl.endpoint.identification.algorithm") => To("ssl.endpoint.identification.algorithm"),
        (Producer, "request.timeout.ms") => To("request.timeout.ms"),
        (Consumer, "request.timeout.ms") => To("socket.timeout.ms"),
        (Producer, "retries") => To("message.send.max.retries"),
        (Consumer, "retries") => Ignored("librdkafka consumers retry fetches on their own"),
        (Producer, "max.in.flight.requests.per.connection") => To("max.in.flight.requests.per.connection"),
        (Producer, "delivery.timeout.ms") => To("delivery.timeout.ms"),
        (Producer, "compression.type") => To("compression.type"),
        (_, "ssl.truststore.type") => Ignored("the truststore is read as PEM"),
        (_, "ssl.truststore.password") => Ignored("PEM truststores have no password"),
        (_, "ssl.provider") => Ignored("librdkafka uses OpenSSL"),
        (_, "ssl.enabled.protocols") => Ignored("OpenSSL negotiates TLS 1.2 or 1.3"),
        _ => return None,
    })
}

/// The shared producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub delivery_timeout_ms: u32,
    pub compression_type: String,
    pub linger_ms: u32,
    /// librdkafka's local queue, shared by all produce sockets (`queue.buffering.max.kbytes`).
    pub queue_max_kbytes: u32,
    pub sessions_enabled: bool,
    pub exactly_once_enabled: bool,
    /// Records one socket may have in flight before the proxy stops reading it.
    pub max_in_flight_records: usize,
    /// Bytes one socket may have in flight before the proxy stops reading it.
    pub max_in_flight_bytes: usize,
    /// librdkafka properties from the producer-specific Java settings.
    pub client_properties: Vec<(&'static str, String)>,
}

/// Per-socket consumers.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Prefetch bound per consumer socket (`queued.max.messages.kbytes`).
    pub queued_max_kbytes: u32,
    pub session_timeout_ms: u32,
    /// librdkafka properties from the consumer-specific Java settings.
    pub client_properties: Vec<(&'static str, String)>,
    /// Entries per partition kept for `autoCommit=false` commits.
    pub commit_stack_max_size: usize,
    pub commit_auto_enabled: bool,
    pub commit_auto_interval: Duration,
    pub commit_auto_max_age: Duration,
}

/// `WSPROXY_SESSION_STATE_*`: the shared session state topic.
#[derive(Debug, Clone)]
pub struct SessionStateConfig {
    pub topic: String,
    pub replication_factor: i32,
    pub retention: Duration,
    /// Bound on loading the state at start (and on each later wait for it).
    pub init_timeout: Duration,
    pub init_retries: u32,
    pub init_retry_interval: Duration,
    /// Silence after which another node's sockets no longer count (its group's session timeout).
    pub node_timeout: Duration,
}

/// WebSocket limits.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Frames above this get a `FRAME_TOO_LARGE` error frame; the socket stays open.
    pub max_frame_bytes: usize,
    /// Frames above this close the socket with 1009 (the codec refuses to buffer them).
    pub hard_max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    /// The server pings a socket that was quiet this long.
    pub keep_alive: Duration,
    /// A socket that sent nothing (not even a pong) this long is closed with 1001.
    pub idle_timeout: Duration,
}

/// `WSPROXY_SCHEMA_*`: a Confluent-compatible schema registry.
#[derive(Debug, Clone)]
pub struct SchemaRegistryConfig {
    /// Base URLs (`http://host:port[/path]`, no trailing slash), tried in order.
    pub urls: Vec<String>,
    /// `user:password` for Basic authentication.
    pub user_info: Option<Secret>,
    /// Register the Avro wrapper schemas at start.
    pub auto_register: bool,
    /// Deadline of one registry request.
    pub timeout: Duration,
    /// Parsed schemas kept in memory.
    pub cache_size: usize,
}

/// One environment variable the proxy reads: its name and what it sets.
pub struct EnvVar {
    pub name: &'static str,
    /// The key in the `--config` TOML file (the Scala proxy's HOCON path under `kafka.ws.proxy`).
    pub key: &'static str,
    /// Never printed: `--print-config` shows `***`.
    pub secret: bool,
    pub default: &'static str,
    pub help: &'static str,
}

pub use env_vars::ENV_VARS;

/// Reads typed values from a map of variables, collecting every problem.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> String {
        match self.vars.get(name) {
            Some(v) if !v.trim().is_empty() => v.trim().to_owned(),
            _ => ENV_VARS.iter().find(|e| e.name == name).map(|e| e.default.to_owned()).unwrap_or_default(),
        }
    }

    fn string(&mut self, name: &str) -> String {
        self.raw(name)
    }

    fn parse<T: std::str::FromStr + Default>(&mut self, name: &str, what: &str) -> T {
        let raw = self.raw(name);
        raw.parse().unwrap_or_else(|_| {
            self.errors.push(format!("{name}: '{raw}' is not {what}"));
            T::default()
        })
    }

    fn boolean(&mut self, name: &str) -> bool {
        let raw = self.raw(name);
        match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => {
                self.errors.push(format!("{name}: '{raw}' is not a boolean (true or false)"));
                false
            }
        }
    }

    fn duration(&mut self, name: &str) -> Duration {
        let raw = self.raw(name);
        parse_duration(&raw).unwrap_or_else(|e| {
            self.errors.push(format!("{name}: {e}"));
            Duration::ZERO
        })
    }
}

/// Parses the reference's duration forms: `10 seconds`, `1 second`, `5m`, `500ms`, `30 days`,
/// or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. '10 seconds', '5m', '500ms')"))?;
    let unit_secs = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return Err(format!("'{s}' has an unknown time unit '{unit}'")),
    };
    Ok(Duration::from_secs_f64(value * unit_secs))
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
        let mut r = Reader { vars, errors: Vec::new() };
        let port: u16 = match o.port {
            Some(p) => p,
            None => r.parse("WSPROXY_PORT", "a port number (0 to 65535)"),
        };
        let bind_interface = match o.bind_interface {
            Some(ip) => ip,
            None => {
                let raw = r.string("WSPROXY_BIND_INTERFACE");
                raw.parse().unwrap_or_else(|_| {
                    r.errors.push(format!("WSPROXY_BIND_INTERFACE: '{raw}' is not an IP address"));
                    IpAddr::from([0, 0, 0, 0])
                })
            }
        };
        let bootstrap_hosts = o.bootstrap_hosts.clone().unwrap_or_else(|| r.string("WSPROXY_KAFKA_BOOTSTRAP_HOSTS"));
        if bootstrap_required && bootstrap_hosts.is_empty() {
            r.errors.push(
                "WSPROXY_KAFKA_BOOTSTRAP_HOSTS: required (comma-separated host:port list), or use --demo".to_owned(),
            );
        }
        for host in bootstrap_hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let ok = host.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                r.errors.push(format!("WSPROXY_KAFKA_BOOTSTRAP_HOSTS: '{host}' is not host:port"));
            }
        }
        let compression_type = r.string("WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE").to_ascii_lowercase();
        if !matches!(compression_type.as_str(), "none" | "gzip" | "snappy" | "lz4" | "zstd") {
            r.errors.push(format!(
                "WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE: '{compression_type}' is not one of none, gzip, snappy, lz4, zstd"
            ));
        }
        let security_protocol = r.string("WSPROXY_KAFKA_SECURITY_PROTOCOL").to_ascii_uppercase();
        if !matches!(security_protocol.as_str(), "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
            r.errors.push(format!(
                "WSPROXY_KAFKA_SECURITY_PROTOCOL: '{security_protocol}' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            ));
        }
        let max_frame_bytes: usize = r.parse("WSPROXY_WS_MAX_FRAME_SIZE", "a size in bytes");
        let basic_auth = if r.boolean("WSPROXY_BASIC_AUTH_ENABLED") {
            let (realm, username, password) = (
                r.string("WSPROXY_BASIC_AUTH_REALM"),
                r.string("WSPROXY_BASIC_AUTH_USERNAME"),
                r.string("WSPROXY_BASIC_AUTH_PASSWORD"),
            );
            for (name, v) in [
                ("WSPROXY_BASIC_AUTH_REALM", &realm),
                ("WSPROXY_BASIC_AUTH_USERNAME", &username),
                ("WSPROXY_BASIC_AUTH_PASSWORD", &password),
            ] {
                if v.is_empty() {
                    r.errors.push(format!("{name}: required when WSPROXY_BASIC_AUTH_ENABLED=true"));
                }
            }
            Some(BasicAuthConfig { realm, username: Secret(username), password: Secret(password) })
        } else {
            None
        };
        let openid = openid_config(&mut r);
        if openid.is_some() && basic_auth.is_some() {
            r.errors.push(
                "WSPROXY_OPENID_ENABLED, WSPROXY_BASIC_AUTH_ENABLED: Basic authentication and OpenID Connect cannot both be enabled; choose one".to_owned(),
            );
        }
        let tls = if r.boolean("WSPROXY_SSL_ENABLED") {
            let port_raw = r.string("WSPROXY_SSL_PORT");
            let port = port_raw.parse::<u16>().unwrap_or_else(|_| {
                r.errors.push(format!(
                    "WSPROXY_SSL_PORT: '{port_raw}' is not a port; required when WSPROXY_SSL_ENABLED=true"
                ));
                0
            });
            let ssl_bind = r.string("WSPROXY_SSL_BIND_INTERFACE");
            let bind = if ssl_bind.is_empty() {
                bind_interface
            } else {
                ssl_bind.parse().unwrap_or_else(|_| {
                    r.errors.push(format!("WSPROXY_SSL_BIND_INTERFACE: '{ssl_bind}' is not an IP address"));
                    bind_interface
                })
            };
            let (cert, key) =
                (r.string("WSPROXY_SSL_CERTIFICATE_LOCATION"), r.string("WSPROXY_SSL_PRIVATE_KEY_LOCATION"));
            let keystore = r.string("WSPROXY_SSL_KEYSTORE_LOCATION");
            if cert.is_empty() || key.is_empty() {
                r.errors.push(if keystore.is_empty() {
                    "WSPROXY_SSL_CERTIFICATE_LOCATION, WSPROXY_SSL_PRIVATE_KEY_LOCATION: required when WSPROXY_SSL_ENABLED=true".to_owned()
                } else {
                    format!("WSPROXY_SSL_KEYSTORE_LOCATION: PKCS#12 keystores are not read yet; export PEM (openssl pkcs12 -in {keystore} -nokeys -out cert.pem; openssl pkcs12 -in {keystore} -nocerts -nodes -out key.pem) and set WSPROXY_SSL_CERTIFICATE_LOCATION and WSPROXY_SSL_PRIVATE_KEY_LOCATION")
                });
            } else {
                for (name, path) in
                    [("WSPROXY_SSL_CERTIFICATE_LOCATION", &cert), ("WSPROXY_SSL_PRIVATE_KEY_LOCATION", &key)]
                {
                    if std::fs::metadata(path).is_err() {
                        r.errors.push(format!("{name}: cannot read '{path}'"));
                    }
                }
            }
            let only = r.boolean("WSPROXY_SSL_ONLY");
            Some(TlsConfig { bind_interface: bind, port, only, certificate_pem: cert, private_key_pem: key })
        } else {
            None
        };
        let sasl_mechanism =
            Some(r.string("WSPROXY_KAFKA_SASL_MECHANISM").to_ascii_uppercase()).filter(|m| !m.is_empty());
        if let Some(m) = &sasl_mechanism {
            if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER") {
                r.errors.push(format!(
                    "WSPROXY_KAFKA_SASL_MECHANISM: '{m}' cannot be mapped to librdkafka here; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                ));
            }
        }
        let jaas = r.string("WSPROXY_KAFKA_SASL_JAAS_CFG");
        let oauthbearer = match sasl_mechanism.as_deref() {
            Some("OAUTHBEARER") => oauthbearer::read(&mut r, &jaas),
            _ => None,
        };
        let sasl = match (&sasl_mechanism, jaas.is_empty()) {
            (_, true) => None,
            (Some(m), false) if m == "OAUTHBEARER" => None,
            (None, false) => {
                r.errors.push("WSPROXY_KAFKA_SASL_JAAS_CFG: set, but WSPROXY_KAFKA_SASL_MECHANISM is not".to_owned());
                None
            }
            (Some(m), false) => match parse_jaas(&jaas) {
                Some((username, password)) => {
                    Some(SaslConfig { mechanism: m.clone(), username, password: Secret(password) })
                }
                None => {
                    r.errors.push(
                        "WSPROXY_KAFKA_SASL_JAAS_CFG: cannot find username=\"...\" and password=\"...\" in it"
                            .to_owned(),
                    );
                    None
                }
            },
        };
        let truststore = r.string("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION");
        let ssl_ca_location = if truststore.is_empty() {
            None
        } else {
            match std::fs::read(&truststore) {
                Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => Some(truststore),
                Ok(_) => {
                    r.errors.push(format!(
                        "WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION: '{truststore}' is not PEM; librdkafka reads PEM CAs (convert a JKS/PKCS#12 truststore with: keytool -exportcert -rfc -keystore <store> -alias <alias> > ca.pem)"
                    ));
                    None
                }
                Err(e) => {
                    r.errors.push(format!("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION: cannot read '{truststore}': {e}"));
                    None
                }
            }
        };
        let keystore = r.string("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION");
        let ssl_keystore = if keystore.is_empty() {
            None
        } else {
            if std::fs::metadata(&keystore).is_err() {
                r.errors.push(format!("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION: cannot read '{keystore}'"));
            }
            Some((keystore, Secret(r.string("WSPROXY_KAFKA_SSL_KEYSTORE_PASS"))))
        };
        let ssl_endpoint_identification =
            match r.string("WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO").to_ascii_lowercase().as_str() {
                "" | "none" => false,
                "https" => true,
                other => {
                    r.errors.push(format!("WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO: '{other}' is not '' or 'https'"));
                    false
                }
            };
        let schema_registry = schema_registry(&mut r);
        let mut config = Config {
            schema_registry,
            server: ServerConfig {
                server_id: o.server_id.clone().unwrap_or_else(|| r.string("WSPROXY_SERVER_ID")),
                bind_interface,
                port,
                shutdown_grace: r.duration("WSPROXY_SHUTDOWN_GRACE_PERIOD"),
                basic_auth,
                openid,
                secure_healthcheck: r.boolean("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT"),
                tls,
                max_connections: r.parse("WSPROXY_MAX_CONNECTIONS", "a number"),
                max_connections_per_ip: r.parse("WSPROXY_MAX_CONNECTIONS_PER_IP", "a number"),
                admin: admin_config(&mut r, bind_interface),
                allowed_origins: r
                    .string("WSPROXY_ALLOWED_ORIGINS")
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect(),
                header_read_timeout: r.duration("WSPROXY_HTTP_HEADER_READ_TIMEOUT"),
                listen_backlog: r.parse("WSPROXY_LISTEN_BACKLOG", "a number"),
                echo_enabled: r.boolean("WSPROXY_ECHO_ENABLED"),
                console_enabled: r.boolean("WSPROXY_CONSOLE_ENABLED"),
            },
            kafka: KafkaConfig {
                bootstrap_hosts,
                security_protocol,
                request_timeout_ms: r.parse("WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS", "a number of milliseconds"),
                retry_backoff_ms: r.parse("WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS", "a number of milliseconds"),
                broker_resolution_retries: r.parse("WSPROXY_BROKER_RESOLUTION_RETRIES", "a number"),
                broker_resolution_retry_interval: r.duration("WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL"),
                sasl,
                sasl_mechanism,
                oauthbearer,
                ssl_ca_location,
                ssl_keystore,
                ssl_endpoint_identification,
            },
            producer: ProducerConfig {
                delivery_timeout_ms: r.parse("WSPROXY_KAFKA_PRODUCER_DELIVER_TIMEOUT_MS", "a number of milliseconds"),
                compression_type,
                linger_ms: r.parse("WSPROXY_KAFKA_PRODUCER_LINGER_MS", "a number of milliseconds"),
                queue_max_kbytes: r.parse("WSPROXY_KAFKA_PRODUCER_QUEUE_MAX_KBYTES", "a number of KiB"),
                sessions_enabled: r.boolean("WSPROXY_PRODUCER_SESSIONS_ENABLED"),
                exactly_once_enabled: r.boolean("WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED"),
                max_in_flight_records: r.parse("WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS", "a number"),
                max_in_flight_bytes: r.parse("WSPROXY_PRODUCER_MAX_IN_FLIGHT_BYTES", "a size in bytes"),
                client_properties: client_properties(&mut r, ClientKind::Producer),
            },
            consumer: ConsumerConfig {
                queued_max_kbytes: r.parse("WSPROXY_CONSUMER_QUEUED_MAX_KBYTES", "a number of KiB"),
                client_properties: client_properties(&mut r, ClientKind::Consumer),
                session_timeout_ms: r.parse("WSPROXY_CONSUMER_SESSION_TIMEOUT_MS", "a number of milliseconds"),
                commit_stack_max_size: r.parse("WSPROXY_CH_MAX_STACK_SIZE", "a number"),
                commit_auto_enabled: r.boolean("WSPROXY_CH_AUTOCOMMIT_ENABLED"),
                commit_auto_interval: r.duration("WSPROXY_CH_AUTOCOMMIT_INTERVAL"),
                commit_auto_max_age: r.duration("WSPROXY_CH_AUTOCOMMIT_MAX_AGE"),
            },
            socket: SocketConfig {
                max_frame_bytes,
                hard_max_frame_bytes: max_frame_bytes.saturating_mul(2).max(64 * 1024),
                read_buffer_bytes: r.parse("WSPROXY_WS_READ_BUFFER_SIZE", "a size in bytes"),
                write_buffer_bytes: r.parse("WSPROXY_WS_WRITE_BUFFER_SIZE", "a size in bytes"),
                keep_alive: r.duration("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL"),
                idle_timeout: r.duration("WSPROXY_SOCKET_IDLE_TIMEOUT"),
            },
            sessions: SessionStateConfig {
                topic: r.string("WSPROXY_SESSION_STATE_TOPIC"),
                replication_factor: r.parse("WSPROXY_SESSION_STATE_REPLICATION_FACTOR", "a number"),
                retention: r.duration("WSPROXY_SESSION_STATE_RETENTION"),
                init_timeout: r.duration("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT"),
                init_retries: r.parse("WSPROXY_SESSION_STATE_TOPIC_INIT_RETRIES", "a number"),
                init_retry_interval: r.duration("WSPROXY_SESSION_STATE_TOPIC_INIT_RETRY_INTERVAL"),
                node_timeout: r.duration("WSPROXY_SESSION_NODE_TIMEOUT"),
            },
            limits: static_limits(&mut r),
            dynamic_config: dynamic_config(&mut r),
            metrics_enabled: r.boolean("WSPROXY_METRICS_ENABLED"),
            warnings: confluent_monitoring_warning(vars).into_iter().collect(),
            metrics_max_topic_labels: r.parse("WSPROXY_METRICS_MAX_TOPIC_LABELS", "a number"),
        };
        if config.server.basic_auth.is_some() && config.server.allowed_origins.is_empty() {
            // L5: browsers resend cached Basic credentials, so any web page can open sockets.
            config.warnings.push(
                "Basic auth is on and WSPROXY_ALLOWED_ORIGINS is empty: a web page on any site can open sockets \
                 with a browser's cached credentials (cross-site WebSocket hijacking); list your origins"
                    .to_owned(),
            );
        }
        for (name, zero) in [
            ("WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS", config.producer.max_in_flight_records == 0),
            ("WSPROXY_PRODUCER_MAX_IN_FLIGHT_BYTES", config.producer.max_in_flight_bytes == 0),
            ("WSPROXY_CH_MAX_STACK_SIZE", config.consumer.commit_stack_max_size == 0),
            ("WSPROXY_WS_MAX_FRAME_SIZE", config.socket.max_frame_bytes == 0),
            ("WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL", config.socket.keep_alive.is_zero()),
            ("WSPROXY_HTTP_HEADER_READ_TIMEOUT", config.server.header_read_timeout.is_zero()),
            ("WSPROXY_LISTEN_BACKLOG", config.server.listen_backlog == 0),
            ("WSPROXY_SOCKET_IDLE_TIMEOUT", config.socket.idle_timeout.is_zero()),
            ("WSPROXY_CH_AUTOCOMMIT_INTERVAL", config.consumer.commit_auto_interval.is_zero()),
            ("WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT", config.sessions.init_timeout.is_zero()),
            ("WSPROXY_SESSION_STATE_REPLICATION_FACTOR", config.sessions.replication_factor <= 0),
            ("WSPROXY_SESSION_STATE_TOPIC", config.sessions.topic.is_empty()),
        ] {
            if zero && !r.errors.iter().any(|e| e.starts_with(name)) {
                r.errors.push(format!("{name}: must be greater than zero"));
            }
        }
        if let Some(admin) = &config.server.admin {
            let authenticated = config.server.basic_auth.is_some() || config.server.openid.is_some();
            if !admin.allowed_users.is_empty() && !authenticated {
                r.errors.push("WSPROXY_ADMIN_ALLOWED_USERS: set, but neither WSPROXY_BASIC_AUTH_ENABLED nor WSPROXY_OPENID_ENABLED is, so no caller has a name to check".to_owned());
            }
            if !authenticated && !admin.bind_interface.is_loopback() {
                config.warnings.push(format!(
                    "WSPROXY_ADMIN_ENDPOINT_ENABLED: the admin API listens on {} without authentication: anyone who reaches port {} can change client limits and consumer group offsets; bind it to 127.0.0.1 (WSPROXY_ADMIN_BIND_INTERFACE) or enable authentication",
                    admin.bind_interface, admin.port
                ));
            }
        }
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(r.errors)
        }
    }
}

/// `WSPROXY_ADMIN_*`, when the admin API is enabled.
fn admin_config(r: &mut Reader<'_>, main_bind: IpAddr) -> Option<AdminConfig> {
    if !r.boolean("WSPROXY_ADMIN_ENDPOINT_ENABLED") {
        return None;
    }
    let raw = r.string("WSPROXY_ADMIN_BIND_INTERFACE");
    let bind_interface = if raw.is_empty() {
        main_bind
    } else {
        raw.parse().unwrap_or_else(|_| {
            r.errors.push(format!("WSPROXY_ADMIN_BIND_INTERFACE: '{raw}' is not an IP address"));
            main_bind
        })
    };
    let allowed_users = r
        .string("WSPROXY_ADMIN_ALLOWED_USERS")
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    Some(AdminConfig {
        bind_interface,
        port: r.parse("WSPROXY_ADMIN_PORT", "a port number (0 to 65535)"),
        allowed_users,
    })
}

/// Defaults and client-specific lists of client limits.
fn static_limits(r: &mut Reader<'_>) -> crate::limits::StaticLimits {
    let batch =
        if r.raw("WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE") == "0" && !r.raw("WSPROXY_DEFAULT_BATCH_SIZE").is_empty() {
            "WSPROXY_DEFAULT_BATCH_SIZE"
        } else {
            "WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE"
        };
    crate::limits::StaticLimits {
        consumer_default_messages_per_second: r
            .parse("WSPROXY_CONSUMER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC", "a number of records per second"),
        consumer_default_max_connections: r.parse("WSPROXY_CONSUMER_DEFAULT_MAX_CLIENT_CONNECTIONS", "a number"),
        consumer_default_batch_size: r.parse(batch, "a number"),
        producer_default_messages_per_second: r
            .parse("WSPROXY_PRODUCER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC", "a number of records per second"),
        producer_default_max_connections: r.parse("WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS", "a number"),
        consumers: client_list(r, "WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", |c: &crate::limits::ConsumerLimit| {
            c.group_id.clone()
        }),
        producers: client_list(r, "WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", |p: &crate::limits::ProducerLimit| {
            p.producer_id.clone()
        }),
    }
}

/// A JSON array of client limits (the TOML file's array of tables arrives here as JSON too).
fn client_list<T: serde::de::DeserializeOwned>(r: &mut Reader<'_>, name: &str, id: impl Fn(&T) -> String) -> Vec<T> {
    let raw = r.raw(name);
    match serde_json::from_str::<Vec<T>>(&raw) {
        Ok(list) => {
            let mut seen = std::collections::HashSet::new();
            for item in &list {
                let id = id(item);
                if id.is_empty() {
                    r.errors.push(format!("{name}: an entry has an empty id"));
                } else if !seen.insert(id.clone()) {
                    r.errors.push(format!("{name}: '{id}' is listed twice"));
                }
            }
            list
        }
        Err(e) => {
            r.errors.push(format!("{name}: not a valid list of client limits: {e}"));
            Vec::new()
        }
    }
}

/// `WSPROXY_DYNAMIC_CONFIG_*`, when dynamic configs are enabled.
fn dynamic_config(r: &mut Reader<'_>) -> Option<InternalTopicConfig> {
    if !r.boolean("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED") {
        return None;
    }
    let topic = r.string("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME");
    if topic.is_empty() {
        r.errors.push("WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME: must not be empty".to_owned());
    }
    let replication_factor: i32 = r.parse("WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR", "a number of replicas");
    if replication_factor < 1 && !r.errors.iter().any(|e| e.starts_with("WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR")) {
        r.errors.push("WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR: must be at least 1".to_owned());
    }
    Some(InternalTopicConfig {
        topic,
        replication_factor,
        retention: r.duration("WSPROXY_DYNAMIC_CONFIG_RETENTION"),
        init_timeout: r.duration("WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_TIMEOUT"),
        init_retries: r.parse("WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_RETRIES", "a number"),
        retry_interval: r.duration("WSPROXY_DYNAMIC_CONFIG_TOPIC_RETRY_INTERVAL"),
    })
}

/// `WSPROXY_OPENID_*` and `WSPROXY_JWT_*`, when OpenID Connect is enabled.
fn openid_config(r: &mut Reader<'_>) -> Option<OpenIdConfig> {
    if !r.boolean("WSPROXY_OPENID_ENABLED") {
        return None;
    }
    let well_known_url = r.string("WSPROXY_OPENID_WELLKNOWN");
    if !(well_known_url.starts_with("https://") || well_known_url.starts_with("http://")) {
        r.errors.push(format!(
            "WSPROXY_OPENID_WELLKNOWN: '{well_known_url}' is not an http(s) URL; required when WSPROXY_OPENID_ENABLED=true"
        ));
    }
    let audience = r.string("WSPROXY_OPENID_AUDIENCE");
    if audience.is_empty() {
        r.errors.push("WSPROXY_OPENID_AUDIENCE: required when WSPROXY_OPENID_ENABLED=true".to_owned());
    }
    let limit: i64 = r.parse("WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT", "a number (-1: no limit)");
    let (user_key, pass_key) = (r.string("WSPROXY_JWT_KAFKA_USERNAME_KEY"), r.string("WSPROXY_JWT_KAFKA_PASSWORD_KEY"));
    let kafka_claims = match (user_key.is_empty(), pass_key.is_empty()) {
        (false, false) => Some((user_key, pass_key)),
        (true, true) => None,
        _ => {
            r.errors
                .push("WSPROXY_JWT_KAFKA_USERNAME_KEY, WSPROXY_JWT_KAFKA_PASSWORD_KEY: set both or neither".to_owned());
            None
        }
    };
    let config = OpenIdConfig {
        well_known_url,
        audience,
        realm: r.string("WSPROXY_OPENID_REALM"),
        detailed_logging: r.boolean("WSPROXY_OPENID_ALLOW_DETAILED_LOGGING"),
        revalidation_interval: r.duration("WSPROXY_OPENID_REVALIDATION_INTERVAL"),
        revalidation_errors_limit: u32::try_from(limit).ok(),
        clock_skew: r.duration("WSPROXY_OPENID_CLOCK_SKEW"),
        request_timeout: r.duration("WSPROXY_OPENID_REQUEST_TIMEOUT"),
        jwks_min_refresh_interval: r.duration("WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL"),
        kafka_claims,
        kafka_token_auth_only: r.boolean("WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY"),
        kafka_oauthbearer: r.boolean("WSPROXY_JWT_KAFKA_OAUTHBEARER"),
    };
    for (name, zero) in [
        ("WSPROXY_OPENID_REVALIDATION_INTERVAL", config.revalidation_interval.is_zero()),
        ("WSPROXY_OPENID_REQUEST_TIMEOUT", config.request_timeout.is_zero()),
    ] {
        if zero && !r.errors.iter().any(|e| e.starts_with(name)) {
            r.errors.push(format!("{name}: must be greater than zero"));
        }
    }
    Some(config)
}

/// `WSPROXY_SCHEMA_*`; `None` when no URL is set (the other settings are then ignored).
fn schema_registry(r: &mut Reader<'_>) -> Option<SchemaRegistryConfig> {
    let raw = r.string("WSPROXY_SCHEMA_REGISTRY_URL");
    if raw.is_empty() {
        return None;
    }
    let source = r.string("WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC").to_ascii_uppercase();
    if !matches!(source.as_str(), "USER_INFO" | "URL") {
        r.errors.push(format!(
            "WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC: '{source}' is not supported here; use USER_INFO or URL"
        ));
    }
    let mut user_info = Some(r.string("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO")).filter(|u| !u.is_empty());
    let mut urls = Vec::new();
    for url in raw.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let Some(rest) = url.strip_prefix("http://") else {
            r.errors.push(format!(
                "WSPROXY_SCHEMA_REGISTRY_URL: '{}' is not an http:// URL (https registries are not supported yet)",
                redact_userinfo(url)
            ));
            continue;
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (creds, host) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        if host.is_empty() || host.parse::<axum::http::uri::Authority>().is_err() {
            r.errors.push("WSPROXY_SCHEMA_REGISTRY_URL: a URL has no valid host[:port]".to_owned());
            continue;
        }
        if source == "URL" && user_info.is_none() {
            user_info = creds.map(str::to_owned);
        }
        let path = path.trim_end_matches('/');
        urls.push(if path.is_empty() { format!("http://{host}") } else { format!("http://{host}/{path}") });
    }
    if source == "USER_INFO" && user_info.as_deref().is_some_and(|u| !u.contains(':')) {
        r.errors.push("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO: expected user:password".to_owned());
    }
    let timeout = r.duration("WSPROXY_SCHEMA_REGISTRY_TIMEOUT");
    if timeout.is_zero() && !r.errors.iter().any(|e| e.starts_with("WSPROXY_SCHEMA_REGISTRY_TIMEOUT")) {
        r.errors.push("WSPROXY_SCHEMA_REGISTRY_TIMEOUT: must be greater than zero".to_owned());
    }
    Some(SchemaRegistryConfig {
        urls,
        user_info: user_info.map(Secret),
        auto_register: r.boolean("WSPROXY_SCHEMA_AUTO_REGISTER"),
        timeout,
        cache_size: r.parse("WSPROXY_SCHEMA_REGISTRY_CACHE_SIZE", "a number"),
    })
}

/// The per-kind Kafka settings: the shared `WSPROXY_KAFKA_CLIENT_*` values, overridden by the
/// producer- or consumer-specific ones, mapped to librdkafka through [`librdkafka_property`].
fn client_properties(r: &mut Reader<'_>, kind: ClientKind) -> Vec<(&'static str, String)> {
    let prefix = match kind {
        ClientKind::Producer => "WSPROXY_KAFKA_PRODUCER_",
        ClientKind::Consumer => "WSPROXY_KAFKA_CONSUMER_",
    };
    let settings = [
        ("REQUEST_TIMEOUT_MS", Some("WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS"), "request.timeout.ms"),
        ("NUM_RETRIES", Some("WSPROXY_KAFKA_CLIENT_NUM_RETRIES"), "retries"),
        ("RETRY_BACKOFF_MS", Some("WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS"), "retry.backoff.ms"),
        ("MAX_IN_FLIGHT_REQ", None, "max.in.flight.requests.per.connection"),
    ];
    let mut out = Vec::new();
    for (suffix, shared, java) in settings {
        let specific = format!("{prefix}{suffix}");
        if kind == ClientKind::Consumer && suffix == "MAX_IN_FLIGHT_REQ" {
            continue;
        }
        let value = match r.raw(&specific) {
            v if !v.is_empty() => v,
            _ => match shared {
                Some(s) => r.raw(s),
                None => continue,
            },
        };
        if value.is_empty() {
            continue;
        }
        let Ok(n) = value.parse::<u64>() else {
            r.errors.push(format!("{specific}: '{value}' is not a number"));
            continue;
        };
        if java == "max.in.flight.requests.per.connection" && !(1..=5).contains(&n) {
            r.errors.push(format!("{specific}: {n} is outside 1 to 5, which the idempotent producer requires"));
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

/// A TOML syntax error without the snippet of the offending line the toml crate prints (L8):
/// that line may hold a password (JAAS, keystore, Basic auth). Line and column say where.
fn toml_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().next().unwrap_or("invalid TOML").trim_end_matches('.');
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            format!("--config {}: TOML parse error at line {line}, column {column}: {message}", path.display())
        }
        None => format!("--config {}: TOML parse error: {message}", path.display()),
    }
}

/// Reads a `--config` TOML file into variables keyed by their `WSPROXY_*` names, so that the
/// environment can override it. Keys are the Scala proxy's HOCON paths (an optional
/// `kafka.ws.proxy.` prefix is dropped); unknown keys and non-scalar values are errors, except
/// the arrays of tables of client-specific limits.
pub fn read_toml(path: &std::path::Path) -> Result<HashMap<String, String>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("--config {}: {e}", path.display())])?;
    let table: toml::Table = text.parse().map_err(|e| vec![toml_error(path, &text, &e)])?;
    let mut flat = Vec::new();
    let root = toml::Value::Table(table);
    flatten("", &root, &mut flat);
    let mut vars = HashMap::new();
    let mut errors = Vec::new();
    for (key, value) in flat {
        let key = key.strip_prefix("kafka.ws.proxy.").unwrap_or(&key).to_owned();
        let Some(var) = ENV_VARS.iter().find(|v| v.key == key) else {
            errors.push(format!("--config {}: unknown key '{key}'", path.display()));
            continue;
        };
        match value {
            toml::Value::String(s) => vars.insert(var.name.to_owned(), s.clone()),
            toml::Value::Integer(i) => vars.insert(var.name.to_owned(), i.to_string()),
            toml::Value::Float(f) => vars.insert(var.name.to_owned(), f.to_string()),
            toml::Value::Boolean(b) => vars.insert(var.name.to_owned(), b.to_string()),
            // `[[consumer.limits.client-specific-limits]]`: handed on as the variable's JSON.
            toml::Value::Array(_) if key.ends_with(".client-specific-limits") => {
                vars.insert(var.name.to_owned(), serde_json::to_string(value).expect("TOML values serialise"))
            }
            other => {
                errors.push(format!(
                    "--config {}: '{key}' must be a string, number or boolean, got {}",
                    path.display(),
                    other.type_str()
                ));
                None
            }
        };
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

fn flatten<'a>(prefix: &str, value: &'a toml::Value, out: &mut Vec<(String, &'a toml::Value)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}

/// The effective settings as TOML, secrets shown as `***`, each with its variable's name.
pub fn render_effective(vars: &HashMap<String, String>, o: &Overrides) -> String {
    let mut out = String::from("# Effective configuration (file < environment < flags); secrets masked.\n");
    for v in ENV_VARS {
        let overridden = match v.name {
            "WSPROXY_KAFKA_BOOTSTRAP_HOSTS" => o.bootstrap_hosts.clone(),
            "WSPROXY_PORT" => o.port.map(|p| p.to_string()),
            "WSPROXY_BIND_INTERFACE" => o.bind_interface.map(|i| i.to_string()),
            "WSPROXY_SERVER_ID" => o.server_id.clone(),
            _ => None,
        };
        let value = overridden.or_else(|| vars.get(v.name).cloned()).unwrap_or_else(|| v.default.to_owned());
        let shown = if v.secret && !value.is_empty() {
            "***".to_owned()
        } else if v.name == "WSPROXY_SCHEMA_REGISTRY_URL" {
            value.split(',').map(redact_userinfo).collect::<Vec<_>>().join(",")
        } else {
            value
        };
        out.push_str(&format!("{} = {}  # {}\n", quote(v.key), quote(&shown), v.name));
    }
    out
}

/// A URL with any `user:password@` replaced by `***@`.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// A TOML basic string (JSON's escaping is valid TOML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

/// The configuration table of the README, generated from [`ENV_VARS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | TOML key (`--config`) | default | meaning |\n|---|---|---|---|\n");
    for v in ENV_VARS {
        let default = if v.default.is_empty() { "-".to_owned() } else { format!("`{}`", v.default) };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {}{} |\n",
            v.name,
            v.key,
            default,
            v.help,
            if v.secret { " (secret)" } else { "" }
        ));
    }
    out
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

/// librdkafka has no Confluent monitoring interceptors: the seed's settings are accepted so
/// that existing deployments start, and named in one warning.
fn confluent_monitoring_warning(vars: &HashMap<String, String>) -> Option<String> {
    let mut set: Vec<&str> = vars
        .iter()
        .filter(|(k, v)| {
            let monitoring = k.starts_with("WSPROXY_KAFKA_MONITORING_") || k.starts_with("WSPROXY_KAFKA_METRICS_");
            let enabled = *k == "WSPROXY_CONFLUENT_MONITORING_ENABLED" && v.trim().eq_ignore_ascii_case("true");
            (monitoring && !v.trim().is_empty()) || enabled
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if set.is_empty() {
        return None;
    }
    set.sort_unstable();
    Some(format!(
        "Confluent monitoring interceptors are a Java client feature that librdkafka does not have; {} {} accepted but has no effect. Scrape the Prometheus metrics at /metrics instead (see README, Operating).",
        set.join(", "),
        if set.len() == 1 { "is" } else { "are" }
    ))
}

#[cfg(test)]
mod tests;
