//! The only module that names rdkafka: the shared producer, per-socket consumers, metadata
//! lookups, and the mapping of Kafka errors to error codes.
//!
//! One producer serves every produce socket (librdkafka clients cost threads and hundreds of
//! KiB each); a consumer group member needs its own client, so each consume socket gets one,
//! with its prefetch capped so that slow sockets cost bounded memory.

pub mod admin;
pub mod closer;
pub mod config_log;
pub mod credentials;
pub mod headers;
pub mod oauth;
pub(crate) mod oauth_admin;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use wsproxy_protocol::params::ConsumerParams;
use wsproxy_protocol::produce::ProducerRecord;
use wsproxy_protocol::ErrorCode;

pub mod state_log;

use crate::config::Config;
use crate::kafka::closer::{ClientKind, OffRuntime};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::oauth::{OAuthContext, TokenCell};
use crate::telemetry::metrics;

/// Timeout of metadata lookups made while a client waits for its upgrade.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How often librdkafka reports statistics (queue depth, round trips, consumer lag).
const STATS_INTERVAL_MS: &str = "5000";

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
    fn reported(whose: &'static str) -> Self {
        AuthFailure(Arc::new(AuthState {
            since_ms: AtomicU64::new(0),
            whose: Some(whose),
            forbidden: Default::default(),
        }))
    }

    fn observe(&self, error: &KafkaError) {
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
    fn clear(&self) {
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

/// A producer's context: turns librdkafka statistics into metrics, notes refused credentials.
pub struct ProducerContext {
    auth: AuthFailure,
    kind: ClientKind,
    /// The shared producer: its statistics are the producer metrics.
    shared: bool,
    /// OAUTHBEARER: where the token comes from (the proxy's, or the socket's subject's).
    token: Option<TokenCell>,
}

impl Drop for ProducerContext {
    fn drop(&mut self) {
        // The context goes with the librdkafka handle: this is where the client was destroyed.
        closer::context_dropped(self.kind);
    }
}

impl ClientContext for ProducerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        oauth::oauth_token(self.token.as_ref())
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.observe(&error);
        tracing::error!(target: "librdkafka", %error, "{reason}");
    }

    fn stats(&self, s: Statistics) {
        // A broker that is up has accepted this client's credentials.
        if s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP") {
            self.auth.clear();
        }
        if !self.shared {
            return;
        }
        let rtts: Vec<(String, Duration)> = s
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .filter_map(|b| b.rtt.as_ref().map(|w| (b.nodename.clone(), Duration::from_micros(w.avg.max(0) as u64))))
            .collect();
        metrics::producer_stats(s.msg_cnt, s.msg_size, &rtts);
        if let Some(eos) = &s.eos {
            metrics::producer_txn_state(&eos.idemp_state, &eos.txn_state);
        }
    }
}

/// A consume socket's context: keeps the consumer's lag on its topic, as librdkafka reports it.
pub struct SocketConsumerContext {
    topic: String,
    lag: Arc<AtomicI64>,
    auth: AuthFailure,
    /// Partitions of `topic` revoked and not assigned back, and those lost since the socket
    /// last took them (code review L4).
    revoked: Mutex<Revoked>,
    /// The partitions of `topic` assigned to this consumer, kept by the rebalance callback so
    /// that reading them is no op round trip to librdkafka's main thread (L3).
    assigned: Mutex<std::collections::HashSet<i32>>,
    /// OAUTHBEARER: where the token comes from (the proxy's, or the socket's subject's).
    token: Option<TokenCell>,
}

#[derive(Default)]
struct Revoked {
    pending: Vec<i32>,
    lost: Vec<i32>,
}

impl SocketConsumerContext {
    /// The partitions of the socket's topic this consumer owns now.
    pub fn assigned(&self) -> std::collections::HashSet<i32> {
        self.assigned.lock().expect("assignment is never poisoned").clone()
    }

