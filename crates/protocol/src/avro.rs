//! The Avro socket payload (`socketPayload=avro`): the seed README's wrapper records, in Avro's
//! binary encoding, one per WebSocket binary frame.
//!
//! - [`AVRO_PRODUCER_RECORD`] in on `/socket/in`, answered by [`AVRO_PRODUCER_RESULT`];
//! - [`AVRO_CONSUMER_RECORD`] out on `/socket/out`, committed with [`AVRO_COMMIT`].
//!
//! The schema texts are the seed README's, byte for byte (`schemas/*.avsc`), and are what
//! `/schemas/avro/...` serves. Key and value travel as a union of `bytes | string | int | long |
//! double | float`; the socket's `keyType` / `valType` still decide the Kafka bytes, exactly as
//! on a JSON socket: `bytes` is taken as already serialised (and must decode as the type), the
//! other branches convert like the same JSON value (for `json`, a `string` is the JSON text).
//! Errors are not wrapper records: the socket answers them with the JSON error frames of
//! [`crate::error`] as text frames, so a client tells them apart by the frame type.
//!
//! [`confluent_frame`] splits Confluent's wire format (magic byte, schema id, datum) for the
//! schema-registry checks of `avro` keys and values.
//!
//! Datums from outside are decoded by [`bounds`], with a depth limit and item counts backed by
//! bytes (apache-avro's decoder has neither, see the module); apache-avro parses the schemas
//! and encodes what the proxy sends.

use std::sync::LazyLock;

use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use serde_json::Value;

use crate::consume::{KafkaRecordView, MessageId};
use crate::error::{ErrorCode, FrameError};
use crate::format::FormatType;
use crate::produce::{Header, ProducerRecord, RecordOutcome};

mod bounds;

pub use bounds::{DatumError, MAX_AVRO_DEPTH};

/// `AvroProducerRecord`, as the seed README prints it.
pub const AVRO_PRODUCER_RECORD: &str = include_str!("../schemas/producer_record.avsc");
/// `AvroProducerResult`.
pub const AVRO_PRODUCER_RESULT: &str = include_str!("../schemas/producer_result.avsc");
/// `AvroConsumerRecord`.
pub const AVRO_CONSUMER_RECORD: &str = include_str!("../schemas/consumer_record.avsc");
/// `AvroCommit`.
pub const AVRO_COMMIT: &str = include_str!("../schemas/commit.avsc");

/// apache-avro's allocation cap (set before parsing schemas). Decoding does not rely on it:
/// [`bounds`] backs every allocation with input bytes.
pub const MAX_AVRO_ALLOCATION: usize = 16 * 1024 * 1024;

fn parse(text: &str) -> Schema {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    Schema::parse_str(text).expect("the wrapper schemas are valid Avro")
}

static PRODUCER_RECORD: LazyLock<Schema> = LazyLock::new(|| parse(AVRO_PRODUCER_RECORD));
static PRODUCER_RESULT: LazyLock<Schema> = LazyLock::new(|| parse(AVRO_PRODUCER_RESULT));
static CONSUMER_RECORD: LazyLock<Schema> = LazyLock::new(|| parse(AVRO_CONSUMER_RECORD));
static COMMIT: LazyLock<Schema> = LazyLock::new(|| parse(AVRO_COMMIT));

/// The schema of a batch frame on an avro consume socket with `batchSize`: an Avro array of
/// `AvroConsumerRecord`.
pub fn consumer_batch_schema() -> String {
    format!("{{\"type\":\"array\",\"items\":{AVRO_CONSUMER_RECORD}}}")
}

/// Decodes one datum of `schema`, refusing trailing bytes (a frame holds exactly one record),
/// nesting beyond [`MAX_AVRO_DEPTH`] and item counts the bytes cannot hold (see [`bounds`]).
pub fn decode_datum(schema: &Schema, bytes: &[u8]) -> Result<AvroValue, DatumError> {
    bounds::decode(schema, bytes)
}

/// Parses an Avro schema (from a registry, say) with the decoder's allocation bound in place.
pub fn parse_schema(text: &str) -> Result<Schema, String> {
    apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
    Schema::parse_str(text).map_err(|e| e.to_string())
}

/// Splits Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, then the
/// Avro binary datum.
pub fn confluent_frame(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [magic, ..] if bytes.len() >= 5 => {
            Err(format!("the first byte is {magic}, Confluent's wire format starts with the magic byte 0"))
        }
        _ => Err(format!(
            "{} bytes are too short for Confluent's wire format (magic byte 0, 4-byte schema id, Avro data)",
            bytes.len()
        )),
    }
}

