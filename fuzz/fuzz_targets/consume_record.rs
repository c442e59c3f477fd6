//! Consumed records: any key, value and header bytes render as a valid JSON frame (or a
//! DECODE_ERROR), and the frame's wsProxyMessageId parses back to the record's position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsproxy_protocol::consume::{KafkaRecordView, MessageId, RecordEncoder};
use wsproxy_protocol::FormatType;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let split = (head[2] as usize).min(rest.len());
    let (key, value) = rest.split_at(split);
    let header_value = &value[..value.len().min(head[3] as usize)];
    // The topic and a header key come from the input too (any text, quotes and control
    // characters included), so that the frame's own escaping is fuzzed, not only the values.
    let text = String::from_utf8_lossy(&key[..key.len().min(12)]);
    let topic = format!("fuzz-{text}");
    let headers = [(text.as_ref(), Some(header_value)), ("empty", None)];
    let encoder = RecordEncoder {
        key_type: (head[0] >= 128).then(|| FormatType::ALL[head[0] as usize % FormatType::ALL.len()]),
        val_type: FormatType::ALL[head[1] as usize % FormatType::ALL.len()],
    };
    let topic = topic.as_str();
    let view = KafkaRecordView {
        topic,
        partition: i32::from(head[2]),
        offset: i64::from(head[3]) * 1_000_003,
        timestamp: if head[0] % 2 == 0 { -1 } else { 1_554_402_266_846 },
        key: (head[0] % 3 != 0).then_some(key),
        value: (head[1] % 5 != 0).then_some(value),
        headers: if head[2] % 2 == 0 { &headers } else { &[] },
    };
    match encoder.render(&view) {
        Ok(text) => {
            // Raw values: a JSON record may hold numbers beyond f64 (valid grammar, see format_codec).
            let v: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(&text).expect("a record frame is a JSON object");
            let id: String = serde_json::from_str(v["wsProxyMessageId"].get()).expect("the id is a string");
            let id = MessageId::parse(&id).expect("the id parses");
            let shown: String = serde_json::from_str(v["topic"].get()).expect("the topic is a string");
            assert_eq!(shown, topic);
            assert_eq!(v.len(), if view.key.is_some() { 8 } else { 7 }, "every field once: {text}");
            assert_eq!(
                (id.topic.as_str(), id.partition, id.offset, id.timestamp),
                (topic, view.partition, view.offset, view.timestamp)
            );
        }
        Err(e) => {
            serde_json::to_string(&e.frame()).expect("an error frame serialises");
        }
    }
});
