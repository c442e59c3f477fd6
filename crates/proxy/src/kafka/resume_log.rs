//! The resume topic (`WSPROXY_RESUME_TOPIC`, default `_wsproxy.resume`): a compacted and
//! expiring (`compact,delete`, one hour), single-partition topic through which a node that got a `resumeToken` it does not hold asks
//! the node that holds it to hand its consumer session over ([`crate::pipeline::handover`]).
//!
//! Never the session state topic: its records stay in the Scala proxy's format.
//!
//! - A request: key `request:<SHA-256 of the token>` (never the token, so that readers of
//!   the topic cannot take sessions), value
//!   `{"request":<id>,"from":<server id>,"issuer":<tag of the token's node>,"binding":<hash>,
//!   "waitMs":<how long the requester waits from writing it>}`: the holder counts that time
//!   from when it read the request (no node's clock is compared with another's) and does not
//!   start (nor finish) a handover after it, when nobody would take the session.
//! - A reply: key `reply:<request id>`, value `{"request":<id>,"from":..,"outcome":..}`.
//! - The requester tombstones both keys once it has its answer (or gave up), so that the
//!   compacted topic stays small.
//!
//! Every node tails the topic from its end (a consumer assigned to the partition, no group
//! membership, nothing committed) on a thread of its own: requests go to the node's handler,
//! replies to the request that waits for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::{follow_closely, internal_producer, internal_reader};
use super::oauth::OAuthContext;
use super::oauth_admin::Linked;
use super::state_log::StateLogError;
use super::Kafka;
use crate::config::InternalTopicConfig;

/// The longest a write waits for Kafka's acknowledgement.
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// Requests of other nodes read and not yet served; beyond it they are dropped (their
/// requesters time out), so that a flood of requests costs bounded memory.
const REQUEST_QUEUE: usize = 1024;

/// How long after giving up a requester still tombstones the reply key: a holder stops before
/// the request's deadline, but its reply may still be delayed by Kafka.
const LATE_REPLY: Duration = Duration::from_secs(30);

/// A node asks the holder of a session to hand it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The SHA-256 of the token (hex), from the record's key.
    #[serde(skip)]
    pub token_key: String,
    /// Random: names the reply.
    pub request: String,
    /// The requesting node's server id.
    pub from: String,
    /// The tag of the node that issued the token (see `pipeline::resume_token`): it answers
    /// `unknown` when it does not hold the token.
    pub issuer: String,
    /// A hash of the reconnect's binding, keyed with the token (see `pipeline::handover`).
    pub binding: String,
    /// How long the requester waits for the answer, in milliseconds from writing the request.
    #[serde(rename = "waitMs")]
    pub wait_ms: u64,
    /// When this node read the request: the requester's wait is counted from it.
    #[serde(skip, default = "std::time::Instant::now")]
    pub read_at: std::time::Instant,
}

/// The holder's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The holder closed its consumer (it left the group) and freed its session slot.
    HandedOver,
    /// The binding differs: the session stays with its owner.
    NotYours,
    /// The node that issued the token does not hold it (and did not hand it over).
    Unknown,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    request: String,
    from: String,
    outcome: Outcome,
}

/// A handle to the resume topic; cheap to clone.
#[derive(Clone)]
pub struct ResumeLog {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    server_id: String,
    producer: Linked<FutureProducer<OAuthContext>>,
    /// Requests of this node waiting for their reply, by request id.
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The server's tasks: shutdown waits for the tombstones too.
    tracker: TaskTracker,
    /// Server shutdown: a late reply's tombstone is written at once then.
    shutdown: CancellationToken,
}

