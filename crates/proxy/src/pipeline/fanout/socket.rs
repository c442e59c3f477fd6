//! One fan-out socket's loop: the shared frames of its [`Subscription`] out at the pace the
//! client reads, pings, the idle timeout and the close from [`Liveness`] (the skeleton of
//! every socket), inbound data frames answered with an error frame (there is nothing to
//! commit).
//!
//! A socket that falls further behind than the log keeps (other sockets read on, and the
//! reader with them) is closed with 1013 and how far behind it was, also while a write to it
//! is stuck (the client stopped reading); with `onLag=skip` it gets one gap frame per
//! partition it missed and goes on from where the fastest socket is. The fastest socket (or one alone) is
//! never behind: the reader waits for it, and a stuck write ends at the idle timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, Stream, StreamExt};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::codec::Frame;
use wsproxy_protocol::fanout::{render_gap, Gap, OnLag};
use wsproxy_protocol::{ErrorCode, FrameError, SocketCodec};

use super::hub::{Entry, Stop, Subscription};
use super::log::{Behind, Slot};
use super::woken::PollWhenWoken;
use crate::pipeline::close::{self, StopReason};
use crate::pipeline::liveness::{frame_ref, message, Interrupted, Liveness, Tick};
use crate::pipeline::rate_limit::RateLimit;
use crate::telemetry::metrics::{self, Direction, SocketIdentity, SocketMetrics};

/// Frames written between two flushes when records are sent one per frame.
const MAX_FRAMES_PER_FLUSH: usize = 256;

/// Settings of one fan-out socket.
pub struct FanOutSettings {
    pub codec: SocketCodec,
    /// Records per array frame (`batchSize`); 0: one record per frame.
    pub batch_size: usize,
    /// Records per second (`rate`); `None`: unlimited.
    pub rate: Option<u32>,
    pub on_lag: OnLag,
    /// The bounds of the log, for the 1013 reason.
    pub max_lag: (usize, usize),
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub identity: SocketIdentity,
    pub stop_reason: StopReason,
}

/// Runs the socket until the client leaves, falls too far behind (without `onLag=skip`), the
/// shared consumer fails or the server shuts down.
pub async fn run<S>(socket: S, mut sub: Subscription, settings: FanOutSettings, shutdown: CancellationToken)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let (mut tx, rx) = socket.split();
    // Polled only when the client sent something: the loop wakes once per record for writes.
    let mut rx = PollWhenWoken::new(rx);
    let topic = sub.topic().to_owned();
    let mut stats = SocketMetrics::open(Direction::Out, &topic, settings.identity.clone());
    let delivered = metrics::fanout_records_delivered();
    let mut live = Liveness::new(settings.keep_alive, settings.idle_timeout, shutdown, settings.stop_reason.clone());
    let batched = settings.batch_size > 0;
    let per_wakeup = if batched { settings.batch_size } else { MAX_FRAMES_PER_FLUSH };
    let mut limit = RateLimit::new(settings.rate, settings.batch_size.max(1), std::time::Instant::now());
    let mut slots: Vec<Arc<Slot<Entry>>> = Vec::new();
    // One wait for the stop for the socket's life (not one per wakeup).
    let stopped = live.stopped();
    tokio::pin!(stopped);
    let close_frame = loop {
        let wait = limit.as_mut().map(|l| Instant::from_std(l.next_allowed(std::time::Instant::now())));
        let throttled = wait.is_some_and(|w| w > Instant::now());
        let max = limit.as_mut().map_or(per_wakeup, |l| l.available(std::time::Instant::now()).clamp(1, per_wakeup));
        slots.clear();
        tokio::select! {
            biased;
            frame = &mut stopped => break Some(frame),
            msg = rx.next() => { live.heard(); match msg {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Err(e)) => break close::for_read_error(e),
                Some(Ok(msg)) => if frame_ref(&msg).is_some() {
                    let e = FrameError::new(
                        ErrorCode::CommitFailed,
                        "fan-out sockets (fanOut=true) have no consumer group: nothing is committed, and records already sent are not sent again. Use a socket without fanOut to commit.",
                    );
                    stats.error_frame(e.code.as_str());
                    let answer = message(settings.codec.encode_error(&e, None));
                    if live.send_bounded(&mut tx, answer).await.is_err() { break None; }
                },
            }},
            tick = live.tick() => match tick {
                Tick::Idle(frame) => break Some(frame),
                Tick::Ping => if live.ping(&mut tx).await.is_err() { break None; },
                Tick::Nothing => {}
            },
            _ = sleep_until(wait.unwrap_or_else(Instant::now)), if throttled => {}
            next = sub.next(max, &mut slots), if !throttled => {
                match next {
                    Ok(()) => {}
                    Err(Stop::Failed(why)) => break Some(close::kafka_failure(&why)),
                    Err(Stop::Behind(behind)) => match settings.on_lag {
                        OnLag::Close => break Some(lag_close(behind, settings.max_lag)),
                        OnLag::Skip => {
                            let gaps: Vec<Message> = sub
                                .skip()
                                .iter()
                                .map(|g| Message::Text(render_gap(&Gap { topic: &topic, partition: g.partition, from_offset: g.from_offset, to_offset: g.to_offset }).into()))
                                .collect();
                            metrics::fanout_gaps(gaps.len() as u64);
                            match live.send_all(&mut tx, gaps).await {
                                Ok(()) => continue,
                                Err(Interrupted::Stalled) => break None,
                                Err(Interrupted::Stopped(frame)) => break Some(frame),
                            }
                        }
                    },
                }
                if let Some(l) = limit.as_mut() { l.take(slots.len()); }
                let (frames, records, bytes) = frames_of(&slots, &settings.codec, batched);
                // A client that stops reading must not hold the others (the reader waits only
                // for the fastest socket, and the others pass this one) nor memory (the log is
                // bounded): while the write waits, a socket that falls behind the log is closed
                // (unless it skips, then it catches up after).
                let write = live.send_all(&mut tx, frames);
                let written = if settings.on_lag == OnLag::Close {
                    // Biased: a write that completes at once (the usual case) never looks
                    // at the log nor waits on the hub's wakeup beside it.
                    tokio::select! {
                        biased;
                        written = write => written,
                        behind = sub.fell_behind() => break Some(lag_close(behind, settings.max_lag)),
                    }
                } else {
                    write.await
                };
                match written {
                    Ok(()) => {}
                    Err(Interrupted::Stalled) => break None,
                    Err(Interrupted::Stopped(frame)) => break Some(frame),
                }
                stats.records(records, bytes);
                delivered.increment(records);
                for slot in &slots {
                    if let Some(code) = slot.payload.frame(&settings.codec).and_then(|r| r.error) {
                        stats.error_frame(code.as_str());
                    }
                }
            }
        }
    };
    drop(sub);
    let frame = close_frame.unwrap_or(CloseFrame { code: 1000, reason: "".into() });
    stats.closing(frame.code);
    drop(stats);
    if frame.code == 1013 {
        metrics::fanout_lag_close();
        // The client may be reading the frames queued before the close frame: give it the
        // idle timeout (as any write) to reach the close frame, then the usual handshake.
        if live.send_bounded(&mut tx, Message::Close(Some(frame))).await.is_ok() {
            live.close(&mut tx, &mut rx, None).await;
        }
        return;
    }
    live.close(&mut tx, &mut rx, Some(frame)).await;
}

