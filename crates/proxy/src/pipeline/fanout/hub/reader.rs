//! A hub's reader task: records from the shared consumer, rendered once per socket format in
//! use, appended to the hub's log at the pace of the fastest socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use futures::FutureExt;
use wsproxy_protocol::codec::Frame;
use wsproxy_protocol::consume::KafkaRecordView;
use wsproxy_protocol::{FrameError, SocketCodec};

use super::{message_len, Entry, Hub, Hubs, Rendered};
use crate::kafka::{Record, SharedConsumer};
use crate::pipeline::fanout::log::Slot;
use crate::telemetry::metrics;

/// How often a hub's reader looks for new partitions of its topic.
const PARTITION_REFRESH: Duration = Duration::from_secs(30);

/// Records taken from the consumer per wakeup of the reader.
const MAX_RECORDS_PER_WAKEUP: usize = 512;

/// Bytes an entry costs beyond its frames (bookkeeping), for the log's byte bound.
const ENTRY_OVERHEAD: usize = 96;

/// A hub's reader: records in, rendered frames out to the log; waits only for the fastest
/// socket (when the log holds all it may of what that socket has not read).
pub(super) async fn read(hubs: Hubs, hub: Arc<Hub>, consumer: SharedConsumer) {
    let linger = hubs.inner.config.linger;
    let mut tick = tokio::time::interval((linger / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refreshed = Instant::now();
    let shutdown = hubs.inner.shutdown.clone();
    {
        let mut records = consumer.records();
        loop {
            tokio::select! {
                // The sockets close with 1001 on their own stop tokens (children of this one).
                _ = shutdown.cancelled() => {
                    hubs.retire(&hub);
                    break;
                }
                _ = tick.tick() => {
                    if hubs.retire_if_idle(&hub) { break; }
                    if refreshed.elapsed() >= PARTITION_REFRESH {
                        refreshed = Instant::now();
                        if let Err(e) = consumer.pick_up_partitions().await {
                            tracing::warn!(topic = %hub.key.topic, error = %e, "fan-out: could not look for new partitions");
                        }
                    }
                }
                first = records.next() => {
                    let Some(first) = first else {
                        hubs.fail(&hub, "the shared consumer stopped".to_owned());
                        break;
                    };
                    let mut batch = vec![first];
                    while batch.len() < MAX_RECORDS_PER_WAKEUP {
                        match records.next().now_or_never() {
                            Some(Some(next)) => batch.push(next),
                            _ => break,
                        }
                    }
                    let mut ok = Vec::with_capacity(batch.len());
                    let mut fatal = None;
                    for polled in batch {
                        match polled {
                            Ok(record) => ok.push(record),
                            Err(e) => if let Err(why) = e.triage_shared() { fatal = Some(why); break; },
                        }
                    }
                    if !append(&hubs, &hub, &ok).await {
                        hubs.retire(&hub);
                        break;
                    }
                    if let Some(why) = fatal {
                        tracing::warn!(topic = %hub.key.topic, reason = %why, "fan-out: the shared consumer failed; its sockets close");
                        hubs.fail(&hub, why);
                        break;
                    }
                }
            }
        }
    }
    metrics::fanout_shared_consumers(-1.0);
    tracing::info!(topic = %hub.key.topic, "fan-out: shared consumer retired");
    // Dropping the consumer hands it to the closer thread (never destroyed on the runtime).
    drop(consumer);
}

/// Renders `records` for every format in use and appends them; formats added while rendering
/// are rendered before the push, so that every subscription finds its frame. Appends only
/// while the fastest socket's next entry stays in the log ([`has_room`](crate::pipeline::fanout::log::Log::has_room)), and waits for
/// that socket to read otherwise. False when the server shut down meanwhile.
async fn append(hubs: &Hubs, hub: &Hub, records: &[Record<'_>]) -> bool {
    let limit = hubs.inner.frame_limit;
    let mut pending: VecDeque<(&Record<'_>, Slot<Entry>)> = records
        .iter()
        .map(|r| {
            let (partition, offset, record_bytes) = r.with_view(|v| (v.partition, v.offset, record_bytes(v)));
            (r, Slot { partition, offset, size: ENTRY_OVERHEAD, payload: Entry { frames: Vec::new(), record_bytes } })
        })
        .collect();
    while !pending.is_empty() {
        let (codecs, version) = {
            let st = hub.lock();
            (st.codecs.iter().map(|(c, _)| *c).collect::<Vec<_>>(), st.version)
        };
        for (record, slot) in &mut pending {
            let missing: Vec<SocketCodec> =
                codecs.iter().filter(|c| slot.payload.frame(c).is_none()).copied().collect();
            if !missing.is_empty() {
                let rendered: Vec<Rendered> =
                    record.with_view(|v| missing.iter().map(|c| render(v, *c, limit)).collect());
                slot.size += rendered.iter().map(|f| message_len(&f.message)).sum::<usize>();
                slot.payload.frames.extend(rendered);
            }
        }
        let before = pending.len();
        {
            let mut st = hub.lock();
            if st.version != version {
                continue;
            }
            while let Some((_, slot)) = pending.front() {
                if !st.log.has_room(slot.size) {
                    break;
                }
                let (_, slot) = pending.pop_front().expect("a front entry");
                st.log.push(slot);
            }
            st.reader_waits = pending.front().map(|(_, slot)| slot.size);
        }
        if pending.len() != before {
            hub.head.send_modify(|h| *h += 1);
        }
        if !pending.is_empty() {
            tokio::select! {
                _ = hub.room.notified() => {}
                _ = hubs.inner.shutdown.cancelled() => return false,
            }
        }
    }
    true
}

fn record_bytes(v: &KafkaRecordView<'_>) -> u64 {
    (v.key.map_or(0, <[u8]>::len) + v.value.map_or(0, <[u8]>::len)) as u64
}

/// One record in one format: its frame, or the error frame in its place (a record that does
/// not decode, or renders larger than a socket can send).
fn render(view: &KafkaRecordView<'_>, codec: SocketCodec, limit: usize) -> Rendered {
    let rendered = codec.encode_record(view).and_then(|frame| {
        if frame.len() <= limit {
            return Ok(frame);
        }
        metrics::consumed_record_too_large();
        Err(FrameError::record_too_large(view.name(), frame.len(), limit))
    });
    let (frame, error) = match rendered {
        Ok(frame) => (frame, None),
        Err(e) => (codec.encode_error(&e, Some(view)), Some(e.code)),
    };
    let message = match frame {
        Frame::Text(t) => Message::Text(t.into()),
        Frame::Binary(b) => Message::Binary(b.into()),
    };
    Rendered { codec, message, error }
}
