//! The consumer port: each consume socket gets a group member of its own, a
//! [`SocketConsumer`], through which the socket's loop reads [`Record`]s, learns its
//! assignment, stores and commits offsets and finally leaves the group, without naming
//! rdkafka. The produce side's [`ProducerHandle`](crate::kafka::ProducerHandle) is the model.
//!
//! The rule that makes delivery at-least-once without handing Kafka what the client never got
//! is [`SocketConsumer::store`]'s: the offset of a record is stored only after the frame
//! carrying it was flushed to the socket.
//!
//! A socket reads one topic, several (`topic=a,b,c`) or a pattern (`topicPattern`): partitions
//! are named by [`TopicPartition`] throughout.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use wsproxy_protocol::params::{ConsumerParams, TopicSelection};

use crate::kafka::client::{self, probe_credentials, probe_topic, AuthFailure, ClientError, ProbeError};
use crate::kafka::closer::{self, ClientKind, OffRuntime};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::oauth_admin::Linked;
use crate::kafka::{start_offsets, watermarks, Kafka};
use crate::telemetry::metrics;

/// A partition of one of the socket's topics. The name is shared: a socket keeps one copy of
/// each of its topics' names, not one per record.
pub type TopicPartition = (Arc<str>, i32);

/// A consume socket's context: keeps the assignment and what was revoked or lost, and tells the
/// socket's [`Records`] when librdkafka gave up fetching the committed offsets.
pub struct SocketConsumerContext {
    auth: AuthFailure,
    /// Partitions revoked and not assigned back, and those lost since the socket last took
    /// them (code review L4). A consumer is only ever assigned partitions of its subscription.
    revoked: Mutex<Revoked>,
    /// The partitions assigned to this consumer, kept by the rebalance callback so that
    /// reading them is no op round trip to librdkafka's main thread (L3).
    assigned: Mutex<HashSet<TopicPartition>>,
    /// Told when librdkafka gave up fetching the group's committed offsets for the assignment
    /// (see [`Records::next`]).
    refetch: Notify,
}

#[derive(Default)]
struct Revoked {
    pending: Vec<TopicPartition>,
    lost: Vec<TopicPartition>,
    /// Every partition revoked since [`SocketConsumerContext::take_rewound`] last took them,
    /// assigned back or not (one entry each: bounded by the partitions).
    rewound: HashSet<TopicPartition>,
}

/// The partitions of a rebalance's list.
fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect()
}

impl SocketConsumerContext {
    /// The partitions this consumer owns now.
    pub fn assigned(&self) -> HashSet<TopicPartition> {
        self.assigned.lock().expect("assignment is never poisoned").clone()
    }

    /// Partitions lost since the last call (revoked, and not in the assignment that followed;
    /// with `closing`, also those revoked and not assigned yet). The socket must forget what
    /// it would commit there, even if they come back later: another member may have
    /// committed further meanwhile.
    pub fn take_lost(&self, closing: bool) -> Vec<TopicPartition> {
        let mut r = self.revoked.lock().expect("revoked list is never poisoned");
        let mut lost = std::mem::take(&mut r.lost);
        if closing {
            lost.append(&mut r.pending);
        }
        lost
    }

    /// Partitions revoked since the last call, even those assigned back at once: Kafka reads
    /// a partition assigned again from the group's committed offset, so records taken from it
    /// before and not sent yet would go out of order (and again).
    pub fn take_rewound(&self) -> HashSet<TopicPartition> {
        std::mem::take(&mut self.revoked.lock().expect("revoked list is never poisoned").rewound)
    }
}

impl ClientContext for SocketConsumerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.observe(&error);
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        if gave_up_offset_fetch(reason) {
            self.refetch.notify_one();
        }
    }
}

