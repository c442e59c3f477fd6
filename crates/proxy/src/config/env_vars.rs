//! Every setting in one table: its `WSPROXY_*` name, its TOML key (the reference's HOCON path
//! below `kafka.ws.proxy`), whether it is a secret, its default and a one-line help. The
//! `--help-env` output, the README table, `--print-config` and the `--config` key mapping are
//! generated from it.
//!
//! The `settings!` macro also makes each row a `const` named like the variable, and the
//! sections read settings only through those consts: a misspelled name does not compile.
//!
//! ```
//! use kafka_websocket_proxy::config::env_vars::WSPROXY_PORT;
//! assert_eq!((WSPROXY_PORT.name, WSPROXY_PORT.default), ("WSPROXY_PORT", "8078"));
//! ```
//!
//! ```compile_fail
//! // A name that is not in the table is not a setting.
//! let _ = kafka_websocket_proxy::config::env_vars::WSPROXY_PROT;
//! ```
//!
//! Entries read `NAME [secret]: "toml.key", "default", "help";`.

/// One environment variable the proxy reads: its name and what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    /// The key in the `--config` TOML file (the Scala proxy's HOCON path under `kafka.ws.proxy`).
    pub key: &'static str,
    /// Never printed: `--print-config` shows `***`.
    pub secret: bool,
    pub default: &'static str,
    pub help: &'static str,
}

/// Emits one `const` per row (named like the variable) and [`ENV_VARS`] with every row, in order.
macro_rules! settings {
    ($($name:ident $($secret:ident)?: $key:literal, $default:literal, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $name: EnvVar = EnvVar {
                name: stringify!($name),
                key: $key,
                secret: settings!(@secret $($secret)?),
                default: $default,
                help: $help,
            };
        )*
        /// Every environment variable, in one table (also printed by `--help-env`).
        pub const ENV_VARS: &[EnvVar] = &[$($name),*];
    };
    (@secret) => { false };
    (@secret secret) => { true };
}

