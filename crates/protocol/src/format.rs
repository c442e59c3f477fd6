//! Format types: how a JSON value on the socket maps to Kafka bytes and back.
//!
//! Byte layouts match Kafka's Java serializers (`IntegerSerializer`, `LongSerializer`, ...):
//! big-endian two's complement integers and big-endian IEEE 754 floats, UTF-8 strings,
//! compact JSON text for `json`, raw bytes (base64 on the socket) for `bytearray` and `avro`.
//! A value that does not fit its type is an error, never a truncation.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::value::RawValue;
use serde_json::Value;

/// A key or value type named by `keyType` / `valType` or a record's `format` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatType {
    Json,
    String,
    Int,
    Short,
    Long,
    Double,
    Float,
    ByteArray,
    Avro,
}

/// The name is not one of the format types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid format type")]
pub struct UnknownFormat(pub String);

/// A value that cannot be converted between JSON and the bytes of its format type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("expected a JSON {expected} for format '{format}', got {got}")]
    WrongJsonType { format: FormatType, expected: &'static str, got: &'static str },
    #[error("{value} is out of range for format '{format}'")]
    OutOfRange { format: FormatType, value: String },
    #[error("invalid base64 for format '{format}': {reason}")]
    Base64 { format: FormatType, reason: String },
    #[error("expected {expected} bytes for format '{format}', got {got}")]
    WrongLength { format: FormatType, expected: usize, got: usize },
    #[error("bytes are not valid UTF-8 for format '{format}'")]
    Utf8 { format: FormatType },
    #[error("bytes are not valid JSON: {0}")]
    Json(String),
}

impl FormatType {
    /// Every format type, in documentation order.
    pub const ALL: [FormatType; 9] = [
        FormatType::Json,
        FormatType::String,
        FormatType::Int,
        FormatType::Short,
        FormatType::Long,
        FormatType::Double,
        FormatType::Float,
        FormatType::ByteArray,
        FormatType::Avro,
    ];