impl ConsumerContext for SocketConsumerContext {
    // Runs on the socket's task, inside its poll of the stream.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mine = partitions;
        let mut r = self.revoked.lock().expect("revoked list is never poisoned");
        if let Rebalance::Revoke(tpl) = rebalance {
            r.rewound.extend(mine(tpl));
        }
        match rebalance {
            // A lost assignment (session timeout, max.poll.interval.ms) may come back in the
            // next assignment after another member owned it and committed further meanwhile
            // (a flag read in librdkafka, no op round trip).
            Rebalance::Revoke(tpl) if consumer.assignment_lost() => r.lost.extend(mine(tpl)),
            Rebalance::Revoke(tpl) => r.pending.extend(mine(tpl)),
            // Kept through the rebalance when assigned back at once (no one else had it).
            Rebalance::Assign(tpl) => {
                let back = mine(tpl);
                let (_, lost): (Vec<_>, Vec<_>) = r.pending.drain(..).partition(|p| back.contains(p));
                r.lost.extend(lost);
            }
            Rebalance::Error(_) => {}
        }
    }

    /// Eager rebalances revoke everything, then assign everything; cooperative ones revoke and
    /// assign increments: removing what is revoked and adding what is assigned fits both.
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assignment is never poisoned");
        let ours = partitions;
        match rebalance {
            Rebalance::Assign(tpl) => assigned.extend(ours(tpl)),
            Rebalance::Revoke(tpl) => {
                for p in &ours(tpl) {
                    assigned.remove(p);
                }
            }
            // rdkafka's default handler unassigns everything after a rebalance error.
            Rebalance::Error(_) => assigned.clear(),
        }
    }

    // Manual commits are asynchronous: a refusal arrives here, after the client was answered.
    // Its records come again (duplicates, never loss); the operator sees it.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Err(e) if e.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) => {
                metrics::consumer_commit_failed();
                tracing::warn!(error = %e, "Kafka refused a consumer commit; the records after the group's last commit will be delivered again");
            }
            _ => {}
        }
    }
}

impl Drop for SocketConsumerContext {
    fn drop(&mut self) {
        closer::context_dropped(ClientKind::Consumer);
    }
}

/// The rdkafka client behind a [`SocketConsumer`]; destroyed off the runtime whatever drops it.
type GroupMember = OffRuntime<Linked<StreamConsumer<SocketConsumerContext>>>;

/// How long librdkafka waits before it looks again at a consumer's full prefetch queue (see
/// the consumer's settings in [`Kafka::consumer`]).
const FETCH_QUEUE_BACKOFF_MS: &str = "2";

/// How long a socket waits for its consumer's final commit and group leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The consumer of one consume socket: a member of the socket's group, subscribed to its
/// topics (or pattern).
pub struct SocketConsumer {
    member: GroupMember,
}

/// The records of a [`SocketConsumer`], in the order Kafka delivers them. Records borrow the
/// consumer: taking one costs no copy of its key, value or headers.
pub struct Records<'c> {
    stream: MessageStream<'c, SocketConsumerContext>,
    member: &'c GroupMember,
    /// When to assign the partitions again after a failed committed-offset fetch.
    refetch_at: Option<Instant>,
    /// The next offset per partition after the last record taken (for [`Records::lag`]).
    taken: Vec<(TopicPartition, i64)>,
}

/// One consumed record, borrowed from its consumer.
pub struct Record<'c>(pub(super) BorrowedMessage<'c>);

/// Why the consumer gave an error in place of a record.
#[derive(Debug)]
pub struct ConsumeError(pub(super) KafkaError);

