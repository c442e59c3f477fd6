//! Resumable consume sockets (`resumable=true`, issue 19 part 1): a grouped socket that drops
//! without a close handshake (or closes with 1001) leaves its consumer **parked** on this node
//! for `WSPROXY_CONSUMER_RESUME_WINDOW`, still a member of its group with its assignment, and
//! still holding its session slot. A reconnect with the `resumeToken` of the socket's first
//! frame re-attaches to it: no rebalance, and what was sent and not committed comes again
//! ([`SocketConsumer::rewind_to_committed`]).
//!
//! - Tokens are the node's tag and 256 random bits from the system's CSPRNG (`ring`,
//!   [`crate::pipeline::resume_token`]), single-use (a take removes
//!   them), bound to who may use them ([`Binding`]: the client's identity, clientId, groupId,
//!   topics, commit mode and Kafka credentials) and valid for the window only.
//! - A parked consumer is still served: its partitions are paused and a parking task polls it,
//!   so that a rebalance another member starts is answered at once (an eager rebalance waits
//!   for every member to poll) and `max.poll.interval.ms` never expires.
//! - At most `WSPROXY_CONSUMER_RESUME_MAX_PARKED` consumers are parked per node: beyond it the
//!   oldest is closed. A consumer not resumed within the window is closed (it leaves its group,
//!   its slot is freed); so is every parked one when the server shuts down.
//!
//! - A reconnect may come before this node noticed that the old connection is gone (a phone
//!   that switched networks: its old TCP connection dies silently). A token whose socket is
//!   still open here is taken over: that socket is stopped and parks its consumer, which the
//!   reconnect then takes.
//!
//! [`Ledger`] holds the pure rules (binding, single use, expiry, the cap); [`Parking`] runs them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::SocketConsumer;
use crate::pipeline::resume_token;
use crate::sessions::SessionGuard;
use crate::telemetry::metrics;

/// Who may resume a parked session: every field must match the reconnect's.
#[derive(Clone, PartialEq, Eq)]
pub struct Binding {
    /// `basic` (the one Basic user), `sub:<subject>` for a bearer token, `anonymous`.
    pub principal: String,
    pub client_id: String,
    pub group_id: String,
    /// The `topic` (or `topicPattern`) parameter: the consumer is subscribed to it.
    pub topic: String,
    /// The consumer's commit mode is fixed when it is made.
    pub auto_commit: bool,
    /// The consumer logs in to Kafka with these: a reconnect must bring the same.
    pub kafka: Option<KafkaCredentials>,
}

/// Why a `resumeToken` re-attaches to nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Never issued, used already, expired, or its session was closed.
    Unknown,
    /// Issued to another client (identity, clientId, groupId, topics or credentials differ).
    NotYours,
}

impl Refusal {
    /// The text of the 400 that answers the reconnect.
    pub fn text(self, window: Duration) -> String {
        match self {
            Refusal::Unknown => format!(
                "Request param 'resumeToken' names no parked session: it is unknown, was used already, or expired (sessions are kept {} s). Open the socket without resumeToken to start a new session.",
                window.as_secs()
            ),
            Refusal::NotYours => "Request param 'resumeToken' belongs to a session of another client: the identity, clientId, groupId, topic, autoCommit and Kafka credentials must be those of the socket that got it.".to_owned(),
        }
    }
}

/// A parked session's entry: who may take it, until when, and its place in the parking order.
struct Entry<T> {
    binding: Binding,
    deadline: Instant,
    seq: u64,
    value: T,
    /// The token this session was resumed with, when its client may never have read the new
    /// one: that token names the session too (see [`Parking::park`]).
    predecessor: Option<String>,
}

/// The parked sessions of a node by token: pure data and rules, `T` is the parking task's handle.
pub struct Ledger<T> {
    entries: HashMap<String, Entry<T>>,
    /// Predecessor tokens that still name a parked session: predecessor -> its token.
    aliases: HashMap<String, String>,
    next_seq: u64,
    max: usize,
}

impl<T> Ledger<T> {
    pub fn new(max: usize) -> Self {
        Ledger { entries: HashMap::new(), aliases: HashMap::new(), next_seq: 0, max: max.max(1) }
    }

