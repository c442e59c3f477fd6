//! Unit tests of [`super::SocketCodec`]: each payload kind's frames, the wrong frame type on
//! each socket, and the record naming every consumed-record error shares.

use apache_avro::types::Value as AvroValue;

use super::*;
use crate::produce::{ProduceResult, RecordOutcome};

const JSON: SocketCodec =
    SocketCodec::Json(RecordTypes { key_type: Some(FormatType::String), val_type: FormatType::String });
const AVRO: SocketCodec =
    SocketCodec::Avro(RecordTypes { key_type: Some(FormatType::String), val_type: FormatType::String });

fn u(i: u32, v: AvroValue) -> AvroValue {
    AvroValue::Union(i, Box::new(v))
}

fn avro_record(value: &str, id: &str) -> Vec<u8> {
    let schema = avro::parse_schema(avro::AVRO_PRODUCER_RECORD).unwrap();
    apache_avro::to_avro_datum(
        &schema,
        AvroValue::Record(vec![
            ("key".into(), u(0, AvroValue::Null)),
            ("value".into(), u(1, AvroValue::String(value.into()))),
            ("headers".into(), u(0, AvroValue::Null)),
            ("clientMessageId".into(), u(1, AvroValue::String(id.into()))),
        ]),
    )
    .unwrap()
}

fn single(decoded: Option<(ProduceFrame, usize)>) -> (RecordOutcome, usize) {
    match decoded {
        Some((ProduceFrame::Single(r), len)) => (r, len),
        Some((ProduceFrame::Batch(_), _)) => panic!("expected a single record"),
        None => panic!("expected a frame"),
    }
}

fn view<'a>(value: Option<&'a [u8]>) -> KafkaRecordView<'a> {
    KafkaRecordView { topic: "t-x", partition: 1, offset: 2, timestamp: 3, key: None, value, headers: &[] }
}

#[test]
fn the_codec_follows_the_socket_parameters() {
    assert_eq!(SocketCodec::new(SocketPayload::Json, Some(FormatType::String), FormatType::String), JSON);
    assert_eq!(SocketCodec::new(SocketPayload::Avro, Some(FormatType::String), FormatType::String), AVRO);
    let c = SocketCodec::new(SocketPayload::Avro, None, FormatType::Long);
    assert_eq!((c.key_type(), c.val_type()), (None, FormatType::Long));
}

#[test]
fn json_produce_frames_decode_with_their_length() {
    let text = r#"{"value":{"value":"v"},"messageId":"m"}"#;
    let (r, len) = single(JSON.decode_produce(FrameRef::Text(text), 1024));
    assert_eq!((r.unwrap().value.as_deref(), len), (Some(&b"v"[..]), text.len()));
    let Some((ProduceFrame::Batch(records), _)) =
        JSON.decode_produce(FrameRef::Text(&format!("[{text},{text}]")), 1024)
    else {
        panic!("expected a batch")
    };
    assert_eq!(records.len(), 2);
    // The reference ignores empty frames.
    assert!(JSON.decode_produce(FrameRef::Text(" \n"), 1024).is_none());
}

#[test]
fn avro_produce_frames_decode_with_their_length() {
    let bytes = avro_record("v", "m");
    let (r, len) = single(AVRO.decode_produce(FrameRef::Binary(&bytes), 1024));
    let r = r.unwrap();
    assert_eq!((r.value.as_deref(), r.message_id.as_deref(), len), (Some(&b"v"[..]), Some("m"), bytes.len()));
}

#[test]
fn frames_over_the_limit_are_answered_in_their_place() {
    let text = r#"{"value":{"value":"v"}}"#;
    let (r, len) = single(JSON.decode_produce(FrameRef::Text(text), 10));
    let e = r.unwrap_err();
    assert_eq!((e.code, len), (ErrorCode::FrameTooLarge, text.len()));
    assert_eq!(e.message, format!("the frame has {} bytes; the limit is 10 (WSPROXY_WS_MAX_FRAME_SIZE)", text.len()));
    let bytes = avro_record("a longer value", "m");
    let (r, len) = single(AVRO.decode_produce(FrameRef::Binary(&bytes), 10));
    assert_eq!((r.unwrap_err().code, len), (ErrorCode::FrameTooLarge, bytes.len()));
}

#[test]
fn the_wrong_frame_type_is_unsupported_and_holds_nothing() {
    let (r, len) = single(JSON.decode_produce(FrameRef::Binary(b"{}"), 1024));
    let e = r.unwrap_err();
    assert_eq!((e.code, len), (ErrorCode::UnsupportedFrame, 0));
    assert!(e.message.contains("socketPayload=json"), "{}", e.message);
    let (r, len) = single(AVRO.decode_produce(FrameRef::Text("{}"), 1024));
    let e = r.unwrap_err();
    assert_eq!((e.code, len), (ErrorCode::UnsupportedFrame, 0));
    assert!(e.message.contains("socketPayload=avro"), "{}", e.message);
    for (codec, frame, says) in [
        (JSON, FrameRef::Binary(b"x"), "commits are JSON text frames"),
        (AVRO, FrameRef::Text("{}"), "binary AvroCommit frames"),
    ] {
        let e = codec.decode_commit(frame).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedFrame);
        assert!(e.message.contains(says), "{}", e.message);
    }
}