    /// Partitions lost since the last call (revoked, and not in the assignment that followed;
    /// with `closing`, also those revoked and not assigned yet). The socket must forget what
    /// it would commit there, even if they come back later: another member may have
    /// committed further meanwhile.
    pub fn take_lost(&self, closing: bool) -> Vec<i32> {
        let mut r = self.revoked.lock().expect("revoked list is never poisoned");
        let mut lost = std::mem::take(&mut r.lost);
        if closing {
            lost.append(&mut r.pending);
        }
        lost
    }
}

impl ClientContext for SocketConsumerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        oauth::oauth_token(self.token.as_ref())
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.observe(&error);
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }

    fn stats(&self, s: Statistics) {
        if let Some(t) = s.topics.get(&self.topic) {
            let lag: i64 = t.partitions.values().filter(|p| p.partition >= 0).map(|p| p.consumer_lag.max(0)).sum();
            self.lag.store(lag, Ordering::Relaxed);
        }
    }
}

impl ConsumerContext for SocketConsumerContext {
    // Runs on the socket's task, inside its poll of the stream.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mine = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().into_iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
        };
        let mut r = self.revoked.lock().expect("revoked list is never poisoned");
        match rebalance {
            // A lost assignment (session timeout, max.poll.interval.ms) may come back in the
            // next assignment after another member owned it and committed further meanwhile
            // (a flag read in librdkafka, no op round trip).
            Rebalance::Revoke(tpl) if consumer.assignment_lost() => r.lost.extend(mine(tpl)),
            Rebalance::Revoke(tpl) => r.pending.extend(mine(tpl)),
            // Kept through the rebalance when assigned back at once (no one else had it).
            Rebalance::Assign(tpl) => {
                let back = mine(tpl);
                let (_, lost): (Vec<i32>, Vec<i32>) = r.pending.drain(..).partition(|p| back.contains(p));
                r.lost.extend(lost);
            }
            Rebalance::Error(_) => {}
        }
    }

    /// Eager rebalances revoke everything, then assign everything; cooperative ones revoke and
    /// assign increments: removing what is revoked and adding what is assigned fits both.
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assignment is never poisoned");
        let ours = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => assigned.extend(ours(tpl)),
            Rebalance::Revoke(tpl) => {
                for p in ours(tpl) {
                    assigned.remove(&p);
                }
            }
            // rdkafka's default handler unassigns everything after a rebalance error.
            Rebalance::Error(_) => assigned.clear(),
        }
    }

    // Manual commits are asynchronous: a refusal arrives here, after the client was answered.
    // Its records come again (duplicates, never loss); the operator sees it.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Err(e) if e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) => {
                metrics::consumer_commit_failed();
                tracing::warn!(error = %e, topic = %self.topic, "Kafka refused a consumer commit; the records after the group's last commit will be delivered again");
            }
            _ => {}
        }
    }
}

impl Drop for SocketConsumerContext {
    fn drop(&mut self) {
        closer::context_dropped(ClientKind::Consumer);
    }
}

/// The consumer of one consume socket; destroyed off the runtime whatever drops it.
pub type SocketConsumer = OffRuntime<StreamConsumer<SocketConsumerContext>>;

/// A producer client, destroyed off the runtime whatever drops its last handle.
type SharedProducer = Arc<OffRuntime<FutureProducer<ProducerContext>>>;

/// Long-lived Kafka clients shared by all sockets.
#[derive(Clone)]
pub struct Kafka {
    inner: Arc<Inner>,
}

/// Producers of users who brought their own credentials; entries die with their last socket.
type UserProducers = HashMap<KafkaCredentials, (Weak<OffRuntime<FutureProducer<ProducerContext>>>, AuthFailure)>;

/// How long a refused `X-Kafka-Auth` credential is answered 401 without asking Kafka again:
/// a client retrying bad credentials in a loop costs no Kafka client per attempt.
const REFUSED_CREDENTIALS_TTL: Duration = Duration::from_secs(5);

/// At most this many refused credentials are remembered (older ones are forgotten first).
const REFUSED_CREDENTIALS_MAX: usize = 10_000;

