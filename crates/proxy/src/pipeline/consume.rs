//! One consume socket's data path: records from the socket's own group member, out at the
//! pace the socket drains; commits in when `autoCommit=false`. A socket reads one topic,
//! several or a pattern: partitions are [`TopicPartition`]s throughout.
//!
//! Backpressure is structural: the next records are taken from the consumer only after the
//! previous wakeup's frames were written, and the consumer's prefetch is capped, so a stalled client
//! costs bounded memory. Offsets are stored (for auto-commit) or stashed (for manual commits)
//! as [`SocketConsumer::store`] says: after the frame carrying the record was flushed.
//!
//! A record is skipped (answered with an error frame in its place, and committed) only when
//! it is bad: it does not decode (`DECODE_ERROR`) or renders larger than a frame the socket
//! can send (`RECORD_TOO_LARGE`). A record the schema registry could not be asked about is
//! not bad: the socket holds it, reads nothing further, and retries with a backoff until the
//! registry answers (code review H1).
//!
//! The socket's [`SocketCodec`] renders records, batches and error frames and reads commits;
//! pings, the idle timeout, bounded writes, the stop and the close are [`Liveness`]'s.
//!
//! A `pull=true` socket sends records only against [`Credit`] the client granted with
//! `{"request":N}`. Without credit it still polls its consumer (rebalances, membership): a
//! record that comes meanwhile is parked and every assigned partition paused, which drops
//! librdkafka's prefetch, so a pull socket that grants nothing holds at most a record per
//! partition assigned since the pause; a held record of a partition revoked since is dropped
//! (Kafka reads it again from the group's offset).
//!
//! A `resumable=true` socket first sends its session frame (its `resumeToken`); when its
//! client drops without a close handshake (or closes with 1001), the consumer is parked
//! instead of closed ([`resume`](crate::pipeline::resume)).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, Stream, StreamExt};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::codec::{Frame, FrameRef};
use wsproxy_protocol::consume::{KafkaRecordView, MessageId};
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::params::TopicSelection;
use wsproxy_protocol::{pull, ErrorCode, FormatType, SocketCodec};

use crate::kafka::{ConsumeError, Record, Records, SocketConsumer, TopicPartition};
use crate::limits::PaceWatch;
use crate::pipeline::close;
use crate::pipeline::commit_stack::CommitStack;
use crate::pipeline::credit::Credit;
use crate::pipeline::liveness::{frame_ref, message, Interrupted, Liveness, Tick};
use crate::pipeline::rate_limit::RateLimit;
use crate::pipeline::resume::Resume;
use crate::schema_registry::{CheckError, SchemaRegistry};
use crate::telemetry::metrics::{self, Direction, SocketIdentity, SocketMetrics};

mod commits;
use commits::{commit_offsets, forget_not_owned, forget_rebalanced, inbound, not_behind};

/// Records taken per wakeup and written with one flush: one per frame, or in array frames of
/// `batchSize` (as many whole frames as fit, at least one).
const MAX_RECORDS_PER_FLUSH: usize = 256;

/// Bytes of records taken per wakeup (also the most an array frame grows to, beyond its
/// first record), so that a large `batchSize` of large records stays within the write buffer.
const MAX_BYTES_PER_FLUSH: usize = 1024 * 1024;

/// First and longest wait before asking the schema registry again about a held record.
const REGISTRY_RETRY_FIRST: Duration = Duration::from_millis(250);
const REGISTRY_RETRY_MAX: Duration = Duration::from_secs(2);

/// Room kept in a frame for the records batched after a large one, and the array around them.
const BATCH_ROOM: usize = MAX_BYTES_PER_FLUSH + 256 * 1024;

