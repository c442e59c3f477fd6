//! One produce socket's data path: frames in, records to Kafka, results out in input order.
//!
//! Each frame's records are handed to Kafka numbered, and the frame waits in [`InFlight`]
//! for its answer (a result or an error per record). Kafka's reports come back to the socket's
//! own inbox, every report that arrived taken in one wake-up. Answers leave in the order frames
//! came in, whatever order Kafka acknowledges in. While too many records or bytes are
//! unacknowledged, the socket is not read: the client's TCP window fills and it slows down, so
//! memory stays bounded.
//!
//! The producer's `messages-per-second` limit (static or dynamic, see [`crate::limits`]) is
//! applied the same way: beyond the rate the socket is not read. A dynamic change reaches an
//! open socket through [`ClientLimits::changes`].
//!
//! The socket's [`SocketCodec`] reads frames and writes answers; pings, the idle timeout,
//! bounded writes and the close are [`Liveness`]'s; exactly-once frames go through
//! [`super::transaction`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{FutureExt, Sink, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::codec::FrameRef;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::{Answer, ProduceFrame, ProduceResult, RecordOutcome};
use wsproxy_protocol::{ErrorCode, FormatType, SocketCodec};

use crate::kafka::{Ack, EnqueueError, ProducerHandle};
use crate::limits::ClientLimits;
use crate::pipeline::close;
use crate::pipeline::in_flight::{Answer as Answerable, InFlight};
use crate::pipeline::liveness::{message, Liveness, Tick};
use crate::pipeline::rate_limit::RateLimit;
use crate::pipeline::transaction;
use crate::schema_registry::{CheckError, SchemaRegistry};
use crate::telemetry::metrics::{Direction, SocketIdentity, SocketMetrics};

/// Settings of one produce socket.
#[derive(Clone)]
pub struct ProduceSettings {
    pub topic: String,
    /// The socket's frames: JSON text, or (`socketPayload=avro`) binary `AvroProducerRecord`
    /// frames in and `AvroProducerResult` out.
    pub codec: SocketCodec,
    /// Checks `avro` keys and values (Confluent wire format, known schema), when configured.
    pub registry: Option<Arc<SchemaRegistry>>,
    pub max_in_flight_records: usize,
    pub max_in_flight_bytes: usize,
    pub max_frame_bytes: usize,
    pub keep_alive: Duration,
    /// Close a socket that sent nothing (not even a pong) this long, or whose answers could
    /// not be written this long (a client that stopped reading).
    pub idle_timeout: Duration,
    pub identity: SocketIdentity,
    /// Exactly-once: each frame is one transaction, answered after its commit.
    pub transactional: bool,
    /// Where the producer's records-per-second limit comes from (its id is `identity.client_id`).
    pub limits: ClientLimits,
    /// Why `shutdown` was cancelled: server shutdown, or a token that is no longer valid.
    pub stop_reason: close::StopReason,
}

/// A frame's answer once all its records are settled, with what it held in flight.
pub(super) struct Settled {
    /// The answer frame: text (JSON, and every error), or binary (an Avro result).
    pub(super) frame: Message,
    /// What the frame held of the socket's in-flight bounds.
    pub(super) records: usize,
    pub(super) bytes: usize,
    /// Records Kafka acknowledged, and their bytes.
    acked: u64,
    acked_bytes: u64,
    /// Codes of the error frames in the answer.
    errors: Vec<ErrorCode>,
    /// A failure that ends the socket after this answer (a fenced transactional producer).
    pub(super) fatal: Option<String>,
}

/// The outcome of one record: its id, its size, and where Kafka put it or why not.
pub(super) type RecordResult = (Option<String>, usize, Result<Ack, FrameError>);

