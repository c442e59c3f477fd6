//! What [`Sessions`](super::Sessions) needs of the replicated state log, as a trait: the Kafka
//! log ([`StateLog`]) in production, an in-memory log ([`memory::MemoryLog`]) in unit tests,
//! so that the decisions of `join` (races, retries, waiting for leavers, repairs) and of the
//! sweep are tested without a broker.
//!
//! The contract is the state log's (see [`crate::kafka::state_log`]): one ordered log that
//! every node reads into a map; a write carries the offset of the key's accepted record it
//! replaces, and every node accepts it only if that record is still the accepted one.

use std::future::Future;
use std::sync::Arc;

use crate::kafka::state_log::{Entry, StateLog, StateLogError};

/// The replicated map behind sessions, as one node reads it.
pub trait SessionLog: Send + Sync + 'static {
    /// The accepted record of `key`, if any was ever seen.
    fn get(&self, key: &str) -> Option<Entry>;

    /// Every key whose accepted record has a value.
    fn values(&self) -> Vec<(String, Arc<[u8]>)>;

    /// Writes `value` (`None`: a tombstone) for `key` if the key's accepted record is still
    /// `based_on` (`None`: the key has none). Returns whether it was accepted, once read back.
    fn write_if(
        &self,
        key: &str,
        value: Option<&[u8]>,
        based_on: Option<i64>,
    ) -> impl Future<Output = Result<bool, StateLogError>> + Send;

    /// Returns once every record written before the call has been read.
    fn sync(&self) -> impl Future<Output = Result<(), StateLogError>> + Send;

    /// True when the consumer group has members (the node owning it is alive).
    fn group_has_members(&self, group: &str) -> impl Future<Output = Result<bool, StateLogError>> + Send;

    /// Stops reading the log.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

impl SessionLog for StateLog {
    fn get(&self, key: &str) -> Option<Entry> {
        StateLog::get(self, key)
    }

    fn values(&self) -> Vec<(String, Arc<[u8]>)> {
        StateLog::values(self)
    }

    fn write_if(
        &self,
        key: &str,
        value: Option<&[u8]>,
        based_on: Option<i64>,
    ) -> impl Future<Output = Result<bool, StateLogError>> + Send {
        StateLog::write_if(self, key, value, based_on)
    }

    fn sync(&self) -> impl Future<Output = Result<(), StateLogError>> + Send {
        StateLog::sync(self)
    }

    fn group_has_members(&self, group: &str) -> impl Future<Output = Result<bool, StateLogError>> + Send {
        StateLog::group_has_members(self, group)
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        StateLog::close(self)
    }
}

/// An in-memory state log for unit tests: nodes share one [`memory::SharedLog`], and each
/// reads it only when the Kafka log's reader would have to have read it (a write reads up to
/// its own record, `sync` up to the end), so a test decides what each node has seen.
#[cfg(test)]
pub mod memory {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::SessionLog;
    use crate::kafka::state_log::{apply_record, Entry, StateLogError};

    /// A record in the shared log.
    struct Written {
        key: String,
        value: Option<Arc<[u8]>>,
        /// The header every write of this proxy carries (`-1`: the key had no record).
        based_on: i64,
    }

    /// The one log all nodes of a test write to, in order.
    #[derive(Default)]
    pub struct SharedLog {
        records: Mutex<Vec<Written>>,
        /// Consumer groups with members (nodes that are alive).
        alive: Mutex<HashSet<String>>,
        /// How many of the next writes another writer gets in before, rewriting the same key.
        interfere: AtomicUsize,
        /// How many of the next writes land in the log but report a failure (an
        /// acknowledgement that timed out).
        lost_acks: AtomicUsize,
        /// How many of the next writes fail without landing.
        failures: AtomicUsize,
    }

    impl SharedLog {
        pub fn new() -> Arc<SharedLog> {
            Arc::new(SharedLog::default())
        }

        /// The next `n` writes each lose a race: another writer's change of the same key lands
        /// just before them.
        pub fn interfere(&self, n: usize) {
            self.interfere.store(n, Ordering::SeqCst);
        }

        /// The next `n` writes land but their writer hears a timeout.
        pub fn lose_acks(&self, n: usize) {
            self.lost_acks.store(n, Ordering::SeqCst);
        }

