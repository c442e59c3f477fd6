//! Cluster administration for the admin API and for start-up: internal compacted topics,
//! consumer group listings, committed offsets and their changes.
//!
//! rdkafka 0.39 has no ListConsumerGroupOffsets, AlterConsumerGroupOffsets or
//! DeleteConsumerGroupOffsets. So: a group's offsets are fetched for every partition of every
//! topic in one OffsetFetch; they are altered by committing as a member-less client of the
//! group (which the broker accepts only while the group has no members, as Kafka's own alter
//! does); and a topic's offsets are deleted by deleting the (inactive) group and committing
//! the offsets of its other topics again. That is not atomic (finding L6): the recommit is
//! retried, and offsets it could not restore are logged, counted and returned to the caller
//! so that an operator can restore them with the alter route.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::closer::{ClientKind, OffRuntime};
use super::Kafka;
use crate::config::InternalTopicConfig;
use crate::kafka::oauth::OAuthContext;

/// Timeout of one admin round trip.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer group as the admin API lists and describes it (the reference's field names).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub group_id: String,
    pub is_simple: bool,
    /// Kafka's state in Java's enum spelling: `STABLE`, `EMPTY`, `DEAD`, ...
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_assignor: Option<String>,
    /// Client ids of the members (empty in listings, as in the reference).
    pub members: Vec<String>,
}

impl GroupSummary {
    /// Whether the group has (or is getting) members, as the reference's `activeOnly` means it.
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "STABLE" | "PREPARING_REBALANCE" | "COMPLETING_REBALANCE")
    }
}

/// One committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("Unable to modify the consumer group offsets because the group is still considered to be active. Please ensure that all consumer clients are stopped before trying again.")]
    Active,
    /// The request names offsets Kafka cannot take (unknown partition, negative offset).
    #[error("{0}")]
    Invalid(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic's offsets were deleted with the group, and the other topics' offsets could not
    /// be committed again: they are gone from Kafka until restored.
    #[error("The offsets of topic {topic} were deleted, but the group's other offsets could not be committed again ({reason}). Restore them with PUT /admin/consumer-group/{group}/offsets/alter and this body: {offsets}")]
    NotRestored { group: String, topic: String, reason: String, offsets: String },
}

/// Internal groups the listing hides unless asked.
fn is_internal(group: &str) -> bool {
    group.starts_with('_')
        || group.starts_with("ws-proxy-session-consumer")
        || group.starts_with("ws-proxy-dynamic-config-handler-consumer")
}

/// librdkafka's state names (`PreparingRebalance`) in Java's enum spelling.
fn java_state(state: &str) -> String {
    match state {
        "Stable" => "STABLE",
        "Empty" => "EMPTY",
        "Dead" => "DEAD",
        "PreparingRebalance" => "PREPARING_REBALANCE",
        "CompletingRebalance" | "AwaitingSync" => "COMPLETING_REBALANCE",
        _ => "UNKNOWN",
    }
    .to_owned()
}

impl Kafka {
    /// An admin client, destroyed off the runtime when dropped (see [`super::closer`]).
    fn admin_client(&self) -> Result<OffRuntime<AdminClient<OAuthContext>>, KafkaError> {
        let admin: AdminClient<OAuthContext> = self.inner.base.create_with_context(self.oauth_context())?;
        // Its main queue is never polled: it gets the token now (see `oauth_admin`).
        self.give_token(admin.inner())?;
        Ok(OffRuntime::new(admin, ClientKind::Admin))
    }

    /// A client of `group` that never joins it: for offset lookups and commits.
    fn group_client(&self, group: &str) -> Result<OffRuntime<BaseConsumer<OAuthContext>>, KafkaError> {
        let mut cfg = self.inner.base.clone();
        cfg.set("group.id", group).set("enable.auto.commit", "false");
        let consumer: BaseConsumer<OAuthContext> = cfg.create_with_context(self.oauth_context())?;
        self.give_token(consumer.client())?;
        Ok(OffRuntime::new(consumer, ClientKind::Consumer))
    }

    /// Creates a compacted single-partition topic unless it exists, with min(configured,
    /// brokers) replicas, retrying as configured.
    pub async fn ensure_compacted_topic(&self, t: &InternalTopicConfig) -> Result<(), String> {
        self.ensure_internal_topic(t, "compact").await
    }

    /// [`ensure_compacted_topic`](Self::ensure_compacted_topic) with `cleanup.policy`
    /// `compact,delete`: records of keys that are never written again (the resume topic's
    /// are unique) are removed after the retention too, and segments roll that often so that
    /// they can be. An existing topic is left as it is.
    pub async fn ensure_compacted_expiring_topic(&self, t: &InternalTopicConfig) -> Result<(), String> {
        self.ensure_internal_topic(t, "compact,delete").await
    }