/// Runs the socket until the client closes it, the connection fails, or the server shuts down.
pub async fn run<S>(socket: S, kafka: ProducerHandle, settings: ProduceSettings, shutdown: CancellationToken)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let mut stats = SocketMetrics::open(Direction::In, &settings.topic, settings.identity.clone());
    let mut in_flight = InFlight::new();
    let (mut in_flight_records, mut in_flight_bytes) = (0usize, 0usize);
    let mut live = Liveness::new(settings.keep_alive, settings.idle_timeout, shutdown, settings.stop_reason.clone());
    let mut reading = true;
    let mut close_frame: Option<CloseFrame> = None;
    // The client closed: answers are settled (and counted) but not written.
    let mut peer_closed = false;
    let producer_id = settings.identity.client_id.clone();
    let mut changes = settings.limits.changes();
    let mut rate_per_second = settings.limits.producer_messages_per_second(&producer_id);
    let mut rate = rate_limit(rate_per_second);

    loop {
        // Once reading stopped and every answer is out, the socket ends; the close handshake is
        // bounded so that a client that stopped reading cannot hold it.
        if !reading && in_flight.is_empty() {
            stats.closing(close_frame.as_ref().map_or(1000, |f| f.code));
            live.close(&mut tx, &mut rx, close_frame.take()).await;
            return;
        }
        let throttled_until = match rate.as_mut() {
            Some(r) if reading => {
                let now = std::time::Instant::now();
                Some(r.next_allowed(now)).filter(|t| *t > now)
            }
            _ => None,
        };
        let may_read = reading
            && throttled_until.is_none()
            && in_flight_records < settings.max_in_flight_records
            && in_flight_bytes < settings.max_in_flight_bytes;
        if !may_read {
            // Not reading (backpressure): the client's silence is ours, not its.
            live.heard();
        }
        tokio::select! {
            biased;
            frame = live.stopped(), if reading => {
                // Stop taking records; answer what is in flight, then close with 1001.
                reading = false;
                close_frame = Some(frame);
            }
            () = in_flight.answerable(), if !in_flight.is_empty() => {
                // Coalesce: send every answer that is already settled, then flush once.
                let mut sent = 0;
                while let Some(answer) = in_flight.pop() {
                    let s = settle(&settings, answer);
                    sent += 1;
                    in_flight_records -= s.records;
                    in_flight_bytes -= s.bytes;
                    stats.records(s.acked, s.acked_bytes);
                    for code in &s.errors {
                        stats.error_frame(code.as_str());
                    }
                    if !peer_closed && live.feed_bounded(&mut tx, s.frame).await.is_err() {
                        stats.closing(1006);
                        return;
                    }
                    if let Some(reason) = s.fatal {
                        reading = false;
                        close_frame = Some(close::kafka_failure(&reason));
                    }
                    if sent >= 1024 { break; }
                }
                if !peer_closed && live.flush_bounded(&mut tx).await.is_err() {
                    stats.closing(1006);
                    return;
                }
            }
            msg = rx.next(), if may_read => {
                // Take every frame that is already buffered (up to a bound) in this wakeup.
                let mut next = Some(msg);
                let mut taken = 0;
                while let Some(msg) = next.take() {
                    match inbound(msg, &settings) {
                        Inbound::Skip => {}
                        Inbound::End(frame) => {
                            reading = false;
                            close_frame = Some(frame);
                            break;
                        }
                        Inbound::PeerClosed(frame) => {
                            // Its records still go to Kafka (the loop waits for them), but
                            // their answers cannot follow the client's close: the close reply
                            // tungstenite queued goes now, not after the acknowledgements.
                            reading = false;
                            peer_closed = true;
                            close_frame = Some(frame);
                            let _ = live.flush_bounded(&mut tx).await;
                            break;
                        }
                        Inbound::Frame(frame, frame_len) => {
                            let (records, bytes) = if settings.transactional {
                                let done = transaction::transact(&kafka, &settings, frame, frame_len, live.shutdown()).await;
                                let held = (done.records, done.bytes);
                                in_flight.push_answered(done);
                                held
                            } else {
                                submit(&kafka, &settings, frame, frame_len, live.shutdown(), &mut in_flight).await
                            };
                            in_flight_records += records;
                            in_flight_bytes += bytes;
                            if let Some(r) = rate.as_mut() {
                                r.take(records);
                            }
                        }
                    }
                    taken += 1;
                    let room = in_flight_records < settings.max_in_flight_records
                        && in_flight_bytes < settings.max_in_flight_bytes
                        && rate.as_mut().is_none_or(|r| r.available(std::time::Instant::now()) > 0);
                    // A transaction's answer leaves before the next one starts: a crash can
                    // then hide at most one committed frame's answer from the client.
                    let per_wakeup = if settings.transactional { 1 } else { FRAMES_PER_WAKEUP };
                    if taken < per_wakeup && room {
                        next = rx.next().now_or_never();
                    }
                }
                // Heard now; and waiting for room in Kafka's queue or for a transaction did
                // not read the socket: the client's pongs wait unread, its silence is ours (L9).
                live.heard();
            }
            _ = tokio::time::sleep_until(throttled_until.map_or_else(Instant::now, Instant::from_std)), if throttled_until.is_some() => {}
            Ok(()) = changes.changed() => {
                let now_rate = settings.limits.producer_messages_per_second(&producer_id);
                if now_rate != rate_per_second {
                    tracing::info!(producer = ?producer_id, from = ?rate_per_second, to = ?now_rate, "messages-per-second changed on an open socket");
                    rate_per_second = now_rate;
                    rate = rate_limit(now_rate);
                }
            }
            tick = live.tick() => {
                if reading && kafka.credentials_refused_for().is_some_and(|d| d >= AUTH_FAILURE_PATIENCE) {
                    // Revoked or wrong credentials for a while: every record would time out.
                    // Say so. (A passing refusal clears on the next broker round trip.)
                    reading = false;
                    close_frame = Some(close::kafka_failure("Kafka refused the socket's credentials"));
                }
                match tick {
                    // Not reading, the loop hears the client on every turn: only a reading
                    // socket idles out. It answers what is in flight, then closes.
                    Tick::Idle(frame) if reading => {
                        reading = false;
                        close_frame = Some(frame);
                    }
                    // After the client's close only the close reply may be written: no pings.
                    Tick::Ping if !peer_closed && live.ping(&mut tx).await.is_err() => {
                        stats.closing(1006);
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A token bucket for the producer's rate, with bursts of at most a twentieth of a second.
fn rate_limit(per_second: Option<u32>) -> Option<RateLimit> {
    let burst = per_second.map_or(1, |r| (r / 20).max(1) as usize);
    RateLimit::new(per_second, burst, std::time::Instant::now())
}

/// How long Kafka may refuse the producer's credentials before its sockets close (H2): a
/// broker restarting before its SCRAM users are loaded, or a password rotation, passes.
const AUTH_FAILURE_PATIENCE: Duration = Duration::from_secs(30);

/// Frames read per wakeup before the loop looks at acknowledgements and shutdown again.
const FRAMES_PER_WAKEUP: usize = 64;

/// What one inbound WebSocket message means for the produce loop.
enum Inbound {
    /// A frame to answer, and its length in bytes (it counts against the in-flight bound).
    Frame(ProduceFrame, usize),
    Skip,
    /// No more frames, or the client broke the protocol (a frame too large, text that is not
    /// UTF-8): the socket answers what is in flight, then closes with the code that says why.
    End(CloseFrame),
    /// The client closed: nothing but the close reply can be written to it any more
    /// (tungstenite refuses data after the client's close).
    PeerClosed(CloseFrame),
}

fn inbound(msg: Option<Result<Message, axum::Error>>, settings: &ProduceSettings) -> Inbound {
    let decoded = match msg {
        Some(Ok(Message::Close(_))) => return Inbound::PeerClosed(close::normal()),
        // No more frames: a POST's one frame was read (the bridge still takes the answer), or
        // the connection is gone (the answers' writes fail).
        None => return Inbound::End(close::normal()),
        Some(Err(e)) => return Inbound::End(close::for_read_error(e).unwrap_or_else(close::normal)),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Inbound::Skip,
        Some(Ok(Message::Text(text))) => settings.codec.decode_produce(FrameRef::Text(&text), settings.max_frame_bytes),
        Some(Ok(Message::Binary(bytes))) => {
            settings.codec.decode_produce(FrameRef::Binary(&bytes), settings.max_frame_bytes)
        }
    };
    match decoded {
        Some((frame, len)) => Inbound::Frame(frame, len),
        // The reference ignores empty frames.
        None => Inbound::Skip,
    }
}

/// Hands a frame's records to Kafka (numbered, in `in_flight`, where the frame waits for its
/// answer) and returns the records and bytes it holds in flight: at least one record (an
/// empty array still has an answer waiting) and at least the frame's own length (ids and
/// error texts live until answered).
async fn submit(
    kafka: &ProducerHandle,
    settings: &ProduceSettings,
    frame: ProduceFrame,
    frame_len: usize,
    shutdown: &CancellationToken,
    in_flight: &mut InFlight,
) -> (usize, usize) {
    let topic = settings.topic.as_str();
    let (single, records, bytes) = match frame {
        ProduceFrame::Single(outcome) => {
            let outcome = check_registry(settings, outcome).await;
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            (true, 1, enqueue(kafka, in_flight, topic, outcome, shutdown, give_up).await)
        }
        ProduceFrame::Batch(outcomes) => {
            let (mut records, mut bytes) = (0, 0);
            // One deadline for the whole frame, not one per record (L9).
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            for outcome in outcomes {
                let outcome = check_registry(settings, outcome).await;
                bytes += enqueue(kafka, in_flight, topic, outcome, shutdown, give_up).await;
                records += 1;
            }
            (false, records, bytes)
        }
    };
    let (records, bytes) = (records.max(1), bytes.max(frame_len));
    in_flight.end_frame(single, records, bytes);
    (records, bytes)
}

/// The answer frame of a frame whose records are all settled.
fn settle(settings: &ProduceSettings, answer: Answerable) -> Settled {
    match answer {
        Answerable::Answered(s) => s,
        Answerable::Records { single, results, records, bytes } => {
            let topic = settings.topic.as_str();
            let frame = if single {
                answer_frame(topic, &settings.codec, &results[0])
            } else {
                answers_frame(topic, &settings.codec, &results)
            };
            settled(frame, &results, records, bytes)
        }
    }
}

/// With a schema registry, `avro` keys and values must be Confluent-framed Avro of a schema
/// the registry knows; otherwise the record is answered with an error and not produced.
pub(super) async fn check_registry(settings: &ProduceSettings, outcome: RecordOutcome) -> RecordOutcome {
    let (Some(registry), Ok(record)) = (&settings.registry, &outcome) else { return outcome };
    let checks = [
        (settings.codec.key_type() == Some(FormatType::Avro), record.key.as_deref(), "key", ErrorCode::InvalidKey),
        (settings.codec.val_type() == FormatType::Avro, record.value.as_deref(), "value", ErrorCode::InvalidValue),
    ];
    for (applies, bytes, field, code) in checks {
        let (true, Some(bytes)) = (applies, bytes) else { continue };
        if let Err(e) = registry.check(bytes).await {
            let e = match e {
                CheckError::Invalid(why) => {
                    FrameError::new(code, format!("'{field}' is not Avro the schema registry knows: {why}"))
                }
                CheckError::Unavailable(why) => FrameError::new(
                    ErrorCode::SchemaRegistryUnavailable,
                    format!("'{field}' could not be checked, the record was not produced: {why}"),
                ),
            };
            return Err(e.with_message_id(record.message_id.clone()));
        }
    }
    outcome
}

/// How long a frame's records wait for room in librdkafka's queue before the rest are answered
/// with an error: one deadline per frame, so a 1,000-record frame cannot hold the loop 1,000
/// times this long (L9).
pub(super) const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(30);

/// Hands one record of the frame being built in `in_flight` to Kafka, waiting while
/// librdkafka's queue is full (backpressure), but not past shutdown or the frame's `give_up`
/// deadline ([`QUEUE_FULL_PATIENCE`] after the frame started). A record Kafka cannot take is
/// settled at once with its error. Returns the bytes the record holds in flight.
pub(super) async fn enqueue(
    kafka: &ProducerHandle,
    in_flight: &mut InFlight,
    topic: &str,
    outcome: RecordOutcome,
    shutdown: &CancellationToken,
    give_up: Instant,
) -> usize {
    let mut record = match outcome {
        Ok(r) => r,
        Err(e) => {
            in_flight.settle_now(e);
            return 0;
        }
    };
    let mut backoff = Duration::from_micros(500);
    loop {
        match in_flight.send(kafka, topic, &mut record) {
            Ok(bytes) => return bytes,
            Err(EnqueueError::QueueFull) => {
                if shutdown.is_cancelled() || Instant::now() >= give_up {
                    let e = FrameError::new(
                        ErrorCode::TimedOut,
                        "Kafka's producer queue stayed full (Kafka unreachable or too slow); the record was not sent",
                    )
                    .with_message_id(record.message_id);
                    in_flight.settle_now(e);
                    return 0;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(EnqueueError::Refused(code, message)) => {
                in_flight.settle_now(FrameError::new(code, message).with_message_id(record.message_id));
                return 0;
            }
        }
    }
}

pub(super) fn settled(frame: Message, results: &[RecordResult], records: usize, bytes: usize) -> Settled {
    let mut s = Settled { frame, records, bytes, acked: 0, acked_bytes: 0, errors: Vec::new(), fatal: None };
    for (_, size, r) in results {
        match r {
            Ok(_) => {
                s.acked += 1;
                s.acked_bytes += *size as u64;
            }
            Err(e) => s.errors.push(e.code),
        }
    }
    s
}

/// The answer to a single record, in the socket's codec (an error is always JSON text).
pub(super) fn answer_frame(topic: &str, codec: &SocketCodec, result: &RecordResult) -> Message {
    message(codec.encode_answer(&answer(topic, result)))
}

/// The answer to an array frame: one frame of every record's result or error, in order.
pub(super) fn answers_frame(topic: &str, codec: &SocketCodec, results: &[RecordResult]) -> Message {
    message(codec.encode_answers(&results.iter().map(|r| answer(topic, r)).collect::<Vec<_>>()))
}

fn answer<'a>(topic: &'a str, (id, _, result): &'a RecordResult) -> Answer<'a> {
    let id = id.as_deref();
    match result {
        Ok(ack) => Answer::Ok(ProduceResult {
            topic,
            partition: ack.partition,
            offset: ack.offset,
            timestamp: ack.timestamp,
            client_message_id: id,
            message_id: id,
        }),
        Err(e) => Answer::Err(e.frame()),
    }
}
