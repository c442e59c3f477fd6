//! Exactly-once produce sockets (`transactional=true`): each frame is one Kafka transaction,
//! answered once it committed (or with an error for every record once it aborted), so
//! `read_committed` consumers see all of a frame or none of it.
//!
//! The produce loop ([`super::produce`]) reads one frame per wakeup on such a socket and
//! hands it to [`transact`]; the records are checked and enqueued with the produce socket's
//! own helpers. A commit that times out is resumed, never aborted (M1): its outcome is then
//! unknown, and the socket ends.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::ProduceFrame;
use wsproxy_protocol::ErrorCode;

use crate::kafka::{Ack, ProducerHandle, TransactionError};
use crate::pipeline::in_flight::{Answer, InFlight};
use crate::pipeline::produce::{
    answer_frame, answers_frame, check_registry, enqueue, settled, ProduceSettings, RecordResult, Settled,
    QUEUE_FULL_PATIENCE,
};
use crate::telemetry::metrics;

/// Exactly-once: the frame's records are one transaction, answered once it committed. If any
/// record fails, or the commit does, the transaction is aborted and every record of the frame
/// is answered with an error: `read_committed` consumers see all of a frame or none of it.
/// Frames are taken one at a time (the next transaction starts after this one ended).
pub(super) async fn transact(
    kafka: &ProducerHandle,
    settings: &ProduceSettings,
    frame: ProduceFrame,
    frame_len: usize,
    shutdown: &CancellationToken,
) -> Settled {
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
            let mut in_flight = InFlight::new();
            bytes = 0;
            let give_up = Instant::now() + QUEUE_FULL_PATIENCE;
            for outcome in outcomes.iter().cloned() {
                bytes += enqueue(kafka, &mut in_flight, topic, outcome, shutdown, give_up).await;
            }
            in_flight.end_frame(single, outcomes.len(), bytes);
            in_flight.answerable().await;
            let Some(Answer::Records { results: settled, .. }) = in_flight.pop() else {
                unreachable!("a frame of records is answered with its records")
            };
            results = settled;
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
        answer_frame(topic, &settings.codec, &results[0])
    } else {
        answers_frame(topic, &settings.codec, &results)
    };
    let mut done = settled(frame, &results, records, bytes);
    done.fatal = fatal.map(|f| format!("transactional producer failed: {f}"));
    done
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

    use std::time::Duration;

    use crate::kafka::testing::MockKafka;
    use axum::extract::ws::Message;
    use wsproxy_protocol::codec::FrameRef;
    use wsproxy_protocol::params::SocketPayload;
    use wsproxy_protocol::{FormatType, SocketCodec};

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::kafka::{Kafka, TRANSACTION_TIMEOUT};
    use crate::limits::ClientLimits;
    use crate::pipeline::close;
    use crate::telemetry::metrics::SocketIdentity;

    async fn frame_answer(kafka: &ProducerHandle, settings: &ProduceSettings, text: &str) -> String {
        let (frame, _) = settings.codec.decode_produce(FrameRef::Text(text), usize::MAX).unwrap();
        let done = transact(kafka, settings, frame, text.len(), &CancellationToken::new()).await;
        match done.frame {
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
            codec: SocketCodec::new(SocketPayload::Json, None, FormatType::String),
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
