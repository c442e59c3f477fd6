//! Frames of the produce socket (`/socket/in`): the records a client sends and the results
//! the proxy answers with, one per record, in input order.
//!
//! A text frame holds one record object or (new) a JSON array of them. Each record becomes a
//! [`ProducerRecord`] ready for Kafka, or a [`FrameError`] that is answered in the record's
//! place; a bad record never ends the socket.

mod frame;
mod json_value;

use serde::Serialize;

use crate::error::{ErrorCode, ErrorFrame, FrameError};
use crate::format::FormatType;
use crate::json_text;

/// The most records one array frame may hold (its answer is one frame too).
pub const MAX_BATCH_RECORDS: usize = 1000;

/// A Kafka header: name and optional value bytes.
pub type Header = (String, Option<Vec<u8>>);

/// A record decoded from a produce frame, in Kafka's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerRecord {
    /// `None` when the record has no key.
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone (`"value": {"value": null}`).
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// The client's correlation id, echoed in the result.
    pub message_id: Option<String>,
}

impl ProducerRecord {
    /// Bytes this record holds while in flight (key, value, headers, id): bounds memory.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
            + self.message_id.as_ref().map_or(0, String::len)
    }
}

/// One record of a frame: decoded, or the error that answers it.
pub type RecordOutcome = Result<ProducerRecord, FrameError>;

/// What one text frame holds.
#[derive(Debug)]
pub enum ProduceFrame {
    /// A single record object (or a frame that could not be parsed at all).
    Single(RecordOutcome),
    /// A JSON array of records: answered with one array frame of results.
    Batch(Vec<RecordOutcome>),
}

impl ProduceFrame {
    /// Number of results this frame will be answered with.
    pub fn len(&self) -> usize {
        match self {
            ProduceFrame::Single(_) => 1,
            ProduceFrame::Batch(records) => records.len(),
        }
    }

    /// True for an empty array frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How records of one socket are decoded: the socket's `keyType` and `valType`.
#[derive(Debug, Clone, Copy)]
pub struct RecordDecoder {
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
}

impl RecordDecoder {
    /// Parses one text frame, holding at most about the frame's size while doing so (M5: no
    /// `serde_json::Value` tree; see [`frame`]).
    pub fn parse_frame(&self, text: &str) -> ProduceFrame {
        match frame::parse(*self, text) {
            Ok(frame::Parsed::Single(record)) => ProduceFrame::Single(record),
            Ok(frame::Parsed::Batch(records)) => ProduceFrame::Batch(records),
            Ok(frame::Parsed::TooMany(n)) => ProduceFrame::Single(Err(FrameError::new(
                ErrorCode::InvalidFrame,
                format!("an array frame holds at most {MAX_BATCH_RECORDS} records, this one has {n}"),
            ))),
            Err(e) => ProduceFrame::Single(Err(FrameError::new(
                ErrorCode::InvalidJson,
                format!("the frame is not valid JSON: {e}"),
            ))),
        }
    }
}

/// The result of one record Kafka acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceResult<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    /// The name the reference server sends.
    pub client_message_id: Option<&'a str>,
    /// The name the seed README documents; same value.
    pub message_id: Option<&'a str>,
}

/// A record's answer: its result, or the error in its place.
pub enum Answer<'a> {
    Ok(ProduceResult<'a>),
    Err(ErrorFrame<'a>),
}

/// Answers are written by hand ([`render_answer`]); their serde form is the shape that writing
/// is tested against.
impl Serialize for Answer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Answer::Ok(r) => r.serialize(s),
            Answer::Err(e) => e.serialize(s),
        }
    }
}

/// Renders the answer frame of a single record. A result (an answer per record) is written
/// by hand ([`json_text`]); an error frame goes through serde.
pub fn render_answer(answer: &Answer<'_>) -> String {
    let mut out = String::with_capacity(answer_capacity(answer));
    push_answer(&mut out, answer);
    out
}

/// Renders the answer frame of an array frame.
pub fn render_answers(answers: &[Answer<'_>]) -> String {
    let mut out = String::with_capacity(2 + answers.iter().map(|a| answer_capacity(a) + 1).sum::<usize>());
    out.push('[');
    for (n, answer) in answers.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_answer(&mut out, answer);
    }
    out.push(']');
    out
}

fn answer_capacity(answer: &Answer<'_>) -> usize {
    match answer {
        Answer::Ok(r) => 128 + r.topic.len() + 2 * r.client_message_id.map_or(0, str::len),
        Answer::Err(_) => 256,
    }
}