struct Inner {
    /// The shared producer, authenticated as the proxy itself.
    producer: ProducerHandle,
    /// Producers of sockets that brought their own Kafka credentials, shared per user.
    user_producers: Mutex<UserProducers>,
    /// Credentials Kafka refused lately, and when.
    refused: Mutex<HashMap<KafkaCredentials, std::time::Instant>>,
    /// Settings without any credentials (per-socket clients add the client's).
    anonymous: ClientConfig,
    /// Settings with the proxy's own credentials.
    base: ClientConfig,
    producer_settings: Vec<(&'static str, String)>,
    consumer_queued_max_kbytes: u32,
    consumer_properties: Vec<(&'static str, String)>,
    consumer_session_timeout_ms: u32,
    /// OAUTHBEARER: the proxy's own token.
    proxy_token: Option<TokenCell>,
    /// `WSPROXY_JWT_KAFKA_OAUTHBEARER`: the newest token of each subject.
    bearer_cells: Mutex<HashMap<String, TokenCell>>,
}

/// A producer a socket writes with: the shared one, or one per Kafka user.
#[derive(Clone)]
pub struct ProducerHandle(SharedProducer, AuthFailure);

impl ProducerHandle {
    /// Hands one record to the producer. The future resolves once Kafka acknowledged it.
    pub fn enqueue(&self, topic: &str, record: &ProducerRecord) -> Result<DeliveryFuture, EnqueueError> {
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = &record.key {
            fr = fr.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            fr = fr.payload(v.as_slice());
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: value.as_deref() });
            }
            fr = fr.headers(headers);
        }
        self.0.send_result(fr).map_err(|(e, _)| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => EnqueueError::QueueFull,
            _ => {
                let f = record_failure(&e);
                EnqueueError::Refused(f.code, f.message)
            }
        })
    }

    /// How long Kafka has been refusing this producer's credentials, if it does.
    pub fn credentials_refused_for(&self) -> Option<Duration> {
        self.1.failing_for()
    }

    /// Starts a transaction (transactional producers only). On the blocking pool: librdkafka
    /// waits for its main thread without a timeout (L3).
    pub async fn begin_transaction(&self) -> Result<(), TransactionError> {
        let p = self.0.clone();
        tokio::task::spawn_blocking(move || p.begin_transaction())
            .await
            .expect("begin task never panics")
            .map_err(TransactionError::from)
    }

    /// Commits the open transaction. A retriable failure (a timeout: librdkafka goes on
    /// committing) may be retried with another call, which resumes the same commit; an
    /// abortable one must be aborted (M1).
    pub async fn commit_transaction(&self) -> Result<(), TransactionError> {
        let p = self.0.clone();
        tokio::task::spawn_blocking(move || p.commit_transaction(TRANSACTION_TIMEOUT))
            .await
            .expect("commit task never panics")
            .map_err(TransactionError::from)
    }

    /// Aborts the open transaction: its records are never read by `read_committed` consumers.
    pub async fn abort_transaction(&self) -> Result<(), TransactionError> {
        let p = self.0.clone();
        tokio::task::spawn_blocking(move || p.abort_transaction(TRANSACTION_TIMEOUT))
            .await
            .expect("abort task never panics")
            .map_err(TransactionError::from)
    }
}

/// How long a transaction's commit, abort or initialisation may take.
#[cfg(not(test))]
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Short in unit tests, which make Kafka slower than this on purpose.
#[cfg(test)]
pub(crate) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed transaction step, classified as librdkafka classifies it. Fatal ones (e.g. fenced
/// by a newer producer with the same transactional id) end the socket; abortable ones abort the
/// transaction and go on; retriable ones (a commit that timed out) may be called again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransactionError {
    pub fatal: bool,
    /// `rd_kafka_error_is_retriable`: the same call may be made again.
    pub retriable: bool,
    /// `rd_kafka_error_txn_requires_abort`: the transaction must be aborted.
    pub requires_abort: bool,
    pub message: String,
}

impl TransactionError {
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    pub fn txn_requires_abort(&self) -> bool {
        self.requires_abort
    }
}

