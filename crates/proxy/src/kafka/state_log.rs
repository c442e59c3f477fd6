//! A compacted, single-partition topic that every node reads from the beginning into memory:
//! the replicated map behind sessions. Writes are conditional, so limits hold across nodes.
//!
//! Every node reads the same records in the same order. A record this proxy writes carries the
//! header `wsproxy.based-on`: the offset of the key's accepted record it replaces (`-1`: the key
//! had none, or only a tombstone, which compaction removes in time). A reader accepts it only if
//! that is still the key's accepted record (`-1` also over a tombstone). When two
//! nodes write the same key from the same state, the first in the log wins on every node and
//! the other learns it lost when it reads its own record back (it then decides again from the
//! new state). Records without the header (Scala nodes) are accepted as they come: last writer
//! wins, as in the reference. The first record seen for a key is accepted too, since compaction
//! may have removed the one it was based on.
//!
//! The reader joins the consumer group `ws-proxy-session-consumer-<server-id>` (the reference's
//! name) with static membership, so the group's members say which nodes are alive: a node that
//! crashed leaves its group empty once its session timeout passed. The reader's `client.id`
//! ([`reader_client_id`]) tells it from a Scala node's reader (`ws-proxy-session-consumer-<id>`),
//! so that a node can see another one using its server id ([`foreign_members`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::oauth_admin::Linked;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::watch;

use super::client::{follow_closely, internal_producer, internal_reader};
use super::oauth::OAuthContext;
use super::Kafka;

const BASED_ON: &str = "wsproxy.based-on";
/// Names the node that wrote a record, so that its reader notes whether it was accepted.
const WRITER: &str = "wsproxy.writer";
/// The longest a write waits for Kafka's acknowledgement (shorter when the load timeout is):
/// a join during a state-topic outage answers 503 within 10 s, never minutes (L1). A healthy
/// cluster acknowledges in milliseconds; a removal that gives up is retried by the sweep.
const MAX_WRITE_WAIT: Duration = Duration::from_secs(5);

/// Where the log lives and how the reader joins.
#[derive(Debug, Clone)]
pub struct StateLogSettings {
    pub topic: String,
    pub replication_factor: i32,
    pub retention_ms: i64,
    /// The reader's consumer group: its members tell other nodes this one is alive.
    pub group_id: String,
    /// Static membership id (the server id): a restarted node takes its old place at once.
    pub group_instance_id: String,
    /// How long a silent node stays a member of its group.
    pub session_timeout_ms: u32,
    /// How long loading the log (and each later wait for it) may take.
    pub load_timeout: Duration,
    pub init_retries: u32,
    pub init_retry_interval: Duration,
}

/// Why the log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateLogError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the topic {topic} could not be created: {reason}")]
    Create { topic: String, reason: String },
    #[error("the topic {topic} was not read up to offset {target} within {timeout:?}")]
    Timeout { topic: String, target: i64, timeout: Duration },
    #[error("Kafka did not acknowledge a write to {topic} within {timeout:?}")]
    Unacknowledged { topic: String, timeout: Duration },
    #[error("another node uses WSPROXY_SERVER_ID={server_id} (members {members:?} of {group} are not this proxy's, still there after {waited:?}): give every node its own server id")]
    ServerIdInUse { server_id: String, group: String, members: Vec<String>, waited: Duration },
}

/// The accepted record of one key: its offset, and its value (`None`: deleted).
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: i64,
    pub value: Option<Arc<[u8]>>,
}

/// A handle to the log; cheap to clone.
#[derive(Clone)]
pub struct StateLog {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    producer: Linked<FutureProducer<OAuthContext>>,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// Whether each of this node's records was accepted, until its writer looked.
    outcomes: Arc<Mutex<HashMap<i64, bool>>>,
    writer: String,
    /// The next offset the reader will apply.
    applied: watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    load_timeout: Duration,
    /// How long a write waits for Kafka's acknowledgement.
    write_timeout: Duration,
}

