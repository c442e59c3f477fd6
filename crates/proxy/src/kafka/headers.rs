//! The headers of consumed records, read without trusting their keys to be UTF-8.
//!
//! rdkafka's `Headers::iter`, `get` and `try_get` unwrap `CStr::to_str` on every key, so a
//! record whose header key is not UTF-8 (librdkafka, Go and Python producers can all write
//! one) panics whoever reads it: a poison pill for every consumer of a group, or for the
//! session-state reader (code review M3). [`record_headers`] reads the list through
//! librdkafka's C API instead and decodes keys lossily, as header values already are.
//! Every reader of consumed headers should use it, never `Headers::iter`.
// The one place the proxy calls librdkafka directly: rdkafka has no safe way to read a
// header key's bytes.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

/// A header of a consumed record: its key (lossily decoded when not UTF-8) and its value.
pub type RecordHeader<'m> = (Cow<'m, str>, Option<&'m [u8]>);

/// The headers of `m`, in order. A key that is not UTF-8 has U+FFFD in place of its bad bytes.
pub fn record_headers<'m>(m: &'m BorrowedMessage<'_>) -> Vec<RecordHeader<'m>> {
    const OK: rdsys::rd_kafka_resp_err_t = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    let mut list: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the live message of `m`. The header list librdkafka parses and
    // returns is owned by that message, so it lives as long as `m` ('m), like what it holds.
    if unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut list) } != OK || list.is_null() {
        return Vec::new();
    }
    // SAFETY: `list` is the message's valid header list (above).
    let count = unsafe { rdsys::rd_kafka_header_cnt(list) };
    let mut headers = Vec::with_capacity(count);
    for idx in 0..count {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: `idx` is below the count; the out-pointers are valid locals.
        if unsafe { rdsys::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) } != OK
            || name.is_null()
        {
            break;
        }
        // SAFETY: librdkafka returns the name NUL-terminated and the value as `size` bytes
        // (or null for a header without a value), both owned by the list and so living 'm.
        let key: &'m CStr = unsafe { CStr::from_ptr(name) };
        let value: Option<&'m [u8]> =
            (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        headers.push((String::from_utf8_lossy(key.to_bytes()), value));
    }
    headers
}