impl From<KafkaError> for TransactionError {
    fn from(e: KafkaError) -> Self {
        let (fatal, retriable, requires_abort) = match &e {
            KafkaError::Transaction(t) => (t.is_fatal(), t.is_retriable(), t.txn_requires_abort()),
            _ => (false, false, false),
        };
        TransactionError { fatal, retriable, requires_abort, message: e.to_string() }
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
/// credentials are noticed as soon as librdkafka reports them.
fn probe_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    auth: &AuthFailure,
) -> Result<(), ProbeError> {
    let deadline = std::time::Instant::now() + METADATA_TIMEOUT;
    let md = loop {
        match client.fetch_metadata(Some(topic), Duration::from_millis(250)) {
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

fn refused_credentials() -> ProbeError {
    ProbeError::Unauthenticated("Authentication failed: invalid Kafka credentials".to_owned())
}

/// True when Kafka refused the client's credentials.
pub fn is_authentication_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// Why a consume socket got no consumer.
#[derive(Debug)]
pub enum ConsumerError {
    /// The socket's own credentials were refused, or may not read the topic.
    Refused(ProbeError),
    /// librdkafka could not create or subscribe the consumer.
    Kafka(KafkaError),
}

impl From<KafkaError> for ConsumerError {
    fn from(e: KafkaError) -> Self {
        ConsumerError::Kafka(e)
    }
}

/// A broker as `/kafka/cluster/info` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    /// librdkafka's metadata does not carry the rack.
    pub rack: Option<String>,
}

/// Why a record could not be handed to the producer.
pub enum EnqueueError {
    /// librdkafka's local queue is full: wait for acknowledgements and try again.
    QueueFull,
    /// The record itself was refused (too large, unknown partition, ...).
    Refused(ErrorCode, String),
}

/// A Kafka failure for one record, already mapped to a code and a client-safe message.
#[derive(Debug, Clone)]
pub struct RecordFailure {
    pub code: ErrorCode,
    pub message: String,
}

/// Where Kafka put an acknowledged record.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
}

impl Kafka {
    /// Builds the shared clients. Nothing is sent to Kafka yet.
    pub fn new(config: &Config) -> Result<Kafka, KafkaError> {
        Kafka::with_token(config, None)
    }

    /// [`Kafka::new`], the proxy's own clients authenticating with `proxy_token` (OAUTHBEARER).
    pub fn with_token(config: &Config, proxy_token: Option<TokenCell>) -> Result<Kafka, KafkaError> {
        let anonymous = base_config(config);
        let mut base = anonymous.clone();
        if let Some(sasl) = &config.kafka.sasl {
            base.set("sasl.username", &sasl.username).set("sasl.password", &sasl.password.0);
        }
        let p = &config.producer;
        let producer_settings: Vec<(&'static str, String)> = [
            ("client.id", format!("wsproxy-{}", config.server.server_id)),
            ("acks", "all".to_owned()),
            ("enable.idempotence", "true".to_owned()),
            ("allow.auto.create.topics", "false".to_owned()),
            ("linger.ms", p.linger_ms.to_string()),
            ("batch.num.messages", "10000".to_owned()),
            ("queue.buffering.max.messages", "1000000".to_owned()),
            ("queue.buffering.max.kbytes", p.queue_max_kbytes.to_string()),
            ("delivery.timeout.ms", p.delivery_timeout_ms.to_string()),
            ("compression.type", p.compression_type.clone()),
        ]
        .into_iter()
        .chain(p.client_properties.iter().cloned())
        .collect::<Vec<_>>();
        let mut producer_cfg = base.clone();
        for (k, v) in &producer_settings {
            producer_cfg.set(*k, v);
        }
        producer_cfg.set("statistics.interval.ms", STATS_INTERVAL_MS);
        let auth = AuthFailure::reported("proxy");
        let context = ProducerContext {
            auth: auth.clone(),
            kind: ClientKind::Producer,
            shared: true,
            token: proxy_token.clone(),
        };
        let producer = producer_cfg.create_with_context(context)?;
        let producer = ProducerHandle(Arc::new(OffRuntime::new(producer, ClientKind::Producer)), auth);
        Ok(Kafka {
            inner: Arc::new(Inner {
                producer,
                user_producers: Mutex::new(HashMap::new()),
                refused: Mutex::new(HashMap::new()),
                anonymous,
                base,
                producer_settings,
                consumer_queued_max_kbytes: config.consumer.queued_max_kbytes,
                consumer_properties: config.consumer.client_properties.clone(),
                consumer_session_timeout_ms: config.consumer.session_timeout_ms,
                proxy_token,
                bearer_cells: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The producer for a socket: the shared one, or (with `X-Kafka-Auth`) one authenticated
    /// as that user, shared by that user's sockets (created on the blocking pool).
    pub async fn producer(&self, creds: Option<&KafkaCredentials>) -> Result<ProducerHandle, KafkaError> {
        let Some(creds) = creds else { return Ok(self.inner.producer.clone()) };
        if let Some(p) = self.cached_producer(creds) {
            return Ok(p);
        }
        let mut cfg = self.inner.anonymous.clone();
        for (k, v) in &self.inner.producer_settings {
            cfg.set(*k, v);
        }
        oauth::set_credentials(&mut cfg, creds);
        cfg.set("statistics.interval.ms", STATS_INTERVAL_MS);
        let auth = AuthFailure::reported("user");
        let token = self.token_for(Some(creds));
        let context = ProducerContext { auth: auth.clone(), kind: ClientKind::Producer, shared: false, token };
        let created = tokio::task::spawn_blocking(move || {
            cfg.create_with_context(context).map(|p| OffRuntime::new(p, ClientKind::Producer))
        })
        .await
        .expect("producer creation never panics")?;
        let mut cache = self.inner.user_producers.lock().expect("producer cache is never poisoned");
        // Another socket of the same user may have been quicker: use its producer.
        if let Some((p, auth)) = cache.get(creds).and_then(|(w, a)| Some((w.upgrade()?, a.clone()))) {
            return Ok(ProducerHandle(p, auth));
        }
        cache.retain(|_, (w, _)| w.strong_count() > 0);
        let p = Arc::new(created);
        cache.insert(creds.clone(), (Arc::downgrade(&p), auth.clone()));
        Ok(ProducerHandle(p, auth))
    }

    fn cached_producer(&self, creds: &KafkaCredentials) -> Option<ProducerHandle> {
        let cache = self.inner.user_producers.lock().expect("producer cache is never poisoned");
        cache.get(creds).and_then(|(w, a)| Some(ProducerHandle(w.upgrade()?, a.clone())))
    }

    /// Checks, with the producer's (the socket's own) credentials, that it may write `topic`.
    /// Refused credentials are remembered for [`REFUSED_CREDENTIALS_TTL`].
    pub async fn probe(
        &self,
        producer: &ProducerHandle,
        creds: &KafkaCredentials,
        topic: &str,
    ) -> Result<(), ProbeError> {
        self.refused_recently(creds)?;
        let (handle, topic) = (producer.clone(), topic.to_owned());
        let probed = tokio::task::spawn_blocking(move || probe_topic(handle.0.client(), &topic, &handle.1))
            .await
            .expect("probe task never panics");
        self.remember(creds, &probed);
        probed
    }

    /// `Err` when Kafka refused these credentials within the last [`REFUSED_CREDENTIALS_TTL`].
    pub fn refused_recently(&self, creds: &KafkaCredentials) -> Result<(), ProbeError> {
        let refused = self.inner.refused.lock().expect("refused credentials are never poisoned");
        match refused.get(creds) {
            Some(at) if at.elapsed() < REFUSED_CREDENTIALS_TTL => Err(refused_credentials()),
            _ => Ok(()),
        }
    }

    fn remember<T>(&self, creds: &KafkaCredentials, probed: &Result<T, ProbeError>) {
        let mut refused = self.inner.refused.lock().expect("refused credentials are never poisoned");
        match probed {
            Err(ProbeError::Unauthenticated(_)) => {
                if refused.len() >= REFUSED_CREDENTIALS_MAX {
                    refused.retain(|_, at| at.elapsed() < REFUSED_CREDENTIALS_TTL);
                    if refused.len() >= REFUSED_CREDENTIALS_MAX {
                        refused.clear();
                    }
                }
                refused.insert(creds.clone(), std::time::Instant::now());
            }
            _ => {
                refused.remove(creds);
            }
        }
    }

    /// Settings with the socket's own credentials, or the proxy's when it brought none.
    fn client_config(&self, creds: Option<&KafkaCredentials>) -> ClientConfig {
        match creds {
            None => self.inner.base.clone(),
            Some(c) => {
                let mut cfg = self.inner.anonymous.clone();
                oauth::set_credentials(&mut cfg, c);
                cfg
            }
        }
    }

    /// A producer of its own for one transactional socket, its transactions initialised
    /// (which fences any older producer with the same id and aborts its open transaction).
    pub async fn transactional_producer(
        &self,
        creds: Option<&KafkaCredentials>,
        transactional_id: &str,
    ) -> Result<ProducerHandle, TransactionError> {
        let mut cfg = self.client_config(creds);
        for (k, v) in &self.inner.producer_settings {
            cfg.set(*k, v);
        }
        // librdkafka wants deliveries to time out before the transaction does; the broker
        // aborts a transaction left open longer (a crashed node's) after transaction.timeout.ms.
        let delivery: u64 = cfg.get("delivery.timeout.ms").and_then(|d| d.parse().ok()).unwrap_or(120_000);
        cfg.set("transactional.id", transactional_id)
            .set("linger.ms", "0")
            .set("transaction.timeout.ms", "60000")
            .set("delivery.timeout.ms", delivery.min(60_000).to_string());
        cfg.set("statistics.interval.ms", STATS_INTERVAL_MS);
        let auth = AuthFailure::reported(if creds.is_some() { "user" } else { "proxy_transactional" });
        let (kind, token) = (ClientKind::TransactionalProducer, self.token_for(creds));
        let context = ProducerContext { auth: auth.clone(), kind, shared: false, token };
        // Created and initialised on the blocking pool; whatever drops it, it is destroyed off
        // the runtime.
        let made = tokio::task::spawn_blocking(move || {
            let kind = ClientKind::TransactionalProducer;
            let producer = OffRuntime::new(cfg.create_with_context::<_, FutureProducer<_>>(context)?, kind);
            producer.init_transactions(TRANSACTION_TIMEOUT)?;
            Ok::<_, KafkaError>(producer)
        })
        .await
        .expect("init task never panics");
        // Refused socket credentials are remembered like a failed probe's, so that a client
        // retrying them gets 401 at once instead of a blocking-pool thread each (review of M4).
        if let Some(c) = creds {
            let refused = made.is_err() && (auth.seen() || made.as_ref().err().is_some_and(is_authentication_error));
            self.remember(c, &if refused { Err(refused_credentials()) } else { Ok(()) });
        }
        Ok(ProducerHandle(Arc::new(made?), auth))
    }

    /// How long Kafka has been refusing the proxy's own credentials, if it does.
    pub fn credentials_refused_for(&self) -> Option<Duration> {
        self.inner.producer.credentials_refused_for()
    }

    /// Waits for everything handed to the producer to be acknowledged, up to `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let kafka = self.clone();
        let _ = tokio::task::spawn_blocking(move || kafka.inner.producer.0.flush(timeout)).await;
    }

    /// Number of partitions of `topic`, or `None` when it does not exist.
    pub async fn topic_partitions(&self, topic: &str) -> Result<Option<usize>, KafkaError> {
        let kafka = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let md = kafka.inner.producer.0.client().fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
            kafka.inner.producer.1.clear();
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            match t.error() {
                None => Ok(Some(t.partitions().len())),
                Some(e) => match RDKafkaErrorCode::from(e) {
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
                    code => Err(KafkaError::MetadataFetch(code)),
                },
            }
        })
        .await
        .expect("metadata task never panics")
    }

    /// The brokers of the cluster.
    pub async fn brokers(&self, timeout: Duration) -> Result<Vec<BrokerInfo>, KafkaError> {
        let kafka = self.clone();
        tokio::task::spawn_blocking(move || {
            let md = kafka.inner.producer.0.client().fetch_metadata(None, timeout)?;
            kafka.inner.producer.1.clear();
            Ok(md
                .brokers()
                .iter()
                .map(|b| BrokerInfo { id: b.id(), host: b.host().to_owned(), port: b.port(), rack: None })
                .collect())
        })
        .await
        .expect("metadata task never panics")
    }

    /// A consumer for one socket, subscribed to its topic; `lag` receives its consumer lag.
    pub async fn consumer(
        &self,
        params: &ConsumerParams,
        creds: Option<&KafkaCredentials>,
        lag: Arc<AtomicI64>,
    ) -> Result<SocketConsumer, ConsumerError> {
        let mut cfg = self.client_config(creds);
        cfg.set("group.id", &params.group_id)
            .set("client.id", &params.client_id)
            // Offsets are stored only after a record was written to the socket, so even
            // autoCommit=true never commits what the client did not get.
            .set("enable.auto.commit", if params.auto_commit { "true" } else { "false" })
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", params.offset_reset.as_kafka())
            .set("isolation.level", params.isolation.as_kafka())
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", self.inner.consumer_session_timeout_ms.to_string())
            // Bounded prefetch. With a small queue librdkafka pauses fetching for
            // fetch.queue.backoff.ms whenever the queue is full: 1 s by default, which caps a
            // consumer at ~30k records/s. 10 ms keeps it fetching as the socket drains.
            .set("queued.max.messages.kbytes", self.inner.consumer_queued_max_kbytes.to_string())
            .set("fetch.queue.backoff.ms", "10")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "262144")
            .set("statistics.interval.ms", STATS_INTERVAL_MS);
        for (k, v) in &self.inner.consumer_properties {
            cfg.set(*k, v);
        }
        // Before any client is made for them (fromTimestamp's helper included).
        if let Some(c) = creds {
            self.refused_recently(c).map_err(ConsumerError::Refused)?;
        }
        if let Some(ts) = params.from_timestamp {
            let cfg = cfg.clone();
            let (topic, ts, token) = (params.topic.clone(), ts, self.token_for(creds));
            tokio::task::spawn_blocking(move || start_group_at(&cfg, &topic, ts, token))
                .await
                .expect("start-offset task never panics")?;
        }
        let token = self.token_for(creds);
        let context = SocketConsumerContext {
            topic: params.topic.clone(),
            lag,
            auth: AuthFailure::default(),
            revoked: Mutex::new(Revoked::default()),
            assigned: Mutex::new(Default::default()),
            token: token.clone(),
        };
        let (topic, probe) = (params.topic.clone(), creds.is_some());
        // Created, probed and subscribed on the blocking pool, and guarded from the start: on
        // any early return (refused credentials, a failed upgrade, a panic) the consumer is
        // destroyed off the runtime.
        let made = tokio::task::spawn_blocking(move || {
            let consumer: SocketConsumer = OffRuntime::new(cfg.create_with_context(context)?, ClientKind::Consumer);
            if let Some(cell) = &token {
                // Not polled before its probe: it gets its token now (see `oauth_admin`).
                oauth_admin::set_token(consumer.client(), cell).map_err(KafkaError::ClientCreation)?;
            }
            // A socket with its own credentials: check them (and its topic ACL) before the upgrade.
            if probe {
                probe_topic(consumer.client(), &topic, &consumer.context().auth).map_err(ConsumerError::Refused)?;
            }
            consumer.subscribe(&[&topic])?;
            Ok::<_, ConsumerError>(consumer)
        })
        .await
        .expect("consumer creation never panics");
        if let Some(c) = creds {
            let probed = match &made {
                Err(ConsumerError::Refused(e)) => Err(e.clone()),
                _ => Ok(()),
            };
            self.remember(c, &probed);
        }
        made
    }
}

/// For `fromTimestamp`: commits, for every partition where the group has no committed offset
/// yet, the first offset at or after `ts`. Partitions with a commit are left alone. A group
/// with active members refuses the commit; their positions stand.
fn start_group_at(cfg: &ClientConfig, topic: &str, ts: i64, token: Option<TokenCell>) -> Result<(), KafkaError> {
    let mut cfg = cfg.clone();
    cfg.remove("statistics.interval.ms");
    let consumer: OffRuntime<BaseConsumer<OAuthContext>> =
        OffRuntime::new(cfg.create_with_context(OAuthContext { token: token.clone() })?, ClientKind::Consumer);
    if let Some(cell) = &token {
        oauth_admin::set_token(consumer.client(), cell).map_err(KafkaError::ClientCreation)?;
    }
    let md = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let partitions: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut wanted = TopicPartitionList::new();
    for p in &partitions {
        wanted.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(wanted, METADATA_TIMEOUT)?;
    let mut times = TopicPartitionList::new();
    for e in committed.elements() {
        if !matches!(e.offset(), Offset::Offset(_)) {
            times.add_partition_offset(topic, e.partition(), Offset::Offset(ts))?;
        }
    }
    if times.count() == 0 {
        return Ok(());
    }
    let found = consumer.offsets_for_times(times, METADATA_TIMEOUT)?;
    let mut commit = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for e in found.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            // No record at or after ts: start at the end of the partition.
            _ => *ends.entry(e.partition()).or_insert_with(|| {
                consumer.fetch_watermarks(topic, e.partition(), METADATA_TIMEOUT).map(|(_, hi)| hi).unwrap_or(0)
            }),
        };
        commit.add_partition_offset(topic, e.partition(), Offset::Offset(offset))?;
    }
    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
        tracing::info!(topic, error = %e, "fromTimestamp: start offsets not committed (group active?)");
    }
    Ok(())
}

/// The settings every client shares: bootstrap, security, timeouts.
/// The one place where the seed's Java-named settings become librdkafka properties.
fn base_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &k.bootstrap_hosts)
        .set("security.protocol", &k.security_protocol)
        .set("socket.timeout.ms", k.request_timeout_ms.to_string())
        .set("retry.backoff.ms", k.retry_backoff_ms.to_string())
        .set("log.connection.close", "false");
    if let Some(m) = &k.sasl_mechanism {
        cfg.set("sasl.mechanism", m);
    }
    if k.security_protocol.ends_with("SSL") {
        cfg.set("ssl.endpoint.identification.algorithm", if k.ssl_endpoint_identification { "https" } else { "none" });
        if let Some(ca) = &k.ssl_ca_location {
            cfg.set("ssl.ca.location", ca);
        }
        if let Some((location, password)) = &k.ssl_keystore {
            cfg.set("ssl.keystore.location", location).set("ssl.keystore.password", &password.0);
        }
    }
    cfg
}

