//! `[session-handler]`: the compacted topic through which every node shares its sockets, so
//! limits per group and client hold across the cluster.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;

/// `WSPROXY_SESSION_STATE_*`: the shared session state topic.
#[derive(Debug, Clone)]
pub struct SessionStateConfig {
    pub topic: String,
    pub replication_factor: i32,
    pub retention: Duration,
    /// Bound on loading the state at start (and on each later wait for it).
    pub init_timeout: Duration,
    pub init_retries: u32,
    pub init_retry_interval: Duration,
    /// Silence after which another node's sockets no longer count (its group's session timeout).
    pub node_timeout: Duration,
}

/// Reads `WSPROXY_SESSION_*`.
pub(super) fn read(r: &mut Reader<'_>) -> SessionStateConfig {
    let topic = r.string(WSPROXY_SESSION_STATE_TOPIC);
    r.above_zero(WSPROXY_SESSION_STATE_TOPIC, topic.is_empty());
    let replication_factor = r.parse(WSPROXY_SESSION_STATE_REPLICATION_FACTOR, "a number");
    r.above_zero(WSPROXY_SESSION_STATE_REPLICATION_FACTOR, replication_factor <= 0);
    let init_timeout = r.duration(WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT);
    r.above_zero(WSPROXY_SESSION_STATE_TOPIC_INIT_TIMEOUT, init_timeout.is_zero());
    SessionStateConfig {
        topic,
        replication_factor,
        retention: r.duration(WSPROXY_SESSION_STATE_RETENTION),
        init_timeout,
        init_retries: r.parse(WSPROXY_SESSION_STATE_TOPIC_INIT_RETRIES, "a number"),
        init_retry_interval: r.duration(WSPROXY_SESSION_STATE_TOPIC_INIT_RETRY_INTERVAL),
        node_timeout: r.duration(WSPROXY_SESSION_NODE_TIMEOUT),
    }
}