/// Settings of one consume socket.
#[derive(Clone)]
pub struct ConsumeSettings {
    /// What the socket reads as the client named it (`a`, `a,b,c` or the pattern), for logs,
    /// metrics and error texts.
    pub topic: String,
    /// The topics the socket reads: a commit naming another one is refused.
    pub topics: TopicSelection,
    /// The socket's frames: JSON text, or (`socketPayload=avro`) binary `AvroConsumerRecord`
    /// frames out and `AvroCommit` in.
    pub codec: SocketCodec,
    /// Checks `avro` keys and values (Confluent wire format, known schema), when configured.
    pub registry: Option<Arc<SchemaRegistry>>,
    /// Records per second and per frame (`batched`) or per wakeup: what the socket asked for,
    /// capped by its group's limits, which may change while it is open.
    pub pace: PaceWatch,
    /// Whether records go out as arrays (`batchSize`), else as single objects.
    pub batched: bool,
    pub auto_commit: bool,
    /// `pull=true`: the most credit the client may hold (`WSPROXY_CONSUMER_MAX_CREDIT`);
    /// `None` for a socket that sends as fast as the client reads.
    pub pull_max_credit: Option<u32>,
    pub commit_stack_max_size: usize,
    /// Commit records of a manual-commit socket once they are this old.
    pub commit_max_age: Option<(Duration, Duration)>,
    pub keep_alive: Duration,
    /// Close a socket that sent nothing (not even a pong) this long, or that took this long
    /// to accept one batch of frames (a client that stopped reading).
    pub idle_timeout: Duration,
    /// The largest frame the socket can send: a record rendering larger (with room for a
    /// batch) gets a `RECORD_TOO_LARGE` error frame in its place.
    pub max_frame_bytes: usize,
    pub identity: SocketIdentity,
    /// Why `shutdown` was cancelled: server shutdown, or a token that is no longer valid.
    pub stop_reason: close::StopReason,
}

/// A rendered record (or record error) and where it came from.
struct Item {
    /// JSON text (records of a JSON socket, and every error frame) or an Avro binary record.
    frame: Frame,
    /// Partition, offset and timestamp.
    position: Option<(TopicPartition, i64, i64)>,
    /// Key and value bytes of the record.
    bytes: u64,
    /// Set when the item is an error frame.
    error: Option<ErrorCode>,
}

/// The socket's topic names, one shared copy each: records name theirs by `&str`, the commit
/// stack and offsets keep a [`TopicPartition`] per record without a copy of the name.
/// The name of the last record's topic is looked up first: records come in runs of one
/// partition.
#[derive(Default)]
struct TopicNames {
    all: HashSet<Arc<str>>,
    last: Option<Arc<str>>,
}

impl TopicNames {
    fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(last) = self.last.as_ref().filter(|last| &***last == topic) {
            return last.clone();
        }
        let name = match self.all.get(topic) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(topic);
                self.all.insert(name.clone());
                name
            }
        };
        self.last = Some(name.clone());
        name
    }
}

