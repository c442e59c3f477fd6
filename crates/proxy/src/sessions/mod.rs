//! Connection limits shared by every node through `_wsproxy.session.state`.
//!
//! A socket joins its session before the upgrade ([`Sessions::join`]) and leaves when its
//! [`SessionGuard`] drops. Each change is a conditional write to the state log (see
//! [`crate::kafka::state_log`]): a node decides from the state it has read, writes the new
//! session, and keeps the decision only if its record was accepted. Two sockets racing for the
//! last slot on two nodes write from the same state; the log orders them and the second is
//! refused. On one node, changes of one session are serialised, and a socket that is still
//! leaving is waited for, so a client that reconnects at once finds its slot free.
//!
//! Slots of nodes that died are freed by the others: every node checks the consumer group of
//! each node that owns instances (`ws-proxy-session-consumer-<server-id>`); once the group has
//! no members (its session timeout passed), that node's instances are removed. A node also
//! removes its own leftovers when it starts, before it reports ready.
//!
//! A node's server id names its reader's group, so it must be unique: a Scala node given the
//! same id (both default to `node-1`) would share the group, take the state partition from one
//! another and have its live slots freed as leftovers. A node that finds a reader that is not
//! ours in its group says so at once and waits at most the load timeout for it to leave (a
//! crashed node leaves when its session timeout passes), then refuses to start; the sweep
//! reports one that joins later (`wsproxy_server_id_clash`).
//!
//! A node also frees its own slots that no socket holds (H4): a removal whose write failed
//! (Kafka unavailable longer than the state producer's delivery timeout), or a join that
//! answered 503 but whose record landed later. Each node knows which instances its live
//! [`SessionGuard`]s hold; the sweep removes every other instance of this node from the log,
//! retrying until Kafka accepts the write.

pub mod log;
pub mod model;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kafka::state_log::{self, StateLog, StateLogError, StateLogSettings};
use crate::kafka::Kafka;
use crate::telemetry::metrics;
pub use log::SessionLog;
pub use model::{Instance, Kind, Refusal, Session};

/// How often a write that lost a race is decided again before giving up.
const MAX_ATTEMPTS: usize = 8;

/// Why a socket could not join its session.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0:?}")]
    Refused(Refusal),
    #[error("the session state in Kafka could not be updated: {0}")]
    Unavailable(String),
}

impl From<StateLogError> for JoinError {
    fn from(e: StateLogError) -> Self {
        JoinError::Unavailable(e.to_string())
    }
}

/// The session registry of this node; cheap to clone. `L` is the state log: Kafka's, or an
/// in-memory one in unit tests.
pub struct Sessions<L: SessionLog = StateLog> {
    inner: Arc<Inner<L>>,
}

impl<L: SessionLog> Clone for Sessions<L> {
    fn clone(&self) -> Self {
        Sessions { inner: self.inner.clone() }
    }
}

struct Inner<L> {
    log: L,
    server_id: String,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Removals of instances whose sockets ended.
    leaving: TaskTracker,
    node_timeout: Duration,
    /// The instances this node's live guards hold, by session: every other instance of this
    /// node in the log is a leftover of a failed write.
    held: Mutex<HashMap<String, Vec<Instance>>>,
    /// Whether the sweep already warned that it cannot free leftovers yet (warned once per outage).
    retrying: std::sync::atomic::AtomicBool,
    /// Whether the sweep saw another node's reader under this node's server id.
    clash: std::sync::atomic::AtomicBool,
}

/// Serialises the changes of one session on this node.
#[derive(Default)]
struct Gate {
    lock: tokio::sync::Mutex<()>,
    /// Sockets of this session that ended and whose removal is not written yet.
    leaving: AtomicUsize,
    left: Notify,
}

/// A socket's place in its session; dropping it frees the place.
pub struct SessionGuard<L: SessionLog = StateLog> {
    sessions: Sessions<L>,
    session_id: String,
    instance: Instance,
    gate: Arc<Gate>,
    /// Whether this socket was already counted as leaving.
    announced: bool,
}

