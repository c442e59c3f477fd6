//! The shared consumers of fan-out sockets and who reads them: [`Hubs`] (one per node) keeps
//! one [`Hub`] per (topic, Kafka credentials, isolation level); each hub has one reader task
//! that takes records from its [`SharedConsumer`], renders each once per socket format in use
//! (`socketPayload`, `keyType`, `valType`) and appends the shared frames to its broadcast
//! [`Log`]. Sockets hold a [`Subscription`]: a cursor in the log and a wakeup when it grows.
//! The reader appends no further than the fastest socket can still find in the log, and waits
//! for that socket's next read otherwise ([`Hub::room`]).
//!
//! Lifecycle: the first subscription creates the hub (its consumer is made and assigned at the
//! live end before the socket's 101); the reader retires the hub once it had no subscription
//! for `WSPROXY_FANOUT_CONSUMER_LINGER`, and its consumer is then destroyed off the runtime
//! (`kafka::closer`). A reconnect within the linger reuses the consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::Message;
use tokio::sync::{watch, Notify, OnceCell};
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::{ErrorCode, SocketCodec};

use super::log::{Behind, Cursor, GapRange, Log, Slot};
use crate::config::{Config, FanOutConfig};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::{ConsumerError, Kafka};
use crate::telemetry::metrics;

mod reader;

/// Room kept in a frame for a batch around a record (as on grouped sockets).
const BATCH_ROOM: usize = 1024 * 1024 + 256 * 1024;

/// What identifies a shared consumer: Kafka's ACLs are per user, so are consumers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubKey {
    pub topic: String,
    pub creds: Option<KafkaCredentials>,
    pub read_committed: bool,
}

/// One record as one socket format renders it: the frame every socket of that format writes
/// (shared bytes, cloned by reference count), or the error frame in its place.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub codec: SocketCodec,
    pub message: Message,
    /// Set when the frame is an error frame (`DECODE_ERROR`, `RECORD_TOO_LARGE`).
    pub error: Option<ErrorCode>,
}

/// A record in the log: its renderings and the bytes of its key and value.
#[derive(Debug)]
pub struct Entry {
    pub frames: Vec<Rendered>,
    pub record_bytes: u64,
}

impl Entry {
    /// The frame for sockets of this format.
    pub fn frame(&self, codec: &SocketCodec) -> Option<&Rendered> {
        self.frames.iter().find(|r| r.codec == *codec)
    }
}

struct State {
    log: Log<Entry>,
    /// Formats in use, with how many subscriptions use each; `version` grows on every change.
    codecs: Vec<(SocketCodec, usize)>,
    version: u64,
    subscribers: usize,
    empty_since: Option<Instant>,
    retired: bool,
    /// Why the reader stopped for good (the consumer failed): sockets close with it.
    failure: Option<String>,
    /// Set while the reader waits for room for its next entry (of this many bytes): the
    /// cursor move (a read, a skip, a join or a leave) that makes room clears it and wakes
    /// the reader through [`Hub::room`]; moves of slower sockets leave it waiting.
    reader_waits: Option<usize>,
}

impl State {
    /// After a cursor moved or came or went: true when the reader waits and now has room (it
    /// must then be woken, outside the lock).
    fn cursor_moved(&mut self) -> bool {
        let room = self.reader_waits.is_some_and(|size| self.log.has_room(size));
        if room {
            self.reader_waits = None;
        }
        room
    }
}

/// One shared consumer's log and subscribers.
pub struct Hub {
    key: HubKey,
    state: Mutex<State>,
    head: watch::Sender<u64>,
    /// Wakes the reader waiting for room in the log (see [`State::reader_waits`]).
    room: Notify,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("a hub's state is never poisoned")
    }

    /// A subscription where the fastest socket is (or at the live end), unless the hub
    /// retired meanwhile.
    fn subscribe(self: &Arc<Hub>, codec: SocketCodec) -> Option<Subscription> {
        let mut st = self.lock();
        if st.retired {
            return None;
        }
        st.subscribers += 1;
        st.empty_since = None;
        // The entries in the log have frames for the formats in use when they were pushed: a
        // newcomer of a format in use starts where the fastest socket is (so joins never make
        // room for the reader), one of a new format at the live end.
        let cursor = match st.codecs.iter_mut().find(|(c, _)| *c == codec) {
            Some((_, n)) => {
                *n += 1;
                st.log.join_fastest()
            }
            None => {
                st.codecs.push((codec, 1));
                st.version += 1;
                st.log.join()
            }
        };
        // A newcomer at the live end is the fastest now, with nothing unread.
        if st.cursor_moved() {
            drop(st);
            self.room.notify_one();
        }
        Some(Subscription { hub: self.clone(), cursor, codec, head: self.head.subscribe(), look_first: true })
    }
}

/// Why a subscription yields nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The socket fell too far behind the live end.
    Behind(Behind),
    /// The shared consumer failed (credentials refused, topic deleted): why.
    Failed(String),
}