impl SocketConsumer {
    /// The records of the socket's topics, as they come. Create it once per socket.
    pub fn records(&self) -> Records<'_> {
        Records { stream: self.member.stream(), member: &self.member, refetch_at: None, taken: Vec::new() }
    }

    /// The partitions this consumer owns now (kept by its rebalance callback: no round trip
    /// to librdkafka's main thread on the runtime).
    pub fn assigned(&self) -> HashSet<TopicPartition> {
        self.member.context().assigned()
    }

    /// Partitions lost in a rebalance since the last call (see
    /// [`SocketConsumerContext::take_lost`]): what the socket would commit there must go.
    pub fn take_lost(&self) -> Vec<TopicPartition> {
        self.member.context().take_lost(false)
    }

    /// Partitions revoked since the last call, assigned back or not (see
    /// [`SocketConsumerContext::take_rewound`]): records taken from them and not sent must go.
    pub fn take_rewound(&self) -> HashSet<TopicPartition> {
        self.member.context().take_rewound()
    }

    /// Stores the offset of the record at `offset` of `tp`, for the group's next
    /// automatic commit (`autoCommit=true`).
    ///
    /// **Call it only after the frame carrying the record was flushed to the socket.** The
    /// consumer is made with `enable.auto.offset.store=false`, so nothing else stores: even
    /// with auto-commit Kafka never commits a record the client did not get, and a record
    /// taken but not written is delivered again (to the next member, or on reconnect). Manual
    /// commits (`autoCommit=false`) follow the same rule: the loop stashes a record for the
    /// client's commit only once it was flushed. Returns `false` when the partition was
    /// revoked meanwhile (its next owner reads the record).
    pub fn store(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.member.store_offset(&tp.0, tp.1, offset).is_ok()
    }

    /// Stops fetching every assigned partition (a `pull=true` socket without credit):
    /// librdkafka drops what it prefetched for them and, on [`resume`](Self::resume), fetches
    /// again from the record after the last one the socket took. The consumer keeps polling
    /// (rebalances, group membership) meanwhile.
    pub fn pause(&self) {
        self.pause_or_resume(true);
    }

    /// Fetches every assigned partition again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.pause_or_resume(false);
    }

    /// A parked consumer re-attached to a new socket (`resumeToken`): every assigned partition
    /// is read again from the group's committed offset (what the previous socket sent and
    /// the client did not commit comes again), unpaused. No rebalance: the group never hears.
    pub fn rewind_to_committed(&self) {
        if let Err(e) = reassign(&self.member) {
            tracing::warn!(error = %e, "a resumed consumer could not be rewound to its committed offsets");
        }
        self.resume();
    }

    fn pause_or_resume(&self, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in self.assigned() {
            tpl.add_partition(&topic, partition);
        }
        if tpl.count() == 0 {
            return;
        }
        let done = if pause { self.member.pause(&tpl) } else { self.member.resume(&tpl) };
        if let Err(e) = done {
            tracing::warn!(error = %e, pause, "pausing or resuming the partitions of a pull socket failed");
        }
    }

    /// Commits the next offsets to read (`(partition, offset)`) asynchronously: a refusal that
    /// arrives later is counted and logged by the consumer's context.
    pub fn commit(&self, offsets: &[(TopicPartition, i64)]) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
        }
        Ok(self.member.commit(&tpl, CommitMode::Async)?)
    }

    /// Commits `progress` (next offsets per partition) synchronously for the partitions still
    /// assigned, so that nothing is lost to an in-flight async commit, then leaves the group;
    /// waits at most [`CLOSE_TIMEOUT`] for that, after which it goes on in the background.
    pub async fn close(self, progress: HashMap<TopicPartition, i64>) {
        let closing = tokio::task::spawn_blocking(move || self.final_commit(&progress));
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!(
                "the consumer did not close within {CLOSE_TIMEOUT:?}; leaving it to finish in the background"
            );
        }
    }

    /// Blocking: [`close`](Self::close) runs it on the blocking pool.
    fn final_commit(self, progress: &HashMap<TopicPartition, i64>) {
        let consumer = self.member;
        let owned = consumer.assignment().unwrap_or_default();
        let revoked = consumer.context().take_lost(true);
        let mut tpl = TopicPartitionList::new();
        for (tp, o) in progress {
            if owned.find_partition(&tp.0, tp.1).is_some() && !revoked.contains(tp) {
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*o));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed; uncommitted records will be delivered again");
            }
        }
        // Dropping leaves the group, then destroys the librdkafka handle, which for a group
        // consumer can block forever (rust-rdkafka issue 509; see "Known issue" in the README).
        // The consumer's guard hands it to a thread of its own (`kafka::closer`), so that a stuck
        // destroy never holds one of tokio's blocking threads: after 512 of them every later
        // socket's final commit would wait forever.
        drop(consumer);
    }
}

