//! The skeleton every socket loop shares (produce, transactional produce, consume, echo):
//! keep-alive pings, the idle timeout, writes bounded in time, shutdown and the close
//! handshake. Each loop keeps only its data arms and asks [`Liveness`] the rest.
//!
//! - [`Liveness::heard`] / [`Liveness::sent`] mark traffic in each direction;
//! - [`Liveness::tick`] wakes often enough for both timers ([`close::check_every`]) and says
//!   what is due: a [`Tick::Ping`], a [`Tick::Idle`] close, or [`Tick::Nothing`];
//! - [`Liveness::send_bounded`], [`Liveness::feed_bounded`] and [`Liveness::flush_bounded`]
//!   give up after the idle timeout: a client that stopped reading cannot hold the socket;
//! - [`Liveness::stopped`] resolves with the close frame once the socket must stop (server
//!   shutdown, or a token that is no longer valid: [`close::StopReason`]);
//! - [`Liveness::close`] is the close handshake, bounded by [`close::CLOSE_TIMEOUT`].
//!
//! The decisions are pure ([`decide`]) and unit-tested; the loops only await.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream};
use tokio::time::{interval, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::codec::{Frame, FrameRef};

use crate::pipeline::close::{self, Drained, StopReason};

/// What a timer tick found due.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Nothing was sent for the keep-alive interval: send a ping.
    Ping,
    /// Nothing was heard (not even a pong) for the idle timeout: close with this frame.
    Idle(CloseFrame),
    /// Nothing to do.
    Nothing,
}

/// A write that did not finish within the idle timeout, or failed: the client is gone or
/// stopped reading, and the socket ends without a close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

/// Why [`Liveness::send_all`] did not finish.
#[derive(Debug, Clone, PartialEq)]
pub enum Interrupted {
    /// The write failed or took longer than the idle timeout.
    Stalled,
    /// The socket must stop (shutdown or revocation) while the write waited: close with this.
    Stopped(CloseFrame),
}

/// One socket's timers and stop signal.
pub struct Liveness {
    keep_alive: Duration,
    idle_timeout: Duration,
    last_heard: Instant,
    last_sent: Instant,
    timer: Interval,
    shutdown: CancellationToken,
    stop_reason: StopReason,
}

/// What is due `heard` after the client was last heard and `sent` after the server last
/// sent: the idle close first (a dead peer needs no ping), then the keep-alive ping.
pub fn decide(heard: Duration, sent: Duration, keep_alive: Duration, idle_timeout: Duration) -> Tick {
    if heard >= idle_timeout {
        Tick::Idle(close::idle(idle_timeout))
    } else if sent >= keep_alive {
        Tick::Ping
    } else {
        Tick::Nothing
    }
}

impl Liveness {
    /// Starts the timers now. `shutdown` stops the socket; `stop_reason` says why.
    pub fn new(
        keep_alive: Duration,
        idle_timeout: Duration,
        shutdown: CancellationToken,
        stop_reason: StopReason,
    ) -> Liveness {
        let mut timer = interval(close::check_every(keep_alive, idle_timeout));
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = Instant::now();
        Liveness { keep_alive, idle_timeout, last_heard: now, last_sent: now, timer, shutdown, stop_reason }
    }

    /// The client was heard from (any frame, or the server was busy not reading it).
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Something reached the client.
    pub fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// How long a write may take before the client counts as gone.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The socket's stop token (shutdown or revocation), for work that must end with it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Waits for the next timer tick and says what is due. Cancel-safe.
    pub async fn tick(&mut self) -> Tick {
        self.timer.tick().await;
        decide(self.last_heard.elapsed(), self.last_sent.elapsed(), self.keep_alive, self.idle_timeout)
    }

    /// Resolves once the socket must stop, with the close frame that says why (1001 on
    /// shutdown, 1008 or 1011 from the token revalidation). Cancel-safe, and it does not
    /// borrow `self`, so a loop can wait for it beside [`Self::tick`].
    pub fn stopped(&self) -> impl std::future::Future<Output = CloseFrame> + Send + 'static {
        let (shutdown, reason) = (self.shutdown.clone(), self.stop_reason.clone());
        async move {
            shutdown.cancelled().await;
            reason.frame()
        }
    }

    /// Sends a keep-alive ping.
    pub async fn ping<T: Sink<Message> + Unpin>(&mut self, tx: &mut T) -> Result<(), Stalled> {
        self.send_bounded(tx, Message::Ping(Vec::new().into())).await
    }

    /// Sends (and flushes) one message within the idle timeout.
    pub async fn send_bounded<T: Sink<Message> + Unpin>(&mut self, tx: &mut T, msg: Message) -> Result<(), Stalled> {
        bounded(self.idle_timeout, tx.send(msg)).await?;
        self.sent();
        Ok(())
    }

    /// Queues one message within the idle timeout; [`Self::flush_bounded`] sends the batch.
    pub async fn feed_bounded<T: Sink<Message> + Unpin>(&self, tx: &mut T, msg: Message) -> Result<(), Stalled> {
        bounded(self.idle_timeout, tx.feed(msg)).await
    }

    /// Flushes what was fed within the idle timeout.
    pub async fn flush_bounded<T: Sink<Message> + Unpin>(&mut self, tx: &mut T) -> Result<(), Stalled> {
        bounded(self.idle_timeout, tx.flush()).await?;
        self.sent();
        Ok(())
    }

    /// Writes `frames` with one flush, within the idle timeout as a whole, and gives way to a
    /// stop: a client that stopped reading holds neither the socket nor a shutdown. A client
    /// that takes frames is alive: it counts as heard (its pongs waited unread meanwhile).
    pub async fn send_all<T, I>(&mut self, tx: &mut T, frames: I) -> Result<(), Interrupted>
    where
        T: Sink<Message> + Unpin,
        I: IntoIterator<Item = Message>,
    {
        let write = async {
            for frame in frames {
                tx.feed(frame).await?;
            }
            tx.flush().await
        };
        tokio::select! {
            written = bounded(self.idle_timeout, write) => written.map_err(|Stalled| Interrupted::Stalled)?,
            frame = self.stopped() => return Err(Interrupted::Stopped(frame)),
        }
        self.sent();
        self.heard();
        Ok(())
    }

    /// The close handshake: sends `frame` and reads until the client's close frame, the end
    /// of the stream or [`close::CLOSE_TIMEOUT`] (see [`close::finish`]).
    pub async fn close<T, R>(&self, tx: &mut T, rx: &mut R, frame: Option<CloseFrame>) -> Drained
    where
        T: Sink<Message> + Unpin,
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        close::finish(tx, rx, frame).await
    }
}