    /// The canonical (lower-case) name, as rendered in consumer frames.
    pub fn name(self) -> &'static str {
        match self {
            FormatType::Json => "json",
            FormatType::String => "string",
            FormatType::Int => "int",
            FormatType::Short => "short",
            FormatType::Long => "long",
            FormatType::Double => "double",
            FormatType::Float => "float",
            FormatType::ByteArray => "bytearray",
            FormatType::Avro => "avro",
        }
    }

    /// Converts a JSON value from a produce frame into the Kafka bytes of this type.
    pub fn encode(self, value: &Value) -> Result<Vec<u8>, FormatError> {
        match self {
            FormatType::Json => Ok(serde_json::to_vec(value).expect("a Value always serialises")),
            FormatType::String => match value {
                Value::String(s) => Ok(s.as_bytes().to_vec()),
                other => Err(self.wrong_type("string", other)),
            },
            FormatType::Short => {
                let n = self.integer(value)?;
                let v = i16::try_from(n).map_err(|_| self.out_of_range(value))?;
                Ok(v.to_be_bytes().to_vec())
            }
            FormatType::Int => {
                let n = self.integer(value)?;
                let v = i32::try_from(n).map_err(|_| self.out_of_range(value))?;
                Ok(v.to_be_bytes().to_vec())
            }
            FormatType::Long => {
                let n = self.integer(value)?;
                let v = i64::try_from(n).map_err(|_| self.out_of_range(value))?;
                Ok(v.to_be_bytes().to_vec())
            }
            FormatType::Double => Ok(self.float(value)?.to_be_bytes().to_vec()),
            FormatType::Float => {
                let v = self.float(value)?;
                let narrowed = v as f32;
                if v.is_finite() && !narrowed.is_finite() {
                    return Err(self.out_of_range(value));
                }
                Ok(narrowed.to_be_bytes().to_vec())
            }
            FormatType::ByteArray | FormatType::Avro => match value {
                Value::String(s) => {
                    BASE64.decode(s.as_bytes()).map_err(|e| FormatError::Base64 { format: self, reason: e.to_string() })
                }
                other => Err(self.wrong_type("base64 string", other)),
            },
        }
    }

    /// Converts Kafka bytes into the JSON text of this type, ready to embed in a frame.
    pub fn decode(self, bytes: &[u8]) -> Result<Box<RawValue>, FormatError> {
        Ok(match self.render(bytes)? {
            Rendered::Text(raw) => raw,
            other => RawValue::from_string(serde_json::to_string(&other).expect("rendered values always serialise"))
                .expect("a rendered value is valid JSON"),
        })
    }

    /// [`Self::decode`] without copying what need not be copied: a `json` value is borrowed
    /// (checked, not re-read) and a `string` value is escaped only when it is written into a
    /// frame. The consume path renders every record through this.
    pub fn render(self, bytes: &[u8]) -> Result<Rendered<'_>, FormatError> {
        let text = match self {
            FormatType::Json => {
                return serde_json::from_slice(bytes).map(Rendered::Json).map_err(|e| FormatError::Json(e.to_string()))
            }
            FormatType::String => {
                return std::str::from_utf8(bytes).map(Rendered::Str).map_err(|_| FormatError::Utf8 { format: self })
            }
            FormatType::ByteArray | FormatType::Avro => return Ok(Rendered::Base64(BASE64.encode(bytes))),
            FormatType::Short => i16::from_be_bytes(self.fixed(bytes)?).to_string(),
            FormatType::Int => i32::from_be_bytes(self.fixed(bytes)?).to_string(),
            FormatType::Long => i64::from_be_bytes(self.fixed(bytes)?).to_string(),
            FormatType::Double => finite_or_null(f64::from_be_bytes(self.fixed(bytes)?)),
            FormatType::Float => finite_or_null(f64::from(f32::from_be_bytes(self.fixed(bytes)?))),
        };
        Ok(Rendered::Text(RawValue::from_string(text).expect("the text above is valid JSON")))
    }

    fn fixed<const N: usize>(self, bytes: &[u8]) -> Result<[u8; N], FormatError> {
        bytes.try_into().map_err(|_| FormatError::WrongLength { format: self, expected: N, got: bytes.len() })
    }

    /// An integer from a JSON number or a numeric string (the reference accepts both).
    fn integer(self, value: &Value) -> Result<i128, FormatError> {
        match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Ok(i128::from(u))
                } else {
                    // 1.5 or 1e30: not an integer of any width.
                    Err(self.out_of_range(value))
                }
            }
            Value::String(s) => s.trim().parse::<i128>().map_err(|_| self.wrong_type("number", value)),
            other => Err(self.wrong_type("number", other)),
        }
    }

    fn float(self, value: &Value) -> Result<f64, FormatError> {
        match value {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.out_of_range(value)),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| self.wrong_type("number", value)),
            other => Err(self.wrong_type("number", other)),
        }
    }

    fn wrong_type(self, expected: &'static str, got: &Value) -> FormatError {
        FormatError::WrongJsonType { format: self, expected, got: json_kind(got) }
    }

    fn out_of_range(self, value: &Value) -> FormatError {
        FormatError::OutOfRange { format: self, value: value.to_string() }
    }
}

/// A key or value of a consumed record, decoded from Kafka bytes, ready to be written into a
/// frame as JSON ([`FormatType::render`]).
#[derive(Debug)]
pub enum Rendered<'a> {
    /// `json`: the record's own text, checked to be one JSON value.
    Json(&'a RawValue),
    /// `string`: the UTF-8 text, written as a JSON string.
    Str(&'a str),
    /// `bytearray` and `avro`: base64 of the bytes, written as a JSON string.
    Base64(String),
    /// Numbers (and `null` for a float that is not finite): the JSON text.
    Text(Box<RawValue>),
}

impl serde::Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rendered::Json(raw) => raw.serialize(s),
            Rendered::Str(text) => s.serialize_str(text),
            Rendered::Base64(text) => s.serialize_str(text),
            Rendered::Text(raw) => raw.serialize(s),
        }
    }
}