/// `{"topic":..,"partition":..,"offset":..,"timestamp":..,"clientMessageId":..,"messageId":..}`,
/// the field order of [`ProduceResult`]'s serde form.
fn push_answer(out: &mut String, answer: &Answer<'_>) {
    let r = match answer {
        Answer::Ok(r) => r,
        Answer::Err(e) => return out.push_str(&serde_json::to_string(e).expect("error frames always serialise")),
    };
    out.push_str(r#"{"topic":"#);
    json_text::push_str(out, r.topic);
    for (name, n) in
        [(r#","partition":"#, i64::from(r.partition)), (r#","offset":"#, r.offset), (r#","timestamp":"#, r.timestamp)]
    {
        out.push_str(name);
        json_text::push_int(out, n);
    }
    for (name, text) in [(r#","clientMessageId":"#, r.client_message_id), (r#","messageId":"#, r.message_id)] {
        out.push_str(name);
        json_text::push_opt_str(out, text);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers written by hand are byte for byte what serde writes (the oracle), with and
    /// without ids, with text to escape, alone and in arrays mixed with error answers.
    #[test]
    fn answers_are_what_serde_writes() {
        let ids =
            [None, Some("m1"), Some(""), Some("q\"uote \\ \u{1} ü"), Some("a-long-id-of-more-than-thirty-two-bytes\n")];
        let mut answers = Vec::new();
        for (n, topic) in ["t", "a.b-c_d", "odd\"topic"].into_iter().enumerate() {
            for (i, id) in ids.iter().enumerate() {
                answers.push(Answer::Ok(ProduceResult {
                    topic,
                    partition: n as i32,
                    offset: (i as i64) << 40,
                    timestamp: if i % 2 == 0 { -1 } else { 1_554_402_266_846 },
                    client_message_id: *id,
                    message_id: *id,
                }));
            }
        }
        let e = FrameError::new(ErrorCode::InvalidFrame, "bad \"frame\"");
        let mut with_id = e.clone();
        with_id.message_id = Some("m\"2".to_owned());
        answers.push(Answer::Err(e.frame()));
        answers.insert(3, Answer::Err(with_id.frame()));
        for answer in &answers {
            assert_eq!(render_answer(answer), serde_json::to_string(answer).unwrap());
        }
        assert_eq!(render_answers(&answers), serde_json::to_string(&answers).unwrap());
        assert_eq!(render_answers(&[]), "[]");
        let extremes = Answer::Ok(ProduceResult {
            topic: "t",
            partition: i32::MIN,
            offset: i64::MAX,
            timestamp: i64::MIN,
            client_message_id: None,
            message_id: None,
        });
        assert_eq!(render_answer(&extremes), serde_json::to_string(&extremes).unwrap());
    }

    const STRINGS: RecordDecoder = RecordDecoder { key_type: Some(FormatType::String), val_type: FormatType::String };

    fn single(d: RecordDecoder, text: &str) -> RecordOutcome {
        match d.parse_frame(text) {
            ProduceFrame::Single(r) => r,
            ProduceFrame::Batch(_) => panic!("expected a single record"),
        }
    }

    #[test]
    fn full_record_decodes() {
        let r = single(
            STRINGS,
            r#"{"key":{"value":"k","format":"string"},"value":{"value":"v","format":"string"},
                "headers":[{"key":"h","value":"x"}],"messageId":"m1"}"#,
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(r.headers, vec![("h".to_owned(), Some(b"x".to_vec()))]);
        assert_eq!(r.message_id.as_deref(), Some("m1"));
    }

    #[test]
    fn value_is_encoded_by_val_type_not_by_format() {
        let d = RecordDecoder { key_type: None, val_type: FormatType::Json };
        let r = single(d, r#"{"value":{"value":{"a":1},"format":"string"}}"#).unwrap();
        assert_eq!(r.value.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn errors_echo_the_message_id() {
        let e = single(STRINGS, r#"{"value":{"value":1,"format":"string"},"messageId":"m7"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidValue);
        assert_eq!(e.message_id.as_deref(), Some("m7"));
    }

    #[test]
    fn malformed_records_get_specific_codes() {
        let cases = [
            ("{", ErrorCode::InvalidJson),
            ("42", ErrorCode::InvalidFrame),
            (r#"{"key":{"value":"k"}}"#, ErrorCode::InvalidFrame),
            (r#"{"value":"bare"}"#, ErrorCode::InvalidFrame),
            (r#"{"value":{"value":"v","format":"protobuf"}}"#, ErrorCode::InvalidFormat),
            (r#"{"value":{"value":"v"},"headers":{"a":"b"}}"#, ErrorCode::InvalidFrame),
            (r#"{"value":{"value":"v"},"headers":[{"key":1}]}"#, ErrorCode::InvalidFrame),
            (r#"{"value":{"value":"v"},"messageId":5}"#, ErrorCode::InvalidFrame),
            (r#"{"key":{"value":7},"value":{"value":"v"}}"#, ErrorCode::InvalidKey),
        ];
        for (text, code) in cases {
            let e = single(STRINGS, text).unwrap_err();
            assert_eq!(e.code, code, "{text}: {}", e.message);
        }
    }

    #[test]
    fn key_without_key_type_is_refused_but_null_key_is_fine() {
        let d = RecordDecoder { key_type: None, val_type: FormatType::String };
        assert_eq!(
            single(d, r#"{"key":{"value":"k"},"value":{"value":"v"}}"#).unwrap_err().code,
            ErrorCode::InvalidKey
        );
        assert_eq!(single(d, r#"{"key":{"value":null},"value":{"value":"v"}}"#).unwrap().key, None);
    }

    #[test]
    fn array_frames_are_batches_with_errors_in_place() {
        let ProduceFrame::Batch(items) =
            STRINGS.parse_frame(r#"[{"value":{"value":"a"}}, {"value":{"value":2}}, {"value":{"value":"c"}}]"#)
        else {
            panic!("expected a batch")
        };
        assert!(items[0].is_ok() && items[1].is_err() && items[2].is_ok());
    }

    #[test]
    fn results_carry_both_id_names() {
        let r = ProduceResult {
            topic: "t",
            partition: 1,
            offset: 2,
            timestamp: 3,
            client_message_id: Some("m"),
            message_id: Some("m"),
        };
        assert_eq!(
            render_answer(&Answer::Ok(r)),
            r#"{"topic":"t","partition":1,"offset":2,"timestamp":3,"clientMessageId":"m","messageId":"m"}"#
        );
    }

    #[test]
    fn oversized_array_frames_are_refused_whole() {
        let frame = format!("[{}]", vec!["{\"value\":{\"value\":\"x\"}}"; MAX_BATCH_RECORDS + 1].join(","));
        match STRINGS.parse_frame(&frame) {
            ProduceFrame::Single(Err(e)) => assert_eq!(e.code, ErrorCode::InvalidFrame),
            other => panic!("expected one error, got {} answers", other.len()),
        }
    }

    /// M5: the visitor parser writes `json` values exactly as a `serde_json::Value` did (sorted
    /// keys, the last duplicate wins, numbers as f64/i64/u64) and fails where it failed.
    #[test]
    fn json_values_and_errors_match_the_value_parser() {
        let d = RecordDecoder { key_type: Some(FormatType::Json), val_type: FormatType::Json };
        let value = r#"{"b":1,"a":[1.50,-2,{"d":null,"c":"\u00e9"}],"b":1e2}"#;
        let r = single(d, &format!(r#"{{"key":{{"value":[{{"z":0,"y":1}}]}},"value":{{"value":{value}}}}}"#)).unwrap();
        let expected = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(value).unwrap()).unwrap();
        assert_eq!(r.value.unwrap(), expected);
        assert_eq!(r.key.as_deref(), Some(&br#"[{"y":1,"z":0}]"#[..]));
        for text in ["[".repeat(200), format!("{{\"value\":{{\"value\":{}}}}}", "[".repeat(130)), "[1e400]".to_owned()]
        {
            let want = serde_json::from_str::<serde_json::Value>(&text).unwrap_err().to_string();
            let e = single(d, &text).unwrap_err();
            assert_eq!((e.code, e.message), (ErrorCode::InvalidJson, format!("the frame is not valid JSON: {want}")));
        }
    }

    /// M5: an array over the limit is refused with its full count, without keeping its records.
    #[test]
    fn oversized_arrays_are_counted_to_the_end() {
        let frame = format!("[{}]", vec![r#"{"a":0}"#; 5000].join(","));
        let e = single(STRINGS, &frame).unwrap_err();
        assert_eq!(e.message, "an array frame holds at most 1000 records, this one has 5000");
    }

    #[test]
    fn null_value_is_a_tombstone() {
        assert_eq!(single(STRINGS, r#"{"value":{"value":null,"format":"string"}}"#).unwrap().value, None);
    }
}
