//! Resume on another node (issue 19): behind a load balancer a reconnect with a `resumeToken`
//! may reach a node that does not hold the session. That node asks, through the resume topic
//! ([`crate::kafka::resume_log`]), whichever node holds it to hand it over now; the holder
//! closes its consumer at once (it leaves the group: no wait for the session timeout), frees
//! its session slot and answers; the asking node then opens a fresh consumer in the same group,
//! which starts from the group's committed offsets (what was sent and not committed comes
//! again: at least once).
//!
//! - The topic never carries a token: a request names it by its SHA-256 ([`token_key`]), and
//!   the reconnect's binding by a SHA-256 keyed with the token ([`binding_key`]), so that
//!   readers of the topic learn neither the token nor the client's Kafka password.
//! - A token starts with the tag of the node that issued it ([`crate::pipeline::resume_token`]):
//!   a token of no node's shape, or one of this node's that it does not hold (nor handed over),
//!   is refused at once; only tokens of other nodes are asked for.
//! - The holder answers `not-yours` when the binding differs (the session stays parked for
//!   its owner); the issuing node answers `unknown` when it does not hold the token (nor handed
//!   it over); other nodes do not answer. No answer within `WSPROXY_RESUME_HANDOVER_TIMEOUT`
//!   (the issuing node is down) is an unknown token too.
//! - A session whose socket is still open on the holder (it died silently) is taken over as on
//!   one node: the socket is stopped, parks, and is handed over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kafka::resume_log::{Outcome, Request, ResumeLog};
use crate::pipeline::resume::{Binding, Parking, Refusal};
use crate::pipeline::resume_token::{hex, issuer, token_key};

/// Handovers this node serves at once; further requests wait in the reader's bounded queue
/// (beyond it they are dropped, and their requesters time out).
const MAX_HANDOVERS: usize = 32;

/// How long before the requester's deadline the holder stops trying: its reply must reach it.
const REPLY_MARGIN: Duration = Duration::from_millis(500);

/// How long the holder may try to hand a session over: what is left of the requester's wait
/// (`wait_ms`, counted from when this node read the request, so that no two nodes' clocks are
/// compared) less the time its reply needs; `None` when it is too late to start.
fn time_left(wait_ms: u64, since_read: Duration) -> Option<Duration> {
    let left = Duration::from_millis(wait_ms).checked_sub(since_read)?.checked_sub(REPLY_MARGIN)?;
    (!left.is_zero()).then_some(left)
}

/// How a reconnect's binding is named on the resume topic: a SHA-256 over the token and every
/// field of the binding (the token keys it, so that a Kafka password cannot be guessed from it).
pub fn binding_key(token: &str, b: &Binding) -> String {
    let kafka = b.kafka.as_ref();
    let fields = [
        token,
        &b.principal,
        &b.client_id,
        &b.group_id,
        &b.topic,
        if b.auto_commit { "auto" } else { "manual" },
        kafka.map_or("-", |k| &k.username),
        kafka.map_or("-", |k| &k.password),
        kafka.map_or("-", |k| if k.bearer.is_some() { "bearer" } else { "sasl" }),
    ];
    // Lengths first: no two bindings give the same bytes.
    let mut bytes = Vec::new();
    for f in fields {
        bytes.extend_from_slice(&(f.len() as u64).to_be_bytes());
        bytes.extend_from_slice(f.as_bytes());
    }
    hex(digest(&SHA256, &bytes).as_ref())
}

/// Why a reconnect did not get its session from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskError {
    /// The token's 400 ([`Refusal::text`]).
    Refused(Refusal),
    /// The request could not be written to the resume topic: Kafka is unavailable (503).
    Unavailable,
}