impl<'c> Records<'c> {
    /// The next record or consumer error; `None` once the consumer stopped (it never does
    /// while it lives). Cancel-safe: a record is only taken when the future completes.
    ///
    /// Also repairs librdkafka issue 5586 (open in 2.12): when the group coordinator answers
    /// the fetch of the committed offsets of a new assignment with a request-level error
    /// (`NOT_COORDINATOR` after a broker pause or a coordinator move), librdkafka reports
    /// "Failed to fetch committed offsets" once and never fetches again: the partitions stay
    /// assigned to this member and silent for good. [`REFETCH_AFTER`] later the consumer is
    /// assigned its partitions again, which fetches the committed offsets anew.
    pub async fn next(&mut self) -> Option<Result<Record<'c>, ConsumeError>> {
        let Records { stream, member, refetch_at, taken, .. } = self;
        loop {
            let due = async {
                match *refetch_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = stream.next() => return m.map(|m| took(taken, m)),
                () = member.context().refetch.notified(), if refetch_at.is_none() => {
                    *refetch_at = Some(Instant::now() + REFETCH_AFTER);
                }
                () = due => {
                    *refetch_at = None;
                    assign_again(member);
                }
            }
        }
    }

    /// The next record or consumer error if one is ready now, without waiting: the rest of a
    /// wakeup's records, after [`next`](Self::next) waited for the first. Cheaper than `next`
    /// (no `select!`, no notification to register), which still looks after the refetch.
    pub fn ready(&mut self) -> Option<Result<Record<'c>, ConsumeError>> {
        let m = self.stream.next().now_or_never()??;
        Some(took(&mut self.taken, m))
    }
}

/// Notes where a record taken from the stream leaves its partition (for [`Records::lag`]).
fn took<'c>(
    taken: &mut Vec<(TopicPartition, i64)>,
    m: Result<BorrowedMessage<'c>, KafkaError>,
) -> Result<Record<'c>, ConsumeError> {
    if let Ok(m) = &m {
        // No copy of the topic's name but for a partition's first record.
        match taken.iter_mut().find(|((t, p), _)| *p == m.partition() && **t == *m.topic()) {
            Some((_, next)) => *next = m.offset() + 1,
            None => taken.push(((Arc::from(m.topic()), m.partition()), m.offset() + 1)),
        }
    }
    m.map(Record).map_err(ConsumeError)
}

impl Records<'_> {
    /// How many records of the partitions this consumer owns and has read from are behind the
    /// last one taken: the end of each partition as the consumer last heard it (no round trip)
    /// minus the next offset to take. Partitions not read from yet do not count.
    pub fn lag(&mut self) -> i64 {
        let assigned = self.member.context().assigned();
        self.taken.retain(|(p, _)| assigned.contains(p));
        self.taken
            .iter()
            .filter_map(|(p, next)| {
                let end = watermarks::cached_end(self.member.client(), &p.0, p.1)?;
                Some((end - next).max(0))
            })
            .sum()
    }
}

/// Serves the events waiting on a group consumer's queue. A consumer with a `group.id` gets
/// librdkafka's errors (refused credentials among them) on its own queue, and nothing polls
/// that queue before it subscribes: without this a socket whose `X-Kafka-Auth` Kafka refuses
/// waited out the probe and got 503 "Kafka is not reachable" instead of 401. Serving the queue
/// runs the error callback (which notes the refusal); an error handed back as an event is
/// noted here too. Before the subscription the queue holds no records, so none is taken.
pub(super) fn observe_queued_errors<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>, auth: &AuthFailure) {
    let mut queued = consumer.stream();
    while let Some(Some(event)) = queued.next().now_or_never() {
        if let Err(e) = event {
            auth.observe(&e);
        }
    }
}

/// How long after a failed committed-offset fetch the partitions are assigned again: time for
/// librdkafka to find the group coordinator anew (it asks at once).
const REFETCH_AFTER: Duration = Duration::from_secs(1);