    /// Parks a session under `token` until `deadline`; returns its sequence number (to remove
    /// it at its deadline) and the sessions closed to keep the cap, oldest first.
    /// `predecessor`, when given, names the session too, until either token takes it.
    pub fn insert(
        &mut self,
        token: String,
        binding: Binding,
        deadline: Instant,
        value: T,
        predecessor: Option<String>,
    ) -> (u64, Vec<T>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(p) = &predecessor {
            self.aliases.insert(p.clone(), token.clone());
        }
        self.entries.insert(token, Entry { binding, deadline, seq, value, predecessor });
        let mut evicted = Vec::new();
        while self.entries.len() > self.max {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.seq).map(|(t, _)| t.clone());
            let Some(e) = oldest.and_then(|t| self.remove_entry(&t)) else { break };
            evicted.push(e.value);
        }
        (seq, evicted)
    }

    fn remove_entry(&mut self, token: &str) -> Option<Entry<T>> {
        let entry = self.entries.remove(token)?;
        if let Some(p) = &entry.predecessor {
            if self.aliases.get(p).is_some_and(|t| t == token) {
                self.aliases.remove(p);
            }
        }
        Some(entry)
    }

    /// Takes the session of `token` for a reconnect bound as `binding`, once: a refused
    /// binding leaves it for its owner; an expired one is left to its own removal.
    pub fn take(&mut self, token: &str, binding: &Binding, now: Instant) -> Result<T, Refusal> {
        self.take_if(token, |b| b == binding, now)
    }

    /// [`take`](Self::take) for a reconnect whose binding `matches` says whether it is the
    /// session's (another node's reconnect brings only a hash of it).
    pub fn take_if(&mut self, token: &str, matches: impl Fn(&Binding) -> bool, now: Instant) -> Result<T, Refusal> {
        let key = match self.entries.contains_key(token) {
            true => token.to_owned(),
            false => self.aliases.get(token).cloned().ok_or(Refusal::Unknown)?,
        };
        let entry = self.entries.get(&key).ok_or(Refusal::Unknown)?;
        if entry.deadline <= now {
            return Err(Refusal::Unknown);
        }
        if !matches(&entry.binding) {
            return Err(Refusal::NotYours);
        }
        Ok(self.remove_entry(&key).expect("just found").value)
    }

    /// Removes the entry parked as `seq` under `token`, if it is still there (its deadline
    /// passed, or the node shuts down): `None` when a reconnect or the cap took it first.
    pub fn remove(&mut self, token: &str, seq: u64) -> Option<T> {
        if self.entries.get(token).is_some_and(|e| e.seq == seq) {
            return self.remove_entry(token).map(|e| e.value);
        }
        None
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a parked session keeps: its group member and its session slot.
pub struct Parked {
    pub consumer: SocketConsumer,
    pub session: Option<SessionGuard>,
}

/// What the parking task of a session is told.
enum Command {
    /// A reconnect took the session: hand it over (`true`: to another node, which it leaves).
    Resume(oneshot::Sender<Parked>, bool),
    /// Close it (the cap was reached), with the reason counted in the metrics.
    Close(&'static str),
}

/// What a resumable socket's loop needs to park its consumer when the client drops.
pub struct Resume {
    pub parking: Parking,
    /// The token the socket's first frame gave the client.
    pub token: String,
    pub binding: Binding,
    /// The socket's session slot: kept while parked.
    pub session: Option<SessionGuard>,
    /// Whether the consumer was parked before (it is rewound to its committed offsets).
    pub resumed: bool,
    /// Set when a reconnect with this socket's token stopped it: it parks as if dropped.
    taken_over: Arc<AtomicBool>,
    /// The token this socket was resumed with: until the client is heard from, it may not
    /// have read the new one (the connection may have died right after the first frame).
    predecessor: Option<String>,
    /// Whether the client sent anything (a frame, a pong) since the first frame.
    heard: Arc<AtomicBool>,
}

impl Resume {
    /// The client sent something after the session frame, so it read the new token: the one
    /// it resumed with no longer names the session.
    pub fn heard_from_client(&self) {
        self.heard.store(true, Ordering::Release);
    }

    /// Whether a reconnect took this socket's session over while it was open.
    pub fn taken_over(&self) -> bool {
        self.taken_over.load(Ordering::Acquire)
    }
}

impl Drop for Resume {
    fn drop(&mut self) {
        // The socket is over (parked or closed): its token no longer names an open socket.
        let mut state = self.parking.state();
        if state.live.get(&self.token).is_some_and(|l| Arc::ptr_eq(&l.taken_over, &self.taken_over)) {
            state.live.remove(&self.token);
        }
    }
}

/// A token whose socket is still open on this node.
struct Live {
    binding: Binding,
    /// The socket's stop.
    stop: CancellationToken,
    taken_over: Arc<AtomicBool>,
    predecessor: Option<String>,
    heard: Arc<AtomicBool>,
}

/// How long a reconnect waits for the open socket it takes over to park its consumer.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// The node's parked sessions.
#[derive(Clone)]
pub struct Parking {
    inner: Arc<Inner>,
}

struct Inner {
    window: Duration,
    /// This node's tag, in front of its tokens.
    tag: String,
    state: Mutex<State>,
    random: SystemRandom,
    shutdown: CancellationToken,
    /// The server's socket tasks: shutdown waits for the parked consumers' close too.
    tracker: TaskTracker,
}

/// How a parked session's task is told what to do.
type Handle = oneshot::Sender<Command>;

/// The parked sessions, and the tokens of the resumable sockets open on this node.
struct State {
    ledger: Ledger<Handle>,
    live: HashMap<String, Live>,
    /// The tokens above (and the ones sockets were resumed with) by their hash: another node
    /// names a token by it.
    keys: resume_token::Keys,
}

impl State {
    /// Forgets the hashes of tokens that no longer name anything, once they are many.
    fn prune_keys(&mut self) {
        let State { ledger, live, keys } = self;
        let named = ledger.entries.len() + ledger.aliases.len() + 2 * live.len();
        let predecessors: std::collections::HashSet<&str> =
            live.values().filter_map(|l| l.predecessor.as_deref()).collect();
        keys.prune(named, |t| {
            ledger.entries.contains_key(t)
                || ledger.aliases.contains_key(t)
                || live.contains_key(t)
                || predecessors.contains(t)
        });
    }
}

impl Parking {
    /// The node's tag, which starts every token it issues, is drawn here: a restarted node
    /// does not claim the tokens of its previous run, and two nodes that share a server id do
    /// not share a tag.
    pub fn new(window: Duration, max_parked: usize, shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        let state =
            Mutex::new(State { ledger: Ledger::new(max_parked), live: HashMap::new(), keys: Default::default() });
        let random = SystemRandom::new();
        let mut bits = [0u8; resume_token::TAG_LEN / 2];
        random.fill(&mut bits).expect("the system's random source never fails");
        let tag = resume_token::hex(&bits);
        Parking { inner: Arc::new(Inner { window, tag, state, random, shutdown, tracker }) }
    }

    /// The tag that starts this node's tokens.
    pub fn tag(&self) -> &str {
        &self.inner.tag
    }

    /// A resumable socket about to open: a new token, bound to `binding`, that a reconnect can
    /// take over while the socket is open (`stop` stops it).
    /// `predecessor`: the token of the session this socket resumes.
    pub fn open(
        &self,
        binding: Binding,
        session: Option<SessionGuard>,
        predecessor: Option<String>,
        stop: CancellationToken,
    ) -> Resume {
        let token = self.issue();
        let (taken_over, heard) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let live = Live {
            binding: binding.clone(),
            stop,
            taken_over: taken_over.clone(),
            predecessor: predecessor.clone(),
            heard: heard.clone(),
        };
        {
            let mut state = self.state();
            state.keys.insert(&token);
            // Another node's token when the session was handed over: it names it here now.
            if let Some(p) = &predecessor {
                state.keys.insert(p);
            }
            state.live.insert(token.clone(), live);
            state.prune_keys();
        }
        let resumed = predecessor.is_some();
        Resume { parking: self.clone(), token, binding, session, resumed, taken_over, predecessor, heard }
    }

    /// How long a dropped socket's consumer stays parked.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// A new token: this node's tag and 256 bits from the system's CSPRNG, in hex.
    fn issue(&self) -> String {
        let mut bytes = [0u8; 32];
        self.inner.random.fill(&mut bytes).expect("the system's random source never fails");
        resume_token::token(&self.inner.tag, &bytes)
    }

    /// The first frame of a resumable socket: `{"session":{"resumeToken":..,"resumeWindowMs":..}}`.
    pub fn session_frame(&self, token: &str) -> String {
        let window_ms = u64::try_from(self.inner.window.as_millis()).unwrap_or(u64::MAX);
        serde_json::json!({"session": {"resumeToken": token, "resumeWindowMs": window_ms}}).to_string()
    }

    /// Re-attaches a reconnect to the session parked under `token`; a session whose socket
    /// is still open here is taken over (the socket is stopped and parks it first).
    pub async fn take(&self, token: &str, binding: &Binding) -> Result<Parked, Refusal> {
        self.take_if(token, |b| b == binding, false, None).await
    }

    /// [`take`](Self::take) for another node (`handover`), or a reconnect here, whose binding
    /// `matches` says whether it is the session's. Past `until` (when the asking node gives
    /// up) the session is not taken: it stays parked for its client.
    pub async fn take_if(
        &self,
        token: &str,
        matches: impl Fn(&Binding) -> bool,
        handover: bool,
        until: Option<Instant>,
    ) -> Result<Parked, Refusal> {
        let deadline = until.map_or(Instant::now() + TAKEOVER_WAIT, |u| u.min(Instant::now() + TAKEOVER_WAIT));
        let handle = loop {
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Err(Refusal::Unknown);
            }
            if let Some(taken) = self.take_or_stop(token, &matches, now < deadline) {
                break taken?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (reply, parked) = oneshot::channel();
        handle.send(Command::Resume(reply, handover)).map_err(|_| Refusal::Unknown)?;
        parked.await.map_err(|_| Refusal::Unknown)
    }

    /// Parks a dropped socket's consumer under its token (with its session slot), closing
    /// the oldest parked session beyond the cap.
    pub fn park(&self, resume: &mut Resume, consumer: SocketConsumer) {
        let parked = Parked { consumer, session: resume.session.take() };
        let token = resume.token.clone();
        // A client not heard from since the first frame may not have the new token.
        let predecessor = resume.predecessor.clone().filter(|_| !resume.heard.load(Ordering::Acquire));
        let (handle, commands) = oneshot::channel();
        let deadline = Instant::now() + self.inner.window;
        let (seq, evicted) = {
            let mut state = self.state();
            state.live.remove(&token);
            state.ledger.insert(token.clone(), resume.binding.clone(), deadline, handle, predecessor)
        };
        for oldest in evicted {
            let _ = oldest.send(Command::Close("cap"));
        }
        metrics::consumer_sessions_parked(1.0);
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            let command = serve(&inner, &token, seq, deadline, &parked.consumer, commands).await;
            metrics::consumer_sessions_parked(-1.0);
            let reason = match command {
                Command::Resume(reply, handover) => {
                    match handover {
                        true => metrics::consumer_session_handed_over(),
                        false => metrics::consumer_session_resumed(),
                    }
                    let Err(parked) = reply.send(parked) else { return };
                    // The reconnect went away while it was handed over.
                    close(parked, "dropped").await;
                    return;
                }
                Command::Close(reason) => reason,
            };
            metrics::consumer_session_expired(reason);
            tracing::info!(reason, "a parked consumer session was closed without a resume");
            close(parked, reason).await;
        });
    }

    /// Takes the parked session of `token`, or (`None`) stops the open socket that holds it,
    /// when `may_wait`, so that it parks.
    fn take_or_stop(
        &self,
        token: &str,
        matches: impl Fn(&Binding) -> bool,
        may_wait: bool,
    ) -> Option<Result<Handle, Refusal>> {
        let mut state = self.state();
        match state.ledger.take_if(token, &matches, Instant::now()) {
            Err(Refusal::Unknown) if may_wait => {}
            taken => return Some(taken),
        }
        // The open socket named by `token`, or resumed with it and not heard from since.
        let unheard = |l: &&Live| l.predecessor.as_deref() == Some(token) && !l.heard.load(Ordering::Acquire);
        match state.live.get(token).or_else(|| state.live.values().find(unheard)) {
            Some(live) if !matches(&live.binding) => Some(Err(Refusal::NotYours)),
            Some(live) => {
                live.taken_over.store(true, Ordering::Release);
                live.stop.cancel();
                None
            }
            // Gone meanwhile (closed, or taken by another reconnect).
            None => Some(Err(Refusal::Unknown)),
        }
    }

    /// The token whose hash ([`resume_token::token_key`]) is `key`, if it may name a session
    /// here (parked, an alias of a parked one, open, or an open socket's predecessor): another
    /// node names tokens by their hash. One lookup; [`take_if`](Self::take_if) says whether it
    /// still does.
    pub fn find_token(&self, key: &str) -> Option<String> {
        self.state().keys.get(key).map(str::to_owned)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("the parking state is never poisoned")
    }
}

/// Leaves the group (the final commit was made when it was parked), then frees the slot.
async fn close(parked: Parked, _reason: &'static str) {
    parked.consumer.close(HashMap::new()).await;
    drop(parked.session);
}

/// Serves a parked consumer until a command comes, its deadline passes, the server shuts down
/// or Kafka fails it for good; returns what to do with it.
async fn serve(
    inner: &Inner,
    token: &str,
    seq: u64,
    deadline: Instant,
    consumer: &SocketConsumer,
    mut commands: oneshot::Receiver<Command>,
) -> Command {
    consumer.pause();
    let mut records = consumer.records();
    let reason = loop {
        tokio::select! {
            command = &mut commands => return command.unwrap_or(Command::Close("dropped")),
            () = sleep_until(deadline) => break "window",
            () = inner.shutdown.cancelled() => break "shutdown",
            // A partition assigned while parked is fetched: pause it too. The record comes
            // again on resume (the consumer is rewound to its committed offsets).
            next = records.next() => match next {
                Some(Ok(_)) => consumer.pause(),
                Some(Err(e)) => if e.triage().is_err() { break "kafka" },
                None => break "kafka",
            },
        }
    };
    let own = inner.state.lock().expect("the parking state is never poisoned").ledger.remove(token, seq);
    match own {
        Some(_) => Command::Close(reason),
        // A reconnect or the cap took it first: its command is on its way.
        None => commands.await.unwrap_or(Command::Close(reason)),
    }
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
