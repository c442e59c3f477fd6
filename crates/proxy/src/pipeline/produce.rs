//! One produce socket's data path: frames in, records to Kafka, results out in input order.
//!
//! Each frame becomes one entry of an ordered queue whose future resolves to the frame's answer
//! (a result or an error per record). Answers leave in the order frames came in, whatever
//! order Kafka acknowledges in. While too many records or bytes are unacknowledged, the socket
//! is not read: the client's TCP window fills and it slows down, so memory stays bounded.
//!
//! The producer's `messages-per-second` limit (static or dynamic, see [`crate::limits`]) is
//! applied the same way: beyond the rate the socket is not read. A dynamic change reaches an
//! open socket through [`ClientLimits::changes`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::avro;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::{
    render_answer, render_answers, Answer, ProduceFrame, ProduceResult, RecordDecoder, RecordOutcome,
};
use wsproxy_protocol::{ErrorCode, FormatType};

use crate::kafka::{delivered, Ack, EnqueueError, ProducerHandle, RecordFailure, TransactionError};
use crate::limits::ClientLimits;
use crate::pipeline::close;
use crate::pipeline::rate_limit::RateLimit;
use crate::schema_registry::{CheckError, SchemaRegistry};
use crate::telemetry::metrics::{self, Direction, SocketIdentity, SocketMetrics};

/// Settings of one produce socket.
#[derive(Clone)]
pub struct ProduceSettings {
    pub topic: String,
    pub decoder: RecordDecoder,
    /// `socketPayload=avro`: binary `AvroProducerRecord` frames in, `AvroProducerResult` out.
    pub avro: bool,
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
struct Settled {
    /// The answer frame: text (JSON, and every error), or binary (an Avro result).
    frame: Message,
    records: usize,
    bytes: usize,
    /// Records Kafka acknowledged, and their bytes.
    acked: u64,
    acked_bytes: u64,
    /// Codes of the error frames in the answer.
    errors: Vec<ErrorCode>,
    /// A failure that ends the socket after this answer (a fenced transactional producer).
    fatal: Option<String>,
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
    let producer_id = settings.identity.client_id.clone();
    let mut changes = settings.limits.changes();
    let mut rate_per_second = settings.limits.producer_messages_per_second(&producer_id);
    let mut rate = rate_limit(rate_per_second);