/// Whether a consumer error's text is librdkafka giving up the committed-offset fetch of the
/// assignment (`rdkafka_assignment.c`, both of its texts).
fn gave_up_offset_fetch(reason: &str) -> bool {
    reason.starts_with("Failed to fetch committed offsets")
}

/// Assigns the consumer its current partitions again after librdkafka gave up fetching their
/// committed offsets (see [`reassign`]).
fn assign_again(member: &GroupMember) {
    match reassign(member) {
        Ok(0) => {}
        Ok(partitions) => {
            metrics::consumer_offsets_fetched_again();
            tracing::warn!(
                partitions,
                "librdkafka gave up fetching the group's committed offsets; the partitions were assigned again (librdkafka issue 5586)"
            );
        }
        Err(e) => tracing::warn!(error = %e, "assigning the partitions again after a failed offset fetch failed"),
    }
}

/// Assigns the consumer its current partitions again (an eager group allows `assign` at any
/// time, and no other member hears of it): librdkafka stops them and fetches their committed
/// offsets anew. Records sent after the last commit come again (at least once). Nothing to do
/// while a rebalance is under way: its assignment fetches the offsets anyway. Two short round
/// trips to librdkafka's main thread; returns how many partitions were assigned again.
fn reassign(member: &GroupMember) -> Result<usize, KafkaError> {
    if member.assignment_lost() {
        return Ok(0);
    }
    let current = member.assignment()?;
    if current.count() == 0 {
        return Ok(0);
    }
    let mut again = TopicPartitionList::new();
    for e in current.elements() {
        again.add_partition(e.topic(), e.partition());
    }
    member.assign(&again)?;
    Ok(again.count())
}

/// Why a consume socket got no consumer.
#[derive(Debug)]
pub enum ConsumerError {
    /// The socket's own credentials were refused, or may not read the topic.
    Refused(ProbeError),
    /// librdkafka could not create or subscribe the consumer.
    Kafka(ClientError),
}

impl ConsumerError {
    /// The probe's error when the socket's own credentials were refused or may not read the
    /// topic; `None` when the client itself failed.
    fn refusal(&self) -> Option<&ProbeError> {
        match self {
            ConsumerError::Refused(e) => Some(e),
            ConsumerError::Kafka(_) => None,
        }
    }
}

impl From<KafkaError> for ConsumerError {
    fn from(e: KafkaError) -> Self {
        ConsumerError::Kafka(e.into())
    }
}

impl Kafka {
    /// Remembers whether the broker refused the socket's own credentials (none: nothing to
    /// remember) when it made a consumer, a socket's or a shared one.
    pub(super) fn remember_consumer<T>(&self, creds: Option<&KafkaCredentials>, made: &Result<T, ConsumerError>) {
        if let Some(c) = creds {
            self.remember(c, made.as_ref().err().and_then(ConsumerError::refusal));
        }
    }

