//! The settings every Kafka client shares (bootstrap, security, timeouts), and what any client
//! may learn about its credentials: refused (tracked in [`AuthFailure`]) or not allowed on a
//! topic ([`ProbeError`], found by [`probe_topic`] before a socket's upgrade).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;

use super::oauth::OAuthContext;
use super::oauth_admin::{HasClient, Linked};
use super::Kafka;
use crate::config::Config;
use crate::telemetry::metrics;

/// Timeout of metadata lookups made while a client waits for its upgrade.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How often librdkafka reports statistics (queue depth, round trips, consumer lag).
pub(super) const STATS_INTERVAL_MS: &str = "5000";

/// Since when Kafka refuses a client's credentials, until it accepts them again (H2).
/// librdkafka reports a refusal through the error callback (requests just time out); the next
/// successful broker round trip (a broker `UP` in the statistics, a metadata answer) clears it,
/// so a passing failure (a broker restarting before its SCRAM credentials are loaded, a
/// password rotation race) is not remembered for good.
#[derive(Clone, Default)]
pub struct AuthFailure(Arc<AuthState>);

#[derive(Default)]
struct AuthState {
    /// Milliseconds since [`clock_ms`]'s epoch when the failure started; 0 while none.
    since_ms: AtomicU64,
    /// Whose credentials, for the metric and the log lines (`None`: not reported, e.g. a
    /// socket's consumer, whose refusal is the socket's 401).
    whose: Option<&'static str>,
    /// Kafka refused this client everything it needs (an idempotent producer's id: a user
    /// with no write permission anywhere); fatal for the client, a 403 for the socket.
    forbidden: std::sync::atomic::AtomicBool,
}

/// Milliseconds since the first call, never 0.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

impl AuthFailure {
    /// A failure tracker that is reported (metric, log lines) as `whose` credentials.
    pub(super) fn reported(whose: &'static str) -> Self {
        AuthFailure(Arc::new(AuthState {
            since_ms: AtomicU64::new(0),
            whose: Some(whose),
            forbidden: Default::default(),
        }))
    }

    pub(super) fn observe(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::ClusterAuthorizationFailed) {
            self.0.forbidden.store(true, Ordering::Release);
        }
        if !is_authentication_error(error) {
            return;
        }
        let first = self.0.since_ms.compare_exchange(0, clock_ms(), Ordering::AcqRel, Ordering::Acquire).is_ok();
        if let (true, Some(whose)) = (first, self.0.whose) {
            metrics::kafka_auth_failing(whose, 1.0);
            tracing::warn!(credentials = whose, %error, "Kafka refuses the credentials; produce sockets close if it lasts");
        }
    }

    /// Kafka answered a request of this client: its credentials are accepted (again).
    pub(super) fn clear(&self) {
        let since = self.0.since_ms.swap(0, Ordering::AcqRel);
        if let (true, Some(whose)) = (since != 0, self.0.whose) {
            metrics::kafka_auth_failing(whose, -1.0);
            let seconds = clock_ms().saturating_sub(since) / 1000;
            tracing::warn!(credentials = whose, seconds, "Kafka accepts the credentials again");
        }
    }

    /// How long Kafka has been refusing the credentials, if it does.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.0.since_ms.load(Ordering::Acquire) {
            0 => None,
            since => Some(Duration::from_millis(clock_ms().saturating_sub(since))),
        }
    }

    pub fn seen(&self) -> bool {
        self.failing_for().is_some()
    }
}

impl Drop for AuthState {
    fn drop(&mut self) {
        if let (true, Some(whose)) = (*self.since_ms.get_mut() != 0, self.whose) {
            metrics::kafka_auth_failing(whose, -1.0);
        }
    }
}

/// What a socket's own credentials may not do, found before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// Kafka refused the credentials (401).
    Unauthenticated(String),
    /// The user may not use the topic (403).
    Forbidden(String),
    /// Kafka did not answer (503).
    Unavailable(String),
}

/// One metadata round trip with a client's own credentials, in short slices so that refused
/// credentials are noticed as soon as librdkafka reports them. `serve` runs between slices: a
/// group consumer passes [`observe_queued_errors`](crate::kafka::consumer), since its errors
/// wait on its own queue, which nothing else polls before it subscribes.
pub(super) fn probe_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    auth: &AuthFailure,
    serve: &dyn Fn(),
) -> Result<(), ProbeError> {
    probe(client, Some(topic), auth, serve)
}

/// [`probe_topic`] without a topic: checks only that Kafka accepts the client's credentials
/// (a `topicPattern` socket reads the topics its ACLs let it see).
pub(super) fn probe_credentials<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    auth: &AuthFailure,
    serve: &dyn Fn(),
) -> Result<(), ProbeError> {
    probe(client, None, auth, serve)
}

fn probe<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    only: Option<&str>,
    auth: &AuthFailure,
    serve: &dyn Fn(),
) -> Result<(), ProbeError> {
    let topic = only.unwrap_or_default();
    let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
    let md = loop {
        let answer = client.fetch_metadata(only, Duration::from_millis(250));
        serve();
        match answer {
            Ok(md) => {
                auth.clear();
                break Ok(md);
            }
            Err(e) if is_authentication_error(&e) || auth.seen() => return Err(refused_credentials()),
            Err(_) if auth.0.forbidden.load(Ordering::Acquire) => {
                return Err(ProbeError::Forbidden(format!("Not authorized to access topics: [{topic}]")))
            }
            Err(e) if std::time::Instant::now() >= deadline => break Err(e),
            Err(_) => {}
        }
    };
    match md {
        Ok(md) => match md.topics().iter().find(|t| t.name() == topic).and_then(|t| t.error()) {
            None => Ok(()),
            Some(e) => match RDKafkaErrorCode::from(e) {
                RDKafkaErrorCode::TopicAuthorizationFailed => {
                    Err(ProbeError::Forbidden(format!("Not authorized to access topics: [{topic}]")))
                }
                code => Err(ProbeError::Unavailable(format!("Kafka answered {code} for topic {topic}"))),
            },
        },
        Err(e) => Err(ProbeError::Unavailable(format!("Kafka did not answer: {e}"))),
    }
}