/// Runs the socket until the client leaves, Kafka fails for good, or the server shuts down.
/// A resumable socket (`resume`) parks its consumer instead when its client dropped.
pub async fn run<S>(
    socket: S,
    consumer: SocketConsumer,
    settings: ConsumeSettings,
    shutdown: CancellationToken,
    resume: Option<Resume>,
) where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let mut stats = SocketMetrics::open(Direction::Out, &settings.topic, settings.identity.clone());
    // Next offsets per partition: stored (auto-commit) or committed by the client (manual).
    let mut progress: HashMap<TopicPartition, i64> = HashMap::new();
    let mut names = TopicNames::default();
    let mut live = Liveness::new(settings.keep_alive, settings.idle_timeout, shutdown, settings.stop_reason.clone());
    // Whether the client went away without a close handshake (or with 1001): a resumable
    // socket's consumer is parked then.
    let mut dropped = false;
    if let Some(r) = &resume {
        if r.resumed {
            consumer.rewind_to_committed();
        }
        // A failed write shows at the loop's first read or write.
        let _ = live.send_bounded(&mut tx, Message::Text(r.parking.session_frame(&r.token).into())).await;
    }
    // What the client has not committed yet (manual commits); a parked consumer forgets it.
    let mut stack = CommitStack::new(settings.commit_stack_max_size);
    let close_frame = {
        let mut records = consumer.records();
        let mut pace = settings.pace.clone();
        let mut batch_size = pace.current().batch_size;
        let mut limit = RateLimit::new(pace.current().rate, batch_size, std::time::Instant::now());
        let mut expiry = interval(settings.commit_max_age.map_or(Duration::from_secs(3600), |(every, _)| every));
        expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A record the schema registry could not be asked about, and when to ask again; the
        // stream is not read meanwhile (H1). `retry` is the last wait, `None` outside an outage.
        let mut held: Option<(Record<'_>, Instant)> = None;
        let mut retry: Option<Duration> = None;
        // Pull sockets: records the client granted and did not get yet; records taken while
        // it had none, to send first; whether the assignment is paused for want of credit.
        let mut credit = settings.pull_max_credit.map(Credit::new);
        let mut parked: VecDeque<Record<'_>> = VecDeque::new();
        let mut paused = false;

        loop {
            if !parked.is_empty() {
                drop_rewound(&consumer, &mut parked);
            }
            // A wakeup that sends parked records polls nothing before they are out: a poll may
            // run a rebalance that makes them stale.
            let sending_parked = !parked.is_empty() && credit.is_none_or(|c| c.available() > 0);
            let wait = limit.as_mut().map(|l| Instant::from_std(l.next_allowed(std::time::Instant::now())));
            let throttled = wait.is_some_and(|w| w > Instant::now());
            tokio::select! {
                biased;
                frame = live.stopped() => break Some(frame),
                msg = rx.next() => { live.heard(); if let (Some(r), Some(Ok(_))) = (&resume, &msg) { r.heard_from_client() } match msg {
                    None => { dropped = true; break None }
                    Some(Ok(Message::Close(c))) => { dropped = c.is_some_and(|c| c.code == 1001); break None }
                    Some(Err(e)) => { dropped = true; break close::for_read_error(e) }
                    // With autoCommit=true the reference ignores inbound frames.
                    Some(Ok(msg)) => if let Some(frame) = frame_ref(&msg) {
                        let read = (&mut credit, &mut paused);
                        if let Err(e) = inbound(frame, &consumer, &settings, read, &mut stack, &mut progress) {
                            stats.error_frame(e.code.as_str());
                            // Bounded like every write: a client that sends bad commits and
                            // stops reading must not hold the loop (M6).
                            let answer = message(settings.codec.encode_error(&e, None));
                            if live.send_bounded(&mut tx, answer).await.is_err() { dropped = true; break None; }
                        }
                    },
                }},
                tick = live.tick() => {
                    stats.lag(records.lag());
                    match tick {
                        Tick::Idle(frame) => { dropped = true; break Some(frame) }
                        Tick::Ping => if live.ping(&mut tx).await.is_err() { dropped = true; break None; },
                        Tick::Nothing => {}
                    }
                }
                _ = expiry.tick(), if settings.commit_max_age.is_some() && !settings.auto_commit => {
                    let max_age = settings.commit_max_age.map(|(_, age)| age).unwrap_or_default();
                    forget_not_owned(&consumer, &mut stack, &mut progress);
                    let mut due = stack.expired(std::time::Instant::now(), max_age);
                    due.retain(|(partition, next)| not_behind(&progress, partition, *next));
                    progress.extend(due.iter().cloned());
                    commit_offsets(&consumer, &due, "records older than WSPROXY_CH_AUTOCOMMIT_MAX_AGE");
                }
                now = pace.changed() => {
                    batch_size = now.batch_size;
                    limit = RateLimit::new(now.rate, batch_size, std::time::Instant::now());
                }
                // Timers come before the stream so that a busy socket still pings and commits.
                _ = sleep_until(wait.unwrap_or_else(Instant::now)), if throttled => {}
                first = next_record(&mut records, &mut held, &mut parked, credit.is_none_or(|c| c.available() > 0)), if !throttled => {
                    let Some((first, was_held)) = first else { break Some(close::kafka_failure("the consumer stopped")) };
                    // No credit: the record waits for it, and so does every assigned partition
                    // (paused again for partitions assigned since the last pause).
                    if credit.is_some_and(|c| c.available() == 0) {
                        match first {
                            Ok(record) => {
                                // Taken after the rebalances this forgets: not one of theirs.
                                drop_rewound(&consumer, &mut parked);
                                parked.push_back(record);
                                consumer.pause();
                                paused = true;
                            }
                            Err(e) => if let Err(fatal) = e.triage() { break Some(close::kafka_failure(&fatal)); },
                        }
                        continue;
                    }
                    // Records taken per wakeup: as many as are ready, written with a single flush.
                    // Several array frames per wakeup: the wakeup's own cost (the poll, the
                    // flush, the offset stores) is shared by more records.
                    let per_wakeup = if settings.batched {
                        batch_size.max(MAX_RECORDS_PER_FLUSH / batch_size * batch_size)
                    } else {
                        MAX_RECORDS_PER_FLUSH
                    };
                    let max = limit.as_mut().map_or(per_wakeup, |l| l.available(std::time::Instant::now()).clamp(1, per_wakeup));
                    let max = credit.map_or(max, |c| max.min(c.available()));
                    let mut items = Vec::with_capacity(max.min(1024));
                    let mut fatal = None;
                    let mut unchecked = None;
                    match check_registry(&settings, &first).await {
                        // Only a record (never a consumer error) is checked.
                        Err(unavailable) => unchecked = first.ok().map(|m| (m, unavailable)),
                        Ok(invalid) => {
                            if was_held { retry = None; }
                            if let Err(fatal) = render(first, &settings, invalid, &mut names, &mut items) {
                                break Some(close::kafka_failure(&fatal));
                            }
                        }
                    }
                    let mut batch_bytes = items.iter().map(|i| i.frame.len()).sum::<usize>();
                    while unchecked.is_none() && items.len() < max && batch_bytes < MAX_BYTES_PER_FLUSH {
                        let next = match parked.pop_front() {
                            Some(record) => Ok(record),
                            None if sending_parked => break,
                            None => { let Some(next) = records.ready() else { break }; next }
                        };
                        match check_registry(&settings, &next).await {
                            Err(unavailable) => unchecked = next.ok().map(|m| (m, unavailable)),
                            Ok(invalid) => if let Err(e) = render(next, &settings, invalid, &mut names, &mut items) { fatal = Some(e); break; },
                        }
                        batch_bytes += items.last().map_or(0, |i| i.frame.len());
                    }
                    // Not checked is not bad: hold the record (nothing after it is read) and
                    // ask again later. The client hears why once per outage, in an error frame
                    // that names the record but is not committed: the record itself follows.
                    if let Some((record, unavailable)) = unchecked {
                        if retry.is_none() {
                            let frame = settings.codec.encode_error(&unavailable, Some(&record.view(&[])));
                            items.push(Item { frame, position: None, bytes: 0, error: Some(unavailable.code) });
                        }
                        let wait = retry.map_or(REGISTRY_RETRY_FIRST, |w| (w * 2).min(REGISTRY_RETRY_MAX));
                        retry = Some(wait);
                        held = Some((record, Instant::now() + wait));
                    }
                    // Nothing to write (a retry that failed again): the client was not heard from.
                    if items.is_empty() && fatal.is_none() { continue; }
                    if let Some(l) = limit.as_mut() { l.take(items.len()); }
                    if let Some(c) = credit.as_mut() { c.take(items.iter().filter(|i| i.position.is_some()).count()); }
                    // A client that stops reading must not hold up a shutdown; one that stopped
                    // for the idle timeout leaves its records to the group's next member. While
                    // the write waited the client's pongs were not read: a client that takes
                    // frames is alive.
                    let frames = frames_of(&mut items, settings.codec, settings.batched.then_some(batch_size));
                    match live.send_all(&mut tx, frames.into_iter().map(message)).await {
                        Ok(()) => {}
                        Err(Interrupted::Stalled) => { dropped = true; break None }
                        Err(Interrupted::Stopped(frame)) => break Some(frame),
                    }
                    let (mut sent, mut sent_bytes) = (0, 0);
                    for item in &items {
                        match item.error {
                            None => (sent, sent_bytes) = (sent + 1, sent_bytes + item.bytes),
                            Some(code) => stats.error_frame(code.as_str()),
                        }
                    }
                    stats.records(sent, sent_bytes);
                    let now = std::time::Instant::now();
                    let revoked = forget_rebalanced(&consumer, &mut stack, &mut progress);
                    // Taken before a revoke: the partition's next owner delivers it again.
                    let taken = items.iter().filter_map(|i| i.position.as_ref()).filter(|(p, ..)| !revoked.contains(p));
                    if settings.auto_commit {
                        // Only the last offset of each partition matters: one store each.
                        for (partition, offset) in last_offsets(taken) {
                            // Fails only for partitions revoked meanwhile; the next owner reads them.
                            if consumer.store(partition, offset) {
                                progress.insert(partition.clone(), offset + 1);
                            }
                        }
                    } else {
                        for (partition, offset, timestamp) in taken {
                            stack.stash(partition.clone(), *offset, *timestamp, now);
                        }
                    }
                    if let Some(reason) = fatal { break Some(close::kafka_failure(&reason)); }
                }
            }
        }
    };
    // The close handshake first, bounded so that a client that stopped reading cannot hold
    // it; then a synchronous commit of what the client got (auto) or committed (manual), so
    // that nothing is lost to an in-flight async commit, and leave the group. Closing a
    // consumer in the middle of a group join can block for long: that part is bounded too.
    let frame = close_frame.unwrap_or(CloseFrame { code: 1000, reason: "".into() });
    stats.closing(frame.code);
    drop(stats);
    // A dropped resumable socket parks its consumer before the close handshake, which waits
    // for a client that may be gone (a reconnect that took the socket over waits for it).
    let mut resume = resume;
    if let Some(r) = resume.as_mut().filter(|r| dropped || r.taken_over()) {
        park(consumer, &mut stack, progress, r);
        live.close(&mut tx, &mut rx, Some(frame)).await;
        return;
    }
    live.close(&mut tx, &mut rx, Some(frame)).await;
    // The connection ends now, not after the consumer's close below.
    drop((tx, rx));
    // A reconnect of the same client waits for the slot instead of being refused.
    let session = resume.as_mut().and_then(|r| r.session.take()).map(|mut s| {
        s.closing();
        s
    });
    consumer.close(progress).await;
    drop(session);
}

