//! Delivery reports: how Kafka's answer for a record gets back to the socket that sent it.
//!
//! Each socket (or transaction, or write to the proxy's own topics) owns one [`Deliveries`]
//! inbox. A record is handed to the producer with a [`Ticket`] (the inbox and the record's
//! sequence number) as its librdkafka opaque; the producer's delivery callback (on the
//! producer's polling thread) pushes `(seq, result)` into the inbox. The owner takes every
//! report that arrived in one go: records Kafka acknowledged together cost one wake-up of the
//! socket, not one channel, waker and future per record as rdkafka's `FutureProducer` does.
//!
//! The inbox is bounded by its owner: it holds at most one report per record the owner has
//! in flight, and owners bound those (`max-in-flight` records and bytes).

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use crate::kafka::producer::{Ack, RecordFailure};

/// A record's sequence number (given by its sender) and where Kafka put it, or why not.
pub type Report = (u64, Result<Ack, RecordFailure>);

/// One owner's delivery reports, in the order Kafka settled the records.
#[derive(Default)]
pub struct Deliveries {
    inbox: Arc<Inbox>,
}

#[derive(Default)]
struct Inbox {
    reports: Mutex<Vec<Report>>,
    waker: AtomicWaker,
}

/// The librdkafka opaque of one record: where its report goes, and under which number.
pub struct Ticket {
    inbox: Arc<Inbox>,
    seq: u64,
}

impl Deliveries {
    pub fn new() -> Self {
        Deliveries::default()
    }

    /// The opaque of the record numbered `seq`.
    pub(super) fn ticket(&self, seq: u64) -> Box<Ticket> {
        Box::new(Ticket { inbox: self.inbox.clone(), seq })
    }

    /// A ticket as the producer would return it (tests of the owners' bookkeeping).
    #[cfg(test)]
    pub(crate) fn ticket_for_test(&self, seq: u64) -> Box<Ticket> {
        self.ticket(seq)
    }

    /// Ready once at least one report arrived; then appends every report that arrived to `into`.
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Report>) -> Poll<()> {
        // Registered before looking: a report pushed after the look wakes this task.
        self.inbox.waker.register(cx.waker());
        let mut reports = self.inbox.reports.lock().expect("delivery inbox is never poisoned");
        if reports.is_empty() {
            return Poll::Pending;
        }
        if into.is_empty() {
            // Swapped, not copied: both vectors keep their capacity for the next round.
            std::mem::swap(&mut *reports, into);
        } else {
            into.append(&mut reports);
        }
        Poll::Ready(())
    }

    /// Waits for at least one report, then appends every report that arrived to `into`.
    /// Cancel-safe: reports are only taken when this returns.
    pub async fn take(&self, into: &mut Vec<Report>) {
        poll_fn(|cx| self.poll_take(cx, into)).await
    }
}

impl Ticket {
    /// Delivers the record's report to its owner (or drops it if the owner is gone).
    pub(crate) fn settle(self, result: Result<Ack, RecordFailure>) {
        let was_empty = {
            let mut reports = self.inbox.reports.lock().expect("delivery inbox is never poisoned");
            let was_empty = reports.is_empty();
            reports.push((self.seq, result));
            was_empty
        };
        // Reports pushed while earlier ones wait untaken ride on the wake-up those caused.
        if was_empty {
            self.inbox.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn ack(offset: i64) -> Result<Ack, RecordFailure> {
        Ok(Ack { partition: 0, offset, timestamp: 0 })
    }

    /// Reports arriving before the owner looks are all taken in one go, in arrival order; an
    /// empty inbox waits, and a report pushed while it waits wakes it.
    #[tokio::test]
    async fn reports_arriving_together_are_taken_together() {
        let deliveries = Deliveries::new();
        let mut taken = Vec::new();
        assert!(deliveries.take(&mut taken).now_or_never().is_none(), "nothing to take yet");
        (*deliveries.ticket(2)).settle(ack(20));
        (*deliveries.ticket(0)).settle(ack(10));
        deliveries.take(&mut taken).await;
        let seqs: Vec<u64> = taken.iter().map(|r| r.0).collect();
        assert_eq!(seqs, [2, 0]);
        let late = deliveries.ticket(1);
        let waiting = tokio::spawn(async move {
            let mut more = Vec::new();
            deliveries.take(&mut more).await;
            more
        });
        tokio::task::yield_now().await;
        let failure = RecordFailure { code: wsproxy_protocol::ErrorCode::TimedOut, message: "late".to_owned() };
        (*late).settle(Err(failure));
        let more = tokio::time::timeout(std::time::Duration::from_secs(30), waiting).await.expect("woken").unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].0, 1);
        assert!(more[0].1.is_err());
    }
}