impl ResumeLog {
    /// Creates the topic when missing and starts tailing it; the requests of other nodes come
    /// out of the returned channel. Its tasks (tombstones) run on `tracker`.
    pub async fn open(
        kafka: &Kafka,
        topic: &InternalTopicConfig,
        server_id: &str,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(ResumeLog, mpsc::Receiver<Request>), StateLogError> {
        kafka
            .ensure_compacted_expiring_topic(topic)
            .await
            .map_err(|reason| StateLogError::Create { topic: topic.topic.clone(), reason })?;
        // Not the state log's producer: that one is idempotent (a timed-out write there bumps
        // the epoch of the whole producer, stalling the other topic's writes) and fails writes
        // after min(state init timeout, 5 s), not after WRITE_WAIT.
        let producer = internal_producer(kafka, WRITE_WAIT, |_| {})?;
        // The group is librdkafka's handle for a manual assignment: the reader never joins it.
        let group = format!("ws-proxy-resume-reader-{server_id}");
        let consumer: Linked<BaseConsumer<OAuthContext>> = internal_reader(kafka, &group, "latest", |c| {
            follow_closely(c).set("enable.auto.offset.store", "false");
        })?;
        // From the end as it is now, not as it is when the reader first fetches (on a topic
        // just created that may be seconds later): requests written meanwhile are read.
        let (_, end) = consumer.fetch_watermarks(&topic.topic, 0, Timeout::After(topic.init_timeout))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic.topic, 0, Offset::Offset(end))?;
        consumer.assign(&tpl)?;
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader { server_id: server_id.to_owned(), requests: requests_tx, pending: pending.clone() };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("resume-log".into())
                .spawn(move || reader.run(&consumer, &stop))
                .expect("spawning a thread")
        };
        let inner = Inner {
            topic: topic.topic.clone(),
            server_id: server_id.to_owned(),
            producer,
            pending,
            stop,
            reader: Mutex::new(Some(thread)),
            tracker,
            shutdown,
        };
        Ok((ResumeLog { inner: Arc::new(inner) }, requests))
    }

    /// Asks the holder of the token hashed as `token_key` to hand it over, and waits at most
    /// `wait` for its answer (`None`: no node answered). Both records are tombstoned after.
    pub async fn ask(
        &self,
        token_key: &str,
        issuer: &str,
        request: String,
        binding: String,
        wait: Duration,
    ) -> Result<Option<Outcome>, StateLogError> {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(request.clone(), tx);
        // From here on, however this ends (answered, timed out, or the reconnect went away
        // and this future was dropped), the waiter is removed and the records tombstoned.
        let mut asking = Asking { log: self.clone(), request, key: format!("request:{token_key}"), answered: false };
        let (from, issuer) = (self.inner.server_id.clone(), issuer.to_owned());
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let request = asking.request.clone();
        let read_at = std::time::Instant::now();
        let req = Request { token_key: token_key.to_owned(), request, from, issuer, binding, wait_ms, read_at };
        let value = serde_json::to_vec(&req).expect("a request serialises");
        let written = self.write(&asking.key, Some(&value)).await;
        let outcome = match written {
            Ok(()) => tokio::time::timeout(wait, rx).await.ok().and_then(Result::ok),
            Err(_) => None,
        };
        asking.answered = outcome.is_some();
        drop(asking);
        written.map(|()| outcome)
    }

    /// Answers `request` (written by the holder of its token).
    pub async fn answer(&self, request: &Request, outcome: Outcome) -> Result<(), StateLogError> {
        let reply = Reply { request: request.request.clone(), from: self.inner.server_id.clone(), outcome };
        let value = serde_json::to_vec(&reply).expect("a reply serialises");
        self.write(&format!("reply:{}", request.request), Some(&value)).await
    }

    /// Stops the reader and flushes what the producer still holds (answers, tombstones).
    pub async fn close(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let reader = self.inner.reader.lock().expect("reader handle is never poisoned").take();
        if let Some(reader) = reader {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        let log = self.clone();
        let flushed = tokio::task::spawn_blocking(move || log.inner.producer.flush(Timeout::After(WRITE_WAIT))).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, topic = %self.inner.topic, "the resume topic's last records were not flushed");
        }
    }

    async fn write(&self, key: &str, value: Option<&[u8]>) -> Result<(), StateLogError> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.inner.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivery = self.inner.producer.send(record, Timeout::After(WRITE_WAIT));
        match tokio::time::timeout(WRITE_WAIT, delivery).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(StateLogError::Kafka(e)),
            Err(_) => Err(StateLogError::Unacknowledged { topic: self.inner.topic.clone(), timeout: WRITE_WAIT }),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Outcome>>> {
        self.inner.pending.lock().expect("pending requests are never poisoned")
    }
}