/// One socket's place in its hub's log; dropping it leaves the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    cursor: Cursor,
    codec: SocketCodec,
    head: watch::Receiver<u64>,
    /// Set when entries after the cursor may be waiting although `head` was marked seen (the
    /// last read stopped at its `max`, or [`Self::fell_behind`] consumed a change): the next
    /// [`Self::next`] reads the log before it waits. Clear, it waits for `head` first and
    /// spares the lock a socket would otherwise take after every write only to find nothing.
    look_first: bool,
}

impl Subscription {
    /// Waits for entries after the cursor and moves up to `max` into `out`. Cancel-safe:
    /// the cursor moves only when it returns.
    ///
    /// `head` is marked seen before the log is read under the lock, and the reader bumps it
    /// after every push (outside the lock): an entry this read missed was pushed after it, so
    /// its bump is unseen and the wait returns at once. No entry is left waiting unread.
    pub async fn next(&mut self, max: usize, out: &mut Vec<Arc<Slot<Entry>>>) -> Result<(), Stop> {
        loop {
            if !self.look_first && self.head.changed().await.is_err() {
                return Err(Stop::Failed("the shared consumer stopped".to_owned()));
            }
            self.look_first = false;
            let wake_reader = {
                let mut st = self.hub.lock();
                if let Some(why) = &st.failure {
                    return Err(Stop::Failed(why.clone()));
                }
                st.log.read(&mut self.cursor, max, out).map_err(Stop::Behind)?;
                !out.is_empty() && st.cursor_moved()
            };
            if wake_reader {
                self.hub.room.notify_one();
            }
            if !out.is_empty() {
                self.look_first = out.len() >= max;
                return Ok(());
            }
        }
    }

    /// Resolves once the socket is too far behind (while it waits on a slow write).
    pub async fn fell_behind(&mut self) -> Behind {
        // Its waits mark `head` seen: the next read must look before it waits.
        self.look_first = true;
        loop {
            if let Some(b) = self.hub.lock().log.behind(&self.cursor) {
                return b;
            }
            if self.head.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Moves the cursor to where the fastest socket is; returns the ranges skipped per
    /// partition.
    pub fn skip(&mut self) -> Vec<GapRange> {
        self.look_first = true;
        let (gaps, wake_reader) = {
            let mut st = self.hub.lock();
            (st.log.skip(&mut self.cursor), st.cursor_moved())
        };
        if wake_reader {
            self.hub.room.notify_one();
        }
        gaps
    }

    /// The topic of the hub.
    pub fn topic(&self) -> &str {
        &self.hub.key.topic
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        st.log.leave(&self.cursor);
        st.subscribers -= 1;
        if st.subscribers == 0 {
            st.empty_since = Some(Instant::now());
        }
        if let Some(i) = st.codecs.iter().position(|(c, _)| *c == self.codec) {
            st.codecs[i].1 -= 1;
            if st.codecs[i].1 == 0 {
                st.codecs.swap_remove(i);
                st.version += 1;
            }
        }
        if st.cursor_moved() {
            drop(st);
            self.hub.room.notify_one();
        }
    }
}

type Cells = HashMap<HubKey, Arc<OnceCell<Arc<Hub>>>>;

/// Every hub of the node, and the count of fan-out sockets.
#[derive(Clone)]
pub struct Hubs {
    inner: Arc<HubsInner>,
}

struct HubsInner {
    config: FanOutConfig,
    /// Rendered frames above this get `RECORD_TOO_LARGE` in their place.
    frame_limit: usize,
    hubs: Mutex<Cells>,
    sockets: AtomicUsize,
    /// The server's shutdown: readers stop with it.
    shutdown: CancellationToken,
}

/// A fan-out socket's place under `WSPROXY_FANOUT_MAX_SOCKETS`; freed on drop.
pub struct FanOutSlot(Arc<HubsInner>);

impl Drop for FanOutSlot {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::AcqRel);
        metrics::fanout_sockets(-1.0);
    }
}

impl Hubs {
    /// No hub yet. A record rendering larger than a socket can send (the same bound as on
    /// grouped sockets, `http::sockets`) is answered with `RECORD_TOO_LARGE`.
    pub fn new(config: &Config, shutdown: CancellationToken) -> Hubs {
        let max_frame_bytes = config.socket.hard_max_frame_bytes.max(16 * 1024 * 1024);
        let frame_limit = max_frame_bytes.saturating_sub(BATCH_ROOM);
        let config = config.fanout.clone();
        Hubs {
            inner: Arc::new(HubsInner {
                config,
                frame_limit,
                hubs: Mutex::new(HashMap::new()),
                sockets: AtomicUsize::new(0),
                shutdown,
            }),
        }
    }

    /// The settings of fan-out sockets.
    pub fn config(&self) -> &FanOutConfig {
        &self.inner.config
    }

