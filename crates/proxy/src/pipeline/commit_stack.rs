//! The commit stack of an `autoCommit=false` consume socket (reference 1.3): the records sent
//! and not yet committed, per partition, newest last.
//!
//! Committing a record commits it and every older record of its partition. Each partition
//! keeps at most `max_per_partition` entries; when full, the oldest is dropped (it stays
//! uncommitted, so Kafka delivers it again to the group's next consumer). Records older than a
//! maximum age can be committed automatically ([`CommitStack::expired`]).
//! Pure data: the consume loop owns one and turns its answers into Kafka commits. Partitions
//! are keys of any type (`(topic, partition)` for sockets that read several topics).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    timestamp: i64,
    sent_at: Instant,
}

/// Uncommitted records of one socket, by partition.
#[derive(Debug)]
pub struct CommitStack<P = i32> {
    max_per_partition: usize,
    partitions: HashMap<P, VecDeque<Entry>>,
}

/// Why a commit names nothing to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMiss {
    /// No record of that partition and offset was sent, or it was already committed
    /// (or dropped because the stack was full).
    Unknown,
}

impl<P: Hash + Eq + Ord + Clone> CommitStack<P> {
    pub fn new(max_per_partition: usize) -> Self {
        CommitStack { max_per_partition: max_per_partition.max(1), partitions: HashMap::new() }
    }

    /// Remembers a record that was sent to the client.
    pub fn stash(&mut self, partition: P, offset: i64, timestamp: i64, now: Instant) {
        let stack = self.partitions.entry(partition).or_default();
        if stack.len() >= self.max_per_partition {
            stack.pop_front();
        }
        stack.push_back(Entry { offset, timestamp, sent_at: now });
    }

    /// Commits one record: removes it and all older entries of its partition and returns the
    /// offset to commit to Kafka (the record's offset + 1).
    pub fn commit(&mut self, partition: &P, offset: i64, timestamp: i64) -> Result<i64, CommitMiss> {
        let stack = self.partitions.get_mut(partition).ok_or(CommitMiss::Unknown)?;
        let idx =
            stack.iter().position(|e| e.offset == offset && e.timestamp == timestamp).ok_or(CommitMiss::Unknown)?;
        stack.drain(..=idx);
        Ok(offset + 1)
    }

    /// Takes, per partition, the records sent at least `max_age` ago, and returns the offset to
    /// commit for each partition that had any: after the highest of them (a partition read
    /// again from an older offset holds some records twice, the highest not always last).
    pub fn expired(&mut self, now: Instant, max_age: Duration) -> Vec<(P, i64)> {
        let mut out = Vec::new();
        for (partition, stack) in &mut self.partitions {
            let old = stack.iter().take_while(|e| now.saturating_duration_since(e.sent_at) >= max_age).count();
            if let Some(highest) = stack.drain(..old).map(|e| e.offset).max() {
                out.push((partition.clone(), highest + 1));
            }
        }
        out.sort_unstable();
        out
    }

    /// Forgets partitions this socket no longer owns (after a rebalance).
    pub fn retain_partitions(&mut self, owned: impl Fn(&P) -> bool) {
        self.partitions.retain(|p, _| owned(p));
    }

    /// Number of uncommitted records held.
    pub fn len(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stash_keeps_one_stack_per_partition() {
        let now = Instant::now();
        let mut s = CommitStack::new(100);
        for p in 0..5 {
            s.stash(p, 0, 1, now);
        }
        assert_eq!(s.partitions.len(), 5);
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn full_stacks_drop_their_oldest_entry() {
        let now = Instant::now();
        let mut s = CommitStack::new(3);
        for p in 0..3 {
            for o in 0..20 {
                s.stash(p, o, o, now);
            }
        }
        for p in 0..3 {
            let offsets: Vec<i64> = s.partitions[&p].iter().map(|e| e.offset).collect();
            assert_eq!(offsets, vec![17, 18, 19]);
        }
        assert_eq!(s.commit(&0, 5, 5), Err(CommitMiss::Unknown), "dropped entries cannot be committed");
    }

    #[test]
    fn commit_removes_the_record_and_everything_older_on_its_partition_only() {
        let now = Instant::now();
        let mut s = CommitStack::new(10);
        for o in 0..5 {
            s.stash(0, o, 100 + o, now);
            s.stash(1, o, 100 + o, now);
        }
        assert_eq!(s.commit(&0, 2, 102), Ok(3));
        assert_eq!(s.partitions[&0].iter().map(|e| e.offset).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(s.partitions[&1].len(), 5);
        assert_eq!(s.commit(&0, 2, 102), Err(CommitMiss::Unknown), "a second commit of the same id misses");
        assert_eq!(s.commit(&0, 3, 999), Err(CommitMiss::Unknown), "timestamp must match");
        assert_eq!(s.commit(&7, 0, 100), Err(CommitMiss::Unknown));
    }

    #[test]
    fn expired_commits_the_newest_old_record_per_partition() {
        let t0 = Instant::now();
        let mut s = CommitStack::new(10);
        s.stash(0, 10, 0, t0);
        s.stash(0, 11, 0, t0 + Duration::from_secs(1));
        s.stash(0, 12, 0, t0 + Duration::from_secs(30));
        s.stash(1, 5, 0, t0 + Duration::from_secs(30));
        let out = s.expired(t0 + Duration::from_secs(21), Duration::from_secs(20));
        assert_eq!(out, vec![(0, 12)]);
        assert_eq!(s.len(), 2);
        assert!(s.expired(t0 + Duration::from_secs(21), Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn expired_commits_after_the_highest_old_record_when_a_partition_was_read_again() {
        let t0 = Instant::now();
        let mut s = CommitStack::new(100);
        for o in 0..10 {
            s.stash(0, o, 0, t0);
        }
        // The partition was assigned back and read again from offset 0.
        for o in 0..3 {
            s.stash(0, o, 0, t0 + Duration::from_secs(1));
        }
        assert_eq!(s.expired(t0 + Duration::from_secs(30), Duration::from_secs(20)), vec![(0, 10)]);
        assert!(s.is_empty());
    }
}