    loop {
        // Once reading stopped and every answer is out, the socket ends; the close handshake is
        // bounded so that a client that stopped reading cannot hold it.
        if !reading && pending.is_empty() {
            stats.closing(close_frame.as_ref().map_or(1000, |f| f.code));
            close::finish(&mut tx, &mut rx, close_frame.take()).await;
            return;
        }
        let now = std::time::Instant::now();
        let throttled_until = match rate.as_mut() {
            Some(r) if reading => Some(r.next_allowed(now)).filter(|t| *t > now),
            _ => None,
        };
        let may_read = reading
            && throttled_until.is_none()
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
                close_frame = Some(settings.stop_reason.frame());
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
                    if !matches!(tokio::time::timeout(settings.idle_timeout, tx.feed(s.frame)).await, Ok(Ok(()))) {
                        stats.closing(1006);
                        return;
                    }
                    if let Some(reason) = s.fatal {
                        reading = false;
                        close_frame = Some(close::kafka_failure(&reason));
                    }
                }
                if !matches!(tokio::time::timeout(settings.idle_timeout, tx.flush()).await, Ok(Ok(()))) {
                    stats.closing(1006);
                    return;
                }
                last_sent = Instant::now();
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
                        Inbound::Frame(frame, frame_len) => {
                            let (entry, records, bytes) = if settings.transactional {
                                transact(&kafka, &settings, frame, frame_len, &shutdown).await
                            } else {
                                submit(&kafka, &settings, frame, frame_len, &shutdown).await
                            };
                            in_flight_records += records;
                            in_flight_bytes += bytes;
                            pending.push_back(entry);
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
                last_heard = Instant::now();
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
            _ = keep_alive.tick() => {
                if reading && kafka.credentials_refused_for().is_some_and(|d| d >= AUTH_FAILURE_PATIENCE) {
                    // Revoked or wrong credentials for a while: every record would time out.
                    // Say so. (A passing refusal clears on the next broker round trip.)
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
    End(CloseFrame),
}

fn inbound(msg: Option<Result<Message, axum::Error>>, settings: &ProduceSettings) -> Inbound {
    let mut len = 0;
    let frame = match msg {
        // The client is done: answer what is in flight if it still listens.
        None | Some(Ok(Message::Close(_))) => return Inbound::End(close::normal()),
        Some(Err(e)) => return Inbound::End(close::for_read_error(e).unwrap_or_else(close::normal)),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Inbound::Skip,
        Some(Ok(Message::Text(_))) if settings.avro => Err(FrameError::new(
            ErrorCode::UnsupportedFrame,
            "text frames are not accepted on a socket with socketPayload=avro; send binary AvroProducerRecord frames",
        )),
        Some(Ok(Message::Binary(bytes))) if settings.avro => {
            len = bytes.len();
            if bytes.len() > settings.max_frame_bytes {
                Err(too_large(bytes.len(), settings.max_frame_bytes))
            } else {
                let (kt, vt) = (settings.decoder.key_type, settings.decoder.val_type);
                Ok(ProduceFrame::Single(avro::decode_producer_record(&bytes, kt, vt)))
            }
        }
        Some(Ok(Message::Text(text))) => {
            len = text.len();
            if text.len() > settings.max_frame_bytes {
                Err(too_large(text.len(), settings.max_frame_bytes))
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

fn too_large(len: usize, max: usize) -> FrameError {
    FrameError::new(
        ErrorCode::FrameTooLarge,
        format!("the frame has {len} bytes; the limit is {max} (WSPROXY_WS_MAX_FRAME_SIZE)"),
    )
}

/// Hands a frame's records to Kafka and returns the future of its answer, with the records
/// and bytes it holds in flight: at least one record (an empty array still has an answer
/// waiting) and at least the frame's own length (ids and error texts live until answered).
async fn submit(
    kafka: &ProducerHandle,
    settings: &ProduceSettings,
    frame: ProduceFrame,
    frame_len: usize,
    shutdown: &CancellationToken,
) -> (Pending, usize, usize) {
    let topic = settings.topic.as_str();
    match frame {
        ProduceFrame::Single(outcome) => {
            let outcome = check_registry(settings, outcome).await;
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            let (fut, record_bytes) = enqueue(kafka, topic, outcome, shutdown, give_up).await;
            let bytes = record_bytes.max(frame_len);
            let topic = topic.to_owned();
            let avro = settings.avro;
            let entry = async move {
                let result = fut.await;
                let frame = answer_frame(&topic, avro, &result);
                settled(frame, std::slice::from_ref(&result), 1, bytes)
            };
            (Box::pin(entry), 1, bytes)
        }
        ProduceFrame::Batch(outcomes) => {
            let mut futs = Vec::with_capacity(outcomes.len());
            let mut bytes = 0;
            // One deadline for the whole frame, not one per record (L9).
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            for outcome in outcomes {
                let outcome = check_registry(settings, outcome).await;
                let (fut, b) = enqueue(kafka, topic, outcome, shutdown, give_up).await;
                bytes += b;
                futs.push(fut);
            }
            let (records, bytes) = (futs.len().max(1), bytes.max(frame_len));
            let topic = topic.to_owned();
            let entry = async move {
                let results = futures::future::join_all(futs).await;
                let answers: Vec<Answer<'_>> = results.iter().map(|r| answer(&topic, r)).collect();
                settled(Message::Text(render_answers(&answers).into()), &results, records, bytes)
            };
            (Box::pin(entry), records, bytes)
        }
    }
}

/// Exactly-once: the frame's records are one transaction, answered once it committed. If any
/// record fails, or the commit does, the transaction is aborted and every record of the frame
/// is answered with an error: `read_committed` consumers see all of a frame or none of it.
/// Frames are taken one at a time (the next transaction starts after this one ended).
async fn transact(
    kafka: &ProducerHandle,
    settings: &ProduceSettings,
    frame: ProduceFrame,
    frame_len: usize,
    shutdown: &CancellationToken,
) -> (Pending, usize, usize) {
    let topic = settings.topic.as_str();
    let (unchecked, single) = match frame {
        ProduceFrame::Single(outcome) => (vec![outcome], true),
        ProduceFrame::Batch(outcomes) => (outcomes, false),
    };
    let mut outcomes = Vec::with_capacity(unchecked.len());
    for outcome in unchecked {
        outcomes.push(check_registry(settings, outcome).await);
    }
    let mut results: Vec<RecordResult> = Vec::with_capacity(outcomes.len());
    let mut failure: Option<String> = None;
    let mut fatal = None;
    // Set when the commit neither succeeded nor failed for good (M1).
    let mut unknown = false;
    let mut bytes = 0;
    if outcomes.iter().any(Result::is_err) {
        failure = Some("another record of the frame is invalid, so none was sent".to_owned());
        for outcome in outcomes {
            results.push(match outcome {
                Err(e) => (e.message_id.clone(), 0, Err(e)),
                Ok(r) => (r.message_id, 0, Ok(Ack { partition: -1, offset: -1, timestamp: -1 })),
            });
        }
    } else if let Err(e) = kafka.begin_transaction().await {
        failure = Some(format!("the transaction could not start: {e}"));
        fatal = e.fatal.then(|| e.message.clone());
        for outcome in outcomes.into_iter().flatten() {
            results.push((outcome.message_id, 0, Ok(Ack { partition: -1, offset: -1, timestamp: -1 })));
        }
    } else {
        // One retry when only purges failed it: librdkafka purges the first transaction after an
        // abort that needed a new producer epoch (a known librdkafka behaviour).
        for attempt in 0..2 {
            failure = None;
            if attempt > 0 {
                if let Err(e) = kafka.begin_transaction().await {
                    failure = Some(format!("the transaction could not start: {e}"));
                    fatal = e.fatal.then(|| e.message.clone());
                    break;
                }
            }
            let mut futs = Vec::with_capacity(outcomes.len());
            bytes = 0;
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            for outcome in outcomes.iter().cloned() {
                let (fut, b) = enqueue(kafka, topic, outcome, shutdown, give_up).await;
                bytes += b;
                futs.push(fut);
            }
            results = futures::future::join_all(futs).await;
            let failed: Vec<ErrorCode> = results.iter().filter_map(|r| r.2.as_ref().err().map(|e| e.code)).collect();
            let outcome = if failed.is_empty() {
                commit(kafka).await
            } else {
                let e = TransactionError {
                    fatal: false,
                    retriable: false,
                    requires_abort: true,
                    message: "another record of the frame failed".to_owned(),
                };
                Err((e, AfterCommitError::Abort))
            };
            let Err((e, next)) = outcome else {
                metrics::transaction_outcome("committed");
                break;
            };
            failure = Some(e.message.clone());
            match next {
                AfterCommitError::Abort => {}
                AfterCommitError::Fatal => {
                    metrics::transaction_outcome("failed");
                    fatal = Some(e.message.clone());
                    break;
                }
                AfterCommitError::Retry | AfterCommitError::Unknown => {
                    // Kafka may still commit it: never say aborted. The producer cannot start
                    // another transaction before this one ends, so the socket ends too; the
                    // client's next socket fences this producer, which settles it.
                    metrics::transaction_outcome("unknown");
                    tracing::warn!(error = %e, client_id = ?settings.identity.client_id, "a transaction's outcome is unknown; closing the socket");
                    unknown = true;
                    fatal = Some(format!("the outcome of the last transaction is unknown: {e}"));
                    break;
                }
            }
            metrics::transaction_outcome("aborted");
            if let Err(abort) = kafka.abort_transaction().await {
                fatal = Some(format!("the transaction could not be aborted: {abort}"));
                break;
            }
            let only_purged = !failed.is_empty() && failed.iter().all(|c| *c == ErrorCode::TransactionAborted);
            if !only_purged {
                break;
            }
        }
    }
    if let Some(reason) = &failure {
        for (id, _, r) in results.iter_mut() {
            if r.is_ok() {
                let e = if unknown {
                    FrameError::new(
                        ErrorCode::TransactionOutcomeUnknown,
                        format!("the frame's transaction did not finish committing in time; its records may still be committed: {reason}"),
                    )
                } else {
                    FrameError::new(
                        ErrorCode::TransactionAborted,
                        format!("the frame's transaction was aborted: {reason}"),
                    )
                };
                *r = Err(e.with_message_id(id.clone()));
            }
        }
    }
    let records = results.len().max(1);
    let bytes = bytes.max(frame_len);
    let frame = if single {
        answer_frame(topic, settings.avro, &results[0])
    } else {
        Message::Text(render_answers(&results.iter().map(|r| answer(topic, r)).collect::<Vec<_>>()).into())
    };
    let mut done = settled(frame, &results, records, bytes);
    done.fatal = fatal.map(|f| format!("transactional producer failed: {f}"));
    (Box::pin(std::future::ready(done)), records, bytes)
}

/// How often a commit that timed out (Kafka still committing) is resumed before the outcome
/// counts as unknown: each call waits up to the producer's transaction timeout.
const COMMIT_ATTEMPTS: u32 = 3;

/// What to do after `commit_transaction` failed (M1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCommitError {
    /// Retriable (a timeout): librdkafka goes on committing; calling commit again resumes it.
    Retry,
    /// The transaction cannot commit: abort it, its records are never read.
    Abort,
    /// The producer is unusable (fenced): end the socket.
    Fatal,
    /// Neither: the records may or may not be committed.
    Unknown,
}

/// Decides from librdkafka's classification of a commit error, after `attempt` calls.
fn after_commit_error(e: &TransactionError, attempt: u32) -> AfterCommitError {
    if e.fatal {
        AfterCommitError::Fatal
    } else if e.txn_requires_abort() {
        AfterCommitError::Abort
    } else if e.is_retriable() && attempt < COMMIT_ATTEMPTS {
        AfterCommitError::Retry
    } else {
        AfterCommitError::Unknown
    }
}

/// Commits the open transaction, resuming a commit that timed out, until it succeeds or fails
/// for good (or [`COMMIT_ATTEMPTS`] are used up: then the outcome is unknown).
async fn commit(kafka: &ProducerHandle) -> Result<(), (TransactionError, AfterCommitError)> {
    let mut attempt = 1;
    loop {
        let Err(e) = kafka.commit_transaction().await else { return Ok(()) };
        match after_commit_error(&e, attempt) {
            AfterCommitError::Retry => {
                metrics::transaction_outcome("commit_retried");
                tracing::warn!(error = %e, attempt, "a transaction commit timed out; resuming it");
                attempt += 1;
            }
            next => return Err((e, next)),
        }
    }
}

/// With a schema registry, `avro` keys and values must be Confluent-framed Avro of a schema
/// the registry knows; otherwise the record is answered with an error and not produced.
async fn check_registry(settings: &ProduceSettings, outcome: RecordOutcome) -> RecordOutcome {
    let (Some(registry), Ok(record)) = (&settings.registry, &outcome) else { return outcome };
    let checks = [
        (settings.decoder.key_type == Some(FormatType::Avro), record.key.as_deref(), "key", ErrorCode::InvalidKey),
        (settings.decoder.val_type == FormatType::Avro, record.value.as_deref(), "value", ErrorCode::InvalidValue),
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

type RecordFuture = Pin<Box<dyn Future<Output = RecordResult> + Send>>;

/// How long a frame's records wait for room in librdkafka's queue before the rest are answered
/// with an error: one deadline per frame, so a 1,000-record frame cannot hold the loop 1,000
/// times this long (L9).
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(30);

/// Enqueues one record, waiting while librdkafka's queue is full (backpressure), but not past
/// shutdown or the frame's `give_up` deadline ([`QUEUE_FULL_PATIENCE`] after the frame started).
async fn enqueue(
    kafka: &ProducerHandle,
    topic: &str,
    outcome: RecordOutcome,
    shutdown: &CancellationToken,
    give_up: Instant,
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

fn settled(frame: Message, results: &[RecordResult], records: usize, bytes: usize) -> Settled {
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

/// The answer to a single record: an Avro result on an avro socket, else (and for every
/// error) a JSON text frame.
fn answer_frame(topic: &str, avro: bool, result: &RecordResult) -> Message {
    match (&result.2, avro) {
        (Ok(ack), true) => Message::Binary(
            avro::encode_producer_result(topic, ack.partition, ack.offset, ack.timestamp, result.0.as_deref()).into(),
        ),
        _ => Message::Text(render_answer(&answer(topic, result)).into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(fatal: bool, retriable: bool, requires_abort: bool) -> TransactionError {
        TransactionError { fatal, retriable, requires_abort, message: "x".to_owned() }
    }

    /// M1: a commit that timed out (retriable, not abortable) is resumed, never aborted; once
    /// the attempts are used up its outcome is unknown (never TRANSACTION_ABORTED). Only an
    /// abortable error aborts; a fatal one ends the socket.
    #[test]
    fn m1_a_commit_timeout_is_retried_then_unknown_never_aborted() {
        let timeout = error(false, true, false);
        assert_eq!(after_commit_error(&timeout, 1), AfterCommitError::Retry);
        assert_eq!(after_commit_error(&timeout, COMMIT_ATTEMPTS - 1), AfterCommitError::Retry);
        assert_eq!(after_commit_error(&timeout, COMMIT_ATTEMPTS), AfterCommitError::Unknown);
        assert_eq!(after_commit_error(&error(false, false, true), 1), AfterCommitError::Abort);
        assert_eq!(after_commit_error(&error(false, true, true), 1), AfterCommitError::Abort);
        assert_eq!(after_commit_error(&error(true, false, false), 1), AfterCommitError::Fatal);
        assert_eq!(after_commit_error(&error(false, false, false), 1), AfterCommitError::Unknown);
    }
}

#[cfg(test)]
mod m1_real_timeout {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::kafka::testing::MockKafka;
    use crate::kafka::{Kafka, TRANSACTION_TIMEOUT};

    async fn frame_answer(kafka: &ProducerHandle, settings: &ProduceSettings, text: &str) -> String {
        let frame = settings.decoder.parse_frame(text);
        let (entry, _, _) = transact(kafka, settings, frame, text.len(), &CancellationToken::new()).await;
        match entry.await.frame {
            Message::Text(t) => t.to_string(),
            other => panic!("expected a text answer, got {other:?}"),
        }
    }

    /// M1: a commit that takes longer than the producer's transaction timeout (librdkafka says
    /// "timed out, retriable" and goes on committing) is resumed, and its records are answered
    /// as committed, which they are; the proxy used to abort (which fails while the commit goes
    /// on) and answer TRANSACTION_ABORTED. A one-broker librdkafka mock cluster whose round
    /// trips are made longer than the (test) transaction timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn m1_a_commit_that_times_out_is_resumed_not_aborted() {
        let cluster = MockKafka::with_topic("m1");
        let vars: HashMap<String, String> =
            [("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), cluster.bootstrap_servers())].into_iter().collect();
        let config = Config::load(&vars, &Overrides::default(), true).unwrap();
        let kafka = Kafka::new(&config).unwrap();
        let producer = kafka.transactional_producer(None, "m1-txn").await.unwrap();
        let settings = ProduceSettings {
            topic: "m1".to_owned(),
            decoder: RecordDecoder { key_type: None, val_type: FormatType::String },
            avro: false,
            registry: None,
            max_in_flight_records: 100,
            max_in_flight_bytes: 1 << 20,
            max_frame_bytes: 1 << 20,
            keep_alive: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            identity: SocketIdentity { client_id: "m1".to_owned(), group: None, remote: ([127, 0, 0, 1], 1).into() },
            transactional: true,
            limits: ClientLimits::new(config.limits.clone()),
            stop_reason: close::StopReason::default(),
        };
        let first = frame_answer(&producer, &settings, r#"{"value":{"value":"a"}}"#).await;
        assert!(first.contains("\"offset\":0"), "{first}");
        // Every round trip now takes longer than a commit may wait.
        cluster.round_trip_time(TRANSACTION_TIMEOUT + Duration::from_secs(2));
        let second = frame_answer(&producer, &settings, r#"[{"value":{"value":"b"}},{"value":{"value":"c"}}]"#).await;
        assert!(!second.contains("TRANSACTION_ABORTED"), "records that commit are never answered aborted: {second}");
        assert!(second.contains("\"offset\":1") && second.contains("\"offset\":2"), "{second}");
        // And a read_committed consumer reads all three.
        cluster.round_trip_time(Duration::ZERO);
        assert_eq!(cluster.read_committed("m1", 3), ["a", "b", "c"]);
    }
}
