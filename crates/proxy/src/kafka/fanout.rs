//! The shared consumer of fan-out sockets (issue 18): one librdkafka consumer per (topic,
//! Kafka credentials, isolation level) per node, assigned every partition of its topic from
//! the live end, read by one task that renders each record once for every socket
//! (`pipeline::fanout`). This file is only the Kafka side: make it, read it, pick up new
//! partitions; the rest of the proxy sees [`SharedConsumer`] and [`SharedRecords`].
//!
//! No consumer group: the consumer never subscribes, never commits and never asks for
//! committed offsets, so the broker never sees a group member or an offset of it. librdkafka
//! still wants a `group.id` for a manual assignment (`rd_kafka_assign` answers
//! `__UNKNOWN_GROUP` without one), so the consumer carries [`GROUP_HANDLE`], which only ever
//! looks up its coordinator.
//!
//! "From the live end" means concrete offsets: the high watermarks of every partition, read
//! before the consumer is handed out (before the first socket's 101), not librdkafka's lazy
//! `OFFSET_END`, which is resolved whenever fetching starts and could skip a record produced
//! in between. Partitions added later are read from their beginning.
//!
//! Like every socket's client, it lives in an [`OffRuntime`] from its creation: it is
//! destroyed on the closer's thread, never on the runtime.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, MessageStream, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client::{probe_topic, AuthFailure, ClientError, METADATA_TIMEOUT};
use crate::kafka::closer::{self, ClientKind, OffRuntime};
use crate::kafka::consumer::{observe_queued_errors, ConsumeError, ConsumerError, Record};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::oauth_admin::Linked;
use crate::kafka::Kafka;

/// The `group.id` of every shared consumer: librdkafka's handle for a manual assignment,
/// never joined and never committed to.
pub const GROUP_HANDLE: &str = "_wsproxy.fanout";

/// The context of a shared consumer: refusals noticed (OAUTHBEARER tokens: `oauth_admin`).
pub struct SharedContext {
    auth: AuthFailure,
}

impl ClientContext for SharedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.observe(&error);
        tracing::warn!(target: "librdkafka", %error, "fan-out consumer: {reason}");
    }
}

impl ConsumerContext for SharedContext {}

impl Drop for SharedContext {
    fn drop(&mut self) {
        closer::context_dropped(ClientKind::Consumer);
    }
}

type Client = OffRuntime<Linked<StreamConsumer<SharedContext>>>;

/// One topic's shared consumer; dropping it destroys the client off the runtime.
pub struct SharedConsumer {
    client: Arc<Client>,
    topic: String,
    /// Partitions assigned so far.
    assigned: Arc<Mutex<HashSet<i32>>>,
}

/// The records of a [`SharedConsumer`], every partition interleaved, each in its order.
pub struct SharedRecords<'c> {
    stream: MessageStream<'c, SharedContext>,
}

impl<'c> SharedRecords<'c> {
    /// The next record or consumer error. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Record<'c>, ConsumeError>> {
        self.stream.next().await.map(|m| m.map(Record).map_err(ConsumeError))
    }
}

impl SharedConsumer {
    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its records. Create it once.
    pub fn records(&self) -> SharedRecords<'_> {
        SharedRecords { stream: self.client.stream() }
    }

    /// Assigns partitions of the topic created since the last look (from their beginning:
    /// every record in them is newer than the sockets reading). Returns how many.
    pub async fn pick_up_partitions(&self) -> Result<usize, ClientError> {
        let (client, topic, assigned) = (self.client.clone(), self.topic.clone(), self.assigned.clone());
        tokio::task::spawn_blocking(move || {
            let partitions = partitions_of(&client, &topic)?;
            let mut known = assigned.lock().expect("the assignment is never poisoned");
            let new: Vec<i32> = partitions.into_iter().filter(|p| !known.contains(p)).collect();
            if new.is_empty() {
                return Ok(0);
            }
            let mut tpl = TopicPartitionList::new();
            for p in &new {
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
            }
            client.incremental_assign(&tpl)?;
            known.extend(&new);
            tracing::info!(topic, partitions = ?new, "fan-out consumer picked up new partitions");
            Ok(new.len())
        })
        .await
        .expect("partition refresh never panics")
    }
}

fn partitions_of(client: &Client, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let md = client.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    Ok(md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
}

impl Kafka {
    /// A shared consumer of `topic` with these credentials (the proxy's own when `None`),
    /// assigned every partition at its current end. With credentials, they and the topic's
    /// ACL are checked first (as for a grouped socket's consumer).
    pub async fn shared_consumer(
        &self,
        topic: &str,
        creds: Option<&KafkaCredentials>,
        read_committed: bool,
    ) -> Result<SharedConsumer, ConsumerError> {
        let mut cfg: ClientConfig = self.client_config(creds);
        cfg.set("group.id", GROUP_HANDLE)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
            .set("allow.auto.create.topics", "false")
            // One consumer feeds every socket of the topic: a bounded prefetch, refilled quickly.
            .set("queued.max.messages.kbytes", self.inner.consumer_queued_max_kbytes.to_string())
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in &self.inner.consumer_properties {
            cfg.set(*k, v);
        }
        if let Some(c) = creds {
            self.refused_recently(c).map_err(ConsumerError::Refused)?;
        }
        let token = self.token_for(creds);
        let context = SharedContext { auth: AuthFailure::default() };
        let (topic, probe) = (topic.to_owned(), creds.is_some());
        let made = tokio::task::spawn_blocking(move || {
            let linked = Linked::new(cfg.create_with_context(context)?, token.as_ref())?;
            let client: Client = OffRuntime::new(linked, ClientKind::Consumer);
            if probe {
                let auth = &client.context().auth;
                probe_topic(client.client(), &topic, auth, &|| observe_queued_errors(&client, auth))
                    .map_err(ConsumerError::Refused)?;
            }
            let partitions = partitions_of(&client, &topic)?;
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                let (_, high) = client.fetch_watermarks(&topic, *p, METADATA_TIMEOUT)?;
                tpl.add_partition_offset(&topic, *p, Offset::Offset(high))?;
            }
            client.assign(&tpl)?;
            let assigned = Arc::new(Mutex::new(partitions.into_iter().collect()));
            Ok::<_, ConsumerError>(SharedConsumer { client: Arc::new(client), topic, assigned })
        })
        .await
        .expect("shared consumer creation never panics");
        self.remember_consumer(creds, &made);
        made
    }
}

impl ConsumeError {
    /// [`ConsumeError::triage`] for a shared consumer: its group handle is never used, so a
    /// refusal about the group (the user may not describe it) is only logged.
    pub fn triage_shared(self) -> Result<(), String> {
        if self.0.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::GroupAuthorizationFailed) {
            tracing::debug!(error = %self.0, "fan-out consumer: group handle refused (unused)");
            return Ok(());
        }
        self.triage()
    }
}