/// The node's side of cross-node handovers; cheap to clone.
#[derive(Clone)]
pub struct Handover {
    log: ResumeLog,
    parking: Parking,
    wait: Duration,
    random: SystemRandom,
    /// The server's tasks: shutdown waits for handovers under way.
    tracker: TaskTracker,
    /// The keys of the tokens this node handed over, for `remember` after the last request
    /// for them: another node holds their session (the token names it there until its client
    /// is heard from), so this node neither refuses them at once nor answers `unknown` for them.
    handed_over: Arc<Mutex<HashMap<String, Instant>>>,
    /// How long a token handed over is remembered: as long as another node may still let it
    /// name a session (a socket dead without a close is noticed after the idle timeout, then
    /// parked for the resume window), plus one wait.
    remember: Duration,
}

impl Handover {
    /// Serves the requests of other nodes (until `shutdown`) and asks them for sessions.
    /// `idle_timeout` is the sockets' (see `remember`).
    pub fn start(
        log: ResumeLog,
        requests: mpsc::Receiver<Request>,
        parking: Parking,
        (wait, idle_timeout): (Duration, Duration),
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Handover {
        let handed_over = Arc::new(Mutex::new(HashMap::new()));
        let random = SystemRandom::new();
        let remember = idle_timeout + parking.window() + wait;
        let handover = Handover { log, parking, wait, random, tracker: tracker.clone(), handed_over, remember };
        tracker.spawn(handover.clone().serve(requests, shutdown));
        handover
    }

    /// How long a reconnect waits for the holder's answer.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Asks the node that holds `token` to hand its session over to this one: `Ok` once it
    /// closed its consumer and freed its slot.
    /// A token of no node's shape, or one of this node's (that it did not hand over), is
    /// refused at once: this node looked for it already.
    pub async fn ask(&self, token: &str, binding: &Binding) -> Result<(), AskError> {
        let Some(issuer) = issuer(token) else { return Err(AskError::Refused(Refusal::Unknown)) };
        let key = token_key(token);
        if issuer == self.parking.tag() && !self.handed_over(&key) {
            return Err(AskError::Refused(Refusal::Unknown));
        }
        let mut id = [0u8; 16];
        self.random.fill(&mut id).expect("the system's random source never fails");
        let t0 = std::time::Instant::now();
        let asked = self.log.ask(&key, issuer, hex(&id), binding_key(token, binding), self.wait).await;
        match asked {
            Ok(Some(Outcome::HandedOver)) => {
                tracing::info!(took = ?t0.elapsed(), "another node handed a consumer session over");
                Ok(())
            }
            Ok(Some(Outcome::NotYours)) => Err(AskError::Refused(Refusal::NotYours)),
            Ok(Some(Outcome::Unknown) | None) => Err(AskError::Refused(Refusal::Unknown)),
            Err(e) => {
                tracing::warn!(error = %e, "could not ask the other nodes for a consumer session");
                Err(AskError::Unavailable)
            }
        }
    }

    /// Stops reading the resume topic.
    pub async fn close(&self) {
        self.log.close().await;
    }

    async fn serve(self, mut requests: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(MAX_HANDOVERS));
        loop {
            let request = tokio::select! {
                r = requests.recv() => r,
                () = shutdown.cancelled() => None,
            };
            let Some(request) = request else { return };
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                () = shutdown.cancelled() => return,
            };
            let handover = self.clone();
            self.tracker.spawn(async move {
                handover.hand_over(request).await;
                drop(permit);
            });
        }
    }

    /// Whether this node handed the session of the token keyed `key` over (within its window).
    fn handed_over(&self, key: &str) -> bool {
        let handed_over = self.handed_over.lock().expect("handed-over tokens are never poisoned");
        handed_over.get(key).is_some_and(|until| *until > Instant::now())
    }

    /// Remembers a token handed over (again: a request for it shows that it still names a
    /// session somewhere), for `remember`; forgets those whose time ended.
    fn remember_handed_over(&self, key: &str) {
        let now = Instant::now();
        let mut handed_over = self.handed_over.lock().expect("handed-over tokens are never poisoned");
        handed_over.retain(|_, until| *until > now);
        handed_over.insert(key.to_owned(), now + self.remember);
    }

    /// Hands the session `request` names over, if this node holds it; the node that issued
    /// the token answers `unknown` when it does not hold it (nor handed it over).
    async fn hand_over(self, request: Request) {
        let Some(left) = time_left(request.wait_ms, request.read_at.elapsed()) else {
            tracing::debug!(from = %request.from, "a handover request came after its requester gave up");
            return;
        };
        let until = tokio::time::Instant::now() + left;
        let handed_over = self.handed_over(&request.token_key);
        let issued_here = request.issuer == self.parking.tag() && !handed_over;
        let Some(token) = self.parking.find_token(&request.token_key) else {
            if issued_here {
                self.answer(&request, Outcome::Unknown).await;
            } else if handed_over {
                // Still in use on another node (which answers): a chain of handovers keeps
                // this node from answering `unknown` for it later.
                self.remember_handed_over(&request.token_key);
            }
            return;
        };
        let matches = |b: &Binding| binding_key(&token, b) == request.binding;
        let outcome = match self.parking.take_if(&token, matches, true, Some(until)).await {
            Ok(parked) => {
                // Leaves the group now (the final commit was made when it parked), then frees
                // the session slot for the asking node.
                parked.consumer.close(HashMap::new()).await;
                drop(parked.session);
                self.remember_handed_over(&request.token_key);
                tracing::info!(to = %request.from, "a consumer session was handed over to another node");
                Outcome::HandedOver
            }
            Err(Refusal::NotYours) => Outcome::NotYours,
            Err(Refusal::Unknown) if issued_here => Outcome::Unknown,
            // Taken or closed meanwhile: another node may hold it now, and answers.
            Err(Refusal::Unknown) => return,
        };
        self.answer(&request, outcome).await;
    }

    async fn answer(&self, request: &Request, outcome: Outcome) {
        if let Err(e) = self.log.answer(request, outcome).await {
            tracing::warn!(error = %e, "could not answer a handover request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::credentials::KafkaCredentials;

    fn binding() -> Binding {
        Binding {
            principal: "anonymous".into(),
            client_id: "c".into(),
            group_id: "g".into(),
            topic: "t".into(),
            auto_commit: false,
            kafka: None,
        }
    }

    #[test]
    fn the_holder_stops_before_the_requester_gives_up() {
        let ms = Duration::from_millis;
        assert_eq!(time_left(5_000, ms(20)), Some(ms(4_480)));
        assert_eq!(time_left(5_000, ms(4_500)), None, "no time left for the reply");
        assert_eq!(time_left(5_000, ms(7_000)), None, "the requester gave up");
    }

    #[test]
    fn the_topic_names_tokens_and_bindings_by_hashes_that_differ_with_every_field() {
        let token = "ab".repeat(32);
        let key = token_key(&token);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&token));
        assert_eq!(token_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let base = binding_key(&token, &binding());
        assert_eq!(base, binding_key(&token, &binding()), "stable");
        assert_ne!(base, binding_key(&"cd".repeat(32), &binding()), "keyed with the token");
        let mut others = Vec::new();
        for change in 0..7 {
            let mut b = binding();
            match change {
                0 => b.principal = "sub:x".into(),
                1 => b.client_id = "c2".into(),
                2 => b.group_id = "g2".into(),
                3 => b.topic = "t2".into(),
                4 => b.auto_commit = true,
                5 => b.kafka = Some(KafkaCredentials { username: "u".into(), password: "p".into(), bearer: None }),
                _ => b.kafka = Some(KafkaCredentials { username: "u".into(), password: "q".into(), bearer: None }),
            }
            others.push(binding_key(&token, &b));
        }
        others.push(base);
        let distinct: std::collections::HashSet<_> = others.iter().collect();
        assert_eq!(distinct.len(), others.len());
        // Field boundaries count: "ab"+"c" is not "a"+"bc".
        let (mut x, mut y) = (binding(), binding());
        (x.client_id, x.group_id, y.client_id, y.group_id) = ("ab".into(), "c".into(), "a".into(), "bc".into());
        assert_ne!(binding_key(&token, &x), binding_key(&token, &y));
    }
}