pub(super) fn refused_credentials() -> ProbeError {
    ProbeError::Unauthenticated("Authentication failed: invalid Kafka credentials".to_owned())
}

/// True when Kafka refused the client's credentials.
pub fn is_authentication_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// A failed Kafka request, as the rest of the proxy sees it: rdkafka's error type stays inside
/// `kafka/`. It displays as librdkafka describes the failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ClientError(#[from] KafkaError);

impl ClientError {
    /// Kafka refused the client's credentials.
    pub fn is_authentication(&self) -> bool {
        is_authentication_error(&self.0)
    }
}

/// The settings every client shares: bootstrap, security, timeouts.
/// The one place where the seed's Java-named settings become librdkafka properties.
pub(super) fn base_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &k.bootstrap_hosts)
        .set("security.protocol", &k.security_protocol)
        .set("socket.timeout.ms", k.request_timeout_ms.to_string())
        .set("retry.backoff.ms", k.retry_backoff_ms.to_string())
        .set("log.connection.close", "false")
        // KIP-714 client telemetry: nothing reads it unless the broker has a metrics plugin,
        // and it costs every broker connection eight latency histograms (~30 KiB each): with
        // it on, an idle consume socket cost 674 KiB, most of it these.
        .set("enable.metrics.push", "false");
    if let Some(m) = &k.sasl_mechanism {
        cfg.set("sasl.mechanism", m);
    }
    if k.security_protocol.ends_with("SSL") {
        cfg.set("ssl.endpoint.identification.algorithm", if k.ssl_endpoint_identification { "https" } else { "none" });
        if let Some(certs) = &k.ssl_trusted {
            cfg.set("ssl.ca.pem", crate::keystore::certificates_pem(certs));
        }
        if let Some(id) = &k.ssl_identity {
            // Encrypted under a one-time password: rdkafka's Debug hides ssl.key.password, not ssl.key.pem.
            let (key, password) = id.librdkafka_key_pem().expect("the system has randomness");
            cfg.set("ssl.certificate.pem", id.chain_pem()).set("ssl.key.pem", key).set("ssl.key.password", password);
        }
    }
    cfg
}

/// A reader of one of the proxy's internal topics (session state, resume, dynamic configs),
/// authenticated as the proxy, its OAUTHBEARER token kept fresh: in `group` (the reader's
/// handle, whether or not it joins it), committing nothing, starting at `offset_reset` where it
/// has no committed offset. `own` adds the reader's own settings (see [`follow_closely`]).
pub(super) fn internal_reader<T>(
    kafka: &Kafka,
    group: &str,
    offset_reset: &str,
    own: impl FnOnce(&mut ClientConfig),
) -> Result<Linked<T>, KafkaError>
where
    T: FromClientConfigAndContext<OAuthContext> + HasClient,
{
    let mut cfg = kafka.inner.base.clone();
    cfg.set("group.id", group).set("enable.auto.commit", "false").set("auto.offset.reset", offset_reset);
    own(&mut cfg);
    Linked::new(cfg.create_with_context(kafka.oauth_context())?, kafka.proxy_token())
}

/// The settings of a reader that follows its topic closely (the session state and resume
/// topics, whose writers wait for their records to come back): a fetch returns within 10 ms of
/// a record and the next one is asked for at once, Kafka's return after an outage is noticed
/// within a second (librdkafka backs off up to 10 s), and reading never creates the topic.
pub(super) fn follow_closely(cfg: &mut ClientConfig) -> &mut ClientConfig {
    cfg.set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "1")
        .set("reconnect.backoff.max.ms", "1000")
        .set("allow.auto.create.topics", "false")
}

/// A producer of the proxy's internal topics, authenticated as the proxy, its OAUTHBEARER token
/// kept fresh: every write acknowledged by all in-sync replicas, sent at once, failed after
/// `message_timeout` (not librdkafka's default of 5 minutes), never creating the topic. `own`
/// adds the producer's own settings.
pub(super) fn internal_producer(
    kafka: &Kafka,
    message_timeout: Duration,
    own: impl FnOnce(&mut ClientConfig),
) -> Result<Linked<FutureProducer<OAuthContext>>, KafkaError> {
    let mut cfg = kafka.inner.base.clone();
    cfg.set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", message_timeout.as_millis().max(1).to_string())
        .set("allow.auto.create.topics", "false");
    own(&mut cfg);
    Linked::new(cfg.create_with_context(kafka.oauth_context())?, kafka.proxy_token())
}

/// librdkafka's `topic.blacklist` for pattern sockets: Kafka's internal topics, the proxy's
/// (`_wsproxy.*`) and its configured internal topics whatever their names (topic names hold
/// no regex metacharacter but the dot).
pub(super) fn internal_topics_blacklist(internal: &[String]) -> String {
    let mut list = vec![r"^__.*".to_owned(), r"^_wsproxy\..*".to_owned()];
    list.extend(internal.iter().map(|t| format!("^{}$", t.replace('.', r"\."))));
    list.join(",")
}
