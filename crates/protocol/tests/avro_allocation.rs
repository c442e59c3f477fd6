//! H5: decoding Avro from a client never reserves memory by what its bytes claim. apache-avro
//! reserves a block's claimed item count before reading an item, and its allocation cap
//! compares that count with a byte limit: an `AvroProducerRecord` whose headers claim
//! 16,000,000 items in 4 bytes reserved about 0.9 GB. The proxy refuses a claim of more items
//! than the datum has bytes.
//!
//! Its own test binary (one test, one process), because it measures the process's peak
//! virtual memory.

use wsproxy_protocol::avro::decode_producer_record;
use wsproxy_protocol::{ErrorCode, FormatType};

/// `VmPeak` of this process, in KiB.
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmPeak in /proc/self/status")
}

#[test]
fn h5_a_claimed_header_count_reserves_nothing() {
    // key null, value `bytes` of length 0, headers: the array branch, a block of 16,000,000.
    let frame = [0x00, 0x00, 0x00, 0x02, 0x80, 0x90, 0xa1, 0x0f];
    let before = vm_peak_kib();
    let e = decode_producer_record(&frame, None, FormatType::ByteArray).unwrap_err();
    let grown_mib = (vm_peak_kib() - before) / 1024;
    assert!(grown_mib < 64, "decoding 8 bytes grew the peak virtual memory by {grown_mib} MiB");
    assert_eq!(e.code, ErrorCode::InvalidFrame);
    assert!(e.message.contains("16000000 items"), "{}", e.message);
}