    async fn ensure_internal_topic(&self, t: &InternalTopicConfig, policy: &'static str) -> Result<(), String> {
        let attempts = t.init_retries.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match tokio::time::timeout(t.init_timeout, self.create_internal_topic(t, policy)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", t.init_timeout),
            }
            tracing::warn!(topic = %t.topic, attempt, attempts, error = %last, "internal topic not ready yet");
            if attempt < attempts {
                tokio::time::sleep(t.retry_interval).await;
            }
        }
        Err(format!("cannot create topic {}: {last}", t.topic))
    }

    async fn create_internal_topic(&self, t: &InternalTopicConfig, policy: &'static str) -> Result<(), String> {
        if self.topic_partitions(&t.topic).await.map_err(|e| e.to_string())?.is_some() {
            return Ok(());
        }
        let brokers = self.brokers(ADMIN_TIMEOUT).await.map_err(|e| e.to_string())?.len().max(1);
        let replicas = t.replication_factor.clamp(1, brokers as i32);
        let retention =
            if t.retention.is_zero() { "-1".to_owned() } else { (t.retention.as_millis() as u64).to_string() };
        let admin = self.admin_client().map_err(|e| e.to_string())?;
        let mut topic = NewTopic::new(&t.topic, 1, TopicReplication::Fixed(replicas))
            .set("cleanup.policy", policy)
            .set("retention.ms", &retention);
        if policy.contains("delete") {
            // Only closed segments are deleted (or compacted): roll them as often.
            topic = topic.set("segment.ms", &retention);
        }
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = admin.create_topics(&[topic], &opts).await.map_err(|e| e.to_string())?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("creating {name}: {code}")),
            }
        }
        tracing::info!(topic = %t.topic, replicas, "created internal topic");
        // Wait until the metadata knows it, so that readers can be assigned.
        for _ in 0..100 {
            if let Ok(Some(_)) = self.topic_partitions(&t.topic).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("topic {} was created but does not appear in the metadata", t.topic))
    }

    /// Consumer groups of the cluster (one: `Some(group)`), with state and members.
    pub async fn groups(&self, group: Option<&str>) -> Result<Vec<GroupSummary>, KafkaError> {
        let (kafka, group) = (self.clone(), group.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            let list = kafka.inner.producer.0.client().fetch_group_list(group.as_deref(), ADMIN_TIMEOUT)?;
            Ok(list
                .groups()
                .iter()
                .map(|g| GroupSummary {
                    group_id: g.name().to_owned(),
                    is_simple: g.protocol_type().is_empty(),
                    state: java_state(g.state()),
                    partition_assignor: Some(g.protocol().to_owned()),
                    members: g.members().iter().map(|m| m.client_id().to_owned()).collect(),
                })
                .collect())
        })
        .await
        .expect("group task never panics")
    }

    /// The listing of `GET /admin/consumer-group/all`.
    pub async fn list_groups(
        &self,
        active_only: bool,
        include_internals: bool,
    ) -> Result<Vec<GroupSummary>, KafkaError> {
        let mut groups = self.groups(None).await?;
        groups.retain(|g| (include_internals || !is_internal(&g.group_id)) && (!active_only || g.is_active()));
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        for g in &mut groups {
            g.partition_assignor = None;
            g.members.clear();
        }
        Ok(groups)
    }

    /// One group; Kafka answers `DEAD` for a group it does not know.
    pub async fn describe_group(&self, group: &str) -> Result<GroupSummary, KafkaError> {
        let found = self.groups(Some(group)).await?.into_iter().find(|g| g.group_id == group);
        Ok(found.unwrap_or_else(|| GroupSummary {
            group_id: group.to_owned(),
            is_simple: true,
            state: "DEAD".to_owned(),
            partition_assignor: Some(String::new()),
            members: Vec::new(),
        }))
    }

    /// Every committed offset of `group`, sorted by topic and partition.
    pub async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, KafkaError> {
        let (kafka, group) = (self.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer = kafka.group_client(&group)?;
            committed(&consumer)
        })
        .await
        .expect("offsets task never panics")
    }

    /// Commits `offsets` for an inactive `group`; answers every offset of the group after it.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Result<Vec<GroupOffset>, GroupError> {
        self.refuse_active(group).await?;
        let (kafka, group) = (self.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer = kafka.group_client(&group)?;
            check_partitions(&consumer, &offsets)?;
            if !offsets.is_empty() {
                commit(&consumer, &offsets).map_err(commit_error)?;
            }
            Ok(committed(&consumer)?)
        })
        .await
        .expect("offsets task never panics")
    }

    /// Deletes the committed offsets of an inactive `group`: those of `topic`, or all of them.
    pub async fn delete_group_offsets(&self, group: &str, topic: Option<&str>) -> Result<(), GroupError> {
        self.refuse_active(group).await?;
        let before = self.group_offsets(group).await?;
        if before.is_empty() || (topic.is_some() && !before.iter().any(|o| Some(o.topic.as_str()) == topic)) {
            return Ok(());
        }
        let admin = self.admin_client()?;
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        for r in admin.delete_groups(&[group], &opts).await? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((_, RDKafkaErrorCode::NonEmptyGroup)) => return Err(GroupError::Active),
                Err((_, code)) => return Err(GroupError::Kafka(KafkaError::AdminOp(code))),
            }
        }
        let keep: Vec<GroupOffset> = before.into_iter().filter(|o| topic.is_some_and(|t| o.topic != t)).collect();
        if keep.is_empty() {
            return Ok(());
        }
        // From here until the commit lands the other topics' offsets are gone: a member that
        // joins now starts them from auto.offset.reset. Retried for failures that pass.
        let mut attempt = 0;
        let failure = loop {
            attempt += 1;
            let (kafka, owned, offsets) = (self.clone(), group.to_owned(), keep.clone());
            let result = tokio::task::spawn_blocking(move || {
                let consumer = kafka.group_client(&owned)?;
                commit(&consumer, &offsets).map_err(commit_error)
            })
            .await
            .expect("offsets task never panics");
            match result {
                Ok(()) => return Ok(()),
                Err(GroupError::Active) => break "a consumer joined the group in between".to_owned(),
                Err(e) if attempt == 3 => break e.to_string(),
                Err(e) => {
                    tracing::warn!(group, attempt, error = %e, "committing the group's other offsets again failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
            }
        };
        let offsets = serde_json::to_string(&keep).expect("offsets serialise");
        crate::telemetry::metrics::admin_offsets_not_restored();
        tracing::error!(group, topic, reason = %failure, offsets = %offsets, "deleting one topic's offsets lost the group's other offsets: restore them with the alter route");
        Err(GroupError::NotRestored {
            group: group.to_owned(),
            topic: topic.unwrap_or_default().to_owned(),
            reason: failure,
            offsets,
        })
    }

    async fn refuse_active(&self, group: &str) -> Result<(), GroupError> {
        let g = self.describe_group(group).await?;
        if g.members.is_empty() && !g.is_active() {
            Ok(())
        } else {
            Err(GroupError::Active)
        }
    }
}

