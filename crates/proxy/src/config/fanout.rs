//! `[fan-out]`: fan-out sockets (`/socket/out?…&fanOut=true`, issue 18), which share one
//! Kafka consumer per topic and Kafka credentials on this node.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;

/// Fan-out sockets and their shared consumers.
#[derive(Debug, Clone)]
pub struct FanOutConfig {
    /// Open fan-out sockets per node; 0: no cap beyond the connection limits.
    pub max_sockets: usize,
    /// A socket further behind the live end than this many records is closed (1013) or,
    /// with `onLag=skip`, skips to the live end with gap frames.
    pub max_lag_records: usize,
    /// The same, in bytes of rendered frames.
    pub max_lag_bytes: usize,
    /// How long a shared consumer outlives its last socket (a reconnect reuses it).
    pub linger: Duration,
}

/// Reads `WSPROXY_FANOUT_*`.
pub(super) fn read(r: &mut Reader<'_>) -> FanOutConfig {
    let max_lag_records: usize = r.parse(WSPROXY_FANOUT_MAX_LAG_RECORDS, "a number of records");
    r.above_zero(WSPROXY_FANOUT_MAX_LAG_RECORDS, max_lag_records == 0);
    let max_lag_bytes: usize = r.parse(WSPROXY_FANOUT_MAX_LAG_BYTES, "a size in bytes");
    r.above_zero(WSPROXY_FANOUT_MAX_LAG_BYTES, max_lag_bytes == 0);
    FanOutConfig {
        max_sockets: r.parse(WSPROXY_FANOUT_MAX_SOCKETS, "a number of sockets"),
        max_lag_records,
        max_lag_bytes,
        linger: r.duration(WSPROXY_FANOUT_CONSUMER_LINGER),
    }
}
