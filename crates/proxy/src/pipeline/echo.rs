//! `/socket/echo` (`WSPROXY_ECHO_ENABLED`): a diagnostics socket that sends every text and
//! binary frame back, so operators and WebSocket conformance tools can test the WebSocket
//! layer through their load balancers without touching Kafka.
//!
//! It runs with exactly the produce socket's limits: the same codec settings (1009 beyond the
//! hard limit), the same `FRAME_TOO_LARGE` error frame beyond `WSPROXY_WS_MAX_FRAME_SIZE`, the
//! same keep-alive pings, idle timeout and shutdown close ([`super::liveness`]);
//! authentication, Origin check and connection limits are applied before the upgrade like on
//! the real sockets.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::{render_answer, Answer};

use crate::pipeline::close;
use crate::pipeline::liveness::{Liveness, Tick};

/// Settings of one echo socket (the produce socket's limits).
#[derive(Clone)]
pub struct EchoSettings {
    pub max_frame_bytes: usize,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
}

/// Runs the socket until the client closes it, it idles out, or the server shuts down.
pub async fn run<S>(socket: S, settings: EchoSettings, shutdown: CancellationToken)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let mut live = Liveness::new(settings.keep_alive, settings.idle_timeout, shutdown, close::StopReason::default());
    let frame: Option<CloseFrame> = loop {
        let reply = tokio::select! {
            biased;
            frame = live.stopped() => break Some(frame),
            msg = rx.next() => {
                live.heard();
                match msg {
                    None | Some(Ok(Message::Close(_))) => break Some(close::normal()),
                    Some(Err(e)) => break close::for_read_error(e),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(t))) if t.len() > settings.max_frame_bytes => too_large(t.len(), &settings),
                    Some(Ok(Message::Binary(b))) if b.len() > settings.max_frame_bytes => too_large(b.len(), &settings),
                    Some(Ok(m)) => m,
                }
            }
            tick = live.tick() => match tick {
                Tick::Idle(frame) => break Some(frame),
                Tick::Ping => Message::Ping(Vec::new().into()),
                Tick::Nothing => continue,
            }
        };
        // A client that stopped reading cannot hold the socket past the idle timeout.
        if live.send_bounded(&mut tx, reply).await.is_err() {
            return;
        }
    };
    live.close(&mut tx, &mut rx, frame).await;
}

/// The produce socket's answer to a frame over `WSPROXY_WS_MAX_FRAME_SIZE`.
fn too_large(len: usize, settings: &EchoSettings) -> Message {
    let e = FrameError::too_large(len, settings.max_frame_bytes);
    Message::Text(render_answer(&Answer::Err(e.frame())).into())
}
