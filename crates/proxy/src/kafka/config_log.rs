//! The dynamic config topic (`_wsproxy.dynamic.configs`): the one place where client limits set
//! through the admin API live, shared by every node.
//!
//! Each node reads the compacted single-partition topic from the beginning into
//! [`ClientLimits`] (start-up waits until it reached the end, so a node is ready only with
//! every config known) and keeps following it. Writes go through the topic only: a write
//! returns once this node read its own record back, so a read right after a write sees it,
//! and every node applies the same records in the same order.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::kafka::oauth_admin::Linked;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::internal_reader;
use super::Kafka;
use crate::config::InternalTopicConfig;
use crate::kafka::oauth::OAuthContext;
use crate::limits::{ClientLimits, DynamicConfig};

/// How long a write waits for Kafka and for its record to come back.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a write did not complete.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Kafka did not take the record or it was not read back in time.
    #[error("The operation timed out.")]
    Timeout,
}

/// A handle on this node's reader and writer of the dynamic config topic; cheap to clone.
#[derive(Clone)]
pub struct ConfigLog {
    inner: Arc<Inner>,
}

struct Inner {
    kafka: Kafka,
    topic: String,
    limits: ClientLimits,
    /// The next offset the reader will apply.
    position: watch::Receiver<i64>,
    /// True once the reader reached the end of the topic as it was at start.
    loaded: watch::Receiver<bool>,
}

impl ConfigLog {
    /// Creates the topic if missing and starts following it into `limits`.
    pub async fn start(
        kafka: &Kafka,
        cfg: &InternalTopicConfig,
        server_id: &str,
        limits: ClientLimits,
        shutdown: CancellationToken,
    ) -> Result<ConfigLog, String> {
        kafka.ensure_compacted_topic(cfg).await?;
        let group = format!("ws-proxy-dynamic-config-handler-consumer-{server_id}");
        // Not one of the readers that follow their topic closely: fetches wait up to 100 ms,
        // librdkafka's reconnect backoff and topic creation settings stay its defaults.
        let consumer: Linked<StreamConsumer<OAuthContext>> = internal_reader(kafka, &group, "earliest", |c| {
            c.set("enable.auto.offset.store", "false").set("fetch.wait.max.ms", "100");
        })
        .map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&cfg.topic, 0, Offset::Beginning).map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let consumer = Arc::new(consumer);
        let end = {
            let (c, topic, timeout) = (consumer.clone(), cfg.topic.clone(), cfg.init_timeout);
            tokio::task::spawn_blocking(move || c.fetch_watermarks(&topic, 0, timeout))
                .await
                .expect("watermark task never panics")
                .map_err(|e| format!("cannot read the end of {}: {e}", cfg.topic))?
        };
        let (position_tx, position) = watch::channel(end.0);
        let (loaded_tx, loaded) = watch::channel(end.1 <= end.0);
        let reader = Reader { consumer, limits: limits.clone(), end: end.1, position: position_tx, loaded: loaded_tx };
        tokio::spawn(reader.run(shutdown));
        Ok(ConfigLog {
            inner: Arc::new(Inner { kafka: kafka.clone(), topic: cfg.topic.clone(), limits, position, loaded }),
        })
    }

    /// Waits until every record present at start was applied.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), String> {
        let mut loaded = self.inner.loaded.clone();
        let done = matches!(tokio::time::timeout(timeout, loaded.wait_for(|l| *l)).await, Ok(Ok(_)));
        match done {
            true => Ok(()),
            false => Err(format!("the dynamic configs in {} were not loaded within {timeout:?}", self.inner.topic)),
        }
    }

    pub fn limits(&self) -> &ClientLimits {
        &self.inner.limits
    }

    /// Adds or replaces a dynamic config; returns once this node applied it.
    pub async fn put(&self, config: &DynamicConfig) -> Result<(), LogError> {
        self.write(vec![(config.key(), Some(config.to_hocon()))]).await
    }

    /// Removes one dynamic config (a tombstone).
    pub async fn remove(&self, key: &str) -> Result<(), LogError> {
        self.write(vec![(key.to_owned(), None)]).await
    }

    /// Removes every dynamic config this node knows (all tombstones sent, then one wait).
    pub async fn remove_all(&self) -> Result<(), LogError> {
        self.write(self.inner.limits.dynamic_keys().into_iter().map(|k| (k, None)).collect()).await
    }

    /// Writes records and waits until this node read the last one back.
    async fn write(&self, records: Vec<(String, Option<String>)>) -> Result<(), LogError> {
        let producer = &self.inner.kafka.inner.producer;
        let written = producer.write_keyed(&self.inner.topic, 0, &records, WRITE_TIMEOUT).await;
        let mut last = -1;
        for (result, (key, _)) in written.into_iter().zip(&records) {
            match result {
                Ok(d) => last = last.max(d.offset),
                Err(e) => {
                    tracing::warn!(error = %e.message, key, "dynamic config not written");
                    return Err(LogError::Timeout);
                }
            }
        }
        let mut position = self.inner.position.clone();
        let applied = matches!(tokio::time::timeout(WRITE_TIMEOUT, position.wait_for(|p| *p > last)).await, Ok(Ok(_)));
        match applied {
            true => Ok(()),
            false => {
                tracing::warn!(offset = last, "dynamic config written but not read back in time");
                Err(LogError::Timeout)
            }
        }
    }
}

/// Follows the topic and applies each record.
struct Reader {
    consumer: Arc<Linked<StreamConsumer<OAuthContext>>>,
    limits: ClientLimits,
    /// The end offset at start: reaching it means loaded.
    end: i64,
    position: watch::Sender<i64>,
    loaded: watch::Sender<bool>,
}

impl Reader {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = tokio::time::timeout(Duration::from_millis(500), self.consumer.recv()) => m,
            };
            match next {
                Ok(Ok(m)) => {
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    // Changes after start-up are rare and worth a line each; the initial load is not.
                    let live = m.offset() >= self.end;
                    match m.payload() {
                        None => {
                            if live {
                                tracing::info!(key = %key, "dynamic config removed");
                            }
                            self.limits.apply(&key, None)
                        }
                        Some(v) => match DynamicConfig::from_record(&key, &String::from_utf8_lossy(v)) {
                            Ok(config) => {
                                if live {
                                    tracing::info!(key = %key, value = %config.to_hocon(), "dynamic config applied");
                                }
                                self.limits.apply(&key, Some(config))
                            }
                            Err(e) => {
                                tracing::warn!(key = %key, offset = m.offset(), error = %e, "unreadable dynamic config record skipped")
                            }
                        },
                    }
                    self.advance(m.offset() + 1);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading the dynamic config topic");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_idle) => {
                    // Compaction or transaction markers can leave the last offsets without a
                    // record: the consumer's position still says where the end is.
                    if let Ok(Offset::Offset(p)) = self
                        .consumer
                        .position()
                        .map(|tpl| tpl.elements().first().map_or(Offset::Invalid, |e| e.offset()))
                    {
                        self.advance(p);
                    }
                }
            }
        }
    }

    fn advance(&self, next: i64) {
        self.position.send_if_modified(|p| {
            let moved = next > *p;
            *p = (*p).max(next);
            moved
        });
        if next >= self.end {
            self.loaded.send_if_modified(|l| !std::mem::replace(l, true));
        }
    }
}
