//! The broadcast log of one shared consumer: the records its reader rendered, newest last,
//! and each socket's place in it ([`Cursor`]). Pure (no I/O, no locks): the hub wraps it in a
//! mutex held only for pushes and reads, never across an await.
//!
//! The log keeps at most `max_records` entries and `max_bytes` of rendered frames; older
//! entries are dropped as new ones come, and so are entries every socket has read (a topic
//! whose sockets keep up holds next to nothing). A socket whose next entry was dropped is too
//! far behind ([`Behind`]): it is closed, or skips to where the fastest socket is with one
//! [`GapRange`] per partition it missed; a newcomer starts there too. The reader appends
//! while the fastest socket has less than a quarter of the bounds unread ([`Log::has_room`]),
//! and waits for that socket otherwise: a burst of records larger than the log is read at the
//! pace of the fastest socket (the rest waits in Kafka), and a socket falls behind only once
//! it trails the fastest by three quarters of the bounds (for records small next to them: an
//! entry is pushed whatever its size once the fastest socket has read everything, and may
//! then drop all a slower socket has not read). So memory is bounded per shared consumer
//! whatever the number of sockets, and a slow socket slows no socket faster than it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// The reader keeps at most 1/`READ_AHEAD` of the bounds unread by the fastest socket.
const READ_AHEAD: usize = 4;

/// One entry: a record's place and what the reader made of it (`T`: its frames).
#[derive(Debug)]
pub struct Slot<T> {
    pub partition: i32,
    pub offset: i64,
    /// Bytes this entry holds (its rendered frames).
    pub size: usize,
    pub payload: T,
}

/// How far behind a socket was when its next entry was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    pub records: u64,
    pub bytes: u64,
}

/// Records of one partition a skipping socket did not get (both offsets included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapRange {
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
}

/// A socket's place: the sequence number of its next entry, and the next offset it expects
/// per partition (for gap ranges).
#[derive(Debug, Clone)]
pub struct Cursor {
    next: u64,
    /// Bytes appended to the log before `next` (for [`Behind::bytes`]).
    bytes_before: u64,
    expected: HashMap<i32, i64>,
}

/// The log. `T` is what a socket writes (shared frames); entries are `Arc`s, so a read copies
/// pointers, never frames.
#[derive(Debug)]
pub struct Log<T> {
    entries: VecDeque<(Arc<Slot<T>>, u64)>,
    /// Sequence number of `entries[0]`.
    first_seq: u64,
    /// Sequence number of the next entry pushed.
    next_seq: u64,
    /// Bytes held by `entries`.
    held: usize,
    /// Bytes ever appended.
    appended: u64,
    max_records: usize,
    max_bytes: usize,
    /// Offset of the last record pushed, per partition.
    latest: HashMap<i32, i64>,
    /// Offset of the first record pushed, per partition.
    first: HashMap<i32, i64>,
    /// How many cursors point at each sequence number (the smallest bounds what must stay).
    cursors: BTreeMap<u64, usize>,
}

impl<T> Log<T> {
    pub fn new(max_records: usize, max_bytes: usize) -> Log<T> {
        Log {
            entries: VecDeque::new(),
            first_seq: 0,
            next_seq: 0,
            held: 0,
            appended: 0,
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            latest: HashMap::new(),
            first: HashMap::new(),
            cursors: BTreeMap::new(),
        }
    }

    /// Appends one entry, dropping the oldest ones beyond the bounds (the newest stays).
    pub fn push(&mut self, slot: Slot<T>) {
        self.latest.insert(slot.partition, slot.offset);
        self.first.entry(slot.partition).or_insert(slot.offset);
        self.held += slot.size;
        self.appended += slot.size as u64;
        self.entries.push_back((Arc::new(slot), self.appended));
        self.next_seq += 1;
        while self.entries.len() > 1 && (self.entries.len() > self.max_records || self.held > self.max_bytes) {
            self.pop();
        }
        self.prune();
    }

    fn pop(&mut self) {
        if let Some((old, _)) = self.entries.pop_front() {
            self.held -= old.size;
            self.first_seq += 1;
        }
    }

    /// Drops the entries every cursor is past.
    fn prune(&mut self) {
        let slowest = self.cursors.keys().next().copied().unwrap_or(self.next_seq);
        while self.first_seq < slowest && !self.entries.is_empty() {
            self.pop();
        }
    }

