//! One produce socket's data path: frames in, records to Kafka, results out in input order.
//!
//! Each frame becomes one entry of an ordered queue whose future resolves to the frame's answer
//! (a result or an error per record). Answers leave in the order frames came in, whatever
//! order Kafka acknowledges in. While too many records or bytes are unacknowledged, the socket
//! is not read: the client's TCP window fills and it slows down, so memory stays bounded.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::{
    render_answer, render_answers, Answer, ProduceFrame, ProduceResult, RecordDecoder, RecordOutcome,
};
use wsproxy_protocol::ErrorCode;

use crate::kafka::{delivered, Ack, EnqueueError, ProducerHandle, RecordFailure};
use crate::pipeline::close;
use crate::telemetry::metrics::{self, Direction, SocketIdentity, SocketMetrics};

/// Settings of one produce socket.
#[derive(Clone)]
pub struct ProduceSettings {
    pub topic: String,
    pub decoder: RecordDecoder,
    pub max_in_flight_records: usize,
    pub max_in_flight_bytes: usize,
    pub max_frame_bytes: usize,
    pub keep_alive: Duration,
    /// Close a socket that sent nothing (not even a pong) this long, or whose answers could
    /// not be written this long (a client that stopped reading).
    pub idle_timeout: Duration,
    pub identity: SocketIdentity,
}

/// A frame's answer once all its records are settled, with what it held in flight.
struct Settled {
    text: String,
    records: usize,
    bytes: usize,
    /// Records Kafka acknowledged, and their bytes.
    acked: u64,
    acked_bytes: u64,
    /// Codes of the error frames in the answer.
    errors: Vec<ErrorCode>,
}

type Pending = Pin<Box<dyn Future<Output = Settled> + Send>>;

/// The outcome of one record: its id, its size, and where Kafka put it or why not.
type RecordResult = (Option<String>, usize, Result<Ack, FrameError>);

/// Runs the socket until the client closes it, the connection fails, or the server shuts down.
pub async fn run<S>(socket: S, kafka: ProducerHandle, settings: ProduceSettings, shutdown: CancellationToken)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let mut stats = SocketMetrics::open(Direction::In, &settings.topic, settings.identity.clone());
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let (mut in_flight_records, mut in_flight_bytes) = (0usize, 0usize);
    let mut keep_alive = interval(close::check_every(settings.keep_alive, settings.idle_timeout));
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_sent = Instant::now();
    let mut last_heard = Instant::now();
    let mut reading = true;
    let mut close_frame: Option<CloseFrame> = None;

    loop {
        // Once reading stopped and every answer is out, the socket ends; the close handshake is
        // bounded so that a client that stopped reading cannot hold it.
        if !reading && pending.is_empty() {
            stats.closing(close_frame.as_ref().map_or(1000, |f| f.code));
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = tx.send(Message::Close(close_frame.take())).await;
                let _ = tx.close().await;
            })
            .await;
            return;
        }
        let may_read = reading
            && in_flight_records < settings.max_in_flight_records
            && in_flight_bytes < settings.max_in_flight_bytes;
        if !may_read {
            // Not reading (backpressure): the client's silence is ours, not its.
            last_heard = Instant::now();
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if reading => {
                // Stop taking records; answer what is in flight, then close with 1001.
                reading = false;
                close_frame = Some(close::going_away());
            }
            Some(first) = pending.next(), if !pending.is_empty() => {
                // Coalesce: send every answer that is already settled, then flush once.
                let mut batch = vec![first];
                while let Some(Some(more)) = pending.next().now_or_never() {
                    batch.push(more);
                    if batch.len() >= 1024 { break; }
                }
                for s in batch {
                    in_flight_records -= s.records;
                    in_flight_bytes -= s.bytes;
                    stats.records(s.acked, s.acked_bytes);
                    for code in &s.errors {
                        stats.error_frame(code.as_str());
                    }
                    if !matches!(tokio::time::timeout(settings.idle_timeout, tx.feed(Message::Text(s.text.into()))).await, Ok(Ok(()))) {
                        stats.closing(1006);
                        return;
                    }
                }
                if !matches!(tokio::time::timeout(settings.idle_timeout, tx.flush()).await, Ok(Ok(()))) {
                    stats.closing(1006);
                    return;
                }
                last_sent = Instant::now();
            }
            msg = rx.next(), if may_read => {
                last_heard = Instant::now();
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
                        Inbound::Frame(frame, frame_len) => {
                            let (entry, records, bytes) = submit(&kafka, &settings.topic, frame, frame_len, &shutdown).await;
                            in_flight_records += records;
                            in_flight_bytes += bytes;
                            pending.push_back(entry);
                        }
                    }
                    taken += 1;
                    let room = in_flight_records < settings.max_in_flight_records
                        && in_flight_bytes < settings.max_in_flight_bytes;
                    if taken < FRAMES_PER_WAKEUP && room {
                        next = rx.next().now_or_never();
                    }
                }
            }
            _ = keep_alive.tick() => {
                if reading && kafka.credentials_refused() {
                    // Revoked or wrong credentials: every record would time out. Say so.
                    reading = false;
                    close_frame = Some(close::kafka_failure("Kafka refused the socket's credentials"));
                }
                if reading && last_heard.elapsed() >= settings.idle_timeout {
                    reading = false;
                    close_frame = Some(close::idle(settings.idle_timeout));
                }
                if last_sent.elapsed() >= settings.keep_alive {
                    if !matches!(tokio::time::timeout(settings.idle_timeout, tx.send(Message::Ping(Vec::new().into()))).await, Ok(Ok(()))) {
                        stats.closing(1006);
                        return;
                    }
                    last_sent = Instant::now();
                }
            }
        }
    }
}

