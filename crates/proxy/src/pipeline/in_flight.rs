//! A produce socket's records in flight, and the order their answers leave in.
//!
//! Every record a frame hands to Kafka gets the socket's next sequence number; Kafka's report
//! for it comes back in the socket's [`Deliveries`] inbox as `(seq, result)`, in whatever order
//! Kafka settles records. A frame is answered once all its records are settled and every frame
//! before it was answered: answers leave in the order frames came in. One wake-up of the
//! socket takes every report that arrived, so records Kafka acknowledged together are settled
//! together. Records answered without Kafka (invalid, refused, no room in the queue) take a
//! number too, settled at once; a transaction's frame arrives already answered.

use std::collections::VecDeque;

use tokio::time::Instant;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::produce::ProducerRecord;

use crate::kafka::{Ack, Deliveries, EnqueueError, ProducerHandle, RecordFailure, Report};
use crate::pipeline::produce::{RecordResult, Settled};
use crate::telemetry::metrics;

/// The frames of one socket (or one transaction) waiting for their answers.
#[derive(Default)]
pub(super) struct InFlight {
    deliveries: Deliveries,
    /// Sequence number of `records[0]`.
    base: u64,
    records: VecDeque<Slot>,
    /// `records[..settled]` all have their result.
    settled: usize,
    /// Records of the frame being built (the last ones of `records`).
    open: usize,
    frames: VecDeque<Frame>,
    /// Reports taken from the inbox, kept for its capacity.
    reports: Vec<Report>,
}

struct Slot {
    id: Option<String>,
    bytes: usize,
    /// When the record's frame was handed to Kafka (the ack latency metric).
    enqueued: Instant,
    result: Option<Result<Ack, FrameError>>,
}

enum Frame {
    /// The next `len` records; `single` for a one-record frame (answered without brackets).
    Records {
        len: usize,
        single: bool,
        records: usize,
        bytes: usize,
    },
    Answered(Settled),
}

/// The oldest frame, once it can be answered.
pub(super) enum Answer {
    Records { single: bool, results: Vec<RecordResult>, records: usize, bytes: usize },
    Answered(Settled),
}

impl InFlight {
    pub(super) fn new() -> Self {
        InFlight::default()
    }