    fn moved(&mut self, from: Option<u64>, to: Option<u64>) {
        if let Some(from) = from {
            if let Some(n) = self.cursors.get_mut(&from) {
                *n -= 1;
                if *n == 0 {
                    self.cursors.remove(&from);
                }
            }
        }
        if let Some(to) = to {
            *self.cursors.entry(to).or_default() += 1;
        }
    }

    /// True when the reader may push an entry of `size` bytes: while the fastest socket has
    /// less than a quarter of the bounds unread (or nothing, or no socket reads, or even the
    /// fastest is behind). So a push never drops an entry the fastest socket has not read,
    /// and a socket is behind only once it trails the fastest by three quarters of the bounds.
    pub fn has_room(&self, size: usize) -> bool {
        let Some(&fastest) = self.cursors.keys().next_back() else { return true };
        if fastest >= self.next_seq || fastest < self.first_seq {
            return true;
        }
        let (slot, appended) = &self.entries[(fastest - self.first_seq) as usize];
        let unread_bytes = self.appended - (appended - slot.size as u64);
        let unread = (self.next_seq - fastest) as usize;
        unread < (self.max_records / READ_AHEAD).max(1)
            && unread_bytes + size as u64 <= (self.max_bytes / READ_AHEAD) as u64
    }

    /// A new socket's place: the live end (it gets what is pushed from now on). Give it back
    /// with [`Self::leave`].
    pub fn join(&mut self) -> Cursor {
        self.join_at(self.next_seq)
    }

    /// A new socket's place where the fastest socket is (it gets what that socket has not
    /// read yet, then what is pushed), or the live end when no socket reads the log. A
    /// newcomer at the live end would be the fastest with nothing unread, and make room for a
    /// further quarter of the bounds: a few joins in a row would push a socket that keeps
    /// up out of the log. Give it back with [`Self::leave`].
    pub fn join_fastest(&mut self) -> Cursor {
        self.join_at(self.fastest())
    }

    /// Where the fastest socket is: its next entry, or the live end when no socket's next
    /// entry is in the log.
    fn fastest(&self) -> u64 {
        self.cursors.keys().next_back().copied().filter(|&f| f >= self.first_seq).unwrap_or(self.next_seq)
    }

    fn join_at(&mut self, seq: u64) -> Cursor {
        self.moved(None, Some(seq));
        let mut expected: HashMap<i32, i64> = self.latest.iter().map(|(p, o)| (*p, o + 1)).collect();
        let start = (seq - self.first_seq) as usize;
        for (slot, _) in self.entries.iter().skip(start).rev() {
            expected.insert(slot.partition, slot.offset);
        }
        let bytes_before =
            self.entries.get(start).map_or(self.appended, |(slot, appended)| appended - slot.size as u64);
        Cursor { next: seq, bytes_before, expected }
    }

    /// A socket leaves: what only it still needed goes.
    pub fn leave(&mut self, cursor: &Cursor) {
        self.moved(Some(cursor.next), None);
        self.prune();
    }

    /// `Some` when the socket's next entry was dropped: how far behind the live end it is.
    pub fn behind(&self, cursor: &Cursor) -> Option<Behind> {
        (cursor.next < self.first_seq)
            .then(|| Behind { records: self.next_seq - cursor.next, bytes: self.appended - cursor.bytes_before })
    }

    /// Moves up to `max` entries after the cursor into `out` and the cursor past them; `Err`
    /// when the socket is too far behind (nothing is moved then).
    pub fn read(&mut self, cursor: &mut Cursor, max: usize, out: &mut Vec<Arc<Slot<T>>>) -> Result<(), Behind> {
        if let Some(behind) = self.behind(cursor) {
            return Err(behind);
        }
        let (from, start) = (cursor.next, (cursor.next - self.first_seq) as usize);
        for (slot, appended) in self.entries.iter().skip(start).take(max) {
            cursor.next += 1;
            cursor.bytes_before = *appended;
            cursor.expected.insert(slot.partition, slot.offset + 1);
            out.push(slot.clone());
        }
        if cursor.next != from {
            self.moved(Some(from), Some(cursor.next));
            self.prune();
        }
        Ok(())
    }