/// Parks the consumer of a resumable socket whose client dropped: what the client got
/// (auto) or committed (manual) is committed first, for the partitions still owned, so that a
/// resume (which reads from the committed offsets) does not send it again.
fn park(
    consumer: SocketConsumer,
    stack: &mut CommitStack<TopicPartition>,
    mut progress: HashMap<TopicPartition, i64>,
    r: &mut Resume,
) {
    forget_not_owned(&consumer, stack, &mut progress);
    commit_offsets(
        &consumer,
        &progress.into_iter().collect::<Vec<_>>(),
        "what a dropped resumable socket's client got (auto) or committed (manual)",
    );
    r.parking.clone().park(r, consumer);
}

/// Drops the records a pull socket holds for credit from partitions revoked since it took
/// them: Kafka reads a partition assigned again from the group's offset, so they would go out
/// again, and before older records. Every record is parked right after a call, so what the
/// call forgets was revoked after the records it drops were taken.
fn drop_rewound(consumer: &SocketConsumer, parked: &mut VecDeque<Record<'_>>) {
    let rewound = consumer.take_rewound();
    if !rewound.is_empty() {
        parked.retain(|r| {
            let v = r.view(&[]);
            !rewound.iter().any(|(topic, partition)| **topic == *v.topic && *partition == v.partition)
        });
    }
}