impl StateLog {
    /// Creates the topic when missing, starts the reader and returns once everything written
    /// before the call has been read.
    pub async fn open(kafka: &Kafka, s: StateLogSettings) -> Result<StateLog, StateLogError> {
        let topic = crate::config::InternalTopicConfig {
            topic: s.topic.clone(),
            replication_factor: s.replication_factor,
            retention: Duration::from_millis(s.retention_ms.max(0) as u64),
            init_timeout: s.load_timeout,
            init_retries: s.init_retries,
            retry_interval: s.init_retry_interval,
        };
        kafka
            .ensure_compacted_topic(&topic)
            .await
            .map_err(|reason| StateLogError::Create { topic: s.topic.clone(), reason })?;
        // A write fails within the write timeout when the state partition is unavailable, not
        // after librdkafka's default of 5 minutes while the upgrade waits (L1); a failed removal
        // is retried by the node's sweep.
        let producer = internal_producer(kafka, write_timeout(&s), |c| {
            // Notice Kafka's return within a second (librdkafka backs off up to 10 s), so that
            // leftovers of an outage are freed soon after it.
            c.set("enable.idempotence", "true").set("reconnect.backoff.max.ms", "1000");
        })?;
        let consumer: Linked<BaseConsumer<OAuthContext>> = internal_reader(kafka, &s.group_id, "earliest", |c| {
            follow_closely(c)
                .set("group.instance.id", &s.group_instance_id)
                .set("client.id", reader_client_id(&s.group_instance_id))
                .set("session.timeout.ms", s.session_timeout_ms.to_string())
                // Three heartbeats per session timeout, or a short timeout expires between two.
                .set("heartbeat.interval.ms", (s.session_timeout_ms / 3).max(100).to_string());
        })?;
        consumer.subscribe(&[&s.topic])?;
        let entries = Arc::new(Mutex::new(HashMap::new()));
        let outcomes = Arc::new(Mutex::new(HashMap::new()));
        let (applied_tx, applied) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        // Unique per process: a restarted node must not take its predecessor's records as its own.
        let writer = format!("{}/{}/{}", s.group_instance_id, std::process::id(), unique_suffix());
        let reader = {
            let reader = Reader {
                topic: s.topic.clone(),
                writer: writer.clone(),
                entries: entries.clone(),
                outcomes: outcomes.clone(),
                applied: applied_tx,
                stop: stop.clone(),
            };
            std::thread::Builder::new()
                .name("state-log".into())
                .spawn(move || reader.run(consumer))
                .expect("spawning a thread")
        };
        let log = StateLog {
            inner: Arc::new(Inner {
                topic: s.topic.clone(),
                producer,
                entries,
                outcomes,
                writer,
                applied,
                stop,
                reader: Mutex::new(Some(reader)),
                load_timeout: s.load_timeout,
                write_timeout: write_timeout(&s),
            }),
        };
        log.sync().await?;
        Ok(log)
    }

