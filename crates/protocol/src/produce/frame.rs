//! Reading a produce frame in one pass, without building a `serde_json::Value` tree (M5).
//!
//! A `Value` costs about 80 times its JSON text for small nested objects (every object is a
//! BTreeMap leaf of ~630 bytes, every array element a 32-byte `Value`), so a 4 MiB frame of
//! `[{"a":0},...]` used to allocate ~330 MB before the record limit was even checked. Here serde
//! visitors read the frame straight into what the records need: an array stops keeping records
//! after [`MAX_BATCH_RECORDS`] (the rest is only counted), unknown fields are skipped, header
//! lists keep their entries, and a `json` value is written out compactly as it is read. What is
//! held is at most about the frame's own size.
//!
//! The behaviour is the `Value` parser's, byte for byte: the same syntax checks in the same
//! order (the same `serde_json` error texts and positions, the recursion limit of 128, numbers
//! beyond f64), the last of duplicate keys wins, `json` values are written with sorted keys,
//! and every per-record error keeps its text and its priority (messageId, value, key, headers).
//! The visitors of the JSON values inside a record are in [`super::json_value`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::json_value::{skip_map, skip_seq, Field, FieldSeed, Skip};
use super::{Header, ProducerRecord, RecordDecoder, RecordOutcome, MAX_BATCH_RECORDS};
use crate::error::{ErrorCode, FrameError};
use crate::format::FormatType;

/// What a frame's JSON holds, before the frame limit is applied.
pub(super) enum Parsed {
    Single(RecordOutcome),
    Batch(Vec<RecordOutcome>),
    /// An array of more than [`MAX_BATCH_RECORDS`] elements, with its length.
    TooMany(usize),
}

/// Parses one frame; `Err` is `serde_json`'s error for text that is not JSON.
pub(super) fn parse(decoder: RecordDecoder, text: &str) -> Result<Parsed, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = FrameSeed(decoder).deserialize(&mut de)?;
    de.end()?;
    Ok(parsed)
}

/// The scalar visits of a visitor that wants something else: each answers `$wrong(kind)`.
macro_rules! refuse_scalars {
    ($wrong:ident) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.$wrong("null"))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.$wrong("boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.$wrong("number"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.$wrong("number"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.$wrong("number"))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.$wrong("string"))
        }
    };
}

/// The whole frame: one record object, or an array of them.
struct FrameSeed(RecordDecoder);

impl<'de> DeserializeSeed<'de> for FrameSeed {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(self)
    }
}

impl FrameSeed {
    fn not_a_record(self, kind: &'static str) -> Parsed {
        Parsed::Single(RecordVisitor(self.0).not_an_object(kind))
    }
}

impl<'de> Visitor<'de> for FrameSeed {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object or an array of them")
    }

    refuse_scalars!(not_a_record);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut records = Vec::new();
        while records.len() <= MAX_BATCH_RECORDS {
            match seq.next_element_seed(RecordVisitor(self.0))? {
                Some(r) => records.push(r),
                None => return Ok(Parsed::Batch(records)),
            }
        }
        // Over the limit: the records are dropped, the rest is only counted (and checked).
        let mut count = records.len();
        drop(records);
        while seq.next_element::<Skip>()?.is_some() {
            count += 1;
        }
        Ok(Parsed::TooMany(count))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Parsed, A::Error> {
        RecordVisitor(self.0).visit_map(map).map(Parsed::Single)
    }
}

/// One record object.
struct RecordVisitor(RecordDecoder);

impl RecordVisitor {
    fn not_an_object(self, kind: &'static str) -> RecordOutcome {
        Err(FrameError::new(ErrorCode::InvalidFrame, format!("a record must be a JSON object, got {kind}")))
    }
}

impl<'de> DeserializeSeed<'de> for RecordVisitor {
    type Value = RecordOutcome;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RecordOutcome, D::Error> {
        d.deserialize_any(self)
    }
}

/// The names a record object gives meaning to; others are skipped.
enum RecordKey {
    MessageId,
    Key,
    Value,
    Headers,
    /// Only inside a key or value object.
    Format,
    Other,
}

