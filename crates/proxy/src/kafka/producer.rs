//! The producer port: [`ProducerHandle`] hands records to Kafka and answers [`Ack`] or a
//! client-safe [`RecordFailure`]; transactional producers begin, commit and abort. One shared
//! producer serves every produce socket; sockets with their own credentials share one per user.
//!
//! Acknowledgements come back through the producer's delivery callback
//! ([`ProducerContext::delivery`]) into the sender's own [`Deliveries`] inbox, numbered by the
//! sender: no future, channel or waker per record. The producer polls itself on its own thread
//! (rdkafka's `ThreadedProducer`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use wsproxy_protocol::produce::ProducerRecord;
use wsproxy_protocol::ErrorCode;

use crate::config::Config;
use crate::kafka::client::{
    is_authentication_error, probe_topic, refused_credentials, AuthFailure, ClientError, ProbeError, STATS_INTERVAL_MS,
};
use crate::kafka::closer::{self, ClientKind, OffRuntime};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::delivery::{Deliveries, Ticket};
use crate::kafka::oauth::{self, TokenCell};
use crate::kafka::oauth_admin::{HasClient, Linked};
use crate::kafka::Kafka;
use crate::telemetry::metrics;

/// A producer's context: turns librdkafka statistics into metrics, notes refused credentials.
pub struct ProducerContext {
    pub(super) auth: AuthFailure,
    pub(super) kind: ClientKind,
    /// The shared producer: its statistics are the producer metrics.
    pub(super) shared: bool,
}

impl Drop for ProducerContext {
    fn drop(&mut self) {
        // The context goes with the librdkafka handle: this is where the client was destroyed.
        closer::context_dropped(self.kind);
    }
}

impl ClientContext for ProducerContext {
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

impl rdkafka::producer::ProducerContext for ProducerContext {
    type DeliveryOpaque = Box<Ticket>;

    /// On the producer's polling thread: the record's report goes to its sender's inbox.
    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        (*ticket).settle(match result {
            Ok(m) => Ok(Ack {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
            }),
            Err((e, _)) => Err(record_failure(e)),
        });
    }
}

/// A librdkafka producer polled by a thread of its own (which runs the delivery callbacks).
pub(super) type ProducerClient = ThreadedProducer<ProducerContext>;

impl HasClient for ProducerClient {
    type Context = ProducerContext;
    fn handle(&self) -> &Client<ProducerContext> {
        Producer::client(self)
    }
}

/// A producer client, destroyed off the runtime whatever drops its last handle.
pub(super) type SharedProducer = Arc<OffRuntime<Linked<ProducerClient>>>;

/// A producer a socket writes with: the shared one, or one per Kafka user.
#[derive(Clone)]
pub struct ProducerHandle(pub(super) SharedProducer, pub(super) AuthFailure);