settings! {
    WSPROXY_SERVER_ID: "server.server-id",
        "node-1", "unique id of this node";
    WSPROXY_BIND_INTERFACE: "server.bind-interface",
        "0.0.0.0", "address of the main listener (127.0.0.1 in --demo)";
    WSPROXY_PORT: "server.port",
        "8078", "port of the main listener";
    WSPROXY_SHUTDOWN_GRACE_PERIOD: "server.shutdown-grace-period",
        "20 seconds", "max time to drain sockets on SIGTERM";
    WSPROXY_KAFKA_BOOTSTRAP_HOSTS: "kafka-client.bootstrap-hosts",
        "", "Kafka bootstrap servers (required)";
    WSPROXY_KAFKA_SECURITY_PROTOCOL: "kafka-client.properties.security.protocol",
        "PLAINTEXT", "security.protocol";
    WSPROXY_KAFKA_SASL_MECHANISM: "kafka-client.properties.sasl.mechanism",
        "", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER";
    WSPROXY_KAFKA_SASL_JAAS_CFG secret: "kafka-client.properties.sasl.jaas.config",
        "", "JAAS config with username/password (OAUTHBEARER: clientId/clientSecret)";
    WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL: "kafka-client.properties.sasl.oauthbearer.token.endpoint.url",
        "", "OAUTHBEARER: the OAuth 2.0 token endpoint (client-credentials grant)";
    WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE: "kafka-client.properties.sasl.oauthbearer.scope",
        "", "OAUTHBEARER: the scope asked for (or the JAAS `scope` option)";
    WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS: "kafka-client.properties.sasl.oauthbearer.extensions",
        "", "OAUTHBEARER: SASL extensions sent with every token, `NAME=value,...` (also the JAAS `extension_NAME` options)";
    WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION: "kafka-client.properties.ssl.truststore.location",
        "", "truststore of the brokers' CAs: JKS, PKCS#12 or PEM (format read from the file)";
    WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS secret: "kafka-client.properties.ssl.truststore.password",
        "", "truststore password (JKS: empty skips the integrity check)";
    WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION: "kafka-client.properties.ssl.keystore.location",
        "", "client keystore for mutual TLS: JKS, PKCS#12 or PEM (first key entry, or the alias)";
    WSPROXY_KAFKA_SSL_KEYSTORE_PASS secret: "kafka-client.properties.ssl.keystore.password",
        "", "keystore password";
    WSPROXY_KAFKA_SSL_KEY_PASS secret: "kafka-client.properties.ssl.key.password",
        "", "password of the key entry, when not the keystore's";
    WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS: "kafka-client.properties.ssl.keystore.alias",
        "", "the keystore entry to use (default: the first private key entry); not in the Scala proxy";
    WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE: "kafka-client.properties.ssl.truststore.type",
        "", "JKS, PKCS12 or PEM; accepted, the format is read from the file";
    WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO: "kafka-client.properties.ssl.endpoint.identification.algorithm",
        "", "'https' checks broker host names";
    WSPROXY_MAX_CONNECTIONS: "server.max-connections",
        "0", "open sockets per node, 0: unlimited (503 beyond)";
    WSPROXY_MAX_CONNECTIONS_PER_IP: "server.max-connections-per-ip",
        "0", "open sockets per client IP, 0: unlimited (503 beyond)";
    WSPROXY_ALLOWED_ORIGINS: "server.allowed-origins",
        "", "comma-separated Origins allowed to open sockets (empty: any)";
    WSPROXY_SSL_ENABLED: "server.ssl.enabled",
        "false", "serve HTTPS/WSS";
    WSPROXY_SSL_ONLY: "server.ssl.ssl-only",
        "false", "no plain listener";
    WSPROXY_SSL_BIND_INTERFACE: "server.ssl.bind-interface",
        "", "TLS listener address (default: bind interface)";
    WSPROXY_SSL_PORT: "server.ssl.port",
        "", "TLS listener port (required with SSL)";
    WSPROXY_SSL_CERTIFICATE_LOCATION: "server.ssl.certificate-location",
        "", "PEM certificate chain";
    WSPROXY_SSL_PRIVATE_KEY_LOCATION: "server.ssl.private-key-location",
        "", "PEM private key";
    WSPROXY_SSL_KEYSTORE_LOCATION: "server.ssl.keystore-location",
        "", "keystore of the TLS listener: PKCS#12, JKS or PEM (format read from the file)";
    WSPROXY_SSL_KEYSTORE_PASS secret: "server.ssl.keystore-password",
        "", "keystore password";
    WSPROXY_SSL_KEYSTORE_ALIAS: "server.ssl.keystore-alias",
        "", "the keystore entry to use (default: the first private key entry); not in the Scala proxy";
    WSPROXY_BASIC_AUTH_ENABLED: "server.basic-auth.enabled",
        "false", "HTTP Basic auth for every endpoint";
    WSPROXY_BASIC_AUTH_REALM: "server.basic-auth.realm",
        "", "realm of the Basic challenge";
    WSPROXY_BASIC_AUTH_USERNAME: "server.basic-auth.username",
        "", "the one Basic auth user";
    WSPROXY_BASIC_AUTH_PASSWORD secret: "server.basic-auth.password",
        "", "its password";
    WSPROXY_OPENID_ENABLED: "server.openid-connect.enabled",
        "false", "OpenID Connect bearer tokens for every endpoint";
    WSPROXY_OPENID_WELLKNOWN: "server.openid-connect.well-known-url",
        "", "discovery document URL (required when enabled)";
    WSPROXY_OPENID_AUDIENCE: "server.openid-connect.audience",
        "", "audience a token must carry (required when enabled)";
    WSPROXY_OPENID_REALM: "server.openid-connect.realm",
        "", "realm of the Bearer challenge";
    WSPROXY_OPENID_ALLOW_DETAILED_LOGGING: "server.openid-connect.allow-detailed-logging",
        "false", "log why a token was refused, with its subject (never the token)";
    WSPROXY_OPENID_REVALIDATION_INTERVAL: "server.openid-connect.revalidation-interval",
        "10 minutes", "how often open sockets re-check their token";
    WSPROXY_OPENID_REVALIDATION_ERRORS_LIMIT: "server.openid-connect.revalidation-errors-limit",
        "-1", "provider failures in a row that close a socket (-1: never)";
    WSPROXY_OPENID_CLOCK_SKEW: "server.openid-connect.clock-skew",
        "30 seconds", "leeway on exp and nbf";
    WSPROXY_OPENID_REQUEST_TIMEOUT: "server.openid-connect.request-timeout",
        "5 seconds", "timeout of each call to the provider";
    WSPROXY_OPENID_JWKS_MIN_REFRESH_INTERVAL: "server.openid-connect.jwks-min-refresh-interval",
        "10 seconds", "least time between two key fetches for unknown kids";
    WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY: "server.openid-connect.custom-jwt.kafka-token-auth-only",
        "false", "Kafka credentials only from the token (X-Kafka-Auth ignored)";
    WSPROXY_JWT_KAFKA_OAUTHBEARER: "server.openid-connect.custom-jwt.kafka-oauthbearer",
        "false", "a socket's Kafka clients use its bearer token (SASL OAUTHBEARER)";
    WSPROXY_JWT_KAFKA_USERNAME_KEY: "server.openid-connect.custom-jwt.jwt-kafka-username-key",
        "", "claim (dotted path) with the Kafka username";
    WSPROXY_JWT_KAFKA_PASSWORD_KEY: "server.openid-connect.custom-jwt.jwt-kafka-password-key",
        "", "claim (dotted path) with the Kafka password";
    WSPROXY_SECURE_HEALTHCHECK_ENDPOINT: "server.secure-health-check-endpoint",
        "true", "auth on /healthcheck and /ready";
    WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS: "kafka-client.properties.request.timeout.ms",
        "30000", "request.timeout.ms";
    WSPROXY_KAFKA_CLIENT_NUM_RETRIES: "kafka-client.properties.retries",
        "2147483647", "retries (librdkafka: message.send.max.retries)";
    WSPROXY_KAFKA_PRODUCER_REQUEST_TIMEOUT_MS: "producer.kafka-client-properties.request.timeout.ms",
        "", "producer request.timeout.ms";
    WSPROXY_KAFKA_PRODUCER_NUM_RETRIES: "producer.kafka-client-properties.retries",
        "", "producer retries";
    WSPROXY_KAFKA_PRODUCER_RETRY_BACKOFF_MS: "producer.kafka-client-properties.retry.backoff.ms",
        "", "producer retry.backoff.ms";
    WSPROXY_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQ: "producer.kafka-client-properties.max.in.flight.requests.per.connection",
        "", "producer max.in.flight.requests.per.connection (1 to 5: idempotence)";
    WSPROXY_KAFKA_CONSUMER_REQUEST_TIMEOUT_MS: "consumer.kafka-client-properties.request.timeout.ms",
        "", "consumer request.timeout.ms (librdkafka: socket.timeout.ms)";
    WSPROXY_KAFKA_CONSUMER_NUM_RETRIES: "consumer.kafka-client-properties.retries",
        "", "accepted; librdkafka consumers retry on their own";
    WSPROXY_KAFKA_CONSUMER_RETRY_BACKOFF_MS: "consumer.kafka-client-properties.retry.backoff.ms",
        "", "consumer retry.backoff.ms";
    WSPROXY_KAFKA_CLIENT_RETRY_BACKOFF_MS: "kafka-client.properties.retry.backoff.ms",
        "100", "retry.backoff.ms";
    WSPROXY_BROKER_RESOLUTION_RETRIES: "server.broker-resolution-retries",
        "25", "start-up attempts to reach Kafka";
    WSPROXY_BROKER_RESOLUTION_RETRY_INTERVAL: "server.broker-resolution-retry-interval",
        "1 second", "pause between attempts";
    WSPROXY_KAFKA_PRODUCER_DELIVER_TIMEOUT_MS: "producer.delivery-timeout-ms",
        "120000", "delivery.timeout.ms";
    WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE: "producer.compression-type",
        "none", "none|gzip|snappy|lz4|zstd";
    WSPROXY_KAFKA_PRODUCER_LINGER_MS: "producer.linger-ms",
        "5", "linger.ms of the shared producer";
    WSPROXY_KAFKA_PRODUCER_QUEUE_MAX_KBYTES: "producer.queue-max-kbytes",
        "262144", "librdkafka queue bound, all sockets";
    WSPROXY_PRODUCER_SESSIONS_ENABLED: "producer.sessions-enabled",
        "false", "producer sessions (instanceId required)";
    WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED: "producer.exactly-once-enabled",
        "false", "allow transactional=true";
    WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS: "producer.max-in-flight-records",
        "10000", "per-socket unacknowledged records";
    WSPROXY_PRODUCER_MAX_IN_FLIGHT_BYTES: "producer.max-in-flight-bytes",
        "8388608", "per-socket unacknowledged bytes";
    WSPROXY_CONSUMER_QUEUED_MAX_KBYTES: "consumer.queued-max-kbytes",
        "512", "prefetch bound per consumer socket (and per shared fan-out consumer)";
    WSPROXY_CONSUMER_SESSION_TIMEOUT_MS: "consumer.session-timeout-ms",
        "10000", "session.timeout.ms of socket consumers";
    WSPROXY_CONSUMER_METADATA_REFRESH_INTERVAL: "consumer.metadata-refresh-interval",
        "30 seconds", "topicPattern sockets find new matching topics this often";
    WSPROXY_CONSUMER_MAX_CREDIT: "consumer.max-credit",
        "10000", "pull=true: most records a socket may have granted and not received";
    WSPROXY_CONSUMER_RESUME_WINDOW: "consumer.resume-window",
        "30 seconds", "resumable=true: how long a dropped socket's consumer stays parked for a reconnect";
    WSPROXY_CONSUMER_RESUME_MAX_PARKED: "consumer.resume-max-parked",
        "1000", "resumable=true: parked consumers per node (the oldest is closed beyond it)";
    WSPROXY_RESUME_TOPIC: "consumer.resume-topic-name",
        "_wsproxy.resume", "resumable=true: compacted topic through which a node asks another to hand a session over";
    WSPROXY_RESUME_HANDOVER_TIMEOUT: "consumer.resume-handover-timeout",
        "5 seconds", "resumable=true: how long a reconnect waits for another node to hand its session over";
    WSPROXY_CH_MAX_STACK_SIZE: "commit-handler.max-stack-size",
        "100", "uncommitted records kept per partition";
    WSPROXY_CH_AUTOCOMMIT_ENABLED: "commit-handler.auto-commit-enabled",
        "false", "commit records older than the max age";
    WSPROXY_CH_AUTOCOMMIT_INTERVAL: "commit-handler.auto-commit-interval",
        "1 second", "how often to look for old records";
    WSPROXY_CH_AUTOCOMMIT_MAX_AGE: "commit-handler.auto-commit-max-age",
        "20 seconds", "age at which a record is auto-committed";
    WSPROXY_FANOUT_MAX_SOCKETS: "fan-out.max-sockets",
        "0", "fanOut=true sockets per node, 0: no cap beyond the connection limits (503 beyond)";
    WSPROXY_FANOUT_MAX_LAG_RECORDS: "fan-out.max-lag-records",
        "10000", "a fan-out socket further behind the live end is closed (1013) or skips (onLag=skip)";
    WSPROXY_FANOUT_MAX_LAG_BYTES: "fan-out.max-lag-bytes",
        "16777216", "the same bound in bytes of rendered frames (also the most a shared consumer holds)";
    WSPROXY_FANOUT_CONSUMER_LINGER: "fan-out.consumer-linger",
        "10 seconds", "how long a shared fan-out consumer outlives its last socket";
    WSPROXY_SESSION_STATE_TOPIC: "session-handler.topic-name",
        "_wsproxy.session.state", "compacted topic of the session state";
    WSPROXY_SESSION_STATE_REPLICATION_FACTOR: "session-handler.topic-replication-factor",
        "3", "capped at the number of brokers";
    WSPROXY_SESSION_STATE_RETENTION: "session-handler.topic-retention",
        "30 days", "retention.ms of the session topic";
    WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT: "session-handler.topic-init-timeout",
        "30 seconds", "bound on loading the session state";
    WSPROXY_SESSION_STATE_TOPIC_INIT_RETRIES: "session-handler.topic-init-retries",
        "25", "attempts to create the session topic";
    WSPROXY_SESSION_STATE_TOPIC_INIT_RETRY_INTERVAL: "session-handler.topic-init-retry-interval",
        "1 second", "pause between those attempts";
    WSPROXY_SESSION_NODE_TIMEOUT: "session-handler.node-timeout",
        "30 seconds", "silence before a node's slots are freed";
    WSPROXY_WS_MAX_FRAME_SIZE: "server.websocket.max-frame-size",
        "4194304", "bigger frames get FRAME_TOO_LARGE";
    WSPROXY_WS_READ_BUFFER_SIZE: "server.websocket.read-buffer-size",
        "4096", "per-socket read buffer (and the most one read takes); an idle socket holds it";
    WSPROXY_WS_WRITE_BUFFER_SIZE: "server.websocket.write-buffer-size",
        "16384", "per-socket write buffer";
    WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL: "server.websocket.keep-alive-interval",
        "3 seconds", "ping a quiet socket this often";
    WSPROXY_HTTP_HEADER_READ_TIMEOUT: "server.header-read-timeout",
        "10 seconds", "time to send a request's headers (slowloris guard); closed without an answer";
    WSPROXY_LISTEN_BACKLOG: "server.listen-backlog",
        "1024", "accept queue of each listener (connections the kernel holds before they are accepted)";
    WSPROXY_SOCKET_IDLE_TIMEOUT: "server.websocket.idle-timeout",
        "60 seconds", "close (1001) a socket that sent nothing, not even a pong, this long";
    WSPROXY_ECHO_ENABLED: "server.echo-enabled",
        "false", "serve /socket/echo (diagnostics: echoes frames with the sockets' limits)";
    WSPROXY_CONSOLE_ENABLED: "server.console-enabled",
        "false", "serve the browser console at /console (on in --demo)";
    WSPROXY_METRICS_ENABLED: "metrics.enabled",
        "true", "export Prometheus metrics at /metrics";
    WSPROXY_CONFLUENT_MONITORING_ENABLED: "kafka-client.monitoring-enabled",
        "false", "accepted, no effect: use /metrics";
    WSPROXY_METRICS_MAX_TOPIC_LABELS: "metrics.max-topic-labels",
        "100", "topics with their own metric label";
    WSPROXY_ADMIN_ENDPOINT_ENABLED: "server.admin.enabled",
        "false", "serve the admin API on its own port";
    WSPROXY_ADMIN_BIND_INTERFACE: "server.admin.bind-interface",
        "", "admin listener address (default: bind interface)";
    WSPROXY_ADMIN_PORT: "server.admin.port",
        "9078", "admin listener port";
    WSPROXY_ADMIN_ALLOWED_USERS: "server.admin.allowed-users",
        "",
        "comma-separated principals allowed to use the admin API: the Basic user, or a token's sub or preferred_username (empty: any authenticated client)";
    WSPROXY_CONSUMER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC: "consumer.limits.default-messages-per-second",
        "0", "records/s per consume socket, a cap on its rate= (0: unlimited)";
    WSPROXY_CONSUMER_DEFAULT_MAX_CLIENT_CONNECTIONS: "consumer.limits.default-max-connections-per-client",
        "0", "sockets per groupId, 0: number of partitions";
    WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE: "consumer.limits.default-batch-size",
        "0", "records per frame, a cap on a socket's batchSize= (0: no cap)";
    WSPROXY_DEFAULT_BATCH_SIZE: "consumer.default-batch-size",
        "", "deprecated name of WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE";
    WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS: "consumer.limits.client-specific-limits",
        "[]", "JSON array of {group-id, max-connections?, messages-per-second?, batch-size?}";
    WSPROXY_PRODUCER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC: "producer.limits.default-messages-per-second",
        "0", "records/s per produce socket, 0: unlimited";
    WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS: "producer.limits.default-max-connections-per-client",
        "0", "sockets per producer clientId, 0: unlimited";
    WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS: "producer.limits.client-specific-limits",
        "[]", "JSON array of {producer-id, max-connections?, messages-per-second?}";
    WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED: "dynamic-config-handler.enabled",
        "false", "client limits set through the admin API";
    WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME: "dynamic-config-handler.topic-name",
        "_wsproxy.dynamic.configs", "compacted topic of dynamic limits";
    WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR: "dynamic-config-handler.topic-replication-factor",
        "3", "its replicas (at most the number of brokers)";
    WSPROXY_DYNAMIC_CONFIG_RETENTION: "dynamic-config-handler.topic-retention",
        "0", "its retention.ms, 0: forever";
    WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_TIMEOUT: "dynamic-config-handler.topic-init-timeout",
        "30 seconds", "time to create or load it per attempt";
    WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_RETRIES: "dynamic-config-handler.topic-init-retries",
        "25", "attempts to create it";
    WSPROXY_DYNAMIC_CONFIG_TOPIC_RETRY_INTERVAL: "dynamic-config-handler.topic-retry-interval",
        "1 second", "pause between attempts";
    WSPROXY_SCHEMA_REGISTRY_URL: "kafka-client.schema-registry.url",
        "",
        "Confluent-compatible schema registry, http://host:port (comma-separated: tried in order); checks avro keys and values";
    WSPROXY_SCHEMA_AUTO_REGISTER: "kafka-client.schema-registry.auto-register-schemas",
        "true", "register the Avro wrapper schemas in the registry at start";
    WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC: "kafka-client.schema-registry.properties.schema.registry.basic.auth.credentials.source",
        "USER_INFO", "USER_INFO (the setting below) or URL (user:password@ in the URL)";
    WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO secret: "kafka-client.schema-registry.properties.schema.registry.basic.auth.user.info",
        "", "user:password for the registry's Basic auth";
    WSPROXY_SCHEMA_REGISTRY_TIMEOUT: "kafka-client.schema-registry.request-timeout",
        "5 seconds", "deadline of one registry request";
    WSPROXY_SCHEMA_REGISTRY_CACHE_SIZE: "kafka-client.schema-registry.cache-size",
        "1000", "schemas kept in memory (by id)";
}
