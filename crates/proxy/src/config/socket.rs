//! `[server.websocket]`: what every socket may send and receive, and how long it may stay quiet.

use std::time::Duration;

use super::env_vars::*;
use super::reader::Reader;

/// WebSocket limits.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Frames above this get a `FRAME_TOO_LARGE` error frame; the socket stays open.
    pub max_frame_bytes: usize,
    /// Frames above this close the socket with 1009 (the codec refuses to buffer them).
    pub hard_max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    /// The server pings a socket that was quiet this long.
    pub keep_alive: Duration,
    /// A socket that sent nothing (not even a pong) this long is closed with 1001.
    pub idle_timeout: Duration,
}

/// Reads `WSPROXY_WS_*` and `WSPROXY_SOCKET_*`.
pub(super) fn read(r: &mut Reader<'_>) -> SocketConfig {
    let max_frame_bytes: usize = r.parse(WSPROXY_WS_MAX_FRAME_SIZE, "a size in bytes");
    r.above_zero(WSPROXY_WS_MAX_FRAME_SIZE, max_frame_bytes == 0);
    let keep_alive = r.duration(WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL);
    r.above_zero(WSPROXY_SOCKET_KEEP_ALIVE_INTERVAL, keep_alive.is_zero());
    let idle_timeout = r.duration(WSPROXY_SOCKET_IDLE_TIMEOUT);
    r.above_zero(WSPROXY_SOCKET_IDLE_TIMEOUT, idle_timeout.is_zero());
    SocketConfig {
        max_frame_bytes,
        hard_max_frame_bytes: max_frame_bytes.saturating_mul(2).max(64 * 1024),
        read_buffer_bytes: r.parse(WSPROXY_WS_READ_BUFFER_SIZE, "a size in bytes"),
        write_buffer_bytes: r.parse(WSPROXY_WS_WRITE_BUFFER_SIZE, "a size in bytes"),
        keep_alive,
        idle_timeout,
    }
}