/// Decodes a binary frame of an avro produce socket into a record for Kafka.
pub fn decode_producer_record(bytes: &[u8], key_type: Option<FormatType>, val_type: FormatType) -> RecordOutcome {
    let fields = match decode_datum(&PRODUCER_RECORD, bytes) {
        Ok(AvroValue::Record(fields)) => fields,
        other => {
            let e = other.map_or_else(|e| e.to_string(), |v| format!("decoded {v:?}"));
            return Err(FrameError::new(
                ErrorCode::InvalidFrame,
                format!("the binary frame is not an Avro-encoded AvroProducerRecord: {e}"),
            ));
        }
    };
    let mut key = None;
    let mut value = None;
    let mut headers = Vec::new();
    let mut message_id = None;
    for (name, v) in fields {
        match name.as_str() {
            "key" => key = Some(unwrap_union(v)),
            "value" => value = Some(unwrap_union(v)),
            "headers" => headers = avro_headers(unwrap_union(v)),
            "clientMessageId" => {
                if let AvroValue::String(s) = unwrap_union(v) {
                    message_id = Some(s);
                }
            }
            _ => {}
        }
    }
    let with_id = |e: FrameError| e.with_message_id(message_id.clone());
    let value = value.expect("the schema requires 'value'");
    let value = Some(encode_union(val_type, value).map_err(|e| {
        with_id(FrameError::new(ErrorCode::InvalidValue, format!("'value' does not match its type: {e}")))
    })?);
    let key = match (key.unwrap_or(AvroValue::Null), key_type) {
        (AvroValue::Null, _) => None,
        (k, Some(kt)) => Some(encode_union(kt, k).map_err(|e| {
            with_id(FrameError::new(ErrorCode::InvalidKey, format!("'key' does not match its type: {e}")))
        })?),
        (_, None) => {
            return Err(with_id(FrameError::new(
                ErrorCode::InvalidKey,
                "the record has a key but the socket was opened without 'keyType'",
            )))
        }
    };
    Ok(ProducerRecord { key, value, headers, message_id })
}

fn unwrap_union(v: AvroValue) -> AvroValue {
    match v {
        AvroValue::Union(_, inner) => *inner,
        other => other,
    }
}

fn avro_headers(v: AvroValue) -> Vec<Header> {
    let AvroValue::Array(items) = v else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|h| {
            let AvroValue::Record(fields) = h else { return None };
            let mut key = None;
            let mut value = None;
            for (name, f) in fields {
                match (name.as_str(), f) {
                    ("key", AvroValue::String(s)) => key = Some(s),
                    ("value", AvroValue::String(s)) => value = Some(s.into_bytes()),
                    _ => {}
                }
            }
            Some((key?, value))
        })
        .collect()
}

/// Kafka bytes of one union branch, by the socket's type. `bytes` is taken as already
/// serialised (and checked to decode as the type); the other branches are converted the way
/// a JSON value of that kind would be.
fn encode_union(format: FormatType, v: AvroValue) -> Result<Vec<u8>, String> {
    let number = |n: Option<serde_json::Number>| {
        n.map(Value::Number).ok_or_else(|| "a NaN or infinite number has no JSON form".to_owned())
    };
    let json = match v {
        AvroValue::Bytes(b) => {
            format.render(&b).map_err(|e| e.to_string())?;
            return Ok(b);
        }
        // Avro has no JSON values: for `json` a string is the JSON text, stored compact.
        AvroValue::String(s) if format == FormatType::Json => {
            serde_json::from_str(&s).map_err(|e| format!("the string is not JSON text: {e}"))?
        }
        AvroValue::String(s) => Value::String(s),
        AvroValue::Int(i) => Value::from(i),
        AvroValue::Long(l) => Value::from(l),
        AvroValue::Double(d) => match format {
            FormatType::Double => return Ok(d.to_be_bytes().to_vec()),
            _ => number(serde_json::Number::from_f64(d))?,
        },
        AvroValue::Float(f) => match format {
            FormatType::Float => return Ok(f.to_be_bytes().to_vec()),
            FormatType::Double => return Ok(f64::from(f).to_be_bytes().to_vec()),
            _ => number(serde_json::Number::from_f64(f64::from(f)))?,
        },
        other => return Err(format!("unexpected Avro value {other:?}")),
    };
    format.encode(&json).map_err(|e| e.to_string())
}

