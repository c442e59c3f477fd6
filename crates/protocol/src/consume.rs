//! Frames of the consume socket (`/socket/out`): the records the proxy sends, and the commit
//! frames a client with `autoCommit=false` sends back.
//!
//! Field order and names follow the reference: `wsProxyMessageId, topic, partition, offset,
//! timestamp, headers, key (only when the record has one), value`.

use std::fmt;

use serde::Deserialize;

use crate::error::{ConsumerErrorFrame, ErrorBody, ErrorCode, FrameError};
use crate::format::{FormatError, FormatType, Rendered};
use crate::json_text;

/// The id of a consumed record: `<topic>-<partition>-<offset>-<timestamp>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}-{}", self.topic, self.partition, self.offset, self.timestamp)
    }
}

impl MessageId {
    /// The id of a consumed record.
    pub fn of(r: &KafkaRecordView<'_>) -> MessageId {
        MessageId { topic: r.topic.to_owned(), partition: r.partition, offset: r.offset, timestamp: r.timestamp }
    }

    /// Parses an id. Topic names may contain `-`, so the numbers are taken from the right.
    pub fn parse(s: &str) -> Option<MessageId> {
        // Only the timestamp may be negative (-1: none); topics may end with '-'.
        let (rest, timestamp) = split_number(s, true)?;
        let (rest, offset) = split_number(rest, false)?;
        let (topic, partition) = split_number(rest, false)?;
        if topic.is_empty() {
            return None;
        }
        Some(MessageId { topic: topic.to_owned(), partition: i32::try_from(partition).ok()?, offset, timestamp })
    }
}

/// Splits `<rest>-<number>` at the last separator; a negative number shows as `--N`.
fn split_number(s: &str, may_be_negative: bool) -> Option<(&str, i64)> {
    let idx = s.rfind('-')?;
    let (mut rest, mut num) = (&s[..idx], &s[idx + 1..]);
    if may_be_negative && rest.ends_with('-') && !num.is_empty() {
        // "...--1": the number is negative.
        rest = &rest[..rest.len() - 1];
        num = &s[idx..];
    }
    if num.is_empty() || num == "-" {
        return None;
    }
    Some((rest, num.parse().ok()?))
}

/// The raw parts of a Kafka record, as the consumer hands them over.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl KafkaRecordView<'_> {
    /// How every error text names a consumed record, written once:
    /// `record <id> (topic <t>, partition <p>, offset <o>)`.
    pub fn name(&self) -> impl fmt::Display + '_ {
        RecordName(self)
    }
}

struct RecordName<'v>(&'v KafkaRecordView<'v>);

impl fmt::Display for RecordName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "record {} (topic {}, partition {}, offset {})", MessageId::of(r), r.topic, r.partition, r.offset)
    }
}

impl FrameError {
    /// `DECODE_ERROR`: the key or value (`what`) of a consumed record does not decode as the
    /// socket's type.
    pub fn undecodable(what: &str, record: &KafkaRecordView<'_>, e: impl fmt::Display) -> FrameError {
        FrameError::new(ErrorCode::DecodeError, format!("the {what} of {} does not decode: {e}", record.name()))
    }
}

/// A consumer-socket error frame (JSON text), naming the record when there is one.
pub fn render_error(e: &FrameError, record: Option<&KafkaRecordView<'_>>) -> String {
    let id = record.map(|r| MessageId::of(r).to_string());
    let frame = ConsumerErrorFrame {
        error: ErrorBody { code: e.code, message: &e.message },
        ws_proxy_message_id: id.as_deref(),
        topic: record.map(|r| r.topic),
        partition: record.map(|r| r.partition),
        offset: record.map(|r| r.offset),
    };
    serde_json::to_string(&frame).expect("error frames always serialise")
}

/// How records of one consume socket are rendered: its `keyType` and `valType`.
#[derive(Debug, Clone, Copy)]
pub struct RecordEncoder {
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
}