    /// Takes a fan-out socket's place, or `Err(cap)` when `WSPROXY_FANOUT_MAX_SOCKETS` is reached.
    pub fn admit(&self) -> Result<FanOutSlot, usize> {
        let cap = self.inner.config.max_sockets;
        let taken = self
            .inner
            .sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (cap == 0 || n < cap).then_some(n + 1));
        match taken {
            Ok(_) => {
                metrics::fanout_sockets(1.0);
                Ok(FanOutSlot(self.inner.clone()))
            }
            Err(_) => Err(cap),
        }
    }

    /// Shared consumers alive now.
    pub fn consumers(&self) -> usize {
        self.cells().values().filter(|c| c.initialized()).count()
    }

    fn cells(&self) -> std::sync::MutexGuard<'_, Cells> {
        self.inner.hubs.lock().expect("the hub registry is never poisoned")
    }

    /// A subscription to `key`'s hub (see [`Hub::subscribe`]), which is created (with its consumer) if
    /// there is none.
    pub async fn subscribe(
        &self,
        kafka: &Kafka,
        key: HubKey,
        codec: SocketCodec,
    ) -> Result<Subscription, ConsumerError> {
        loop {
            let waiting =
                Waiting { hubs: self, key: &key, cell: Some(self.cells().entry(key.clone()).or_default().clone()) };
            let cell = waiting.cell.as_ref().expect("set until dropped");
            let hub = cell.get_or_try_init(|| self.start(kafka, key.clone())).await?.clone();
            drop(waiting);
            if let Some(sub) = hub.subscribe(codec) {
                return Ok(sub);
            }
            // Retired between the lookup and the subscription: the reader removed it; again.
            tokio::task::yield_now().await;
        }
    }

    async fn start(&self, kafka: &Kafka, key: HubKey) -> Result<Arc<Hub>, ConsumerError> {
        let consumer = kafka.shared_consumer(&key.topic, key.creds.as_ref(), key.read_committed).await?;
        let c = &self.inner.config;
        let hub = Arc::new(Hub {
            key,
            state: Mutex::new(State {
                log: Log::new(c.max_lag_records, c.max_lag_bytes),
                codecs: Vec::new(),
                version: 0,
                subscribers: 0,
                empty_since: Some(Instant::now()),
                retired: false,
                failure: None,
                reader_waits: None,
            }),
            head: watch::channel(0).0,
            room: Notify::new(),
        });
        metrics::fanout_shared_consumers(1.0);
        tracing::info!(topic = %hub.key.topic, "fan-out: shared consumer created");
        tokio::spawn(reader::read(self.clone(), hub.clone(), consumer));
        Ok(hub)
    }

    /// Removes `hub` from the registry if it is still idle (no subscription for the linger).
    fn retire_if_idle(&self, hub: &Arc<Hub>) -> bool {
        let mut cells = self.cells();
        let mut st = hub.lock();
        let idle = st.subscribers == 0 && st.empty_since.is_some_and(|t| t.elapsed() >= self.inner.config.linger);
        if idle {
            st.retired = true;
            forget(&mut cells, hub);
        }
        idle
    }

    /// Takes `hub` out of the registry (the server is shutting down).
    fn retire(&self, hub: &Arc<Hub>) {
        let mut cells = self.cells();
        hub.lock().retired = true;
        forget(&mut cells, hub);
    }

    /// Ends `hub` for good: its subscriptions stop with `why`.
    fn fail(&self, hub: &Arc<Hub>, why: String) {
        let mut cells = self.cells();
        let mut st = hub.lock();
        st.retired = true;
        st.failure = Some(why);
        forget(&mut cells, hub);
        drop(st);
        hub.head.send_modify(|h| *h += 1);
    }
}

/// A subscription waiting for its hub (made by the first of the waiters). When it stops
/// waiting (the hub is there, making it failed, or the upgrade was dropped meanwhile: a
/// client that hung up during the handshake), a cell that holds no hub and that no other
/// subscription waits on leaves the registry: keys of attempts that never made a hub (bad
/// credentials, every one a new user) must not fill it.
struct Waiting<'a> {
    hubs: &'a Hubs,
    key: &'a HubKey,
    cell: Option<Arc<OnceCell<Arc<Hub>>>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else { return };
        // Let go first: the last waiter to look sees the registry's reference alone.
        let ours = Arc::as_ptr(&cell);
        drop(cell);
        let mut cells = self.hubs.cells();
        if cells.get(self.key).is_some_and(|c| Arc::as_ptr(c) == ours && !c.initialized() && Arc::strong_count(c) == 1)
        {
            cells.remove(self.key);
        }
    }
}

#[expect(clippy::mutable_key_type, reason = "credentials hash by user; the token cell inside is not part of the key")]
fn forget(cells: &mut Cells, hub: &Arc<Hub>) {
    if cells.get(&hub.key).and_then(|c| c.get()).is_some_and(|h| Arc::ptr_eq(h, hub)) {
        cells.remove(&hub.key);
    }
}

/// Bytes of a data frame's payload.
pub fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
