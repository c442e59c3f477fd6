//! Unit tests of the consume socket's helpers ([`super::frames_of`], [`super::last_offsets`]).

use super::*;
use wsproxy_protocol::params::SocketPayload;

/// Seven items (records and two errors) at `batchSize=3`: frames of at most three, in order.
#[test]
fn a_wakeup_of_several_batches_is_cut_into_frames_of_batch_size() {
    let items = |codec: SocketCodec| -> Vec<Item> {
        (0..7)
            .map(|offset| {
                let value = offset.to_string();
                let view = KafkaRecordView {
                    topic: "t",
                    partition: 0,
                    offset,
                    timestamp: 0,
                    key: None,
                    value: Some(value.as_bytes()),
                    headers: &[],
                };
                let (frame, error) = if offset == 2 || offset == 6 {
                    let e = FrameError::new(ErrorCode::DecodeError, "bad");
                    (codec.encode_error(&e, Some(&view)), Some(e.code))
                } else {
                    (codec.encode_record(&view).unwrap(), None)
                };
                Item { frame, position: None, bytes: 1, error }
            })
            .collect()
    };
    let json = SocketCodec::new(SocketPayload::Json, None, FormatType::String);
    let frames = frames_of(&mut items(json), json, Some(3));
    let arrays: Vec<Vec<serde_json::Value>> = frames
        .iter()
        .map(|f| match f {
            Frame::Text(t) => serde_json::from_str(t).unwrap(),
            Frame::Binary(_) => panic!("a JSON socket sends text"),
        })
        .collect();
    let shown = |r: &serde_json::Value| match r["error"].is_object() {
        true => format!("error {}", r["offset"]),
        false => r["offset"].to_string(),
    };
    let offsets: Vec<Vec<String>> = arrays.iter().map(|a| a.iter().map(shown).collect()).collect();
    assert_eq!(offsets, [vec!["0", "1", "error 2"], vec!["3", "4", "5"], vec!["error 6"]], "{arrays:?}");
    assert_eq!(frames_of(&mut items(json), json, None).len(), 7);

    // Avro: each batch's records in one binary array, its errors after it as text; the
    // last batch holds only an error: a JSON array.
    let avro = SocketCodec::new(SocketPayload::Avro, None, FormatType::String);
    let kinds: Vec<&str> = frames_of(&mut items(avro), avro, Some(3))
        .iter()
        .map(|f| match f {
            Frame::Binary(_) => "records",
            Frame::Text(t) if t.starts_with('[') => "array of errors",
            Frame::Text(_) => "error",
        })
        .collect();
    assert_eq!(kinds, ["records", "error", "records", "array of errors"]);
}

#[test]
fn one_store_per_partition_at_its_highest_offset() {
    let (a, b): (TopicPartition, TopicPartition) = ((Arc::from("t"), 0), (Arc::from("t"), 1));
    let taken = [(a.clone(), 5, 0), (b.clone(), 9, 0), (a.clone(), 6, 0), (a.clone(), 7, 0), (b.clone(), 10, 0)];
    assert_eq!(last_offsets(taken.iter()), vec![(&a, 7), (&b, 10)]);
    assert!(last_offsets([].iter()).is_empty());
}