/// Maps a Kafka error for one record to a code and a message safe to show the client.
pub fn record_failure(e: &KafkaError) -> RecordFailure {
    use RDKafkaErrorCode as C;
    let code = match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => ErrorCode::RecordTooLarge,
        Some(C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed) => {
            ErrorCode::NotAuthorized
        }
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => ErrorCode::TimedOut,
        // librdkafka drops what was queued when a transaction is aborted (also the first
        // records after an abort that needed a new producer epoch).
        Some(C::PurgeQueue | C::PurgeInflight) => ErrorCode::TransactionAborted,
        _ => ErrorCode::KafkaError,
    };
    let message = match code {
        ErrorCode::RecordTooLarge => {
            format!("Kafka refused the record because it is too large ({e})")
        }
        ErrorCode::NotAuthorized => format!("Kafka refused the record: not authorised ({e})"),
        ErrorCode::TimedOut => format!("Kafka did not acknowledge the record in time ({e})"),
        ErrorCode::TransactionAborted => format!("the record was dropped with its aborted transaction ({e})"),
        _ => format!("Kafka refused the record ({e})"),
    };
    RecordFailure { code, message }
}

/// Resolves a delivery future into an acknowledgement or a failure.
pub async fn delivered(fut: DeliveryFuture) -> Result<Ack, RecordFailure> {
    match fut.await {
        Ok(Ok(d)) => {
            Ok(Ack { partition: d.partition, offset: d.offset, timestamp: d.timestamp.to_millis().unwrap_or(-1) })
        }
        Ok(Err((e, _))) => Err(record_failure(&e)),
        Err(_canceled) => Err(RecordFailure {
            code: ErrorCode::KafkaError,
            message: "the producer shut down before Kafka acknowledged the record".to_owned(),
        }),
    }
}