/// The union branch a Kafka key or value is sent in, by the socket's type.
fn decode_branch(format: FormatType, bytes: &[u8]) -> Result<AvroValue, String> {
    let fixed = |n: usize| -> Result<(), String> {
        if bytes.len() == n {
            Ok(())
        } else {
            Err(format!("expected {n} bytes for format '{format}', got {}", bytes.len()))
        }
    };
    Ok(match format {
        FormatType::ByteArray | FormatType::Avro => AvroValue::Bytes(bytes.to_vec()),
        FormatType::String | FormatType::Json => {
            let text =
                std::str::from_utf8(bytes).map_err(|_| format!("bytes are not valid UTF-8 for format '{format}'"))?;
            if format == FormatType::Json {
                format.render(bytes).map_err(|e| e.to_string())?;
            }
            AvroValue::String(text.to_owned())
        }
        FormatType::Short => {
            fixed(2)?;
            AvroValue::Int(i32::from(i16::from_be_bytes([bytes[0], bytes[1]])))
        }
        FormatType::Int => {
            fixed(4)?;
            AvroValue::Int(i32::from_be_bytes(bytes.try_into().expect("4 bytes")))
        }
        FormatType::Long => {
            fixed(8)?;
            AvroValue::Long(i64::from_be_bytes(bytes.try_into().expect("8 bytes")))
        }
        FormatType::Double => {
            fixed(8)?;
            AvroValue::Double(f64::from_be_bytes(bytes.try_into().expect("8 bytes")))
        }
        FormatType::Float => {
            fixed(4)?;
            AvroValue::Float(f32::from_be_bytes(bytes.try_into().expect("4 bytes")))
        }
    })
}

/// Position of a branch in the value union `bytes | string | int | long | double | float`;
/// the key union has `null` first, so its positions are one higher.
fn branch_index(v: &AvroValue) -> u32 {
    match v {
        AvroValue::Bytes(_) => 0,
        AvroValue::String(_) => 1,
        AvroValue::Int(_) => 2,
        AvroValue::Long(_) => 3,
        AvroValue::Double(_) => 4,
        AvroValue::Float(_) => 5,
        _ => unreachable!("decode_branch returns only union branches"),
    }
}

/// Encodes a consumed Kafka record as an `AvroConsumerRecord`, or says why its bytes do not
/// decode as the socket's types. A tombstone (no value) is sent as empty `bytes`: the seed's
/// value union has no `null`.
pub fn encode_consumer_record(
    r: &KafkaRecordView<'_>,
    key_type: Option<FormatType>,
    val_type: FormatType,
) -> Result<Vec<u8>, FrameError> {
    let decode_err = |what: &str, e: String| FrameError::undecodable(what, r, e);
    let key = match r.key {
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        Some(bytes) => {
            let b =
                decode_branch(key_type.unwrap_or(FormatType::ByteArray), bytes).map_err(|e| decode_err("key", e))?;
            AvroValue::Union(branch_index(&b) + 1, Box::new(b))
        }
    };
    let value = match r.value {
        None => AvroValue::Union(0, Box::new(AvroValue::Bytes(Vec::new()))),
        Some(bytes) => {
            let b = decode_branch(val_type, bytes).map_err(|e| decode_err("value", e))?;
            AvroValue::Union(branch_index(&b), Box::new(b))
        }
    };
    let headers = if r.headers.is_empty() {
        AvroValue::Union(0, Box::new(AvroValue::Null))
    } else {
        let items = r
            .headers
            .iter()
            .map(|(k, v)| {
                AvroValue::Record(vec![
                    ("key".to_owned(), AvroValue::String((*k).to_owned())),
                    (
                        "value".to_owned(),
                        AvroValue::String(v.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()),
                    ),
                ])
            })
            .collect();
        AvroValue::Union(1, Box::new(AvroValue::Array(items)))
    };
    let record = AvroValue::Record(vec![
        ("wsProxyMessageId".to_owned(), AvroValue::String(MessageId::of(r).to_string())),
        ("topic".to_owned(), AvroValue::String(r.topic.to_owned())),
        ("partition".to_owned(), AvroValue::Int(r.partition)),
        ("offset".to_owned(), AvroValue::Long(r.offset)),
        ("timestamp".to_owned(), AvroValue::Long(r.timestamp)),
        ("key".to_owned(), key),
        ("value".to_owned(), value),
        ("headers".to_owned(), headers),
    ]);
    Ok(apache_avro::to_avro_datum(&CONSUMER_RECORD, record).expect("the record matches AvroConsumerRecord"))
}

