//! `[consumer]` and `[commit-handler]`: each consume socket's own Kafka consumer and how its
//! offsets are committed.

use std::time::Duration;

use super::env_vars::*;
use super::kafka::{client_properties, ClientKind};
use super::reader::Reader;

/// Per-socket consumers.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Prefetch bound per consumer socket (`queued.max.messages.kbytes`).
    pub queued_max_kbytes: u32,
    pub session_timeout_ms: u32,
    /// How often a `topicPattern` socket's consumer refreshes its metadata, finding new
    /// matching topics (`topic.metadata.refresh.interval.ms`).
    pub metadata_refresh_interval: Duration,
    /// `pull=true` sockets: the most credit (records granted and not yet sent) a socket holds.
    pub max_credit: u32,
    /// `resumable=true` sockets: how long a dropped socket's consumer stays parked.
    pub resume_window: Duration,
    /// `resumable=true` sockets: the most consumers parked on this node.
    pub resume_max_parked: usize,
    /// `resumable=true` sockets: the compacted topic of cross-node handovers.
    pub resume_topic: String,
    /// `resumable=true` sockets: how long a reconnect waits for another node's handover.
    pub resume_handover_timeout: Duration,
    /// librdkafka properties from the consumer-specific Java settings.
    pub client_properties: Vec<(&'static str, String)>,
    /// Entries per partition kept for `autoCommit=false` commits.
    pub commit_stack_max_size: usize,
    pub commit_auto_enabled: bool,
    pub commit_auto_interval: Duration,
    pub commit_auto_max_age: Duration,
}

/// Reads `WSPROXY_CONSUMER_*`, `WSPROXY_KAFKA_CONSUMER_*` and `WSPROXY_CH_*`.
pub(super) fn read(r: &mut Reader<'_>) -> ConsumerConfig {
    let commit_stack_max_size = r.parse(WSPROXY_CH_MAX_STACK_SIZE, "a number");
    r.above_zero(WSPROXY_CH_MAX_STACK_SIZE, commit_stack_max_size == 0);
    let commit_auto_interval = r.duration(WSPROXY_CH_AUTOCOMMIT_INTERVAL);
    r.above_zero(WSPROXY_CH_AUTOCOMMIT_INTERVAL, commit_auto_interval.is_zero());
    let metadata_refresh_interval = r.duration(WSPROXY_CONSUMER_METADATA_REFRESH_INTERVAL);
    r.above_zero(WSPROXY_CONSUMER_METADATA_REFRESH_INTERVAL, metadata_refresh_interval.is_zero());
    let max_credit = r.parse(WSPROXY_CONSUMER_MAX_CREDIT, "a number of records");
    r.above_zero(WSPROXY_CONSUMER_MAX_CREDIT, max_credit == 0);
    let resume_window = r.duration(WSPROXY_CONSUMER_RESUME_WINDOW);
    r.above_zero(WSPROXY_CONSUMER_RESUME_WINDOW, resume_window.is_zero());
    let resume_max_parked = r.parse(WSPROXY_CONSUMER_RESUME_MAX_PARKED, "a number of sessions");
    r.above_zero(WSPROXY_CONSUMER_RESUME_MAX_PARKED, resume_max_parked == 0);
    let resume_topic = r.string(WSPROXY_RESUME_TOPIC);
    r.above_zero(WSPROXY_RESUME_TOPIC, resume_topic.is_empty());
    let resume_handover_timeout = r.duration(WSPROXY_RESUME_HANDOVER_TIMEOUT);
    r.above_zero(WSPROXY_RESUME_HANDOVER_TIMEOUT, resume_handover_timeout.is_zero());
    ConsumerConfig {
        queued_max_kbytes: r.parse(WSPROXY_CONSUMER_QUEUED_MAX_KBYTES, "a number of KiB"),
        session_timeout_ms: r.parse(WSPROXY_CONSUMER_SESSION_TIMEOUT_MS, "a number of milliseconds"),
        metadata_refresh_interval,
        max_credit,
        resume_window,
        resume_max_parked,
        resume_topic,
        resume_handover_timeout,
        client_properties: client_properties(r, ClientKind::Consumer),
        commit_stack_max_size,
        commit_auto_enabled: r.boolean(WSPROXY_CH_AUTOCOMMIT_ENABLED),
        commit_auto_interval,
        commit_auto_max_age: r.duration(WSPROXY_CH_AUTOCOMMIT_MAX_AGE),
    }
}
