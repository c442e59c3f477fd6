//! The consumer port: each consume socket gets a group member of its own, created here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use wsproxy_protocol::params::ConsumerParams;

use crate::auth::kafka_credentials::KafkaCredentials;
use crate::kafka::client::{probe_topic, AuthFailure, ClientError, ProbeError, METADATA_TIMEOUT, STATS_INTERVAL_MS};
use crate::kafka::closer::{self, ClientKind, OffRuntime};
use crate::kafka::Kafka;
use crate::telemetry::metrics;

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

/// Why a consume socket got no consumer.
#[derive(Debug)]
pub enum ConsumerError {
    /// The socket's own credentials were refused, or may not read the topic.
    Refused(ProbeError),
    /// librdkafka could not create or subscribe the consumer.
    Kafka(ClientError),
}

impl From<KafkaError> for ConsumerError {
    fn from(e: KafkaError) -> Self {
        ConsumerError::Kafka(e.into())
    }
}

impl Kafka {
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
            let (topic, ts) = (params.topic.clone(), ts);
            tokio::task::spawn_blocking(move || start_group_at(&cfg, &topic, ts))
                .await
                .expect("start-offset task never panics")?;
        }
        let context = SocketConsumerContext {
            topic: params.topic.clone(),
            lag,
            auth: AuthFailure::default(),
            revoked: Mutex::new(Revoked::default()),
            assigned: Mutex::new(Default::default()),
        };
        let (topic, probe) = (params.topic.clone(), creds.is_some());
        // Created, probed and subscribed on the blocking pool, and guarded from the start: on
        // any early return (refused credentials, a failed upgrade, a panic) the consumer is
        // destroyed off the runtime.
        let made = tokio::task::spawn_blocking(move || {
            let consumer: SocketConsumer = OffRuntime::new(cfg.create_with_context(context)?, ClientKind::Consumer);
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
fn start_group_at(cfg: &ClientConfig, topic: &str, ts: i64) -> Result<(), KafkaError> {
    let mut cfg = cfg.clone();
    cfg.remove("statistics.interval.ms");
    let consumer: OffRuntime<BaseConsumer> = OffRuntime::new(cfg.create()?, ClientKind::Consumer);
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