/// The data of a text or binary message, for the socket's codec (`None` for control frames).
pub fn frame_ref(msg: &Message) -> Option<FrameRef<'_>> {
    match msg {
        Message::Text(t) => Some(FrameRef::Text(t.as_str())),
        Message::Binary(b) => Some(FrameRef::Binary(b)),
        _ => None,
    }
}

/// The WebSocket message of a frame the socket's codec wrote.
pub fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t.into()),
        Frame::Binary(b) => Message::Binary(b.into()),
    }
}

async fn bounded<E>(limit: Duration, write: impl std::future::Future<Output = Result<(), E>>) -> Result<(), Stalled> {
    let mut write = std::pin::pin!(write);
    // Most writes finish on their first poll (room in the buffer): those need no timer, and
    // so no clock read, which is a system call on some virtual machines.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    let done = match first {
        std::task::Poll::Ready(done) => done,
        std::task::Poll::Pending => tokio::time::timeout(limit, write).await.map_err(|_| Stalled)?,
    };
    done.map_err(|_| Stalled)
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn idle_beats_ping_and_ping_waits_for_the_keep_alive() {
        assert_eq!(decide(S(0), S(0), S(15), S(60)), Tick::Nothing);
        assert_eq!(decide(S(59), S(14), S(15), S(60)), Tick::Nothing);
        assert_eq!(decide(S(59), S(15), S(15), S(60)), Tick::Ping);
        assert_eq!(decide(S(60), S(15), S(15), S(60)), Tick::Idle(close::idle(S(60))));
        assert_eq!(decide(S(61), S(0), S(15), S(60)), Tick::Idle(close::idle(S(60))));
        let Tick::Idle(frame) = decide(S(90), S(90), S(15), S(60)) else { panic!("expected an idle close") };
        assert_eq!((frame.code, frame.reason.as_str()), (1001, "idle timeout: nothing received for 60 s"));
    }

    #[test]
    fn the_timer_notices_an_idle_peer_within_a_quarter_of_the_timeout() {
        assert_eq!(close::check_every(S(15), S(60)), S(15));
        assert_eq!(close::check_every(S(30), S(60)), S(15));
        assert_eq!(close::check_every(S(30), Duration::from_millis(100)), Duration::from_millis(50));
    }

    /// A client that stopped reading: the write gives up after the idle timeout, and a write
    /// that did go through counts as sent.
    #[tokio::test]
    async fn writes_give_up_after_the_idle_timeout() {
        let mut l = Liveness::new(S(15), Duration::from_millis(100), CancellationToken::new(), StopReason::default());
        let (mut tx, mut rx) = mpsc::channel::<Message>(1);
        let before = l.last_sent;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(l.ping(&mut tx).await, Ok(()));
        assert!(l.last_sent > before);
        // The channel holds one message per sender and nobody reads: the next send stalls.
        assert_eq!(l.send_bounded(&mut tx, Message::Text("x".into())).await, Err(Stalled));
        assert!(matches!(futures::StreamExt::next(&mut rx).await, Some(Message::Ping(_))));
    }

    /// A batch write gives way to a stop, and one that went through counts as sent and heard.
    #[tokio::test]
    async fn a_batch_write_gives_way_to_a_stop() {
        let token = CancellationToken::new();
        let mut l = Liveness::new(S(15), S(60), token.clone(), StopReason::default());
        let (mut tx, _rx) = mpsc::channel::<Message>(1);
        let before = l.last_heard;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(l.send_all(&mut tx, [Message::Text("a".into())]).await, Ok(()));
        assert!(l.last_heard > before && l.last_sent > before);
        let stop = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let frames = [Message::Text("b".into()), Message::Text("c".into())];
        assert_eq!(l.send_all(&mut tx, frames).await, Err(Interrupted::Stopped(close::going_away())));
    }

    #[test]
    fn data_frames_reach_the_codec_control_frames_do_not() {
        assert!(matches!(frame_ref(&Message::Text("t".into())), Some(FrameRef::Text("t"))));
        assert!(matches!(frame_ref(&Message::Binary(vec![1].into())), Some(FrameRef::Binary([1]))));
        assert!(frame_ref(&Message::Ping(Vec::new().into())).is_none());
    }

    #[tokio::test]
    async fn stopped_says_why() {
        let token = CancellationToken::new();
        let reason = StopReason::default();
        let l = Liveness::new(S(15), S(60), token.clone(), reason.clone());
        reason.set(close::policy_violation("token expired"));
        token.cancel();
        assert_eq!(l.stopped().await.code, 1008);
        let plain = CancellationToken::new();
        plain.cancel();
        assert_eq!(Liveness::new(S(15), S(60), plain, StopReason::default()).stopped().await.code, 1001);
    }
}
