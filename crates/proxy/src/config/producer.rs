//! `[producer]`: the one producer every produce socket shares, and how much one socket may
//! have in flight before the proxy stops reading it.

use super::env_vars::*;
use super::kafka::{client_properties, ClientKind};
use super::reader::Reader;

/// The shared producer.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub delivery_timeout_ms: u32,
    pub compression_type: String,
    pub linger_ms: u32,
    /// librdkafka's local queue, shared by all produce sockets (`queue.buffering.max.kbytes`).
    pub queue_max_kbytes: u32,
    pub sessions_enabled: bool,
    pub exactly_once_enabled: bool,
    /// Records one socket may have in flight before the proxy stops reading it.
    pub max_in_flight_records: usize,
    /// Bytes one socket may have in flight before the proxy stops reading it.
    pub max_in_flight_bytes: usize,
    /// librdkafka properties from the producer-specific Java settings.
    pub client_properties: Vec<(&'static str, String)>,
}

/// Reads `WSPROXY_KAFKA_PRODUCER_*` and `WSPROXY_PRODUCER_*`.
pub(super) fn read(r: &mut Reader<'_>) -> ProducerConfig {
    let compression_type = r.string(WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE).to_ascii_lowercase();
    if !matches!(compression_type.as_str(), "none" | "gzip" | "snappy" | "lz4" | "zstd") {
        r.fail(
            WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE,
            format!("'{compression_type}' is not one of none, gzip, snappy, lz4, zstd"),
        );
    }
    let max_in_flight_records = r.parse(WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS, "a number");
    r.above_zero(WSPROXY_PRODUCER_MAX_IN_FLIGHT_RECORDS, max_in_flight_records == 0);
    let max_in_flight_bytes = r.parse(WSPROXY_PRODUCER_MAX_IN_FLIGHT_BYTES, "a size in bytes");
    r.above_zero(WSPROXY_PRODUCER_MAX_IN_FLIGHT_BYTES, max_in_flight_bytes == 0);
    ProducerConfig {
        delivery_timeout_ms: r.parse(WSPROXY_KAFKA_PRODUCER_DELIVER_TIMEOUT_MS, "a number of milliseconds"),
        compression_type,
        linger_ms: r.parse(WSPROXY_KAFKA_PRODUCER_LINGER_MS, "a number of milliseconds"),
        queue_max_kbytes: r.parse(WSPROXY_KAFKA_PRODUCER_QUEUE_MAX_KBYTES, "a number of KiB"),
        sessions_enabled: r.boolean(WSPROXY_PRODUCER_SESSIONS_ENABLED),
        exactly_once_enabled: r.boolean(WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED),
        max_in_flight_records,
        max_in_flight_bytes,
        client_properties: client_properties(r, ClientKind::Producer),
    }
}
