//! Frames of the consume socket (`/socket/out`): the records the proxy sends, and the commit
//! frames a client with `autoCommit=false` sends back.
//!
//! Field order and names follow the reference: `wsProxyMessageId, topic, partition, offset,
//! timestamp, headers, key (only when the record has one), value`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ConsumerErrorFrame, ErrorBody, ErrorCode, FrameError};
use crate::format::{FormatError, FormatType, Rendered};

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

/// The id of a consumed record written straight from the record into a frame, without
/// building a [`MessageId`] (the same text).
#[derive(Debug, Clone, Copy)]
pub struct MessageIdOf<'a>(pub KafkaRecordView<'a>);

impl fmt::Display for MessageIdOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        write!(f, "{}-{}-{}-{}", r.topic, r.partition, r.offset, r.timestamp)
    }
}

impl Serialize for MessageIdOf<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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

/// `{"key", "value"}` of a Kafka header; values rendered as UTF-8 (lossy).
#[derive(Debug, Clone, Serialize)]
pub struct HeaderOut<'a> {
    pub key: &'a str,
    pub value: Option<std::borrow::Cow<'a, str>>,
}

/// `{"value", "format"}`.
#[derive(Debug, Serialize)]
pub struct FormattedOut<'a> {
    pub value: Rendered<'a>,
    pub format: &'a str,
}

/// One consumed record as a frame (or an element of a batch frame).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRecordOut<'a> {
    pub ws_proxy_message_id: MessageIdOf<'a>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub headers: Option<Vec<HeaderOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<FormattedOut<'a>>,
    /// `None` renders `"value": null` (a tombstone).
    pub value: Option<FormattedOut<'a>>,
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
    /// Renders one Kafka record, or says why its bytes do not decode.
    pub fn record<'a>(&self, r: &KafkaRecordView<'a>) -> Result<ConsumerRecordOut<'a>, FrameError> {
        let decode_err = |what: &str, e: FormatError| FrameError::undecodable(what, r, e);
        let key = match r.key {
            None => None,
            Some(bytes) => {
                // Without keyType a key would be lost; show it as bytes (the reference rendered `{}`).
                let kt = self.key_type.unwrap_or(FormatType::ByteArray);
                Some(FormattedOut { value: kt.render(bytes).map_err(|e| decode_err("key", e))?, format: kt.name() })
            }
        };
        let value = match r.value {
            None => None,
            Some(bytes) => Some(FormattedOut {
                value: self.val_type.render(bytes).map_err(|e| decode_err("value", e))?,
                format: self.val_type.name(),
            }),
        };
        let headers = if r.headers.is_empty() {
            None
        } else {
            Some(r.headers.iter().map(|(k, v)| HeaderOut { key: k, value: v.map(String::from_utf8_lossy) }).collect())
        };
        Ok(ConsumerRecordOut {
            ws_proxy_message_id: MessageIdOf(*r),
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            headers,
            key,
            value,
        })
    }
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
            serde_json::to_string(&enc.record(&view).unwrap()).unwrap(),
            r#"{"wsProxyMessageId":"t-0-5-9","topic":"t","partition":0,"offset":5,"timestamp":9,"headers":[{"key":"h","value":"v"}],"key":{"value":"k","format":"string"},"value":{"value":7,"format":"int"}}"#
        );
    }

    #[test]
    fn tombstone_and_keyless_records() {
        let enc = RecordEncoder { key_type: None, val_type: FormatType::String };
        let view =
            KafkaRecordView { topic: "t", partition: 1, offset: 2, timestamp: 3, key: None, value: None, headers: &[] };
        assert_eq!(
            serde_json::to_string(&enc.record(&view).unwrap()).unwrap(),
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
        let e = enc.record(&view).unwrap_err();
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
        let text = serde_json::to_string(&enc.record(&view).unwrap()).unwrap();
        assert!(text.ends_with(r#""value":{"value":77e7777777776,"format":"json"}}"#), "{text}");
        let raw: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&text).unwrap();
        assert_eq!(raw["wsProxyMessageId"].get(), "\"t-0-1-2\"");
    }
}