/// The frames of one wakeup's items, in order: one per item, or (`batch_size`) arrays of at
/// most `batch_size` items each, as [`SocketCodec::encode_batch`] joins them (on an Avro
/// socket a batch's error frames follow its records; a batch of errors only is a JSON array).
fn frames_of(items: &mut [Item], codec: SocketCodec, batch_size: Option<usize>) -> Vec<Frame> {
    let take = |items: &mut [Item]| items.iter_mut().map(|i| std::mem::take(&mut i.frame)).collect::<Vec<_>>();
    match batch_size {
        None => take(items),
        Some(n) => items.chunks_mut(n.max(1)).flat_map(|batch| codec.encode_batch(take(batch))).collect(),
    }
}

/// The highest offset taken from each partition, in the order partitions first appear
/// (records of one partition come in offset order; a batch rarely spans many partitions).
fn last_offsets<'a>(taken: impl Iterator<Item = &'a (TopicPartition, i64, i64)>) -> Vec<(&'a TopicPartition, i64)> {
    let mut last: Vec<(&TopicPartition, i64)> = Vec::new();
    for (partition, offset, _) in taken {
        match last.iter_mut().find(|(p, _)| *p == partition) {
            Some(entry) => entry.1 = entry.1.max(*offset),
            None => last.push((partition, *offset)),
        }
    }
    last
}