    /// The accepted record of `key`, if any was ever seen.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.inner.entries.lock().expect("state log map is never poisoned").get(key).cloned()
    }

    /// Every key whose accepted record has a value.
    pub fn values(&self) -> Vec<(String, Arc<[u8]>)> {
        let entries = self.inner.entries.lock().expect("state log map is never poisoned");
        entries.iter().filter_map(|(k, e)| Some((k.clone(), e.value.clone()?))).collect()
    }

    /// Writes `value` (`None`: a tombstone) for `key` if the key's accepted record is still
    /// `based_on` (`None`: the key has none). Returns whether it was accepted, once read back.
    pub async fn write_if(
        &self,
        key: &str,
        value: Option<&[u8]>,
        based_on: Option<i64>,
    ) -> Result<bool, StateLogError> {
        let based_on = based_on.unwrap_or(-1).to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: BASED_ON, value: Some(based_on.as_bytes()) })
            .insert(Header { key: WRITER, value: Some(self.inner.writer.as_bytes()) });
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.inner.topic).key(key).headers(headers);
        if let Some(v) = value {
            record = record.payload(v);
        }
        // librdkafka keeps a message that is in flight past message.timeout.ms until its request
        // fails, so the wait is bounded here too. A record given up on may still land: a join's
        // is then a leftover that the node's sweep removes, a removal's does no harm.
        let timeout = self.inner.write_timeout;
        let delivery = self.inner.producer.send(record, Timeout::After(timeout));
        let offset = match tokio::time::timeout(timeout, delivery).await {
            Ok(Ok(delivered)) => delivered.offset,
            Ok(Err((e, _))) => return Err(StateLogError::Kafka(e)),
            Err(_) => return Err(StateLogError::Unacknowledged { topic: self.inner.topic.clone(), timeout }),
        };
        let waited = self.wait_applied(offset + 1).await;
        let accepted = self.inner.outcomes.lock().expect("outcomes are never poisoned").remove(&offset);
        waited?;
        Ok(accepted.unwrap_or(false))
    }

    /// Returns once every record written before the call has been read.
    pub async fn sync(&self) -> Result<(), StateLogError> {
        // Right after the topic was created its leader may not be known yet: retry until the
        // load timeout instead of failing on the first NotLeaderForPartition.
        let deadline = tokio::time::Instant::now() + self.inner.load_timeout;
        let high = loop {
            let (inner, topic) = (self.inner.clone(), self.inner.topic.clone());
            let answer = tokio::task::spawn_blocking(move || {
                inner.producer.client().fetch_watermarks(&topic, 0, Duration::from_secs(5))
            })
            .await
            .expect("watermark task never panics");
            match answer {
                Ok((_, high)) => break high,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(topic = %self.inner.topic, error = %e, "no watermarks yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        self.wait_applied(high).await
    }

    /// True when the consumer group has members (the node owning it is alive).
    pub async fn group_has_members(&self, group: &str) -> Result<bool, StateLogError> {
        let (inner, group) = (self.inner.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            let list = inner.producer.client().fetch_group_list(Some(&group), Duration::from_secs(5))?;
            Ok::<_, KafkaError>(list.groups().iter().any(|g| g.name() == group && !g.members().is_empty()))
        })
        .await
        .expect("group list task never panics")
        .map_err(StateLogError::from)
    }

    /// [`foreign_members`] through this log's client (no new connection).
    pub async fn foreign_members(&self, group: &str) -> Result<Vec<String>, StateLogError> {
        let (inner, group) = (self.inner.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || {
            not_ours(&inner.producer.client().fetch_group_list(Some(&group), Duration::from_secs(5))?, &group)
        })
        .await
        .expect("group list task never panics")
        .map_err(StateLogError::from)
    }

    /// Stops the reader (its static group membership expires after the session timeout).
    pub async fn close(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let reader = self.inner.reader.lock().expect("reader handle is never poisoned").take();
        if let Some(reader) = reader {
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
    }

    async fn wait_applied(&self, target: i64) -> Result<(), StateLogError> {
        let mut applied = self.inner.applied.clone();
        let timeout = self.inner.load_timeout;
        let reached = tokio::time::timeout(timeout, async { applied.wait_for(|next| *next >= target).await.is_ok() })
            .await
            .unwrap_or(false);
        if reached {
            Ok(())
        } else {
            Err(StateLogError::Timeout { topic: self.inner.topic.clone(), target, timeout })
        }
    }
}

/// The reader thread: applies records in log order until told to stop.
struct Reader {
    topic: String,
    writer: String,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    outcomes: Arc<Mutex<HashMap<i64, bool>>>,
    applied: watch::Sender<i64>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self, consumer: Linked<BaseConsumer<OAuthContext>>) {
        let topic = self.topic.as_str();
        let mut next = 0i64;
        let mut last_warning = std::time::Instant::now() - Duration::from_secs(60);
        while !self.stop.load(Ordering::Acquire) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.offset() < next {
                        continue; // replayed after a rebalance: already applied
                    }
                    self.apply(&m);
                    next = m.offset() + 1;
                    self.applied.send_replace(next);
                }
                Some(Err(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId)))
                | Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::FencedInstanceId))) => {
                    // Sessions now answer 503 (the log stops advancing) until the clash is fixed.
                    tracing::error!(
                        topic,
                        "another running node uses the same WSPROXY_SERVER_ID: server ids must be unique; this node stops reading the session state"
                    );
                    return;
                }
                Some(Err(e)) => {
                    if last_warning.elapsed() > Duration::from_secs(10) {
                        tracing::warn!(topic, error = %e, "reading the session state topic failed; retrying");
                        last_warning = std::time::Instant::now();
                    }
                }
                None => {
                    // Idle: the position may be past compacted gaps and control records.
                    if let Ok(position) = consumer.position() {
                        if let Some(rdkafka::Offset::Offset(p)) =
                            position.find_partition(topic, 0).map(|tp| tp.offset())
                        {
                            if p > next {
                                next = p;
                                self.applied.send_replace(next);
                            }
                        }
                    }
                }
            }
        }
    }

    fn apply(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { return };
        // Read without rdkafka's `Headers` API, whose `unwrap()` on a key that is not UTF-8
        // would panic this thread (M3; every join then answered 503 until restart).
        let headers = crate::kafka::headers::record_headers(m);
        if headers.iter().any(|(k, _)| matches!(k, std::borrow::Cow::Owned(_))) {
            crate::telemetry::metrics::session_state_unreadable_header();
            tracing::warn!(
                offset = m.offset(),
                "a session-state record has a header key that is not UTF-8 (not one of ours)"
            );
        }
        let header = |name: &str| headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| *v);
        let based_on = header(BASED_ON).and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
        let mine = header(WRITER) == Some(self.writer.as_bytes());
        let mut map = self.entries.lock().expect("state log map is never poisoned");
        let accept = apply_record(&mut map, key, m.offset(), based_on, m.payload());
        drop(map);
        if mine {
            self.outcomes.lock().expect("outcomes are never poisoned").insert(m.offset(), accept);
        }
    }
}