        /// The next `n` writes fail and do not land (Kafka unavailable).
        pub fn fail(&self, n: usize) {
            self.failures.store(n, Ordering::SeqCst);
        }

        pub fn set_alive(&self, group: &str, alive: bool) {
            let mut groups = self.alive.lock().unwrap();
            if alive {
                groups.insert(group.to_owned());
            } else {
                groups.remove(group);
            }
        }

        /// How many records were written so far.
        pub fn written(&self) -> usize {
            self.records.lock().unwrap().len()
        }

        /// The map every node reads once it has read the whole log.
        pub fn state(&self) -> HashMap<String, Entry> {
            let mut map = HashMap::new();
            for (offset, r) in self.records.lock().unwrap().iter().enumerate() {
                apply_record(&mut map, &r.key, offset as i64, Some(r.based_on), r.value.as_deref());
            }
            map
        }

        fn append(&self, key: &str, value: Option<&[u8]>, based_on: Option<i64>) -> i64 {
            let mut records = self.records.lock().unwrap();
            records.push(Written {
                key: key.to_owned(),
                value: value.map(Arc::from),
                based_on: based_on.unwrap_or(-1),
            });
            records.len() as i64 - 1
        }

        /// Takes one of `counter`'s remaining events, if any.
        fn take(counter: &AtomicUsize) -> bool {
            counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        }
    }

    /// One node's reader of a [`SharedLog`].
    pub struct MemoryLog {
        shared: Arc<SharedLog>,
        view: Mutex<View>,
    }

    #[derive(Default)]
    struct View {
        /// The next offset this node applies.
        next: usize,
        entries: HashMap<String, Entry>,
        /// Whether each record read so far was accepted.
        accepted: Vec<bool>,
    }

    impl MemoryLog {
        /// A node that has read nothing yet.
        pub fn new(shared: &Arc<SharedLog>) -> MemoryLog {
            MemoryLog { shared: shared.clone(), view: Mutex::new(View::default()) }
        }

        /// Reads the log up to offset `until` (exclusive).
        fn read_to(&self, until: usize) {
            let records = self.shared.records.lock().unwrap();
            let mut view = self.view.lock().unwrap();
            while view.next < until.min(records.len()) {
                let (offset, r) = (view.next, &records[view.next]);
                let ok = apply_record(&mut view.entries, &r.key, offset as i64, Some(r.based_on), r.value.as_deref());
                view.accepted.push(ok);
                view.next += 1;
            }
        }
    }

    impl SessionLog for MemoryLog {
        fn get(&self, key: &str) -> Option<Entry> {
            self.view.lock().unwrap().entries.get(key).cloned()
        }

        fn values(&self) -> Vec<(String, Arc<[u8]>)> {
            let view = self.view.lock().unwrap();
            view.entries.iter().filter_map(|(k, e)| Some((k.clone(), e.value.clone()?))).collect()
        }

        async fn write_if(
            &self,
            key: &str,
            value: Option<&[u8]>,
            based_on: Option<i64>,
        ) -> Result<bool, StateLogError> {
            let shared = &self.shared;
            if SharedLog::take(&shared.failures) {
                return Err(StateLogError::Unacknowledged { topic: "memory".to_owned(), timeout: Duration::ZERO });
            }
            if SharedLog::take(&shared.interfere) {
                // Another node rewrites the key from the latest state, just before this write.
                let latest = shared.state().get(key).cloned();
                let theirs = crate::kafka::state_log::based_on(latest.as_ref());
                shared.append(key, latest.and_then(|e| e.value).as_deref(), theirs);
            }
            let offset = shared.append(key, value, based_on) as usize;
            // Other tasks run between the write and its reading back, as with Kafka.
            tokio::task::yield_now().await;
            self.read_to(offset + 1);
            if SharedLog::take(&shared.lost_acks) {
                return Err(StateLogError::Unacknowledged { topic: "memory".to_owned(), timeout: Duration::ZERO });
            }
            Ok(self.view.lock().unwrap().accepted[offset])
        }

        async fn sync(&self) -> Result<(), StateLogError> {
            let end = self.shared.written();
            self.read_to(end);
            Ok(())
        }

        async fn group_has_members(&self, group: &str) -> Result<bool, StateLogError> {
            Ok(self.shared.alive.lock().unwrap().contains(group))
        }

        async fn close(&self) {}
    }
}