    /// Moves a socket that is too far behind to where the fastest socket is (see
    /// [`Self::join_fastest`]); returns what it misses, per partition (sorted by partition).
    pub fn skip(&mut self, cursor: &mut Cursor) -> Vec<GapRange> {
        self.leave(cursor);
        let landed = self.join_fastest();
        let mut gaps: Vec<GapRange> = landed
            .expected
            .iter()
            .filter_map(|(p, next)| {
                let from = cursor.expected.get(p).or_else(|| self.first.get(p)).copied()?;
                (from < *next).then_some(GapRange { partition: *p, from_offset: from, to_offset: next - 1 })
            })
            .collect();
        gaps.sort_by_key(|g| g.partition);
        *cursor = landed;
        gaps
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(partition: i32, offset: i64, size: usize) -> Slot<()> {
        Slot { partition, offset, size, payload: () }
    }

    fn read(log: &mut Log<()>, c: &mut Cursor, max: usize) -> Result<Vec<(i32, i64)>, Behind> {
        let mut out = Vec::new();
        log.read(c, max, &mut out)?;
        Ok(out.iter().map(|s| (s.partition, s.offset)).collect())
    }

    #[test]
    fn a_socket_gets_what_is_pushed_after_it_joined_in_order_once() {
        let mut log = Log::new(100, 1 << 20);
        log.push(slot(0, 0, 10));
        let mut c = log.join();
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![]));
        log.push(slot(0, 1, 10));
        log.push(slot(1, 0, 10));
        log.push(slot(0, 2, 10));
        assert_eq!(read(&mut log, &mut c, 2), Ok(vec![(0, 1), (1, 0)]));
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![(0, 2)]));
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![]));
    }

    #[test]
    fn the_log_is_bounded_in_records_and_bytes_and_keeps_the_newest() {
        let mut log = Log::new(3, 1 << 20);
        let _stalled = log.join();
        for o in 0..10 {
            log.push(slot(0, o, 1));
        }
        assert_eq!(log.len(), 3);
        let mut log = Log::new(100, 25);
        let _stalled = log.join();
        for o in 0..10 {
            log.push(slot(0, o, 10));
        }
        assert_eq!(log.len(), 2);
        // One entry larger than the byte bound is still kept (the newest always is).
        log.push(slot(0, 10, 100));
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn a_socket_past_the_bound_is_behind_by_what_it_did_not_read() {
        let mut log = Log::new(3, 1 << 20);
        let mut c = log.join();
        for o in 0..3 {
            log.push(slot(0, o, 5));
        }
        assert_eq!(log.behind(&c), None, "exactly at the bound is not behind");
        log.push(slot(0, 3, 5));
        assert_eq!(log.behind(&c), Some(Behind { records: 4, bytes: 20 }));
        assert_eq!(read(&mut log, &mut c, 10), Err(Behind { records: 4, bytes: 20 }));
        // A socket that reads along is never behind.
        let mut d = log.join();
        for o in 4..100 {
            log.push(slot(0, o, 5));
            assert_eq!(read(&mut log, &mut d, 10).map(|v| v.len()), Ok(1));
        }
    }

    #[test]
    fn the_reader_keeps_a_quarter_of_the_log_ahead_of_the_fastest_socket_and_no_more() {
        let mut log = Log::new(8, 400);
        assert!(log.has_room(1000), "nobody reads: anything goes (and is dropped at once)");
        let (mut fast, slow) = (log.join(), log.join());
        assert!(log.has_room(10));
        log.push(slot(0, 0, 10));
        assert!(log.has_room(10));
        log.push(slot(0, 1, 10));
        assert!(!log.has_room(10), "the fastest socket has a quarter of the records unread");
        assert_eq!(read(&mut log, &mut fast, 1), Ok(vec![(0, 0)]));
        assert!(log.has_room(10));
        // The slow socket may trail the fastest by the whole log, less the fastest's unread.
        for o in 2..8 {
            log.push(slot(0, o, 10));
            assert_eq!(read(&mut log, &mut fast, 1), Ok(vec![(0, o - 1)]));
        }
        assert_eq!(log.behind(&slow), None, "8 entries: the slow socket's next one is held");
        log.push(slot(0, 8, 10));
        assert_eq!(log.behind(&fast), None);
        assert_eq!(log.behind(&slow), Some(Behind { records: 9, bytes: 90 }));
        // The byte bound: 1 unread entry of 10 bytes leaves a quarter of 400 for 90, not 91.
        assert_eq!(read(&mut log, &mut fast, 1), Ok(vec![(0, 7)]));
        assert!(log.has_room(90) && !log.has_room(91));
        // The fastest read everything: even an entry above the bound goes (the newest stays).
        assert_eq!(read(&mut log, &mut fast, 10), Ok(vec![(0, 8)]));
        assert!(log.has_room(1000));
        log.push(slot(0, 9, 1000));
        assert_eq!(read(&mut log, &mut fast, 10), Ok(vec![(0, 9)]));
        // A log of one record: the reader waits for each entry to be read.
        let mut log = Log::new(1, 100);
        let mut only = log.join();
        assert!(log.has_room(10));
        log.push(slot(0, 0, 10));
        assert!(!log.has_room(10));
        assert_eq!(read(&mut log, &mut only, 10), Ok(vec![(0, 0)]));
        assert!(log.has_room(10));
    }

    #[test]
    fn skipping_names_every_missed_offset_per_partition_and_goes_on_from_the_live_end() {
        let mut log = Log::new(4, 1 << 20);
        log.push(slot(0, 0, 1));
        let mut c = log.join();
        log.push(slot(0, 1, 1));
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![(0, 1)]));
        // Partition 1 had no record when the socket joined: its gap starts at its first record.
        for o in 2..8 {
            log.push(slot(0, o, 1));
            log.push(slot(1, o + 100, 1));
        }
        assert!(log.behind(&c).is_some());
        let gaps = log.skip(&mut c);
        assert_eq!(
            gaps,
            vec![
                GapRange { partition: 0, from_offset: 2, to_offset: 7 },
                GapRange { partition: 1, from_offset: 102, to_offset: 107 },
            ]
        );
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![]));
        log.push(slot(1, 108, 1));
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![(1, 108)]));
    }

    #[test]
    fn entries_every_socket_read_are_dropped() {
        let mut log = Log::new(100, 1 << 20);
        log.push(slot(0, 0, 1));
        assert!(log.is_empty(), "nobody to read it");
        let (mut a, mut b) = (log.join(), log.join());
        for o in 1..5 {
            log.push(slot(0, o, 1));
        }
        assert_eq!(read(&mut log, &mut a, 10).map(|v| v.len()), Ok(4));
        assert_eq!(log.len(), 4, "b has not read them");
        assert_eq!(read(&mut log, &mut b, 2).map(|v| v.len()), Ok(2));
        assert_eq!(log.len(), 2);
        log.leave(&b);
        assert!(log.is_empty(), "a read everything, b left");
        log.push(slot(0, 5, 1));
        assert_eq!(read(&mut log, &mut a, 10), Ok(vec![(0, 5)]));
        assert!(log.is_empty());
    }

    #[test]
    fn a_partition_fully_read_has_no_gap() {
        let mut log = Log::new(2, 1 << 20);
        let mut c = log.join();
        log.push(slot(0, 0, 1));
        assert_eq!(read(&mut log, &mut c, 10), Ok(vec![(0, 0)]));
        for o in 0..5 {
            log.push(slot(1, o, 1));
        }
        assert_eq!(log.skip(&mut c), vec![GapRange { partition: 1, from_offset: 0, to_offset: 4 }]);
    }

    #[test]
    fn a_newcomer_starts_where_the_fastest_socket_is_and_a_skip_lands_there() {
        let mut log: Log<()> = Log::new(8, 1 << 20);
        assert_eq!(log.join_fastest().next, 0, "nobody reads: the live end");
        let mut log = Log::new(8, 1 << 20);
        let mut fast = log.join();
        let mut slow = log.join();
        for o in 0..8i64 {
            log.push(slot((o % 2) as i32, o, 10));
        }
        assert_eq!(read(&mut log, &mut fast, 6).map(|v| v.len()), Ok(6));
        // Two entries unread by the fastest: a newcomer gets them, then what comes.
        let mut new = log.join_fastest();
        assert!(!log.has_room(10), "the join made no room: 2 of 8 unread by the fastest");
        log.push(slot(0, 8, 10));
        assert_eq!(log.behind(&slow), Some(Behind { records: 9, bytes: 90 }));
        // The slow socket skips to where the fastest is (offset 6 of partition 0, 7 of 1):
        // the gaps end just before, and it reads on from there.
        let gaps = log.skip(&mut slow);
        assert_eq!(
            gaps,
            vec![
                GapRange { partition: 0, from_offset: 0, to_offset: 5 },
                GapRange { partition: 1, from_offset: 1, to_offset: 6 },
            ]
        );
        assert_eq!(read(&mut log, &mut slow, 10), Ok(vec![(0, 6), (1, 7), (0, 8)]));
        assert_eq!(read(&mut log, &mut new, 10), Ok(vec![(0, 6), (1, 7), (0, 8)]));
    }
}
