//! The end of a partition as a consumer last heard it: librdkafka keeps the high watermark of
//! every fetch answer, and `rd_kafka_get_watermark_offsets` reads it without a round trip.
//! rdkafka 0.39 offers only `fetch_watermarks`, which asks the broker; a socket's lag is read
//! every few seconds per socket, so it takes the cached one through librdkafka's C API.

#![allow(unsafe_code)]

use std::ffi::CString;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaRespErr;

/// The cached high watermark (the next offset to be written) of `topic`'s `partition`, or
/// `None` when the consumer has not heard it yet.
pub fn cached_end<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle is alive for the borrow of `client`; `topic` is NUL-terminated and
    // outlives the call; `low` and `high` are writable i64s.
    let code = unsafe {
        rdsys::rd_kafka_get_watermark_offsets(client.native_ptr(), topic.as_ptr(), partition, &mut low, &mut high)
    };
    (code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}