impl ProducerHandle {
    /// Hands one record to the producer. Its report, numbered `seq`, arrives in `to` once
    /// Kafka acknowledged it (or gave up on it); a record refused here gets no report.
    pub fn enqueue(&self, topic: &str, record: &ProducerRecord, to: &Deliveries, seq: u64) -> Result<(), EnqueueError> {
        let mut fr: BaseRecord<'_, [u8], [u8], Box<Ticket>> = BaseRecord::with_opaque_to(topic, to.ticket(seq));
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
        self.0.send(fr).map_err(|(e, _)| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => EnqueueError::QueueFull,
            _ => {
                let f = record_failure(&e);
                EnqueueError::Refused(f.code, f.message)
            }
        })
    }

    /// Writes keyed records (a `None` value is a tombstone) to one partition of one of the
    /// proxy's own topics, and waits for every acknowledgement: the results in record order.
    /// While librdkafka's queue is full a record is retried until `patience` passed.
    pub(super) async fn write_keyed(
        &self,
        topic: &str,
        partition: i32,
        records: &[(String, Option<String>)],
        patience: Duration,
    ) -> Vec<Result<Ack, RecordFailure>> {
        let deliveries = Deliveries::new();
        let give_up = std::time::Instant::now() + patience;
        let mut results: Vec<Option<Result<Ack, RecordFailure>>> = vec![None; records.len()];
        let mut waiting = 0;
        for (seq, (key, value)) in records.iter().enumerate() {
            loop {
                let mut record = BaseRecord::with_opaque_to(topic, deliveries.ticket(seq as u64))
                    .key(key.as_str())
                    .partition(partition);
                if let Some(v) = value {
                    record = record.payload(v.as_str());
                }
                match self.0.send(record) {
                    Ok(()) => waiting += 1,
                    Err((e, _))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && std::time::Instant::now() < give_up =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err((e, _)) => results[seq] = Some(Err(record_failure(&e))),
                }
                break;
            }
        }
        let mut reports = Vec::new();
        while waiting > 0 {
            deliveries.take(&mut reports).await;
            for (seq, result) in reports.drain(..) {
                results[seq as usize] = Some(result);
                waiting -= 1;
            }
        }
        results.into_iter().map(|r| r.expect("every record was settled")).collect()
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
    /// The producer for a socket: the shared one, or (with `X-Kafka-Auth`) one authenticated
    /// as that user, shared by that user's sockets (created on the blocking pool).
    pub async fn producer(&self, creds: Option<&KafkaCredentials>) -> Result<ProducerHandle, ClientError> {
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
        let context = ProducerContext { auth: auth.clone(), kind: ClientKind::Producer, shared: false };
        let created = tokio::task::spawn_blocking(move || {
            let linked = Linked::new(cfg.create_with_context(context)?, token.as_ref())?;
            Ok::<_, KafkaError>(OffRuntime::new(linked, ClientKind::Producer))
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
        let probed = tokio::task::spawn_blocking(move || probe_topic(handle.0.client(), &topic, &handle.1, &|| {}))
            .await
            .expect("probe task never panics");
        self.remember(creds, probed.as_ref().err());
        probed
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
        let context = ProducerContext { auth: auth.clone(), kind, shared: false };
        // Created and initialised on the blocking pool; whatever drops it, it is destroyed off
        // the runtime.
        let made = tokio::task::spawn_blocking(move || {
            let kind = ClientKind::TransactionalProducer;
            let linked = Linked::new(cfg.create_with_context::<_, ProducerClient>(context)?, token.as_ref())?;
            let producer = OffRuntime::new(linked, kind);
            producer.init_transactions(TRANSACTION_TIMEOUT)?;
            Ok::<_, KafkaError>(producer)
        })
        .await
        .expect("init task never panics");
        // Refused socket credentials are remembered like a failed probe's, so that a client
        // retrying them gets 401 at once instead of a blocking-pool thread each (review of M4).
        if let Some(c) = creds {
            let refused = made.is_err() && (auth.seen() || made.as_ref().err().is_some_and(is_authentication_error));
            self.remember(c, refused.then(refused_credentials).as_ref());
        }
        Ok(ProducerHandle(Arc::new(made?), auth))
    }
}

/// librdkafka properties every producer of the proxy is made with.
pub(super) type ProducerSettings = Vec<(&'static str, String)>;

/// The producer every socket without credentials of its own writes with, and the settings
/// every producer of the proxy shares (per-user and transactional ones add theirs).
pub(super) fn shared(
    config: &Config,
    base: &ClientConfig,
    token: Option<TokenCell>,
) -> Result<(ProducerHandle, ProducerSettings), KafkaError> {
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
    let context = ProducerContext { auth: auth.clone(), kind: ClientKind::Producer, shared: true };
    let producer = Linked::new(producer_cfg.create_with_context(context)?, token.as_ref())?;
    Ok((ProducerHandle(Arc::new(OffRuntime::new(producer, ClientKind::Producer)), auth), producer_settings))
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