/// Joins already encoded `AvroConsumerRecord`s into one datum of [`consumer_batch_schema`]:
/// Avro's array encoding is a block count, the items, and a zero count.
pub fn encode_consumer_batch(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(Vec::len).sum::<usize>() + 12);
    if !records.is_empty() {
        write_long(&mut out, records.len() as i64);
        for r in records {
            out.extend_from_slice(r);
        }
    }
    write_long(&mut out, 0);
    out
}

/// Avro's zig-zag variable-length encoding of a long.
fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Encodes the `AvroProducerResult` of one acknowledged record.
pub fn encode_producer_result(
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    client_message_id: Option<&str>,
) -> Vec<u8> {
    let id = match client_message_id {
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        Some(s) => AvroValue::Union(1, Box::new(AvroValue::String(s.to_owned()))),
    };
    let record = AvroValue::Record(vec![
        ("topic".to_owned(), AvroValue::String(topic.to_owned())),
        ("partition".to_owned(), AvroValue::Int(partition)),
        ("offset".to_owned(), AvroValue::Long(offset)),
        ("timestamp".to_owned(), AvroValue::Long(timestamp)),
        ("clientMessageId".to_owned(), id),
    ]);
    apache_avro::to_avro_datum(&PRODUCER_RESULT, record).expect("the result matches AvroProducerResult")
}