/// Frames read per wakeup before the loop looks at acknowledgements and shutdown again.
const FRAMES_PER_WAKEUP: usize = 64;

/// What one inbound WebSocket message means for the produce loop.
enum Inbound {
    /// A frame to answer, and its length in bytes (it counts against the in-flight bound).
    Frame(ProduceFrame, usize),
    Skip,
    End(CloseFrame),
}

fn inbound(msg: Option<Result<Message, axum::Error>>, settings: &ProduceSettings) -> Inbound {
    let mut len = 0;
    let frame = match msg {
        // The client is done: answer what is in flight if it still listens.
        None | Some(Ok(Message::Close(_))) => return Inbound::End(close::normal()),
        Some(Err(e)) => return Inbound::End(close::for_read_error(e).unwrap_or_else(close::normal)),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Inbound::Skip,
        Some(Ok(Message::Text(text))) => {
            len = text.len();
            if text.len() > settings.max_frame_bytes {
                Err(FrameError::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "the frame has {} bytes; the limit is {} (WSPROXY_WS_MAX_FRAME_SIZE)",
                        text.len(),
                        settings.max_frame_bytes
                    ),
                ))
            } else if text.trim().is_empty() {
                return Inbound::Skip; // the reference ignores empty frames
            } else {
                Ok(settings.decoder.parse_frame(text.as_str()))
            }
        }
        Some(Ok(Message::Binary(_))) => Err(FrameError::new(
            ErrorCode::UnsupportedFrame,
            "binary frames are not accepted on a socket with socketPayload=json; send JSON text frames",
        )),
    };
    Inbound::Frame(frame.unwrap_or_else(|e| ProduceFrame::Single(Err(e))), len)
}

/// Hands a frame's records to Kafka and returns the future of its answer, with the records
/// and bytes it holds in flight: at least one record (an empty array still has an answer
/// waiting) and at least the frame's own length (ids and error texts live until answered).
async fn submit(
    kafka: &ProducerHandle,
    topic: &str,
    frame: ProduceFrame,
    frame_len: usize,
    shutdown: &CancellationToken,
) -> (Pending, usize, usize) {
    match frame {
        ProduceFrame::Single(outcome) => {
            let (fut, record_bytes) = enqueue(kafka, topic, outcome, shutdown).await;
            let bytes = record_bytes.max(frame_len);
            let topic = topic.to_owned();
            let entry = async move {
                let result = fut.await;
                let text = render_answer(&answer(&topic, &result));
                settled(text, std::slice::from_ref(&result), 1, bytes)
            };
            (Box::pin(entry), 1, bytes)
        }
        ProduceFrame::Batch(outcomes) => {
            let mut futs = Vec::with_capacity(outcomes.len());
            let mut bytes = 0;
            for outcome in outcomes {
                let (fut, b) = enqueue(kafka, topic, outcome, shutdown).await;
                bytes += b;
                futs.push(fut);
            }
            let (records, bytes) = (futs.len().max(1), bytes.max(frame_len));
            let topic = topic.to_owned();
            let entry = async move {
                let results = futures::future::join_all(futs).await;
                let answers: Vec<Answer<'_>> = results.iter().map(|r| answer(&topic, r)).collect();
                settled(render_answers(&answers), &results, records, bytes)
            };
            (Box::pin(entry), records, bytes)
        }
    }
}

type RecordFuture = Pin<Box<dyn Future<Output = RecordResult> + Send>>;

/// How long a record waits for room in librdkafka's queue before it is answered with an error.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(30);

/// Enqueues one record, waiting while librdkafka's queue is full (backpressure), but not past
/// shutdown or [`QUEUE_FULL_PATIENCE`].
async fn enqueue(
    kafka: &ProducerHandle,
    topic: &str,
    outcome: RecordOutcome,
    shutdown: &CancellationToken,
) -> (RecordFuture, usize) {
    let record = match outcome {
        Ok(r) => r,
        Err(e) => {
            let id = e.message_id.clone();
            return (Box::pin(std::future::ready((id, 0, Err(e)))), 0);
        }
    };
    let bytes = record.size();
    let mut backoff = Duration::from_micros(500);
    let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
    loop {
        match kafka.enqueue(topic, &record) {
            Ok(delivery) => {
                let id = record.message_id;
                let enqueued = Instant::now();
                let fut = async move {
                    let r = delivered(delivery).await.map_err(|RecordFailure { code, message }| {
                        FrameError::new(code, message).with_message_id(id.clone())
                    });
                    if r.is_ok() {
                        metrics::produce_ack(enqueued.elapsed());
                    }
                    (id, bytes, r)
                };
                return (Box::pin(fut), bytes);
            }
            Err(EnqueueError::QueueFull) => {
                if shutdown.is_cancelled() || Instant::now() >= give_up {
                    let id = record.message_id;
                    let e = FrameError::new(
                        ErrorCode::TimedOut,
                        "Kafka's producer queue stayed full (Kafka unreachable or too slow); the record was not sent",
                    )
                    .with_message_id(id.clone());
                    return (Box::pin(std::future::ready((id, 0, Err(e)))), 0);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(EnqueueError::Refused(code, message)) => {
                let id = record.message_id;
                let e = FrameError::new(code, message).with_message_id(id.clone());
                return (Box::pin(std::future::ready((id, 0, Err(e)))), 0);
            }
        }
    }
}

fn settled(text: String, results: &[RecordResult], records: usize, bytes: usize) -> Settled {
    let mut s = Settled { text, records, bytes, acked: 0, acked_bytes: 0, errors: Vec::new() };
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