impl<L: SessionLog> SessionGuard<L> {
    /// The socket is closing: a reconnect of the same client waits for its slot instead of
    /// being refused (call once the client closed; the slot is freed when the guard drops).
    pub fn closing(&mut self) {
        if !self.announced {
            self.announced = true;
            self.gate.leaving.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl<L: SessionLog> Drop for SessionGuard<L> {
    fn drop(&mut self) {
        // Counted now, so a reconnect that arrives before the removal is written waits for it.
        self.closing();
        let (sessions, id, instance, gate) =
            (self.sessions.clone(), self.session_id.clone(), self.instance.clone(), self.gate.clone());
        self.sessions.inner.leaving.spawn(async move {
            {
                let _serial = gate.lock.lock().await;
                if let Err(e) = sessions.remove(&id, |i| i == &instance).await {
                    metrics::session_state_write_failed("leave");
                    tracing::warn!(session = %id, error = %e, "could not free a session slot; the node's sweep retries until Kafka accepts it");
                }
                // Held until its own removal was tried: from now on the sweep frees it if needed.
                sessions.release(&id, &instance);
            }
            gate.leaving.fetch_sub(1, Ordering::AcqRel);
            gate.left.notify_waiters();
        });
    }
}

/// Settings of the registry (from `WSPROXY_SESSION_STATE_*` and the node's id).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub server_id: String,
    pub log: StateLogSettings,
    /// Silence after which another node's instances are freed.
    pub node_timeout: Duration,
}

/// Waits until no reader that is not ours is in this node's group, at most the load timeout:
/// a live node with the same server id makes the start fail, one that crashed leaves the group
/// when its session timeout passes. Says so at once, never silently.
async fn claim_server_id(kafka: &Kafka, settings: &SessionSettings) -> Result<(), StateLogError> {
    let (id, group, wait) = (&settings.server_id, &settings.log.group_id, settings.log.load_timeout);
    let t0 = tokio::time::Instant::now();
    let mut seen = false;
    loop {
        let others = match state_log::foreign_members(kafka, group).await {
            Ok(others) => others,
            Err(e) => {
                tracing::debug!(group, error = %e, "could not check whether another node uses this server id");
                return Ok(());
            }
        };
        if others.is_empty() {
            if seen {
                metrics::server_id_clash(false);
                tracing::warn!(group, waited = ?t0.elapsed(), "the other node with this server id left its group; this node takes the id over");
            }
            return Ok(());
        }
        if !seen {
            seen = true;
            metrics::server_id_clash(true);
            tracing::error!(group, members = ?others, "another node uses WSPROXY_SERVER_ID={id}: every node needs its own server id (the Scala proxy's default is node-1, as ours); waiting up to {wait:?} for it to leave (a crashed node leaves when its session timeout passes)");
        }
        if t0.elapsed() >= wait {
            return Err(StateLogError::ServerIdInUse {
                server_id: id.clone(),
                group: group.clone(),
                members: others,
                waited: t0.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The consumer group through which a node's liveness is seen (the reference's name).
pub fn node_group(server_id: &str) -> String {
    format!("ws-proxy-session-consumer-{server_id}")
}

impl Sessions {
    /// Loads the session state and frees what this node owned before a restart or crash.
    pub async fn open(kafka: &Kafka, settings: SessionSettings) -> Result<Sessions, StateLogError> {
        claim_server_id(kafka, &settings).await?;
        let log = StateLog::open(kafka, settings.log).await?;
        Sessions::with_log(log, settings.server_id, settings.node_timeout).await
    }
}

impl<L: SessionLog> Sessions<L> {
    /// The registry of node `server_id` over a loaded `log`; frees what this node owned before
    /// a restart or crash.
    pub async fn with_log(log: L, server_id: String, node_timeout: Duration) -> Result<Sessions<L>, StateLogError> {
        let sessions = Sessions {
            inner: Arc::new(Inner {
                log,
                server_id,
                gates: Mutex::new(HashMap::new()),
                leaving: TaskTracker::new(),
                node_timeout,
                held: Mutex::new(HashMap::new()),
                retrying: std::sync::atomic::AtomicBool::new(false),
                clash: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let mine = sessions.inner.server_id.clone();
        let freed = sessions.free_node(&mine).await?;
        tracing::info!(sessions = sessions.inner.log.values().len(), freed, "session state loaded");
        Ok(sessions)
    }

    /// Adds `instance` to the session `session_id` under `limit` (0: unlimited).
    ///
    /// A refusal is only given on the latest state: the log is read up to its end first, and
    /// sockets of this session that are closing on this node are waited for.
    pub async fn join(
        &self,
        kind: Kind,
        session_id: &str,
        instance: Instance,
        limit: u32,
    ) -> Result<SessionGuard<L>, JoinError> {
        let gate = self.gate(session_id);
        let (mut synced, mut waited, mut lost) = (false, false, false);
        for _ in 0..MAX_ATTEMPTS {
            let serial = gate.lock.lock().await;
            let (current, based_on) = self.current(session_id);
            let base = current.unwrap_or_else(|| Session::new(kind, session_id, limit));
            let refusal = match base.admit(instance.clone(), limit) {
                Ok(next) => {
                    let written = self.inner.log.write_if(session_id, Some(&next.to_json()), based_on).await;
                    if written.is_err() {
                        // The record may still land: the sweep then removes it (no guard holds it).
                        metrics::session_state_write_failed("join");
                    }
                    if written? {
                        // Held before the gate opens, so that the sweep never takes it for a leftover.
                        self.hold(session_id, &instance);
                        return Ok(SessionGuard {
                            sessions: self.clone(),
                            session_id: session_id.to_owned(),
                            instance,
                            gate: gate.clone(),
                            announced: false,
                        });
                    }
                    lost = true;
                    continue;
                }
                Err(refusal) => refusal,
            };
            drop(serial);
            if !synced {
                // A socket that just left on another node frees its slot in the log.
                self.inner.log.sync().await?;
                synced = true;
            } else if !waited && gate.leaving.load(Ordering::Acquire) > 0 {
                // A client that reconnects at once finds its old socket still closing here.
                self.wait_for_leavers(&gate).await;
                waited = true;
            } else {
                if lost {
                    let _serial = gate.lock.lock().await;
                    self.repair(session_id).await;
                }
                return Err(JoinError::Refused(refusal));
            }
        }
        if lost {
            let _serial = gate.lock.lock().await;
            self.repair(session_id).await;
        }
        Err(JoinError::Unavailable(format!("too many concurrent changes to session {session_id}")))
    }

    /// The sessions as this node knows them.
    pub fn all(&self) -> Vec<Session> {
        self.inner.log.values().into_iter().filter_map(|(_, v)| Session::from_json(&v).ok()).collect()
    }

    /// Frees every slot of nodes whose consumer group has no members, until `stop`.
    pub fn spawn_sweeper(&self, stop: CancellationToken) {
        let sessions = self.clone();
        let every = (self.inner.node_timeout / 3).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while tokio::select! { _ = tick.tick() => true, _ = stop.cancelled() => false } {
                sessions.sweep().await;
            }
        });
    }

    /// Waits for the slots of closed sockets to be freed, then stops reading the log.
    pub async fn close(&self, timeout: Duration) {
        self.inner.leaving.close();
        if tokio::time::timeout(timeout, self.inner.leaving.wait()).await.is_err() {
            tracing::warn!("some session slots were not freed before shutdown; other nodes will free them");
        }
        self.inner.log.close().await;
    }

    async fn sweep(&self) {
        self.check_server_id().await;
        self.free_leftovers().await;
        let mut owners: Vec<String> = self
            .all()
            .iter()
            .flat_map(|s| s.instances().iter().map(|i| i.server_id().to_owned()).collect::<Vec<_>>())
            .filter(|id| *id != self.inner.server_id)
            .collect();
        owners.sort();
        owners.dedup();
        for node in owners {
            match self.inner.log.group_has_members(&node_group(&node)).await {
                Ok(true) => {}
                Ok(false) => match self.free_node(&node).await {
                    Ok(n) => {
                        tracing::info!(node = %node, freed = n, "freed the session slots of a node that went silent")
                    }
                    Err(e) => tracing::warn!(node = %node, error = %e, "could not free the slots of a silent node"),
                },
                Err(e) => tracing::debug!(node = %node, error = %e, "could not check whether a node is alive"),
            }
        }
    }

    /// Reports a reader that is not ours in this node's group (a Scala node started with this
    /// node's server id after it).
    async fn check_server_id(&self) {
        let id = &self.inner.server_id;
        let group = node_group(id);
        match self.inner.log.foreign_members(&group).await {
            Ok(others) if others.is_empty() => {
                if self.inner.clash.swap(false, Ordering::AcqRel) {
                    metrics::server_id_clash(false);
                    tracing::info!(group, "the other node with this server id left");
                }
            }
            Ok(others) => {
                if !self.inner.clash.swap(true, Ordering::AcqRel) {
                    metrics::server_id_clash(true);
                    tracing::error!(group, members = ?others, "another node uses WSPROXY_SERVER_ID={id}: every node needs its own server id; the two take the session state from each other until one is stopped");
                }
            }
            Err(e) => tracing::debug!(group, error = %e, "could not check whether another node uses this server id"),
        }
    }

    /// Removes this node's instances that no live socket holds (H4): left by a removal whose
    /// write failed, or by a join that failed after its record was written.
    async fn free_leftovers(&self) {
        let candidates: Vec<String> = self
            .all()
            .iter()
            .filter(|s| s.instances().iter().any(|i| self.is_leftover(s.session_id(), i)))
            .map(|s| s.session_id().to_owned())
            .collect();
        let (mut freed, mut left) = (0, 0);
        let mut failure = None;
        for session_id in candidates {
            if failure.is_some() {
                // Kafka refuses writes: the next sweep tries again.
                left += self.leftovers(&session_id);
                continue;
            }
            let gate = self.gate(&session_id);
            let _serial = gate.lock.lock().await;
            // Decided again behind the gate: a join of this session may just have finished.
            let n = self.leftovers(&session_id);
            if n == 0 {
                continue;
            }
            match self.remove(&session_id, |i| self.is_leftover(&session_id, i)).await {
                Ok(true) => freed += n,
                Ok(false) => left += n,
                Err(e) => {
                    metrics::session_state_write_failed("leave");
                    left += n;
                    failure = Some(e);
                }
            }
        }
        metrics::session_leftover_slots(left);
        if freed > 0 {
            metrics::session_leftover_slots_freed(freed);
            tracing::warn!(
                freed,
                left,
                "freed session slots of this node that no socket held (a state write had failed)"
            );
        }
        match failure {
            Some(e) if !self.inner.retrying.swap(true, Ordering::AcqRel) => {
                tracing::warn!(left, error = %e, "could not free this node's leftover session slots yet; retrying every sweep");
            }
            Some(e) => tracing::debug!(left, error = %e, "still cannot free this node's leftover session slots"),
            None => self.inner.retrying.store(false, Ordering::Release),
        }
    }

    /// How many of this node's instances in the session no socket holds.
    fn leftovers(&self, session_id: &str) -> usize {
        self.current(session_id)
            .0
            .map_or(0, |s| s.instances().iter().filter(|i| self.is_leftover(session_id, i)).count())
    }

    fn is_leftover(&self, session_id: &str, instance: &Instance) -> bool {
        instance.server_id() == self.inner.server_id
            && !self.held().get(session_id).is_some_and(|held| held.contains(instance))
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Instance>>> {
        self.inner.held.lock().expect("held instances are never poisoned")
    }

    /// A guard now holds `instance` (called behind the session's gate).
    fn hold(&self, session_id: &str, instance: &Instance) {
        self.held().entry(session_id.to_owned()).or_default().push(instance.clone());
    }

    /// The guard holding `instance` dropped and its removal was tried.
    fn release(&self, session_id: &str, instance: &Instance) {
        let mut held = self.held();
        if let Some(instances) = held.get_mut(session_id) {
            if let Some(at) = instances.iter().position(|i| i == instance) {
                instances.swap_remove(at);
            }
            if instances.is_empty() {
                held.remove(session_id);
            }
        }
    }

    /// Removes every instance owned by `server_id`; returns how many were removed.
    async fn free_node(&self, server_id: &str) -> Result<usize, StateLogError> {
        let mut freed = 0;
        for session in self.all() {
            let n = session.instances().iter().filter(|i| i.server_id() == server_id).count();
            if n == 0 {
                continue;
            }
            let gate = self.gate(session.session_id());
            let _serial = gate.lock.lock().await;
            if self.remove(session.session_id(), |i| i.server_id() == server_id).await? {
                freed += n;
            }
        }
        Ok(freed)
    }

    /// Removes the selected instances; the session is deleted when none remain. The caller
    /// holds the session's gate.
    async fn remove(&self, session_id: &str, gone: impl Fn(&Instance) -> bool) -> Result<bool, StateLogError> {
        let mut lost = false;
        for _ in 0..MAX_ATTEMPTS {
            let (current, based_on) = self.current(session_id);
            let Some(next) = current.and_then(|s| s.without(&gone)) else { break };
            let value = (!next.instances().is_empty()).then(|| next.to_json());
            if self.inner.log.write_if(session_id, value.as_deref(), based_on).await? {
                return Ok(true);
            }
            lost = true;
        }
        // Nothing (left) to remove, or too many races: a rejected record of ours must not
        // stay the key's latest.
        if lost {
            self.repair(session_id).await;
        }
        Ok(false)
    }

    /// After losing a race and then giving up (refusing, nothing left to remove, too many
    /// races), our rejected record may be the latest of the key in the log; compaction could
    /// keep it. Writing the accepted state again makes it last.
    async fn repair(&self, session_id: &str) {
        let (current, based_on) = self.current(session_id);
        let value = current.map(|s| s.to_json());
        if let Err(e) = self.inner.log.write_if(session_id, value.as_deref(), based_on).await {
            tracing::debug!(session = %session_id, error = %e, "could not rewrite the session after a race");
        }
    }

    /// The session as accepted, and the offset a change must be based on.
    fn current(&self, session_id: &str) -> (Option<Session>, Option<i64>) {
        match self.inner.log.get(session_id) {
            None => (None, None),
            Some(entry) => {
                let session = entry.value.as_deref().and_then(|v| match Session::from_json(v) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(session = %session_id, error = %e, "unreadable session record; treating it as empty");
                        None
                    }
                });
                (session, state_log::based_on(Some(&entry)))
            }
        }
    }

    fn gate(&self, session_id: &str) -> Arc<Gate> {
        let mut gates = self.inner.gates.lock().expect("gates are never poisoned");
        // Forget gates nobody holds, so that the map stays as small as the set of live sessions.
        if gates.len() > 1024 {
            gates.retain(|_, g| Arc::strong_count(g) > 1);
        }
        gates.entry(session_id.to_owned()).or_default().clone()
    }

    async fn wait_for_leavers(&self, gate: &Gate) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = gate.left.notified();
            if gate.leaving.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                return;
            }
        }
    }
}

/// A seam for in-process tests of the HTTP edge (`crate::http::tests`): a registry over a
/// log that was never opened. Nothing is sent to Kafka; a socket that got as far as joining
/// would wait for Kafka, so those tests stop before (the integration tests cover joining).
#[cfg(test)]
impl Sessions {
    pub(crate) fn unopened(kafka: &Kafka, server_id: &str) -> Sessions {
        Sessions {
            inner: Arc::new(Inner {
                log: StateLog::unopened(kafka, "_wsproxy.session.state"),
                server_id: server_id.to_owned(),
                gates: Mutex::new(HashMap::new()),
                leaving: TaskTracker::new(),
                node_timeout: Duration::from_secs(30),
                held: Mutex::new(HashMap::new()),
                retrying: std::sync::atomic::AtomicBool::new(false),
                clash: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }
}