/// Parses a binary `AvroCommit` frame into the id it names.
pub fn decode_commit(bytes: &[u8]) -> Result<MessageId, FrameError> {
    let id = match decode_datum(&COMMIT, bytes) {
        Ok(AvroValue::Record(mut fields)) if matches!(fields.last(), Some((_, AvroValue::String(_)))) => {
            match fields.pop() {
                Some((_, AvroValue::String(s))) => s,
                _ => unreachable!("checked above"),
            }
        }
        Ok(other) => {
            return Err(FrameError::new(
                ErrorCode::InvalidFrame,
                format!("the binary frame is not an Avro-encoded AvroCommit: decoded {other:?}"),
            ))
        }
        Err(e) => {
            return Err(FrameError::new(
                ErrorCode::InvalidFrame,
                format!("the binary frame is not an Avro-encoded AvroCommit: {e}"),
            ))
        }
    };
    MessageId::parse_commit(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_record(key: AvroValue, value: AvroValue, headers: AvroValue, id: AvroValue) -> Vec<u8> {
        apache_avro::to_avro_datum(
            &PRODUCER_RECORD,
            AvroValue::Record(vec![
                ("key".into(), key),
                ("value".into(), value),
                ("headers".into(), headers),
                ("clientMessageId".into(), id),
            ]),
        )
        .unwrap()
    }

    fn u(i: u32, v: AvroValue) -> AvroValue {
        AvroValue::Union(i, Box::new(v))
    }

    #[test]
    fn schemas_are_the_seed_readmes() {
        for (text, name) in [
            (AVRO_PRODUCER_RECORD, "AvroProducerRecord"),
            (AVRO_PRODUCER_RESULT, "AvroProducerResult"),
            (AVRO_CONSUMER_RECORD, "AvroConsumerRecord"),
            (AVRO_COMMIT, "AvroCommit"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["name"], name);
            assert_eq!(v["namespace"], "net.scalytica.kafka.wsproxy.avro");
            parse(text);
        }
        parse(&consumer_batch_schema());
    }

    #[test]
    fn producer_record_decodes_every_field() {
        let headers = u(
            1,
            AvroValue::Array(vec![AvroValue::Record(vec![
                ("key".into(), AvroValue::String("h".into())),
                ("value".into(), AvroValue::String("x".into())),
            ])]),
        );
        let bytes = producer_record(
            u(2, AvroValue::String("k".into())),
            u(2, AvroValue::Int(7)),
            headers,
            u(1, AvroValue::String("m1".into())),
        );
        let r = decode_producer_record(&bytes, Some(FormatType::String), FormatType::Int).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&[0, 0, 0, 7][..]));
        assert_eq!(r.headers, vec![("h".to_owned(), Some(b"x".to_vec()))]);
        assert_eq!(r.message_id.as_deref(), Some("m1"));
    }

    #[test]
    fn bad_frames_are_errors() {
        let good = producer_record(
            u(0, AvroValue::Null),
            u(1, AvroValue::String("v".into())),
            u(0, AvroValue::Null),
            u(0, AvroValue::Null),
        );
        let d = |b: &[u8]| decode_producer_record(b, None, FormatType::String);
        assert!(d(&good).is_ok());
        assert_eq!(d(&good[..good.len() - 1]).unwrap_err().code, ErrorCode::InvalidFrame);
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(d(&longer).unwrap_err().code, ErrorCode::InvalidFrame);
        // Union index 9 does not exist; a huge length must not allocate.
        assert_eq!(d(&[0x12]).unwrap_err().code, ErrorCode::InvalidFrame);
        assert_eq!(d(&[0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f]).unwrap_err().code, ErrorCode::InvalidFrame);
        // A string value on an int socket that is not a number.
        let e = decode_producer_record(&good, None, FormatType::Int).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidValue);
        // A key without keyType.
        let keyed = producer_record(
            u(2, AvroValue::String("k".into())),
            u(1, AvroValue::String("v".into())),
            u(0, AvroValue::Null),
            u(1, AvroValue::String("id".into())),
        );
        let e = d(&keyed).unwrap_err();
        assert_eq!((e.code, e.message_id.as_deref()), (ErrorCode::InvalidKey, Some("id")));
    }

    #[test]
    fn consumer_records_and_results_round_trip_through_the_schemas() {
        let headers = [("h", Some(&b"v"[..]))];
        let view = KafkaRecordView {
            topic: "t",
            partition: 1,
            offset: 2,
            timestamp: 3,
            key: Some(&[0, 0, 0, 0, 0, 0, 0, 9]),
            value: Some(b"{\"a\":1}"),
            headers: &headers,
        };
        let bytes = encode_consumer_record(&view, Some(FormatType::Long), FormatType::Json).unwrap();
        let AvroValue::Record(fields) = decode_datum(&CONSUMER_RECORD, &bytes).unwrap() else { panic!() };
        assert_eq!(fields[0].1, AvroValue::String("t-1-2-3".into()));
        assert_eq!(fields[5].1, u(4, AvroValue::Long(9)));
        assert_eq!(fields[6].1, u(1, AvroValue::String("{\"a\":1}".into())));
        let batch = encode_consumer_batch(&[bytes.clone(), bytes]);
        let AvroValue::Array(items) = decode_datum(&parse(&consumer_batch_schema()), &batch).unwrap() else { panic!() };
        assert_eq!(items.len(), 2);
        let r = encode_producer_result("t", 0, 5, 6, Some("m"));
        assert!(decode_datum(&PRODUCER_RESULT, &r).is_ok());
        let bad = KafkaRecordView { value: Some(b"abc"), ..view };
        assert_eq!(encode_consumer_record(&bad, None, FormatType::Long).unwrap_err().code, ErrorCode::DecodeError);
    }

    /// H5: a deep datum of a recursive schema is an error, not a stack overflow that aborts
    /// the process (decoded on a thread with a tokio worker's 2 MiB stack).
    #[test]
    fn h5_a_deep_datum_of_a_recursive_schema_is_an_error_not_a_stack_overflow() {
        let result = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let schema = parse_schema(
                    r#"{"type":"record","name":"Node","namespace":"t","fields":[{"name":"next","type":["null","Node"]}]}"#,
                )
                .unwrap();
                let mut bytes = vec![0x02; 100_000];
                bytes.push(0x00);
                decode_datum(&schema, &bytes).map(drop)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(result, Err(DatumError::TooDeep));
    }

    #[test]
    fn confluent_wire_format() {
        assert_eq!(confluent_frame(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, &[9, 9][..]));
        assert!(confluent_frame(&[1, 0, 0, 0, 1]).unwrap_err().contains("magic byte"));
        assert!(confluent_frame(&[0, 0, 0]).unwrap_err().contains("too short"));
    }

    #[test]
    fn commits() {
        let c = apache_avro::to_avro_datum(
            &COMMIT,
            AvroValue::Record(vec![("wsProxyMessageId".into(), AvroValue::String("t-0-4-5".into()))]),
        )
        .unwrap();
        assert_eq!(decode_commit(&c).unwrap().offset, 4);
        assert_eq!(decode_commit(&c[..2]).unwrap_err().code, ErrorCode::InvalidFrame);
    }
}