impl RecordEncoder {
    /// Renders one Kafka record as the JSON text of its frame, or says why its bytes do not
    /// decode (nothing is written then).
    ///
    /// The frame has one shape, so it is written straight into one string ([`json_text`])
    /// instead of through a serde map: this is the consume path's cost per record. The test
    /// module renders the same records through serde as the oracle.
    pub fn render(&self, r: &KafkaRecordView<'_>) -> Result<String, FrameError> {
        let decode_err = |what: &str, e: FormatError| FrameError::undecodable(what, r, e);
        // Without keyType a key would be lost; show it as bytes (the reference rendered `{}`).
        let key_type = self.key_type.unwrap_or(FormatType::ByteArray);
        let key = r.key.map(|b| key_type.render(b)).transpose().map_err(|e| decode_err("key", e))?;
        let value = r.value.map(|b| self.val_type.render(b)).transpose().map_err(|e| decode_err("value", e))?;
        let headers_len: usize = r.headers.iter().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 24).sum();
        let data_len = r.key.map_or(0, <[u8]>::len).saturating_add(r.value.map_or(0, <[u8]>::len));
        let mut out = String::with_capacity(192 + 2 * r.topic.len() + headers_len + data_len / 3 * 4 + 4);
        out.push_str(r#"{"wsProxyMessageId":""#);
        json_text::push_str_contents(&mut out, r.topic);
        for n in [i64::from(r.partition), r.offset, r.timestamp] {
            out.push('-');
            json_text::push_int(&mut out, n);
        }
        out.push_str(r#"","topic":"#);
        json_text::push_str(&mut out, r.topic);
        for (name, n) in [
            (r#","partition":"#, i64::from(r.partition)),
            (r#","offset":"#, r.offset),
            (r#","timestamp":"#, r.timestamp),
        ] {
            out.push_str(name);
            json_text::push_int(&mut out, n);
        }
        out.push_str(r#","headers":"#);
        if r.headers.is_empty() {
            out.push_str("null");
        } else {
            out.push('[');
            for (n, (k, v)) in r.headers.iter().enumerate() {
                out.push_str(if n == 0 { r#"{"key":"# } else { r#",{"key":"# });
                json_text::push_str(&mut out, k);
                out.push_str(r#","value":"#);
                // Header values are shown as UTF-8, decoded lossily.
                json_text::push_opt_str(&mut out, v.map(String::from_utf8_lossy).as_deref());
                out.push('}');
            }
            out.push(']');
        }
        if let Some(key) = &key {
            out.push_str(r#","key":"#);
            push_formatted(&mut out, key, key_type);
        }
        out.push_str(r#","value":"#);
        match &value {
            Some(value) => push_formatted(&mut out, value, self.val_type),
            // A tombstone.
            None => out.push_str("null"),
        }
        out.push('}');
        Ok(out)
    }
}

/// `{"value":<the rendered value>,"format":"<its type>"}`.
fn push_formatted(out: &mut String, value: &Rendered<'_>, format: FormatType) {
    out.push_str(r#"{"value":"#);
    match value {
        Rendered::Json(raw) => out.push_str(raw.get()),
        Rendered::Str(text) => json_text::push_str(out, text),
        Rendered::Base64(text) => json_text::push_str(out, text),
        Rendered::Text(raw) => out.push_str(raw.get()),
    }
    out.push_str(r#","format":""#);
    out.push_str(format.name());
    out.push_str(r#""}"#);
}

/// `{"wsProxyMessageId": "..."}` sent by a client with `autoCommit=false`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitFrame {
    pub ws_proxy_message_id: String,
}

/// Parses a commit frame into the id it names.
pub fn parse_commit(text: &str) -> Result<MessageId, FrameError> {
    let frame: CommitFrame = serde_json::from_str(text).map_err(|e| {
        FrameError::new(ErrorCode::InvalidFrame, format!("a commit must be {{\"wsProxyMessageId\": \"<id>\"}}: {e}"))
    })?;
    MessageId::parse_commit(&frame.ws_proxy_message_id)
}

impl MessageId {
    /// Parses the id a commit frame names, or answers `UNKNOWN_MESSAGE_ID`.
    pub fn parse_commit(id: &str) -> Result<MessageId, FrameError> {
        MessageId::parse(id).ok_or_else(|| {
            FrameError::new(
                ErrorCode::UnknownMessageId,
                format!("'{id}' is not a wsProxyMessageId (<topic>-<partition>-<offset>-<timestamp>)"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The oracle of [`RecordEncoder::render`]: the record frame's shape, written by serde.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ConsumerRecordOut<'a> {
        ws_proxy_message_id: String,
        topic: &'a str,
        partition: i32,
        offset: i64,
        timestamp: i64,
        headers: Option<Vec<HeaderOut<'a>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<FormattedOut<'a>>,
        value: Option<FormattedOut<'a>>,
    }

    #[derive(Serialize)]
    struct HeaderOut<'a> {
        key: &'a str,
        value: Option<std::borrow::Cow<'a, str>>,
    }

    #[derive(Serialize)]
    struct FormattedOut<'a> {
        value: Rendered<'a>,
        format: &'a str,
    }

    fn oracle<'a>(enc: &RecordEncoder, r: &KafkaRecordView<'a>) -> Option<String> {
        let key_type = enc.key_type.unwrap_or(FormatType::ByteArray);
        let formatted =
            |t: FormatType, b: &'a [u8]| t.render(b).ok().map(|value| FormattedOut { value, format: t.name() });
        let key = match r.key {
            Some(b) => Some(formatted(key_type, b)?),
            None => None,
        };
        let value = match r.value {
            Some(b) => Some(formatted(enc.val_type, b)?),
            None => None,
        };
        let headers = (!r.headers.is_empty()).then(|| {
            r.headers.iter().map(|(k, v)| HeaderOut { key: k, value: v.map(String::from_utf8_lossy) }).collect()
        });
        let out = ConsumerRecordOut {
            ws_proxy_message_id: MessageId::of(r).to_string(),
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            headers,
            key,
            value,
        };
        Some(serde_json::to_string(&out).unwrap())
    }

    /// Every format type, with and without keys, headers and values, and text that needs
    /// escaping (quotes, backslashes, control characters, in the topic too) or not (ASCII,
    /// multi-byte UTF-8, long runs either side of the 32-byte chunks): the frame is byte for
    /// byte what serde writes.
    #[test]
    fn rendered_records_are_what_serde_writes() {
        let long = "x".repeat(70) + "\"" + &"é".repeat(20);
        // Each character JSON escapes, alone in a text, in the first and in a later chunk.
        let lone: Vec<String> = ['\u{0}', '\u{1f}', '"', '\\']
            .iter()
            .flat_map(|c| [format!("{c}abc"), format!("{}{c}", "y".repeat(40))])
            .collect();
        let mut texts: Vec<&[u8]> = lone.iter().map(|t| t.as_bytes()).collect();
        texts.extend::<[&[u8]; 12]>([
            b"",
            b"plain ascii value",
            "quote \" back \\ tab \t nl \n bell \u{7} del \u{7f} \u{1f}".as_bytes(),
            "ü € 𝄞 / <script>".as_bytes(),
            long.as_bytes(),
            &[0xff, 0xfe, b'a'],
            b"{\"a\": [1, 2.5e3, \"x\"]}",
            b"84e1703",
            &[0, 0, 0, 7],
            &[0x80, 0],
            &[0, 0, 0, 0, 0, 0, 1, 0],
            &[0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
        ]);
        let headers: [(&str, Option<&[u8]>); 3] =
            [("h", Some(b"v")), ("q\"\u{1}k", Some(&[0xff, b'"'])), ("none", None)];
        let mut rendered = 0;
        for topic in ["t", "a-b.c_d", "odd\"to\\pic\n"] {
            for key_type in std::iter::once(None).chain(FormatType::ALL.map(Some)) {
                for val_type in FormatType::ALL {
                    let enc = RecordEncoder { key_type, val_type };
                    for (i, value) in texts.iter().enumerate() {
                        let key = texts[(i + 3) % texts.len()];
                        for (key, value, headers) in [
                            (Some(key), Some(*value), &headers[..]),
                            (None, Some(*value), &headers[..1]),
                            (Some(key), None, &[][..]),
                        ] {
                            let view = KafkaRecordView {
                                topic,
                                partition: i as i32,
                                offset: 1 << 40,
                                timestamp: -1,
                                key,
                                value,
                                headers,
                            };
                            match (enc.render(&view), oracle(&enc, &view)) {
                                (Ok(text), Some(expected)) => {
                                    assert_eq!(text, expected, "{enc:?} {view:?}");
                                    rendered += 1;
                                }
                                (Err(e), None) => assert_eq!(e.code, ErrorCode::DecodeError),
                                (got, expected) => panic!("{enc:?} {view:?}: {got:?} against {expected:?}"),
                            }
                        }
                    }
                }
            }
        }
        assert!(rendered > 500, "{rendered}");
        let extremes = KafkaRecordView {
            topic: "t",
            partition: i32::MIN,
            offset: i64::MAX,
            timestamp: i64::MIN,
            key: Some(b"k"),
            value: Some(b"v"),
            headers: &[],
        };
        let enc = RecordEncoder { key_type: Some(FormatType::String), val_type: FormatType::String };
        assert_eq!(enc.render(&extremes).ok(), oracle(&enc, &extremes));
    }

    #[test]
    fn message_ids_round_trip_with_dashes_in_topic_and_negative_timestamp() {
        for id in [
            MessageId { topic: "foo".into(), partition: 0, offset: 1, timestamp: 1554402266846 },
            MessageId { topic: "a-b-c".into(), partition: 12, offset: 0, timestamp: -1 },
            MessageId { topic: "ends-with-".into(), partition: 0, offset: 5, timestamp: 9 },
            MessageId { topic: "a-".into(), partition: 3, offset: 7, timestamp: -1 },
        ] {
            assert_eq!(MessageId::parse(&id.to_string()), Some(id));
        }
        assert_eq!(MessageId::parse("foo-0-1"), None);
        assert_eq!(MessageId::parse("-0-1-2"), None);
        assert_eq!(MessageId::parse("foo-x-1-2"), None);
    }

    #[test]
    fn record_frame_has_reference_field_order() {
        let enc = RecordEncoder { key_type: Some(FormatType::String), val_type: FormatType::Int };
        let headers = [("h", Some(&b"v"[..]))];
        let view = KafkaRecordView {
            topic: "t",
            partition: 0,
            offset: 5,
            timestamp: 9,
            key: Some(b"k"),
            value: Some(&[0, 0, 0, 7]),
            headers: &headers,
        };
        assert_eq!(
            enc.render(&view).unwrap(),
            r#"{"wsProxyMessageId":"t-0-5-9","topic":"t","partition":0,"offset":5,"timestamp":9,"headers":[{"key":"h","value":"v"}],"key":{"value":"k","format":"string"},"value":{"value":7,"format":"int"}}"#
        );
    }

    #[test]
    fn tombstone_and_keyless_records() {
        let enc = RecordEncoder { key_type: None, val_type: FormatType::String };
        let view =
            KafkaRecordView { topic: "t", partition: 1, offset: 2, timestamp: 3, key: None, value: None, headers: &[] };
        assert_eq!(
            enc.render(&view).unwrap(),
            r#"{"wsProxyMessageId":"t-1-2-3","topic":"t","partition":1,"offset":2,"timestamp":3,"headers":null,"value":null}"#
        );
    }

    #[test]
    fn undecodable_bytes_name_the_record() {
        let enc = RecordEncoder { key_type: None, val_type: FormatType::Long };
        let view = KafkaRecordView {
            topic: "t",
            partition: 1,
            offset: 2,
            timestamp: 3,
            key: None,
            value: Some(b"abc"),
            headers: &[],
        };
        let e = enc.render(&view).unwrap_err();
        assert_eq!(e.code, ErrorCode::DecodeError);
        assert!(e.message.contains("partition 1, offset 2"), "{}", e.message);
    }

    #[test]
    fn commit_frames() {
        assert_eq!(parse_commit(r#"{"wsProxyMessageId":"t-0-4-5"}"#).unwrap().offset, 4);
        assert_eq!(parse_commit(r#"{"nope":1}"#).unwrap_err().code, ErrorCode::InvalidFrame);
        assert_eq!(parse_commit(r#"{"wsProxyMessageId":"garbage"}"#).unwrap_err().code, ErrorCode::UnknownMessageId);
    }

    /// Found by the `consume_record` fuzz target: a JSON record holding a number beyond f64
    /// renders verbatim inside the frame, which stays a valid JSON object.
    #[test]
    fn json_record_with_a_number_beyond_f64_renders_verbatim() {
        let enc = RecordEncoder { key_type: None, val_type: FormatType::Json };
        let view = KafkaRecordView {
            topic: "t",
            partition: 0,
            offset: 1,
            timestamp: 2,
            key: None,
            value: Some(b"77e7777777776"),
            headers: &[],
        };
        let text = enc.render(&view).unwrap();
        assert!(text.ends_with(r#""value":{"value":77e7777777776,"format":"json"}}"#), "{text}");
        let raw: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).unwrap();
        assert_eq!(raw["wsProxyMessageId"].get(), "\"t-0-1-2\"");
    }
}
