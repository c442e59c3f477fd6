//! Error frames: what a client receives in place of a record's result or a consumed record
//! when that one record failed. The socket stays open.
//!
//! Shape: `{"error": {"code": "...", "message": "..."}, "clientMessageId": .., "messageId": ..}`
//! on the produce socket; consumer errors name the record instead (`topic`, `partition`,
//! `offset`, `wsProxyMessageId`).

use serde::Serialize;

/// Stable, machine-readable error codes. Clients may switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// The JSON does not have the shape of a record (or of a commit, or of a credit request).
    InvalidFrame,
    /// A `format` field names no format type.
    InvalidFormat,
    /// The value does not fit the socket's `valType`.
    InvalidValue,
    /// The key does not fit the socket's `keyType`, or there is no `keyType`.
    InvalidKey,
    /// The frame is larger than the configured maximum.
    FrameTooLarge,
    /// A binary frame on a JSON socket (or text on a binary one).
    UnsupportedFrame,
    /// Kafka refused the record: larger than the topic's `max.message.bytes`.
    RecordTooLarge,
    /// Kafka refused the record: the client may not write (or read) the topic.
    NotAuthorized,
    /// Kafka could not take the record in time (broker down, delivery timeout).
    TimedOut,
    /// Any other Kafka error for this record.
    KafkaError,
    /// Consumed bytes do not decode as the socket's `keyType`/`valType`.
    DecodeError,
    /// A commit names a record this socket never sent or already committed.
    UnknownMessageId,
    /// Kafka refused a commit.
    CommitFailed,
    /// The record's transaction was aborted (another record of its frame failed, or the
    /// commit did): none of the frame's records will be read by `read_committed` consumers.
    TransactionAborted,
    /// Exactly-once: the frame's transaction neither committed nor aborted in time (Kafka was
    /// still committing it when the proxy gave up): its records may or may not be read by
    /// `read_committed` consumers. The socket closes; check before resending.
    TransactionOutcomeUnknown,
    /// The schema registry could not be asked about an `avro` key or value (down, slow,
    /// refused the proxy's credentials); the record was not produced (or not checked).
    SchemaRegistryUnavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidFrame => "INVALID_FRAME",
            ErrorCode::InvalidFormat => "INVALID_FORMAT",
            ErrorCode::InvalidValue => "INVALID_VALUE",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::UnsupportedFrame => "UNSUPPORTED_FRAME",
            ErrorCode::RecordTooLarge => "RECORD_TOO_LARGE",
            ErrorCode::NotAuthorized => "NOT_AUTHORIZED",
            ErrorCode::TimedOut => "TIMED_OUT",
            ErrorCode::KafkaError => "KAFKA_ERROR",
            ErrorCode::DecodeError => "DECODE_ERROR",
            ErrorCode::UnknownMessageId => "UNKNOWN_MESSAGE_ID",
            ErrorCode::CommitFailed => "COMMIT_FAILED",
            ErrorCode::TransactionAborted => "TRANSACTION_ABORTED",
            ErrorCode::SchemaRegistryUnavailable => "SCHEMA_REGISTRY_UNAVAILABLE",
            ErrorCode::TransactionOutcomeUnknown => "TRANSACTION_OUTCOME_UNKNOWN",
        }
    }
}

/// A per-record failure with a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
    /// The record's `messageId`, when it could be read.
    pub message_id: Option<String>,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FrameError { code, message: message.into(), message_id: None }
    }

    pub fn with_message_id(mut self, id: Option<String>) -> Self {
        if self.message_id.is_none() {
            self.message_id = id;
        }
        self
    }

    /// `FRAME_TOO_LARGE`: a frame of `len` bytes on a socket whose limit is `max`
    /// (`WSPROXY_WS_MAX_FRAME_SIZE`); answered in the frame's place, the socket stays open.
    pub fn too_large(len: usize, max: usize) -> FrameError {
        FrameError::new(
            ErrorCode::FrameTooLarge,
            format!("the frame has {len} bytes; the limit is {max} (WSPROXY_WS_MAX_FRAME_SIZE)"),
        )
    }

    /// `RECORD_TOO_LARGE`: the consumed record `name` (`KafkaRecordView::name`) renders to `len`
    /// bytes, more than the `limit` a frame of the socket can carry; it is skipped.
    pub fn record_too_large(name: impl std::fmt::Display, len: usize, limit: usize) -> FrameError {
        FrameError::new(
            ErrorCode::RecordTooLarge,
            format!(
                "{name} renders to {len} bytes, more than the {limit} a frame of this socket can carry; it is skipped"
            ),
        )
    }

    /// The produce-socket error frame for this error.
    pub fn frame(&self) -> ErrorFrame<'_> {
        ErrorFrame {
            error: ErrorBody { code: self.code, message: &self.message },
            client_message_id: self.message_id.as_deref(),
            message_id: self.message_id.as_deref(),
        }
    }
}

/// `{"code", "message"}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody<'a> {
    pub code: ErrorCode,
    pub message: &'a str,
}

/// The produce-socket error frame.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFrame<'a> {
    pub error: ErrorBody<'a>,
    pub client_message_id: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

/// A consumer-socket error frame about one Kafka record (or a commit).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerErrorFrame<'a> {
    pub error: ErrorBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_proxy_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frame_shape() {
        let e = FrameError::new(ErrorCode::InvalidValue, "bad").with_message_id(Some("m".into()));
        assert_eq!(
            serde_json::to_string(&e.frame()).unwrap(),
            r#"{"error":{"code":"INVALID_VALUE","message":"bad"},"clientMessageId":"m","messageId":"m"}"#
        );
        assert_eq!(ErrorCode::RecordTooLarge.as_str(), "RECORD_TOO_LARGE");
        assert_eq!(serde_json::to_string(&ErrorCode::RecordTooLarge).unwrap(), "\"RECORD_TOO_LARGE\"");
    }
}
