//! Close frames: the one place that maps why a socket ends to a close code and reason.
//!
//! 1000 normal, 1001 server shutting down, 1008 policy (token expired, limit), 1009 frame too
//! big for the codec, 1011 a Kafka failure the proxy cannot recover from.

use axum::extract::ws::CloseFrame;

fn frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code, reason: reason.into() }
}

/// The socket is done (the client closed it, or its stream ended).
pub fn normal() -> CloseFrame {
    frame(1000, "")
}

/// The server is shutting down; in-flight records were answered first.
pub fn going_away() -> CloseFrame {
    frame(1001, "server shutting down")
}

/// Kafka failed in a way this socket cannot recover from.
pub fn kafka_failure(reason: &str) -> CloseFrame {
    // Close reasons are limited to 123 bytes.
    let mut r = format!("Kafka failure: {reason}");
    if r.len() > 120 {
        let mut cut = 120;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
    }
    frame(1011, &r)
}

/// The close frame for a failed read, or `None` when the peer simply went away.
/// A frame beyond the codec's hard limit is refused with 1009 (message too big).
pub fn for_read_error(e: axum::Error) -> Option<CloseFrame> {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) if matches!(*err, tungstenite::Error::Capacity(_)) => {
            Some(frame(1009, "frame too large: over twice WSPROXY_WS_MAX_FRAME_SIZE"))
        }
        _ => None,
    }
}