    /// A consumer for one socket, subscribed to its topics or pattern. A socket with its own
    /// credentials gets 401/403 for each listed topic it may not read, before the upgrade.
    pub async fn consumer(
        &self,
        params: &ConsumerParams,
        creds: Option<&KafkaCredentials>,
    ) -> Result<SocketConsumer, ConsumerError> {
        let mut cfg = self.client_config(creds);
        cfg.set("group.id", &params.group_id)
            .set("client.id", &params.client_id)
            // Only `SocketConsumer::store` stores offsets (its rule: after the flush).
            .set("enable.auto.commit", if params.auto_commit { "true" } else { "false" })
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", params.offset_reset.as_kafka())
            .set("isolation.level", params.isolation.as_kafka())
            .set("allow.auto.create.topics", "false")
            .set("session.timeout.ms", self.inner.consumer_session_timeout_ms.to_string())
            // Bounded prefetch. librdkafka fetches only while the queue holds less than this,
            // and once it holds more looks again after fetch.queue.backoff.ms (1 s by default,
            // which capped a socket at ~30k records/s). The queue must outlast that wait and
            // the next fetch's round trip at the rate a fast socket drains it: with 256 KiB
            // and 10 ms a socket sending 500k records/s of 100 B waited for records 13 to 23 %
            // of the time; with 512 KiB and 2 ms, 2 to 4 % (as with 1 MiB and 10 ms). The
            // cost, measured with 20 consumers that stopped reading: 4.6 MiB and 0.5 to 0.6 %
            // of a core each, against 3.6 MiB and 0.4 % with 256 KiB and 10 ms (the extra CPU
            // is the look every 2 ms); 1 MiB and 10 ms held 6.5 MiB each. (The shared fan-out
            // consumer keeps 10 ms: one per topic, not per socket.)
            .set("queued.max.messages.kbytes", self.inner.consumer_queued_max_kbytes.to_string())
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "262144");
        // No statistics: with them on, librdkafka keeps four latency histograms per broker
        // connection (~120 KiB per connection, three connections per consumer); the lag comes
        // from `Records::lag` instead. Idle consume socket: 384 KiB with, 245 KiB without.
        for (k, v) in &self.inner.consumer_properties {
            cfg.set(*k, v);
        }
        if matches!(params.topics, TopicSelection::Pattern(_)) {
            // New matching topics are found by the metadata refresh; internal topics are
            // hidden from the consumer as if they did not exist.
            cfg.set("topic.metadata.refresh.interval.ms", self.inner.consumer_metadata_refresh_ms.to_string())
                .set("topic.blacklist", client::internal_topics_blacklist(&self.inner.internal_topics));
        }
        // Before any client is made for them (fromTimestamp's helper included).
        if let Some(c) = creds {
            self.refused_recently(c).map_err(ConsumerError::Refused)?;
        }
        if let (Some(ts), TopicSelection::Listed(topics)) = (params.from_timestamp, &params.topics) {
            let cfg = cfg.clone();
            let (topics, ts, token) = (topics.clone(), ts, self.token_for(creds));
            tokio::task::spawn_blocking(move || {
                topics.iter().try_for_each(|topic| start_offsets::start_group_at(&cfg, topic, ts, token.clone()))
            })
            .await
            .expect("start-offset task never panics")?;
        }
        let token = self.token_for(creds);
        let context = SocketConsumerContext {
            auth: AuthFailure::default(),
            revoked: Mutex::new(Revoked::default()),
            assigned: Mutex::new(Default::default()),
            refetch: Notify::new(),
        };
        let (topics, probe) = (params.topics.clone(), creds.is_some());
        // Created, probed and subscribed on the blocking pool, and guarded from the start: on
        // any early return (refused credentials, a failed upgrade, a panic) the consumer is
        // destroyed off the runtime.
        let made = tokio::task::spawn_blocking(move || {
            // With its token (and the next ones) from the start: see `oauth_admin`.
            let linked = Linked::new(cfg.create_with_context(context)?, token.as_ref())?;
            let consumer: GroupMember = OffRuntime::new(linked, ClientKind::Consumer);
            // A socket with its own credentials: check them (and its topics' ACLs) before the upgrade.
            let auth = &consumer.context().auth;
            let serve = &|| observe_queued_errors(&consumer, auth);
            let subscription: Vec<&str> = match &topics {
                TopicSelection::Listed(topics) => {
                    if probe {
                        for topic in topics {
                            probe_topic(consumer.client(), topic, auth, serve).map_err(ConsumerError::Refused)?;
                        }
                    }
                    topics.iter().map(String::as_str).collect()
                }
                TopicSelection::Pattern(pattern) => {
                    if probe {
                        probe_credentials(consumer.client(), auth, serve).map_err(ConsumerError::Refused)?;
                    }
                    vec![pattern.as_str()]
                }
            };
            consumer.subscribe(&subscription)?;
            Ok::<_, ConsumerError>(SocketConsumer { member: consumer })
        })
        .await
        .expect("consumer creation never panics");
        self.remember_consumer(creds, &made);
        made
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