fn finite_or_null(v: f64) -> String {
    if v.is_finite() {
        // serde_json prints the shortest representation that round-trips.
        serde_json::to_string(&v).expect("finite floats serialise")
    } else {
        "null".to_owned()
    }
}

/// A short name of a JSON value's kind, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl FromStr for FormatType {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let found = match s.to_ascii_lowercase().as_str() {
            "json" => FormatType::Json,
            "string" => FormatType::String,
            "int" | "integer" => FormatType::Int,
            "short" => FormatType::Short,
            "long" => FormatType::Long,
            "double" => FormatType::Double,
            "float" => FormatType::Float,
            "bytearray" | "byte_array" => FormatType::ByteArray,
            "avro" => FormatType::Avro,
            _ => return Err(UnknownFormat(s.to_owned())),
        };
        Ok(found)
    }
}

impl fmt::Display for FormatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rendering_into_a_frame_writes_the_same_json_as_decode() {
        let cases: &[(FormatType, &[u8])] = &[
            (FormatType::String, "quote \" back \\ tab \t nl \n bell \u{7} ü €".as_bytes()),
            (FormatType::String, b""),
            (FormatType::Json, b" {\"a\": [1, 2.5e3, \"x\"]} "),
            (FormatType::Json, b"84e1703"),
            (FormatType::ByteArray, &[0, 255, 10, 34]),
            (FormatType::Avro, b"\x00\x00\x00\x00\x01abc"),
            (FormatType::Int, &[0xff, 0xff, 0xff, 0xfe]),
            (FormatType::Short, &[0x80, 0]),
            (FormatType::Long, &[0, 0, 0, 0, 0, 0, 1, 0]),
            (FormatType::Double, &1.5f64.to_be_bytes()),
            (FormatType::Float, &f32::INFINITY.to_be_bytes()),
        ];
        for (format, bytes) in cases {
            let rendered = serde_json::to_string(&format.render(bytes).unwrap()).unwrap();
            assert_eq!(rendered, format.decode(bytes).unwrap().get(), "{format:?} {bytes:?}");
        }
        let s = "quote \" back \\ ctrl \u{1}";
        assert_eq!(
            serde_json::to_string(&FormatType::String.render(s.as_bytes()).unwrap()).unwrap(),
            serde_json::to_string(s).unwrap()
        );
        assert!(matches!(FormatType::String.render(&[0xff]), Err(FormatError::Utf8 { .. })));
        assert!(matches!(FormatType::Json.render(b"{nope"), Err(FormatError::Json(_))));
    }

    use super::*;
    use serde_json::json;

    fn round_trip(format: FormatType, v: Value) -> Value {
        let bytes = format.encode(&v).unwrap();
        serde_json::from_str(format.decode(&bytes).unwrap().get()).unwrap()
    }

    #[test]
    fn names_are_case_insensitive_and_both_bytearray_spellings_work() {
        assert_eq!("JSON".parse::<FormatType>(), Ok(FormatType::Json));
        assert_eq!("Byte_Array".parse::<FormatType>(), Ok(FormatType::ByteArray));
        assert_eq!("bytearray".parse::<FormatType>(), Ok(FormatType::ByteArray));
        assert_eq!("protobuf".parse::<FormatType>().unwrap_err().to_string(), "'protobuf' is not a valid format type");
        for f in FormatType::ALL {
            assert_eq!(f.name().parse::<FormatType>(), Ok(f));
        }
    }

    #[test]
    fn integers_are_big_endian_like_kafka_serializers() {
        assert_eq!(FormatType::Int.encode(&json!(1)).unwrap(), vec![0, 0, 0, 1]);
        assert_eq!(FormatType::Short.encode(&json!(-2)).unwrap(), vec![0xff, 0xfe]);
        assert_eq!(FormatType::Long.encode(&json!(258)).unwrap(), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(FormatType::Double.encode(&json!(1.5)).unwrap(), 1.5f64.to_be_bytes().to_vec());
        assert_eq!(FormatType::Float.encode(&json!(1.5)).unwrap(), 1.5f32.to_be_bytes().to_vec());
    }

    #[test]
    fn out_of_range_values_are_errors_not_truncations() {
        assert!(matches!(FormatType::Short.encode(&json!(300000)), Err(FormatError::OutOfRange { .. })));
        assert!(matches!(FormatType::Int.encode(&json!(2147483648u64)), Err(FormatError::OutOfRange { .. })));
        assert!(matches!(FormatType::Long.encode(&json!(1.5)), Err(FormatError::OutOfRange { .. })));
        assert!(matches!(FormatType::Float.encode(&json!(1e300)), Err(FormatError::OutOfRange { .. })));
        assert!(matches!(FormatType::Int.encode(&json!("abc")), Err(FormatError::WrongJsonType { .. })));
        assert!(matches!(FormatType::String.encode(&json!(1)), Err(FormatError::WrongJsonType { .. })));
        assert!(matches!(FormatType::ByteArray.encode(&json!("!!")), Err(FormatError::Base64 { .. })));
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(round_trip(FormatType::Json, json!({"a": [1, "x", null]})), json!({"a": [1, "x", null]}));
        assert_eq!(round_trip(FormatType::String, json!("héllo \"q\"")), json!("héllo \"q\""));
        assert_eq!(round_trip(FormatType::Int, json!(i32::MIN)), json!(i32::MIN));
        assert_eq!(round_trip(FormatType::Short, json!(i16::MAX)), json!(i16::MAX));
        assert_eq!(round_trip(FormatType::Long, json!(i64::MAX)), json!(i64::MAX));
        assert_eq!(round_trip(FormatType::Double, json!(0.1)), json!(0.1));
        assert_eq!(round_trip(FormatType::Float, json!(0.5)), json!(0.5));
        assert_eq!(round_trip(FormatType::ByteArray, json!("AAEC/w==")), json!("AAEC/w=="));
        assert_eq!(round_trip(FormatType::Int, json!("42")), json!(42));
    }

    #[test]
    fn doubles_parse_exactly() {
        // Needs serde_json's float_roundtrip: the default parser may be one ULP off.
        let v: Value = serde_json::from_str("1234.5678901234567").unwrap();
        assert_eq!(FormatType::Double.encode(&v).unwrap(), 1_234.567_890_123_456_7_f64.to_be_bytes().to_vec());
    }

    #[test]
    fn json_is_stored_compact() {
        let v: Value = serde_json::from_str("{ \"a\" : 1 ,\n \"b\": [ 1, 2 ] }").unwrap();
        assert_eq!(FormatType::Json.encode(&v).unwrap(), br#"{"a":1,"b":[1,2]}"#.to_vec());
    }

    #[test]
    fn undecodable_bytes_are_errors() {
        assert!(matches!(FormatType::Int.decode(&[1, 2]), Err(FormatError::WrongLength { .. })));
        assert!(matches!(FormatType::Json.decode(b"{nope"), Err(FormatError::Json(_))));
        assert!(matches!(FormatType::String.decode(&[0xff, 0xfe]), Err(FormatError::Utf8 { .. })));
        assert_eq!(FormatType::Double.decode(&f64::NAN.to_be_bytes()).unwrap().get(), "null");
    }

    /// Found by the `format_codec` fuzz target: a JSON record holding a number beyond f64
    /// passes through verbatim (valid JSON grammar) instead of failing or turning into null.
    #[test]
    fn json_numbers_beyond_f64_pass_through_verbatim() {
        assert_eq!(FormatType::Json.decode(b"84e1703").unwrap().get(), "84e1703");
        assert_eq!(FormatType::Json.decode(b" [1e999] ").unwrap().get(), "[1e999]");
    }
}