/// The `client.id` of the session reader of the node `server_id`.
pub fn reader_client_id(server_id: &str) -> String {
    format!("wsproxy-session-reader-{server_id}")
}

/// The members of `group` that are not this proxy's session readers, as `client id@host`: a
/// Scala node's reader (client id `ws-proxy-session-consumer-<server-id>`) when a Scala and a
/// Rust node were given the same server id. Readers of earlier versions of this proxy kept
/// librdkafka's default client id `rdkafka`, and count as ours.
pub async fn foreign_members(kafka: &Kafka, group: &str) -> Result<Vec<String>, KafkaError> {
    // With OAUTHBEARER the proxy's own token, or the broker refuses the lookup.
    let client: BaseConsumer<OAuthContext> = kafka.inner.base.create_with_context(kafka.oauth_context())?;
    kafka.give_token(client.client())?;
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        not_ours(&client.fetch_group_list(Some(&group), Duration::from_secs(5))?, &group)
    })
    .await
    .expect("group list task never panics")
}

/// Whether a member of a node's group, by its client id, is a session reader of this proxy.
fn is_our_reader(client_id: &str) -> bool {
    client_id == "rdkafka" || client_id.starts_with("wsproxy-session-reader-")
}

fn not_ours(list: &rdkafka::groups::GroupList, group: &str) -> Result<Vec<String>, KafkaError> {
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .filter(|m| !is_our_reader(m.client_id()))
        .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
        .collect())
}

fn write_timeout(s: &StateLogSettings) -> Duration {
    s.load_timeout.min(MAX_WRITE_WAIT)
}

/// The `based-on` offset a change of a key must carry, given the key's accepted record. A
/// tombstone counts as no record (`None`, written as `-1`): compaction removes tombstones, and a
/// node that started after that never saw it, so both must write and accept alike (M2).
pub fn based_on(current: Option<&Entry>) -> Option<i64> {
    current.filter(|e| e.value.is_some()).map(|e| e.offset)
}

/// Applies one record to the map if its `based_on` is still the key's accepted record;
/// returns whether it was accepted. Every node runs this on the same records in the same order
/// (the in-memory log of the sessions' unit tests too).
pub(crate) fn apply_record(
    map: &mut HashMap<String, Entry>,
    key: &str,
    offset: i64,
    based_on: Option<i64>,
    value: Option<&[u8]>,
) -> bool {
    let accept = match (based_on, map.get(key)) {
        (None, _) | (Some(_), None) => true,
        // A tombstone is a missing key: `-1` is accepted as on a node that never saw it (and
        // its own offset, written by nodes from before this rule).
        (Some(b), Some(current)) => b == current.offset || (b == -1 && current.value.is_none()),
    };
    if accept {
        map.insert(key.to_owned(), Entry { offset, value: value.map(Arc::from) });
    }
    accept
}

/// A seam for in-process tests of what runs before a socket joins its session (the HTTP
/// edge, `crate::http::tests`): a log that was never opened, with no reader and nothing
/// loaded. Creating it sends nothing to Kafka; a write would wait for Kafka and fail.
#[cfg(test)]
impl StateLog {
    pub(crate) fn unopened(kafka: &Kafka, topic: &str) -> StateLog {
        let producer = Linked::new(
            kafka.inner.base.create_with_context(kafka.oauth_context()).expect("a producer from the proxy's settings"),
            None,
        )
        .expect("no token to set");
        let (_, applied) = watch::channel(0);
        StateLog {
            inner: Arc::new(Inner {
                topic: topic.to_owned(),
                producer,
                entries: Arc::default(),
                outcomes: Arc::default(),
                writer: "unopened".to_owned(),
                applied,
                stop: Arc::default(),
                reader: Mutex::new(None),
                load_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
            }),
        }
    }
}