/// Renders one polled result into `items`; `Err` is a failure that ends the socket.
fn render(
    polled: Result<Record<'_>, ConsumeError>,
    settings: &ConsumeSettings,
    invalid: Option<FrameError>,
    names: &mut TopicNames,
    items: &mut Vec<Item>,
) -> Result<(), String> {
    let record = match polled {
        Ok(record) => record,
        Err(e) => return e.triage(),
    };
    record.with_view(|view| render_view(view, settings, invalid, names, items));
    Ok(())
}

/// Renders one record (with its headers) into `items`: its frame, or the error frame in its place.
fn render_view(
    view: &KafkaRecordView<'_>,
    settings: &ConsumeSettings,
    invalid: Option<FrameError>,
    names: &mut TopicNames,
    items: &mut Vec<Item>,
) {
    let rendered = if let Some(e) = invalid { Err(e) } else { settings.codec.encode_record(view) };
    // A frame the socket could not send would end it, and the record would come first
    // again on every reconnect: answer it like a record that does not decode (M7).
    let limit = settings.max_frame_bytes.saturating_sub(BATCH_ROOM);
    let rendered = rendered.and_then(|frame| {
        if frame.len() <= limit {
            return Ok(frame);
        }
        metrics::consumed_record_too_large();
        tracing::warn!(
            topic = view.topic,
            partition = view.partition,
            offset = view.offset,
            frame_bytes = frame.len(),
            limit,
            "a consumed record renders larger than a socket can send; it gets RECORD_TOO_LARGE and is skipped"
        );
        Err(FrameError::record_too_large(view.name(), frame.len(), limit))
    });
    let (frame, error) = match rendered {
        Ok(frame) => (frame, None),
        Err(e) => (settings.codec.encode_error(&e, Some(view)), Some(e.code)),
    };
    let bytes = (view.key.map_or(0, <[u8]>::len) + view.value.map_or(0, <[u8]>::len)) as u64;
    let partition = (names.get(view.topic), view.partition);
    items.push(Item { frame, position: Some((partition, view.offset, view.timestamp)), bytes, error });
}

/// With a schema registry, `avro` keys and values must be Confluent-framed Avro of a schema
/// the registry knows: `Ok(Some(..))` is the error frame that takes the record's place when
/// they are not; `Err` says the registry could not be asked (the record must wait, H1).
async fn check_registry(
    settings: &ConsumeSettings,
    polled: &Result<Record<'_>, ConsumeError>,
) -> Result<Option<FrameError>, FrameError> {
    let (Some(registry), Ok(record)) = (&settings.registry, polled) else { return Ok(None) };
    let m = record.view(&[]);
    let checks = [
        (settings.codec.key_type() == Some(FormatType::Avro), m.key, "key"),
        (settings.codec.val_type() == FormatType::Avro, m.value, "value"),
    ];
    for (applies, bytes, field) in checks {
        let (true, Some(bytes)) = (applies, bytes) else { continue };
        let (code, why) = match registry.check(bytes).await {
            Ok(_) => continue,
            Err(CheckError::Invalid(why)) => {
                (ErrorCode::DecodeError, format!("is not Avro the schema registry knows: {why}"))
            }
            Err(CheckError::Unavailable(why)) => (
                ErrorCode::SchemaRegistryUnavailable,
                format!(
                    "could not be checked: {why}. Delivery waits for the schema registry and goes on with this record; nothing is skipped"
                ),
            ),
        };
        let e = FrameError::new(code, format!("the {field} of {} {why}", m.name()));
        return if code == ErrorCode::SchemaRegistryUnavailable { Err(e) } else { Ok(Some(e)) };
    }
    Ok(None)
}

/// The next record: the held one once its retry is due (`true`), else a parked one (when the
/// socket may send), else the stream's next.
async fn next_record<'a>(
    records: &mut Records<'a>,
    held: &mut Option<(Record<'a>, Instant)>,
    parked: &mut VecDeque<Record<'a>>,
    may_send: bool,
) -> Option<(Result<Record<'a>, ConsumeError>, bool)> {
    if let Some((_, at)) = held {
        sleep_until(*at).await;
        // Nothing awaits after the take: a cancelled wait keeps the record held.
        return held.take().map(|(m, _)| (Ok(m), true));
    }
    if may_send {
        if let Some(record) = parked.pop_front() {
            return Some((Ok(record), false));
        }
    }
    records.next().await.map(|m| (m, false))
}

#[cfg(test)]
#[path = "consume_tests.rs"]
mod tests;
