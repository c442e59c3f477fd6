//! A socket made of two channels, so that the pipeline loops ([`crate::pipeline::produce::run`],
//! [`crate::pipeline::consume::run`]) serve plain HTTP unchanged: `POST /http/in` feeds its
//! body in as one frame and collects the answer, `GET /sse/out` turns what the loop sends into
//! Server-Sent Events ([`super::sse`]).
//!
//! What "the client" sends arrives on `inbound`; what the loop sends leaves on `outbound`, a
//! bounded channel: when the HTTP side does not take frames, the loop's writes wait (and give
//! up after the idle timeout), as on a WebSocket whose client stopped reading. Once the loop
//! sent its close frame, or the inbound channel ended (the HTTP side is gone), the stream ends,
//! so the close handshake does not wait. Like the WebSocket handlers' wrapper, the bridge holds
//! the session and connection slots while the loop runs and marks the session slot as leaving
//! once the client is gone.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures::channel::mpsc;
use futures::{Sink, Stream};

use crate::http::admission::Slot;
use crate::sessions::SessionGuard;

/// The loop's side of an HTTP exchange.
pub(super) struct Bridge {
    inbound: mpsc::UnboundedReceiver<Message>,
    outbound: mpsc::Sender<Message>,
    session: Option<SessionGuard>,
    #[expect(dead_code, reason = "held for its Drop: the connection slot is freed when the loop ends")]
    slot: Option<Slot>,
    /// The loop sent its close frame, or the client is gone: the stream has ended.
    ended: bool,
}

impl Bridge {
    pub(super) fn new(
        inbound: mpsc::UnboundedReceiver<Message>,
        outbound: mpsc::Sender<Message>,
        session: Option<SessionGuard>,
        slot: Option<Slot>,
    ) -> Bridge {
        Bridge { inbound, outbound, session, slot, ended: false }
    }

    fn end(&mut self) {
        self.ended = true;
        if let Some(s) = self.session.as_mut() {
            s.closing();
        }
    }
}

impl Stream for Bridge {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inbound).poll_next(cx) {
            Poll::Ready(Some(msg)) => Poll::Ready(Some(Ok(msg))),
            Poll::Ready(None) => {
                self.end();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for Bridge {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outbound).poll_ready(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        if matches!(item, Message::Close(_)) {
            // Nobody answers a close handshake over HTTP.
            self.end();
        }
        Pin::new(&mut self.outbound).start_send(item).map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outbound).poll_flush(cx).map_err(axum::Error::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.outbound).poll_close(cx).map_err(axum::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn the_stream_ends_with_the_inbound_channel_or_after_the_close_frame() {
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let mut bridge = Bridge::new(in_rx, out_tx, None, None);
        in_tx.unbounded_send(Message::Text("a".into())).unwrap();
        assert!(matches!(bridge.next().await, Some(Ok(Message::Text(t))) if t.as_str() == "a"));
        bridge.send(Message::Text("b".into())).await.unwrap();
        bridge.send(Message::Close(None)).await.unwrap();
        // The inbound side is still open, yet the close frame ended the stream.
        assert!(bridge.next().await.is_none());
        assert!(matches!(out_rx.next().await, Some(Message::Text(t)) if t.as_str() == "b"));
        assert!(matches!(out_rx.next().await, Some(Message::Close(None))));

        let (in_tx, in_rx) = mpsc::unbounded::<Message>();
        let (out_tx, out_rx) = mpsc::channel(4);
        let mut bridge = Bridge::new(in_rx, out_tx, None, None);
        drop(in_tx);
        assert!(bridge.next().await.is_none());
        // The HTTP side is gone: writes fail, as on a broken connection.
        drop(out_rx);
        assert!(bridge.send(Message::Text("c".into())).await.is_err());
    }
}
