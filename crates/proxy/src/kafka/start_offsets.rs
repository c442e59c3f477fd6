//! `fromTimestamp`: where a group that has no committed offset on a topic starts, committed
//! before the socket's consumer joins (one helper consumer per topic, destroyed off the
//! runtime). Kept apart from the socket's consumer port (`kafka/consumer.rs`).

use std::collections::HashMap;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client::METADATA_TIMEOUT;
use crate::kafka::closer::{ClientKind, OffRuntime};
use crate::kafka::oauth::{OAuthContext, TokenCell};
use crate::kafka::oauth_admin;

/// For `fromTimestamp`: commits, for every partition where the group has no committed offset
/// yet, the first offset at or after `ts`. Partitions with a commit are left alone. A group
/// with active members refuses the commit; their positions stand.
pub(super) fn start_group_at(
    cfg: &ClientConfig,
    topic: &str,
    ts: i64,
    token: Option<TokenCell>,
) -> Result<(), KafkaError> {
    let mut cfg = cfg.clone();
    cfg.remove("statistics.interval.ms");
    let consumer: OffRuntime<BaseConsumer<OAuthContext>> =
        OffRuntime::new(cfg.create_with_context(OAuthContext)?, ClientKind::Consumer);
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