impl<'de> Deserialize<'de> for RecordKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RecordKey, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RecordKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<RecordKey, E> {
                Ok(match v {
                    "messageId" => RecordKey::MessageId,
                    "key" => RecordKey::Key,
                    "value" => RecordKey::Value,
                    "headers" => RecordKey::Headers,
                    "format" => RecordKey::Format,
                    _ => RecordKey::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RecordOutcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    refuse_scalars!(not_an_object);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RecordOutcome, A::Error> {
        Ok(self.not_an_object(skip_seq(seq)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordOutcome, A::Error> {
        let decoder = self.0;
        let (mut message_id, mut key, mut value, mut headers) = (None, None, None, None);
        while let Some(name) = map.next_key::<RecordKey>()? {
            match name {
                RecordKey::MessageId => message_id = Some(map.next_value_seed(FieldSeed { keep: false })?),
                RecordKey::Value => {
                    value = Some(map.next_value_seed(Formatted { keep: decoder.val_type == FormatType::Json })?)
                }
                RecordKey::Key => {
                    let keep = decoder.key_type == Some(FormatType::Json);
                    key = Some(map.next_value_seed(Formatted { keep })?);
                }
                RecordKey::Headers => headers = map.next_value_seed(HeadersSeed)?,
                RecordKey::Format | RecordKey::Other => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(decoder.assemble(message_id, key, value, headers))
    }
}

impl RecordDecoder {
    /// Checks a record's fields in the order of the reference-compatible rules: the id first
    /// (every later error echoes it), then value, key and headers.
    fn assemble(
        &self,
        message_id: Option<Field>,
        key: Option<FormattedField>,
        value: Option<FormattedField>,
        headers: Option<HeaderList>,
    ) -> RecordOutcome {
        let message_id = match message_id {
            None => None,
            Some(Field::Scalar(Value::Null)) => None,
            Some(Field::Scalar(Value::String(s))) => Some(s),
            Some(other) => {
                return Err(FrameError::new(
                    ErrorCode::InvalidFrame,
                    format!("'messageId' must be a string, got {}", other.kind()),
                ))
            }
        };
        let with_id = |e: FrameError| e.with_message_id(message_id.clone());
        let value = match value {
            None => return Err(with_id(FrameError::new(ErrorCode::InvalidFrame, "the record has no 'value' object"))),
            Some(v) => v
                .inner("value")
                .and_then(|inner| encode(self.val_type, inner, ErrorCode::InvalidValue, "value"))
                .map_err(with_id)?,
        };
        let key = match key {
            None | Some(FormattedField::Null) => None,
            Some(k) => {
                let inner = k.inner("key").map_err(with_id)?;
                match (self.key_type, inner) {
                    (_, inner) if inner.is_null() => None,
                    (Some(kt), inner) => encode(kt, inner, ErrorCode::InvalidKey, "key").map_err(with_id)?,
                    (None, _) => {
                        return Err(with_id(FrameError::new(
                            ErrorCode::InvalidKey,
                            "the record has a key but the socket was opened without 'keyType'",
                        )))
                    }
                }
            }
        };
        let headers = match headers {
            None => Vec::new(),
            Some(h) => h.0.map_err(with_id)?,
        };
        Ok(ProducerRecord { key, value, headers, message_id })
    }
}

/// Encodes a key or value by the socket's format type.
fn encode(format: FormatType, v: Field, code: ErrorCode, field: &str) -> Result<Option<Vec<u8>>, FrameError> {
    let wrong =
        |e: crate::format::FormatError| FrameError::new(code, format!("'{field}' does not match its type: {e}"));
    match v {
        Field::Scalar(Value::Null) => Ok(None),
        // The text's own bytes, not a copy (what `FormatType::encode` gives for a string).
        Field::Scalar(Value::String(s)) if format == FormatType::String => Ok(Some(s.into_bytes())),
        Field::Scalar(v) => format.encode(&v).map(Some).map_err(wrong),
        Field::Composite { json, .. } if format == FormatType::Json => Ok(Some(json)),
        // Only the kind matters to the other formats' errors.
        Field::Composite { kind, .. } => {
            let empty = if kind == "array" { Value::Array(Vec::new()) } else { Value::Object(serde_json::Map::new()) };
            format.encode(&empty).map(Some).map_err(wrong)
        }
    }
}

/// `{"value": ..., "format": ...}` of a key or a value, as read.
enum FormattedField {
    /// JSON `null` where the object was expected.
    Null,
    /// Not an object: its kind.
    NotAnObject(&'static str),
    Object {
        value: Option<Field>,
        format: Option<Field>,
    },
}

impl FormattedField {
    /// Unwraps the inner value, checking `format` names a format type when present. As in the
    /// reference, the socket's type decides the encoding, not `format`.
    fn inner(self, field: &str) -> Result<Field, FrameError> {
        let (value, format) = match self {
            FormattedField::Null => return Err(not_an_object(field, "null")),
            FormattedField::NotAnObject(kind) => return Err(not_an_object(field, kind)),
            FormattedField::Object { value, format } => (value, format),
        };
        match format {
            None | Some(Field::Scalar(Value::Null)) => {}
            Some(Field::Scalar(Value::String(name))) => {
                name.parse::<FormatType>().map_err(|e| FrameError::new(ErrorCode::InvalidFormat, e.to_string()))?;
            }
            Some(other) => {
                return Err(FrameError::new(
                    ErrorCode::InvalidFormat,
                    format!("'{field}.format' must be a string, got {}", other.kind()),
                ))
            }
        }
        Ok(value.unwrap_or(Field::Scalar(Value::Null)))
    }
}

fn not_an_object(field: &str, kind: &str) -> FrameError {
    FrameError::new(
        ErrorCode::InvalidFrame,
        format!("'{field}' must be an object {{\"value\", \"format\"}}, got {kind}"),
    )
}

/// Reads a [`FormattedField`]; `keep` says whether an array or object value keeps its text.
struct Formatted {
    keep: bool,
}

impl Formatted {
    fn wrong(self, kind: &'static str) -> FormattedField {
        if kind == "null" {
            FormattedField::Null
        } else {
            FormattedField::NotAnObject(kind)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Formatted {
    type Value = FormattedField;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FormattedField, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Formatted {
    type Value = FormattedField;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object {\"value\", \"format\"}")
    }

    refuse_scalars!(wrong);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FormattedField, A::Error> {
        Ok(FormattedField::NotAnObject(skip_seq(seq)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FormattedField, A::Error> {
        let (mut value, mut format) = (None, None);
        while let Some(name) = map.next_key::<RecordKey>()? {
            match name {
                RecordKey::Value => value = Some(map.next_value_seed(FieldSeed { keep: self.keep })?),
                RecordKey::Format => format = Some(map.next_value_seed(FieldSeed { keep: false })?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(FormattedField::Object { value, format })
    }
}

/// The record's `headers`: the list, or the first error (the rest is still read, not kept).
struct HeaderList(Result<Vec<Header>, FrameError>);

fn bad_headers(what: String) -> FrameError {
    FrameError::new(ErrorCode::InvalidFrame, format!("'headers' {what}"))
}

struct HeadersSeed;

impl HeadersSeed {
    fn wrong(self, kind: &'static str) -> Option<HeaderList> {
        if kind == "null" {
            return None;
        }
        Some(HeaderList(Err(bad_headers(format!("must be an array of {{\"key\", \"value\"}}, got {kind}")))))
    }
}

impl<'de> DeserializeSeed<'de> for HeadersSeed {
    type Value = Option<HeaderList>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<HeaderList>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeadersSeed {
    type Value = Option<HeaderList>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of headers")
    }

    refuse_scalars!(wrong);

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<HeaderList>, A::Error> {
        Ok(self.wrong(skip_map(map)?))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<HeaderList>, A::Error> {
        let mut headers = Vec::new();
        while let Some(entry) = seq.next_element_seed(HeaderSeed)? {
            match entry {
                Ok(h) => headers.push(h),
                Err(e) => {
                    drop(headers);
                    while seq.next_element::<Skip>()?.is_some() {}
                    return Ok(Some(HeaderList(Err(e))));
                }
            }
        }
        Ok(Some(HeaderList(Ok(headers))))
    }
}

/// One `{"key", "value"}` header entry.
struct HeaderSeed;

impl HeaderSeed {
    fn wrong(self, kind: &'static str) -> Result<Header, FrameError> {
        Err(bad_headers(format!("entries must be objects, got {kind}")))
    }
}

impl<'de> DeserializeSeed<'de> for HeaderSeed {
    type Value = Result<Header, FrameError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed {
    type Value = Result<Header, FrameError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a header object")
    }

    refuse_scalars!(wrong);

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok(self.wrong(skip_seq(seq)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(name) = map.next_key::<RecordKey>()? {
            match name {
                RecordKey::Key => key = Some(map.next_value_seed(FieldSeed { keep: false })?),
                RecordKey::Value => value = Some(map.next_value_seed(FieldSeed { keep: false })?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let key = match key {
            Some(Field::Scalar(Value::String(k))) => k,
            _ => return Ok(Err(bad_headers("entries need a string 'key'".to_owned()))),
        };
        let value = match value {
            None | Some(Field::Scalar(Value::Null)) => None,
            Some(Field::Scalar(Value::String(s))) => Some(s.into_bytes()),
            Some(other) => {
                return Ok(Err(bad_headers(format!("value of '{key}' must be a string, got {}", other.kind()))))
            }
        };
        Ok(Ok((key, value)))
    }
}