/// A request of this node waiting for its reply. Its drop removes the waiter and tombstones
/// the request's records off the reconnect's path (a failed tombstone leaves a record that
/// the topic's retention removes).
struct Asking {
    log: ResumeLog,
    request: String,
    /// The request's key.
    key: String,
    /// Whether the reply came: else it may still come, and its key is tombstoned later.
    answered: bool,
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.log.pending().remove(&self.request);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (log, late) = (self.log.clone(), !self.answered);
        let keys = [std::mem::take(&mut self.key), format!("reply:{}", self.request)];
        let shutdown = log.inner.shutdown.clone();
        self.log.inner.tracker.spawn(async move {
            for key in keys {
                if late && key.starts_with("reply:") {
                    tokio::select! {
                        () = tokio::time::sleep(LATE_REPLY) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                if let Err(e) = log.write(&key, None).await {
                    tracing::debug!(key, error = %e, "could not tombstone a resume record");
                }
            }
        });
    }
}

/// The reader thread: hands requests of other nodes to the handler, replies to their waiters.
struct Reader {
    server_id: String,
    requests: mpsc::Sender<Request>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
}

impl Reader {
    fn run(self, consumer: &BaseConsumer<OAuthContext>, stop: &AtomicBool) {
        let mut last_warning = std::time::Instant::now() - Duration::from_secs(60);
        while !stop.load(Ordering::Acquire) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => self.apply(m.key(), m.payload()),
                Some(Err(e)) if last_warning.elapsed() > Duration::from_secs(10) => {
                    tracing::warn!(error = %e, "reading the resume topic failed; retrying");
                    last_warning = std::time::Instant::now();
                }
                _ => {}
            }
        }
    }

    fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        // Tombstones and records that are not ours are skipped.
        let (Some(key), Some(value)) = (key.and_then(|k| std::str::from_utf8(k).ok()), value) else { return };
        match read(key, value) {
            Some(Incoming::Request(r)) if r.from != self.server_id => {
                if let Err(mpsc::error::TrySendError::Full(r)) = self.requests.try_send(r) {
                    tracing::debug!(from = %r.from, "too many handover requests at once: one was dropped");
                }
            }
            Some(Incoming::Reply(r)) => {
                let waiter = self.pending.lock().expect("pending requests are never poisoned").remove(&r.request);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(r.outcome);
                }
            }
            _ => {}
        }
    }
}

enum Incoming {
    Request(Request),
    Reply(Reply),
}

/// A record of the resume topic, if it is one.
fn read(key: &str, value: &[u8]) -> Option<Incoming> {
    if let Some(token_key) = key.strip_prefix("request:") {
        let mut r: Request = serde_json::from_slice(value).ok()?;
        r.token_key = token_key.to_owned();
        return Some(Incoming::Request(r));
    }
    let reply: Reply = serde_json::from_slice(value).ok()?;
    (key.strip_prefix("reply:") == Some(reply.request.as_str())).then_some(Incoming::Reply(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_by_their_key_and_others_are_skipped() {
        let req = br#"{"request":"r1","from":"node-b","issuer":"0a1b2c3d","binding":"bb","waitMs":17}"#;
        let Some(Incoming::Request(r)) = read("request:abc", req) else { panic!("a request") };
        let (from, issuer, read_at) = ("node-b".to_owned(), "0a1b2c3d".to_owned(), r.read_at);
        let binding = "bb".to_owned();
        let want =
            Request { token_key: "abc".into(), request: "r1".into(), from, issuer, binding, wait_ms: 17, read_at };
        assert_eq!(r, want);
        let reply = br#"{"request":"r1","from":"node-a","outcome":"handed-over"}"#;
        let Some(Incoming::Reply(r)) = read("reply:r1", reply) else { panic!("a reply") };
        assert_eq!(r.outcome, Outcome::HandedOver);
        assert!(read("reply:r2", reply).is_none(), "a reply under another request's key");
        assert!(read("request:abc", b"not json").is_none());
        assert!(read("other", reply).is_none());
        let refused = br#"{"request":"r1","from":"node-a","outcome":"not-yours"}"#;
        assert!(matches!(read("reply:r1", refused), Some(Incoming::Reply(Reply { outcome: Outcome::NotYours, .. }))));
        let unknown = br#"{"request":"r1","from":"node-a","outcome":"unknown"}"#;
        assert!(matches!(read("reply:r1", unknown), Some(Incoming::Reply(Reply { outcome: Outcome::Unknown, .. }))));
    }
}
