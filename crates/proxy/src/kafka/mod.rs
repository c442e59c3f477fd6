//! The Kafka boundary: the only module that names rdkafka. The rest of the proxy sees the
//! handle [`Kafka`], the producer port [`ProducerHandle`], the consumer port
//! [`SocketConsumer`], and the state log behind sessions, with errors of this module's own.
//!
//! One producer serves every produce socket (librdkafka clients cost threads and hundreds of
//! KiB each); a consumer group member needs its own client, so each consume socket gets one,
//! with its prefetch capped so that slow sockets cost bounded memory.
//!
//! Files by role: [`client`] (the settings every client shares, refused credentials, the
//! error type), [`producer`] (produce sockets and transactions), [`consumer`] (consume
//! sockets), [`admin`], [`config_log`], [`state_log`] and [`resume_log`] (the proxy's own topics), [`closer`]
//! (destroying clients off the runtime), [`delivery`] (acknowledgements back to their sender),
//! [`headers`] (reading consumed headers safely),
//! `watermarks` (the end of a partition as a consumer last heard it), [`start_offsets`]
//! (`fromTimestamp`'s start offsets).

pub mod admin;
pub mod client;
pub mod closer;
pub mod config_log;
pub mod consumer;
pub mod credentials;
pub mod delivery;
pub mod fanout;
pub mod headers;
pub mod oauth;
pub(crate) mod oauth_admin;
pub mod producer;
mod record;
pub mod resume_log;
pub mod start_offsets;
pub mod state_log;
#[cfg(test)]
pub mod testing;
mod watermarks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use serde::Serialize;

use crate::config::Config;
use crate::kafka::client::{base_config, refused_credentials, METADATA_TIMEOUT};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::oauth::TokenCell;
use crate::kafka::producer::SharedProducer;

pub use client::{AuthFailure, ClientError, ProbeError};
pub use consumer::{ConsumeError, ConsumerError, Record, Records, SocketConsumer, TopicPartition};
pub use delivery::{Deliveries, Report};
pub use fanout::{SharedConsumer, SharedRecords};
#[cfg(test)]
pub(crate) use producer::TRANSACTION_TIMEOUT;
pub use producer::{record_failure, Ack, EnqueueError, ProducerHandle, RecordFailure, TransactionError};

/// Long-lived Kafka clients shared by all sockets.
#[derive(Clone)]
pub struct Kafka {
    inner: Arc<Inner>,
}

/// Producers of users who brought their own credentials; entries die with their last socket.
type UserProducers = HashMap<KafkaCredentials, (Weak<<SharedProducer as std::ops::Deref>::Target>, AuthFailure)>;

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
    /// `topic.metadata.refresh.interval.ms` of `topicPattern` consumers.
    consumer_metadata_refresh_ms: u128,
    /// The proxy's internal topics by their configured names: no `topicPattern` reads them.
    internal_topics: Vec<String>,
    /// OAUTHBEARER: the proxy's own token.
    proxy_token: Option<TokenCell>,
    /// `WSPROXY_JWT_KAFKA_OAUTHBEARER`: the newest token of each subject.
    bearer_cells: Mutex<HashMap<String, TokenCell>>,
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

impl Kafka {
    /// Builds the shared clients. Nothing is sent to Kafka yet.
    pub fn new(config: &Config) -> Result<Kafka, ClientError> {
        Kafka::with_token(config, None)
    }

    /// [`Kafka::new`], the proxy's own clients authenticating with `proxy_token` (OAUTHBEARER).
    pub fn with_token(config: &Config, proxy_token: Option<TokenCell>) -> Result<Kafka, ClientError> {
        let anonymous = base_config(config);
        let mut base = anonymous.clone();
        if let Some(sasl) = &config.kafka.sasl {
            base.set("sasl.username", &sasl.username).set("sasl.password", &sasl.password.0);
        }
        let (producer, producer_settings) = producer::shared(config, &base, proxy_token.clone())?;
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
                consumer_metadata_refresh_ms: config.consumer.metadata_refresh_interval.as_millis(),
                internal_topics: std::iter::once(config.sessions.topic.clone())
                    .chain(config.dynamic_config.as_ref().map(|d| d.topic.clone()))
                    .collect(),
                proxy_token,
                bearer_cells: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// `Err` when Kafka refused these credentials within the last [`REFUSED_CREDENTIALS_TTL`].
    pub fn refused_recently(&self, creds: &KafkaCredentials) -> Result<(), ProbeError> {
        let refused = self.inner.refused.lock().expect("refused credentials are never poisoned");
        match refused.get(creds) {
            Some(at) if at.elapsed() < REFUSED_CREDENTIALS_TTL => Err(refused_credentials()),
            _ => Ok(()),
        }
    }

    /// Remembers how a use of the socket's own credentials went: refused (a probe's or a
    /// client's creation failed with [`ProbeError::Unauthenticated`]) or not.
    fn remember(&self, creds: &KafkaCredentials, failure: Option<&ProbeError>) {
        let mut refused = self.inner.refused.lock().expect("refused credentials are never poisoned");
        match failure {
            Some(ProbeError::Unauthenticated(_)) => {
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
    pub async fn topic_partitions(&self, topic: &str) -> Result<Option<usize>, ClientError> {
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
                    code => Err(KafkaError::MetadataFetch(code).into()),
                },
            }
        })
        .await
        .expect("metadata task never panics")
    }

    /// Every topic the proxy's own client sees, with its number of partitions.
    pub async fn topics(&self) -> Result<Vec<(String, usize)>, ClientError> {
        let kafka = self.clone();
        tokio::task::spawn_blocking(move || {
            let md = kafka.inner.producer.0.client().fetch_metadata(None, METADATA_TIMEOUT)?;
            kafka.inner.producer.1.clear();
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect())
        })
        .await
        .expect("metadata task never panics")
    }

    /// The brokers of the cluster.
    pub async fn brokers(&self, timeout: Duration) -> Result<Vec<BrokerInfo>, ClientError> {
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
}