/// Every offset must be at least 0 and name a partition that exists.
fn check_partitions(consumer: &BaseConsumer<OAuthContext>, offsets: &[GroupOffset]) -> Result<(), GroupError> {
    if let Some(o) = offsets.iter().find(|o| o.offset < 0) {
        return Err(GroupError::Invalid(format!(
            "The offset {} of {}-{} is negative.",
            o.offset, o.topic, o.partition
        )));
    }
    let md = consumer.fetch_metadata(None, ADMIN_TIMEOUT)?;
    for o in offsets {
        let exists = md.topics().iter().any(|t| {
            t.name() == o.topic && t.error().is_none() && t.partitions().iter().any(|p| p.id() == o.partition)
        });
        if !exists {
            return Err(GroupError::Invalid(format!("Topic {} has no partition {}.", o.topic, o.partition)));
        }
    }
    Ok(())
}

fn commit_error(e: KafkaError) -> GroupError {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedInstanceId,
        ) => GroupError::Active,
        _ => GroupError::Kafka(e),
    }
}

fn commit(consumer: &BaseConsumer<OAuthContext>, offsets: &[GroupOffset]) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for o in offsets {
        tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))?;
        if let Some(m) = &o.metadata {
            if let Some(mut e) = tpl.find_partition(&o.topic, o.partition) {
                e.set_metadata(m.clone());
            }
        }
    }
    consumer.commit(&tpl, CommitMode::Sync)
}

/// The group's committed offsets, asked for every partition of every user topic at once.
fn committed(consumer: &BaseConsumer<OAuthContext>) -> Result<Vec<GroupOffset>, KafkaError> {
    let md = consumer.fetch_metadata(None, ADMIN_TIMEOUT)?;
    let mut all = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| !t.name().starts_with("__") && t.error().is_none()) {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    if all.count() == 0 {
        return Ok(Vec::new());
    }
    let found = consumer.committed_offsets(all, ADMIN_TIMEOUT)?;
    let mut out: Vec<GroupOffset> = found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some(GroupOffset {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset,
                metadata: Some(e.metadata().to_owned()).filter(|m| !m.is_empty()),
            }),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}
