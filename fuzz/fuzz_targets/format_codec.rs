//! The format types both ways: any Kafka bytes decode without panicking, into valid JSON that
//! encodes back to the same bytes (fixed-width, string and base64 types); any JSON value
//! encodes without panicking and decodes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsproxy_protocol::FormatType;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let format = FormatType::ALL[selector as usize % FormatType::ALL.len()];

    // Kafka bytes -> JSON -> Kafka bytes.
    match format.decode(bytes) {
        // JSON records pass through verbatim (minus surrounding whitespace), numbers beyond
        // f64 included (found by this target: `84e1703`, valid JSON grammar).
        Ok(raw) if format == FormatType::Json => {
            let text = std::str::from_utf8(bytes).expect("JSON records are UTF-8");
            assert_eq!(raw.get(), text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r')));
        }
        Ok(raw) => {
            let value: serde_json::Value = serde_json::from_str(raw.get()).expect("decode gives valid JSON");
            // NaN and infinities render as null and do not come back.
            if !value.is_null() {
                assert_eq!(format.encode(&value).expect("decoded values encode"), bytes, "{format} round trip");
            }
        }
        Err(_) => {}
    }

    // Client JSON -> Kafka bytes -> JSON.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        if let Ok(encoded) = format.encode(&value) {
            let raw = format.decode(&encoded).expect("encoded bytes decode");
            serde_json::from_str::<serde_json::Value>(raw.get()).expect("valid JSON");
        }
    }

    // Format names as a query parameter gives them.
    if let Ok(name) = std::str::from_utf8(bytes) {
        if let Ok(f) = name.parse::<FormatType>() {
            assert_eq!(f.name().parse::<FormatType>().ok(), Some(f));
        }
    }
});
