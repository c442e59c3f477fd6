//! Close frames: the one place that maps why a socket ends to a close code and reason.
//!
//! 1000 normal, 1001 server shutting down, 1008 policy (token expired, limit), 1009 frame too
//! big for the codec, 1011 a Kafka failure the proxy cannot recover from.

use std::sync::{Arc, OnceLock};

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

/// Why a socket's stop token was cancelled. Unset: the server is shutting down (1001); set by
/// the token revalidation: a policy close (1008) or a provider failure (1011).
#[derive(Clone, Default, Debug)]
pub struct StopReason(Arc<OnceLock<CloseFrame>>);

impl StopReason {
    /// Records why the socket must close; the first reason wins.
    pub fn set(&self, frame: CloseFrame) {
        let _ = self.0.set(frame);
    }

    /// The close frame for a cancelled stop token.
    pub fn frame(&self) -> CloseFrame {
        self.0.get().cloned().unwrap_or_else(going_away)
    }
}

/// The socket's bearer token is no longer valid (expired, or its key was withdrawn).
pub fn policy_violation(reason: &str) -> CloseFrame {
    frame(1008, &truncate(reason.to_owned()))
}

/// The identity provider could not be reached too many times in a row while revalidating.
pub fn provider_unavailable() -> CloseFrame {
    frame(1011, "OpenID Connect server does not seem to be available.")
}

fn truncate(mut r: String) -> String {
    // Close reasons are limited to 123 bytes.
    if r.len() > 120 {
        let mut cut = 120;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
    }
    r
}

/// Kafka failed in a way this socket cannot recover from.
pub fn kafka_failure(reason: &str) -> CloseFrame {
    frame(1011, &truncate(format!("Kafka failure: {reason}")))
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