/// The frames for `slots` in the socket's format (shared bytes, one per record, or joined
/// into array frames for `batchSize`), with the number of records and their key and value bytes.
fn frames_of(slots: &[Arc<Slot<Entry>>], codec: &SocketCodec, batched: bool) -> (Vec<Message>, u64, u64) {
    let mut records = 0;
    let mut bytes = 0;
    let mut frames = Vec::with_capacity(if batched { 1 } else { slots.len() });
    let mut batch = Vec::new();
    for slot in slots {
        let Some(rendered) = slot.payload.frame(codec) else { continue };
        if rendered.error.is_none() {
            records += 1;
            bytes += slot.payload.record_bytes;
        }
        if batched {
            batch.push(match &rendered.message {
                Message::Binary(b) => Frame::Binary(b.to_vec()),
                Message::Text(t) => Frame::Text(t.as_str().to_owned()),
                _ => continue,
            });
        } else {
            frames.push(rendered.message.clone());
        }
    }
    if batched {
        frames.extend(codec.encode_batch(batch).into_iter().map(message));
    }
    (frames, records, bytes)
}

/// The close frame of a socket that fell too far behind (1013, try again later).
fn lag_close(behind: Behind, (max_records, max_bytes): (usize, usize)) -> CloseFrame {
    CloseFrame {
        code: 1013,
        reason: format!(
            "too slow: {} records ({} KiB) behind the live end; limits {max_records} records, {} KiB",
            behind.records,
            behind.bytes / 1024,
            max_bytes / 1024
        )
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::hub::message_len;
    use super::*;

    #[test]
    fn the_lag_close_says_how_far_behind_within_a_close_reason() {
        let f = lag_close(Behind { records: 10_001, bytes: 17 * 1024 * 1024 }, (10_000, 16 * 1024 * 1024));
        assert_eq!(f.code, 1013);
        assert_eq!(
            f.reason.as_str(),
            "too slow: 10001 records (17408 KiB) behind the live end; limits 10000 records, 16384 KiB"
        );
        assert!(f.reason.len() <= 123);
    }

    #[test]
    fn message_lengths_count_payload_bytes() {
        assert_eq!(message_len(&Message::Text("abc".into())), 3);
        assert_eq!(message_len(&Message::Ping(Vec::new().into())), 0);
    }
}