/// Start time in nanoseconds: with the pid, tells this process from earlier ones of the node.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes' maps and the records they both read from the log from now on.
    struct Node {
        map: HashMap<String, Entry>,
    }

    impl Node {
        fn apply(&mut self, offset: i64, based_on: Option<i64>, value: Option<&[u8]>) -> bool {
            apply_record(&mut self.map, "g", offset, based_on, value)
        }
        /// The header a writer on this node puts on its change (`write_if` sends `-1` for none).
        fn based_on(&self) -> Option<i64> {
            Some(based_on(self.map.get("g")).unwrap_or(-1))
        }
        fn current(&self) -> Option<(i64, Option<Arc<[u8]>>)> {
            self.map.get("g").map(|e| (e.offset, e.value.clone()))
        }
    }

    /// M2: node A read the tombstone of session `g`; node B started after compaction removed
    /// it and never saw the key. Whichever node writes next, both accept the same records.
    #[test]
    fn m2_a_compacted_tombstone_does_not_split_the_nodes() {
        for first_writer in ["A", "B"] {
            let mut a = Node { map: HashMap::new() };
            a.apply(10, None, Some(b"one"));
            a.apply(11, Some(10), None); // the session closed: a tombstone at 11
            let mut b = Node { map: HashMap::new() }; // 10 and 11 were compacted away
                                                      // Both nodes decide from their own view and race for the key.
            let (from_a, from_b) = (a.based_on(), b.based_on());
            let (first, second) = if first_writer == "A" { (from_a, from_b) } else { (from_b, from_a) };
            for (offset, based_on, value) in [(20, first, b"x".as_slice()), (21, second, b"y".as_slice())] {
                let (in_a, in_b) = (a.apply(offset, based_on, Some(value)), b.apply(offset, based_on, Some(value)));
                assert_eq!(
                    in_a, in_b,
                    "{first_writer} wrote first: record {offset} accepted on A: {in_a}, on B: {in_b}"
                );
            }
            assert_eq!(a.current(), b.current(), "{first_writer} wrote first");
            assert_eq!(a.current().map(|c| c.0), Some(20), "the first write wins, the second lost the race");
            // A later change based on what both nodes now hold is accepted by both.
            let next = a.based_on();
            assert_eq!(next, b.based_on());
            assert!(a.apply(22, next, None) && b.apply(22, next, None));
        }
    }

    /// L1: with Kafka unreachable, a state write (a join's or a removal's) fails within 10 s
    /// with the default load timeout (30 s), instead of librdkafka's default delivery timeout
    /// of 5 minutes, during which the upgrade request hung holding its session's gate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn l1_a_state_write_in_an_outage_fails_within_10_s() {
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        mock.create_topic("state", 1, 1).expect("topic");
        let vars = [("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), mock.bootstrap_servers())].into_iter().collect();
        let config = crate::config::Config::load(&vars, &crate::config::Overrides::default(), true).expect("config");
        let kafka = Kafka::new(&config).expect("clients");
        let load_timeout = Duration::from_secs(30);
        let settings = StateLogSettings {
            topic: "state".to_owned(),
            replication_factor: 1,
            retention_ms: -1,
            group_id: "ws-proxy-session-consumer-l1".to_owned(),
            group_instance_id: "l1".to_owned(),
            session_timeout_ms: 6000,
            load_timeout,
            init_retries: 1,
            init_retry_interval: Duration::from_secs(1),
        };
        let log = StateLog::open(&kafka, settings).await.expect("state log");
        assert!(log.write_if("g", Some(b"joined"), None).await.expect("a write while Kafka is up"));

        mock.broker_down(1).expect("broker down");
        let t0 = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(60), log.write_if("g", None, Some(0))).await;
        let took = t0.elapsed();
        println!("with Kafka down, a state write failed after {took:?} (load timeout {load_timeout:?})");
        assert!(matches!(outcome, Ok(Err(_))), "{outcome:?} after {took:?}");
        assert!(took < Duration::from_secs(10), "the write failed only after {took:?}");
        log.close().await;
    }

    #[test]
    fn a_scala_nodes_reader_is_not_ours() {
        assert!(is_our_reader(&reader_client_id("node-1")));
        assert!(is_our_reader("rdkafka"), "readers of earlier versions kept librdkafka's default");
        assert!(!is_our_reader("ws-proxy-session-consumer-node-1"), "the Scala proxy's reader");
    }

    #[test]
    fn stale_writes_are_refused_and_a_tombstone_is_a_missing_key() {
        let mut a = Node { map: HashMap::new() };
        assert!(a.apply(1, Some(-1), Some(b"one")));
        assert!(!a.apply(2, Some(-1), Some(b"two")), "the key has a value: -1 is stale");
        assert!(a.apply(3, Some(1), None));
        assert_eq!(a.based_on(), Some(-1), "a tombstone is written over like a missing key");
        // A record of an older node based on the tombstone's offset is still accepted.
        let mut old = Node { map: a.map.clone() };
        assert!(old.apply(4, Some(3), Some(b"four")));
        assert!(a.apply(4, Some(-1), Some(b"four")));
    }
}