    /// No frame waits for its answer (and none is being built).
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.open == 0
    }

    /// Hands one record of the frame being built to Kafka; its report settles it later. Returns
    /// the bytes it holds in flight.
    pub(super) fn send(
        &mut self,
        kafka: &ProducerHandle,
        topic: &str,
        record: &mut ProducerRecord,
    ) -> Result<usize, EnqueueError> {
        let seq = self.base + self.records.len() as u64;
        kafka.enqueue(topic, record, &self.deliveries, seq)?;
        let bytes = record.size();
        // Kafka copied the record; its id waits here for the answer.
        self.push(std::mem::take(&mut record.message_id), bytes, None);
        Ok(bytes)
    }

    /// A record of the frame being built, answered without Kafka.
    pub(super) fn settle_now(&mut self, error: FrameError) {
        self.push(error.message_id.clone(), 0, Some(Err(error)));
    }

    fn push(&mut self, id: Option<String>, bytes: usize, result: Option<Result<Ack, FrameError>>) {
        // The time is set when the frame ends: one clock read per frame.
        let enqueued = self.records.back().map_or_else(Instant::now, |s| s.enqueued);
        self.records.push_back(Slot { id, bytes, enqueued, result });
        self.open += 1;
    }

    /// The records handed over since the last frame ended are one frame, holding `records`
    /// records and `bytes` bytes of the socket's in-flight bounds until it is answered.
    pub(super) fn end_frame(&mut self, single: bool, records: usize, bytes: usize) {
        let now = Instant::now();
        let len = std::mem::take(&mut self.open);
        let start = self.records.len() - len;
        self.records.range_mut(start..).for_each(|s| s.enqueued = now);
        self.frames.push_back(Frame::Records { len, single, records, bytes });
        self.advance();
    }

    /// A frame already answered (a transaction's): it leaves after the frames before it.
    pub(super) fn push_answered(&mut self, settled: Settled) {
        self.frames.push_back(Frame::Answered(settled));
    }

    /// Waits until the oldest frame can be answered, settling records as reports arrive.
    /// Cancel-safe: reports taken from the inbox are applied before the next await.
    pub(super) async fn answerable(&mut self) {
        while !self.front_answerable() {
            let mut reports = std::mem::take(&mut self.reports);
            self.deliveries.take(&mut reports).await;
            self.apply(&mut reports);
            self.reports = reports;
        }
    }

    fn front_answerable(&self) -> bool {
        match self.frames.front() {
            Some(Frame::Records { len, .. }) => self.settled >= *len,
            Some(Frame::Answered(_)) => true,
            None => false,
        }
    }

    fn apply(&mut self, reports: &mut Vec<Report>) {
        let now = Instant::now();
        for (seq, result) in reports.drain(..) {
            let Some(slot) = seq.checked_sub(self.base).and_then(|i| self.records.get_mut(i as usize)) else {
                continue;
            };
            slot.result = Some(match result {
                Ok(ack) => {
                    metrics::produce_ack(now.saturating_duration_since(slot.enqueued));
                    Ok(ack)
                }
                Err(RecordFailure { code, message }) => {
                    Err(FrameError::new(code, message).with_message_id(slot.id.clone()))
                }
            });
        }
        self.advance();
    }

    /// Moves `settled` past every record that has its result.
    fn advance(&mut self) {
        while self.records.get(self.settled).is_some_and(|s| s.result.is_some()) {
            self.settled += 1;
        }
    }

    /// The oldest frame's answer, if all its records are settled.
    pub(super) fn pop(&mut self) -> Option<Answer> {
        if !self.front_answerable() {
            return None;
        }
        match self.frames.pop_front()? {
            Frame::Answered(s) => Some(Answer::Answered(s)),
            Frame::Records { len, single, records, bytes } => {
                let results = self
                    .records
                    .drain(..len)
                    .map(|s| (s.id, s.bytes, s.result.expect("a settled record has its result")))
                    .collect();
                self.base += len as u64;
                self.settled -= len;
                Some(Answer::Records { single, results, records, bytes })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsproxy_protocol::ErrorCode;

    fn ack(offset: i64) -> Result<Ack, RecordFailure> {
        Ok(Ack { partition: 0, offset, timestamp: 0 })
    }

    /// A record "handed to Kafka": numbered, waiting for its report.
    fn sent(f: &mut InFlight, id: &str) -> u64 {
        let seq = f.base + f.records.len() as u64;
        f.push(Some(id.to_owned()), 10, None);
        seq
    }

    fn offsets(answer: Option<Answer>) -> (bool, Vec<Result<i64, ErrorCode>>) {
        match answer {
            Some(Answer::Records { single, results, .. }) => {
                (single, results.into_iter().map(|(_, _, r)| r.map(|a| a.offset).map_err(|e| e.code)).collect())
            }
            Some(Answer::Answered(_)) => panic!("expected records"),
            None => panic!("expected an answer"),
        }
    }

    /// Answers leave in frame order whatever order Kafka settles records in; a frame's records
    /// are answered in their order; reports taken together settle every frame they complete.
    #[test]
    fn answers_keep_the_frames_order_whatever_order_kafka_acknowledges_in() {
        let mut f = InFlight::new();
        let (a0, a1) = (sent(&mut f, "a0"), sent(&mut f, "a1"));
        f.end_frame(false, 2, 20);
        let b = sent(&mut f, "b");
        f.end_frame(true, 1, 10);
        f.settle_now(FrameError::new(ErrorCode::InvalidValue, "bad").with_message_id(Some("c".to_owned())));
        f.end_frame(true, 1, 10);
        assert!(f.pop().is_none(), "nothing settled yet");
        f.apply(&mut vec![(b, ack(7))]);
        assert!(f.pop().is_none(), "the frame before it is not settled");
        f.apply(&mut vec![(a1, ack(6))]);
        assert!(f.pop().is_none(), "half of the first frame is not an answer");
        let failure = RecordFailure { code: ErrorCode::TimedOut, message: "late".to_owned() };
        f.apply(&mut vec![(a0, Err(failure))]);
        assert_eq!(offsets(f.pop()), (false, vec![Err(ErrorCode::TimedOut), Ok(6)]));
        assert_eq!(offsets(f.pop()), (true, vec![Ok(7)]));
        assert_eq!(offsets(f.pop()), (true, vec![Err(ErrorCode::InvalidValue)]));
        assert!(f.pop().is_none() && f.is_empty());
        // Numbers go on after answered frames; a late or unknown report is ignored.
        let d = sent(&mut f, "d");
        assert_eq!(d, 4);
        f.end_frame(true, 1, 10);
        f.apply(&mut vec![(b, ack(99)), (d, ack(8))]);
        assert_eq!(offsets(f.pop()), (true, vec![Ok(8)]));
    }

    /// A failed record's error carries its message id; a frame answered already (a
    /// transaction's) waits behind the frames before it; an empty array is answered at once.
    #[test]
    fn answered_frames_and_empty_frames_wait_their_turn() {
        let mut f = InFlight::new();
        let a = sent(&mut f, "a");
        f.end_frame(true, 1, 10);
        f.push_answered(settled_stub());
        f.end_frame(false, 1, 2);
        assert!(f.pop().is_none());
        let failure = RecordFailure { code: ErrorCode::KafkaError, message: "no".to_owned() };
        f.apply(&mut vec![(a, Err(failure))]);
        match f.pop() {
            Some(Answer::Records { results, .. }) => {
                let e = results[0].2.as_ref().unwrap_err();
                assert_eq!(e.message_id.as_deref(), Some("a"));
            }
            _ => panic!("expected the record's answer"),
        }
        assert!(matches!(f.pop(), Some(Answer::Answered(_))));
        assert_eq!(offsets(f.pop()), (false, vec![]));
        assert!(f.is_empty());
    }

    fn settled_stub() -> Settled {
        crate::pipeline::produce::settled(axum::extract::ws::Message::Text("x".into()), &[], 1, 1)
    }

    /// The socket's wait: reports from the inbox settle the oldest frame and wake the waiter.
    #[tokio::test]
    async fn answerable_waits_for_the_inbox() {
        let mut f = InFlight::new();
        let seq = sent(&mut f, "a");
        f.end_frame(true, 1, 10);
        let ticket = f.deliveries.ticket_for_test(seq);
        let settle = tokio::spawn(async move { (*ticket).settle(ack(3)) });
        tokio::time::timeout(std::time::Duration::from_secs(30), f.answerable()).await.expect("answerable");
        settle.await.unwrap();
        assert_eq!(offsets(f.pop()), (true, vec![Ok(3)]));
    }
}
