//! `[consumer.limits]`, `[producer.limits]` and `[dynamic-config-handler]`: the static
//! client-specific limits with their defaults, and the compacted topic through which the admin
//! API changes them at run time on every node.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;
use crate::limits::{ConsumerLimit, ProducerLimit, StaticLimits};

/// A compacted internal topic (name, replication, retention, start-up patience).
#[derive(Debug, Clone)]
pub struct InternalTopicConfig {
    pub topic: String,
    /// Wanted replicas; the topic gets min(this, brokers).
    pub replication_factor: i32,
    /// `retention.ms`; zero keeps records forever.
    pub retention: Duration,
    /// How long one attempt to create or load the topic may take.
    pub init_timeout: Duration,
    pub init_retries: u32,
    pub retry_interval: Duration,
}

/// Defaults and client-specific lists of client limits.
pub(super) fn read(r: &mut Reader<'_>) -> StaticLimits {
    // WSPROXY_DEFAULT_BATCH_SIZE is the deprecated name: read when the new one is left at 0.
    let (current, deprecated) = (r.string(WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE), r.string(WSPROXY_DEFAULT_BATCH_SIZE));
    let batch = if current == "0" && !deprecated.is_empty() {
        WSPROXY_DEFAULT_BATCH_SIZE
    } else {
        WSPROXY_CONSUMER_DEFAULT_BATCH_SIZE
    };
    StaticLimits {
        consumer_default_messages_per_second: r
            .parse(WSPROXY_CONSUMER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC, "a number of records per second"),
        consumer_default_max_connections: r.parse(WSPROXY_CONSUMER_DEFAULT_MAX_CLIENT_CONNECTIONS, "a number"),
        consumer_default_batch_size: r.parse(batch, "a number"),
        producer_default_messages_per_second: r
            .parse(WSPROXY_PRODUCER_RATELIMIT_DEFAULT_MESSAGES_PER_SEC, "a number of records per second"),
        producer_default_max_connections: r.parse(WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS, "a number"),
        consumers: client_list(r, WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS, |c: &ConsumerLimit| c.group_id.clone()),
        producers: client_list(r, WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS, |p: &ProducerLimit| p.producer_id.clone()),
    }
}

/// A JSON array of client limits (the TOML file's array of tables arrives here as JSON too).
fn client_list<T: serde::de::DeserializeOwned>(r: &mut Reader<'_>, var: EnvVar, id: impl Fn(&T) -> String) -> Vec<T> {
    let raw = r.string(var);
    match serde_json::from_str::<Vec<T>>(&raw) {
        Ok(list) => {
            let mut seen = std::collections::HashSet::new();
            for item in &list {
                let id = id(item);
                if id.is_empty() {
                    r.fail(var, "an entry has an empty id");
                } else if !seen.insert(id.clone()) {
                    r.fail(var, format!("'{id}' is listed twice"));
                }
            }
            list
        }
        Err(e) => {
            r.fail(var, format!("not a valid list of client limits: {e}"));
            Vec::new()
        }
    }
}

/// `WSPROXY_DYNAMIC_CONFIG_*`, when dynamic configs are enabled.
pub(super) fn dynamic_config(r: &mut Reader<'_>) -> Option<InternalTopicConfig> {
    if !r.boolean(WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED) {
        return None;
    }
    let topic = r.string(WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME);
    if topic.is_empty() {
        r.fail(WSPROXY_DYNAMIC_CONFIG_TOPIC_NAME, "must not be empty");
    }
    let replication_factor: i32 = r.parse(WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR, "a number of replicas");
    if replication_factor < 1 && !r.has_error(WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR) {
        r.fail(WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR, "must be at least 1");
    }
    Some(InternalTopicConfig {
        topic,
        replication_factor,
        retention: r.duration(WSPROXY_DYNAMIC_CONFIG_RETENTION),
        init_timeout: r.duration(WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_TIMEOUT),
        init_retries: r.parse(WSPROXY_DYNAMIC_CONFIG_TOPIC_INIT_RETRIES, "a number"),
        retry_interval: r.duration(WSPROXY_DYNAMIC_CONFIG_TOPIC_RETRY_INTERVAL),
    })
}
