//! Close frames: the one place that maps why a socket ends to a close code and reason.
//!
//! 1000 normal, 1001 server shutting down or idle timeout, 1007 a text frame that is not
//! UTF-8, 1008 policy (token expired, limit), 1009 frame too
//! big for the codec, 1011 a Kafka failure the proxy cannot recover from.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};

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

/// The client sent nothing, not even a pong to the server's pings, for `idle`
/// (`WSPROXY_SOCKET_IDLE_TIMEOUT`): a dead peer or one that stopped reading.
pub fn idle(idle: std::time::Duration) -> CloseFrame {
    frame(1001, &format!("idle timeout: nothing received for {} s", idle.as_secs_f64()))
}

/// How often a socket loop looks at its timers: often enough for the keep-alive and to
/// notice an idle timeout within a quarter of it.
pub fn check_every(keep_alive: std::time::Duration, idle: std::time::Duration) -> std::time::Duration {
    keep_alive.min(idle / 4).max(std::time::Duration::from_millis(50))
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
/// A frame beyond the codec's hard limit is refused with 1009 (message too big), a text
/// frame that is not UTF-8 with 1007 (RFC 6455 8.1), other protocol violations with 1002.
pub fn for_read_error(e: axum::Error) -> Option<CloseFrame> {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) => match *err {
            tungstenite::Error::Capacity(_) => {
                Some(frame(1009, "frame too large: over twice WSPROXY_WS_MAX_FRAME_SIZE"))
            }
            tungstenite::Error::Utf8(_) => Some(frame(1007, "text frame is not valid UTF-8")),
            // A peer that vanished without a close frame just went away.
            tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => None,
            tungstenite::Error::Protocol(_) => Some(frame(1002, "WebSocket protocol error")),
            _ => None,
        },
        _ => None,
    }
}

/// How long a closing socket may take to send its close frame and read the client's answer.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a socket's input ended after the server sent its close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The client answered with its close frame: nothing is left unread.
    ClientClose,
    /// The connection ended (or failed) on the client's side.
    Eof,
    /// The client neither answered nor stopped sending within [`CLOSE_TIMEOUT`].
    TimedOut,
}

/// Ends a socket, the one close path of every socket kind (produce, transactional, consume,
/// echo): sends `frame`, then reads and discards what the client still sends until its close
/// frame, the end of the stream or [`CLOSE_TIMEOUT`].
///
/// Why drain (issue 14, item 4): closing a TCP socket with unread input sends RST instead of
/// FIN, and an RST makes the client's kernel discard every byte it had not read yet: the last
/// answers and the close frame. A client that pipelined thousands of frames always has some
/// the proxy never read. Reading until the client's close frame leaves nothing unread, so the
/// connection ends with FIN and the client reads everything; the connection loop
/// ([`crate::http::server`]) then half-closes and waits for the client's EOF.
pub async fn finish<T, R>(tx: &mut T, rx: &mut R, frame: Option<CloseFrame>) -> Drained
where
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    let sent = tokio::time::timeout_at(deadline, async {
        let _ = tx.send(Message::Close(frame)).await;
        let _ = tx.close().await;
    })
    .await;
    let outcome = if sent.is_err() {
        Drained::TimedOut
    } else {
        tokio::time::timeout_at(deadline, async {
            loop {
                match rx.next().await {
                    Some(Ok(Message::Close(_))) => break Drained::ClientClose,
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => break Drained::Eof,
                }
            }
        })
        .await
        .unwrap_or(Drained::TimedOut)
    };
    crate::telemetry::metrics::close_drained(outcome);
    outcome
}