#[test]
fn answers_are_avro_results_only_for_records_on_avro_sockets() {
    let ok = Answer::Ok(ProduceResult {
        topic: "t",
        partition: 1,
        offset: 2,
        timestamp: 3,
        client_message_id: Some("m"),
        message_id: Some("m"),
    });
    let Frame::Binary(bytes) = AVRO.encode_answer(&ok) else { panic!("expected a binary answer") };
    assert_eq!(bytes, avro::encode_producer_result("t", 1, 2, 3, Some("m")));
    assert_eq!(JSON.encode_answer(&ok), Frame::Text(render_answer(&ok)));
    let e = FrameError::new(ErrorCode::InvalidValue, "bad");
    let err = Answer::Err(e.frame());
    assert_eq!(AVRO.encode_answer(&err), Frame::Text(render_answer(&err)));
    assert_eq!(JSON.encode_answers(&[ok, err]), Frame::Text(r#"[{"topic":"t","partition":1,"offset":2,"timestamp":3,"clientMessageId":"m","messageId":"m"},{"error":{"code":"INVALID_VALUE","message":"bad"},"clientMessageId":null,"messageId":null}]"#.to_owned()));
}

#[test]
fn records_encode_by_payload_and_name_themselves_when_they_do_not_decode() {
    let r = view(Some(b"v"));
    let Frame::Text(text) = JSON.encode_record(&r).unwrap() else { panic!("expected text") };
    assert_eq!(
        text,
        r#"{"wsProxyMessageId":"t-x-1-2-3","topic":"t-x","partition":1,"offset":2,"timestamp":3,"headers":null,"value":{"value":"v","format":"string"}}"#
    );
    let Frame::Binary(bytes) = AVRO.encode_record(&r).unwrap() else { panic!("expected binary") };
    assert_eq!(bytes, avro::encode_consumer_record(&r, Some(FormatType::String), FormatType::String).unwrap());
    let bad = view(Some(&[0xff, 0xfe]));
    for codec in [JSON, AVRO] {
        let e = codec.encode_record(&bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::DecodeError);
        assert!(
            e.message.starts_with("the value of record t-x-1-2-3 (topic t-x, partition 1, offset 2) does not decode: "),
            "{}",
            e.message
        );
    }
}

#[test]
fn message_ids_and_record_names_are_written_once() {
    let r = view(None);
    assert_eq!(MessageId::of(&r), MessageId { topic: "t-x".into(), partition: 1, offset: 2, timestamp: 3 });
    assert_eq!(r.name().to_string(), "record t-x-1-2-3 (topic t-x, partition 1, offset 2)");
    let e = FrameError::new(ErrorCode::RecordTooLarge, "big");
    assert_eq!(
        AVRO.encode_error(&e, Some(&r)),
        Frame::Text(
            r#"{"error":{"code":"RECORD_TOO_LARGE","message":"big"},"wsProxyMessageId":"t-x-1-2-3","topic":"t-x","partition":1,"offset":2}"#
                .to_owned()
        )
    );
    assert_eq!(
        JSON.encode_error(&e, None),
        Frame::Text(r#"{"error":{"code":"RECORD_TOO_LARGE","message":"big"}}"#.to_owned())
    );
}

#[test]
fn json_batches_are_one_array_of_records_and_errors() {
    let frames = vec![Frame::Text("{\"a\":1}".into()), Frame::Text("{\"error\":2}".into())];
    assert_eq!(JSON.encode_batch(frames), vec![Frame::Text("[{\"a\":1},{\"error\":2}]".into())]);
    assert!(JSON.encode_batch(Vec::new()).is_empty());
}

#[test]
fn avro_batches_are_an_avro_array_then_the_errors() {
    let (a, b) = (view(Some(b"a")), view(Some(b"b")));
    let records: Vec<Vec<u8>> = [a, b]
        .iter()
        .map(|r| match AVRO.encode_record(r).unwrap() {
            Frame::Binary(bytes) => bytes,
            Frame::Text(_) => panic!("expected binary"),
        })
        .collect();
    let error = Frame::Text("{\"error\":1}".into());
    let frames = vec![Frame::Binary(records[0].clone()), error.clone(), Frame::Binary(records[1].clone())];
    let out = AVRO.encode_batch(frames);
    assert_eq!(out, vec![Frame::Binary(avro::encode_consumer_batch(&records)), error.clone()]);
    let schema = avro::parse_schema(&avro::consumer_batch_schema()).unwrap();
    let Frame::Binary(batch) = &out[0] else { unreachable!() };
    let AvroValue::Array(items) = avro::decode_datum(&schema, batch).unwrap() else { panic!("expected an array") };
    assert_eq!(items.len(), 2);
    // Only errors: one JSON array frame, as the socket always sent.
    assert_eq!(
        AVRO.encode_batch(vec![error.clone(), error]),
        vec![Frame::Text("[{\"error\":1},{\"error\":1}]".into())]
    );
}

#[test]
fn commits_decode_by_payload() {
    assert_eq!(JSON.decode_commit(FrameRef::Text(r#"{"wsProxyMessageId":"t-x-0-4-5"}"#)).unwrap().offset, 4);
    let schema = avro::parse_schema(avro::AVRO_COMMIT).unwrap();
    let commit = |id: &str| {
        apache_avro::to_avro_datum(
            &schema,
            AvroValue::Record(vec![("wsProxyMessageId".into(), AvroValue::String(id.into()))]),
        )
        .unwrap()
    };
    assert_eq!(AVRO.decode_commit(FrameRef::Binary(&commit("t-x-0-4-5"))).unwrap().topic, "t-x");
    for e in [
        JSON.decode_commit(FrameRef::Text(r#"{"wsProxyMessageId":"nope"}"#)).unwrap_err(),
        AVRO.decode_commit(FrameRef::Binary(&commit("nope"))).unwrap_err(),
    ] {
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::UnknownMessageId,
                "'nope' is not a wsProxyMessageId (<topic>-<partition>-<offset>-<timestamp>)"
            )
        );
    }
}
