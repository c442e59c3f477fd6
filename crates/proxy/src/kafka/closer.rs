//! The one owner that destroys the librdkafka clients of sockets (and the admin API's), off the
//! tokio runtime (H3, M4).
//!
//! Destroying a librdkafka client joins its threads, purges or flushes what a producer still
//! holds and, for a group consumer, leaves the group first, which in the middle of a join can
//! take the session timeout or longer (rust-rdkafka issue 509). On a tokio worker that stalls
//! every socket the worker serves; on the blocking pool a stuck destroy holds one of its
//! threads for good. So every client made for a socket (group consumer, per-user producer,
//! transactional producer) lives in an [`OffRuntime`] from the moment it is created: whatever
//! drops it (a closed socket, a failed upgrade, a refused credential probe, a panic), its
//! `Drop` only hands the client to the closer thread ("kafka-client-close"), which destroys
//! each on a thread of its own (a stuck destroy then holds only itself) and reports destroys
//! that take long.
//!
//! Metrics: `wsproxy_kafka_clients_closing{kind}` (handed over, not destroyed yet),
//! `wsproxy_kafka_clients_closed_total{kind}`, and `wsproxy_kafka_clients_dropped_on_runtime_total{kind}`,
//! counted by the clients' contexts when a client is destroyed on a tokio thread anyway (0
//! unless something bypasses this module).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::telemetry::metrics;

/// A destroy that takes longer than this is logged (and its end too).
const SLOW_CLOSE: Duration = Duration::from_secs(30);

/// Which kind of client, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Consumer,
    Producer,
    TransactionalProducer,
    Admin,
}

impl ClientKind {
    pub fn label(self) -> &'static str {
        match self {
            ClientKind::Consumer => "consumer",
            ClientKind::Producer => "producer",
            ClientKind::TransactionalProducer => "transactional_producer",
            ClientKind::Admin => "admin",
        }
    }
}

/// A librdkafka client that is never destroyed where it is dropped: its `Drop` hands it to the
/// closer thread. Derefs to the client.
pub struct OffRuntime<T: Send + 'static> {
    client: Option<T>,
    kind: ClientKind,
}

impl<T: Send + 'static> OffRuntime<T> {
    pub fn new(client: T, kind: ClientKind) -> Self {
        OffRuntime { client: Some(client), kind }
    }
}

impl<T: Send + 'static> Deref for OffRuntime<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.client.as_ref().expect("the client is only taken by drop")
    }
}

impl<T: Send + 'static> DerefMut for OffRuntime<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.client.as_mut().expect("the client is only taken by drop")
    }
}

impl<T: Send + 'static> Drop for OffRuntime<T> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close(self.kind, Box::new(client));
        }
    }
}

/// One client waiting to be destroyed.
struct Job {
    kind: ClientKind,
    client: Box<dyn Send>,
}

/// A destroy in progress, watched for slowness.
struct InProgress {
    kind: ClientKind,
    started: Instant,
    done: Arc<AtomicBool>,
    reported_slow: bool,
}

static CLOSER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Hands a client to the closer thread (started on first use).
fn close(kind: ClientKind, client: Box<dyn Send>) {
    metrics::kafka_client_closing(kind.label(), 1.0);
    let sender = CLOSER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        if let Err(e) = std::thread::Builder::new().name("kafka-client-close".to_owned()).spawn(move || run(rx)) {
            tracing::error!(error = %e, "cannot start the thread that closes Kafka clients");
        }
        Mutex::new(tx)
    });
    let sent = sender.lock().map(|tx| tx.send(Job { kind, client }));
    if let Ok(Err(mpsc::SendError(job))) = sent {
        // No closer thread (it could not be started): a thread of this client's own.
        destroy_apart(job, Arc::new(AtomicBool::new(false)));
    }
}

/// The closer thread: destroys each client on a thread of its own and reports slow destroys.
fn run(rx: Receiver<Job>) {
    let mut in_progress: Vec<InProgress> = Vec::new();
    loop {
        let wait = if in_progress.is_empty() { Duration::from_secs(3600) } else { Duration::from_secs(1) };
        match rx.recv_timeout(wait) {
            Ok(job) => {
                let done = Arc::new(AtomicBool::new(false));
                in_progress.push(InProgress {
                    kind: job.kind,
                    started: Instant::now(),
                    done: done.clone(),
                    reported_slow: false,
                });
                destroy_apart(job, done);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        in_progress.retain_mut(|c| {
            let done = c.done.load(Ordering::Acquire);
            if done {
                if c.reported_slow {
                    tracing::warn!(kind = c.kind.label(), seconds = c.started.elapsed().as_secs(), "a slow Kafka client close finished");
                }
                return false;
            }
            if !c.reported_slow && c.started.elapsed() >= SLOW_CLOSE {
                c.reported_slow = true;
                tracing::warn!(
                    kind = c.kind.label(),
                    "a Kafka client has not finished closing after {SLOW_CLOSE:?} (group leave or broker unreachable); it goes on in the background"
                );
            }
            true
        });
    }
}

/// Destroys one client on a new thread (or, when none can be started, right here: still off
/// the runtime).
fn destroy_apart(job: Job, done: Arc<AtomicBool>) {
    let slot = Arc::new(Mutex::new(Some(job)));
    let (taken, finished) = (slot.clone(), done.clone());
    let spawned =
        std::thread::Builder::new().name("kafka-client-close".to_owned()).spawn(move || destroy(&taken, &finished));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread for closing a Kafka client; closing it on the closer thread");
        destroy(&slot, &done);
    }
}

fn destroy(slot: &Mutex<Option<Job>>, done: &AtomicBool) {
    let Some(job) = slot.lock().ok().and_then(|mut j| j.take()) else { return };
    let kind = job.kind.label();
    drop(job.client);
    metrics::kafka_client_closing(kind, -1.0);
    metrics::kafka_client_closed(kind);
    done.store(true, Ordering::Release);
}

/// Called from a client context's `Drop` (the moment librdkafka's handle is destroyed): counts
/// a client destroyed on a tokio thread, which this module exists to prevent.
pub fn context_dropped(kind: ClientKind) {
    if tokio::runtime::Handle::try_current().is_ok() {
        metrics::kafka_client_dropped_on_runtime(kind.label());
        tracing::error!(
            kind = kind.label(),
            thread = std::thread::current().name().unwrap_or("?"),
            "a Kafka client was destroyed on a tokio thread"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(std::sync::mpsc::Sender<(Option<String>, bool)>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let on_runtime = tokio::runtime::Handle::try_current().is_ok();
            let _ = self.0.send((std::thread::current().name().map(str::to_owned), on_runtime));
        }
    }

    /// H3/M4: a guarded client dropped on a tokio worker (here: while unwinding from a panic)
    /// is destroyed on the closer's thread, never on the runtime.
    #[tokio::test]
    async fn a_guarded_client_is_destroyed_off_the_runtime_even_on_panic() {
        let (tx, rx) = std::sync::mpsc::channel();
        let guarded = OffRuntime::new(Probe(tx), ClientKind::Consumer);
        let task = tokio::spawn(async move {
            let _held = guarded;
            panic!("a socket loop panics");
        });
        assert!(task.await.is_err());
        let (thread, on_runtime) = rx.recv_timeout(Duration::from_secs(10)).expect("destroyed");
        assert_eq!(thread.as_deref(), Some("kafka-client-close"));
        assert!(!on_runtime);
    }
}
