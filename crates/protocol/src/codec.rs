//! The wire format of one socket, chosen once from its `socketPayload`, `keyType` and
//! `valType` when it opens: [`SocketCodec`].
//!
//! The I/O loops in the proxy's `pipeline` hand it what they read ([`FrameRef`]) and send what
//! it returns ([`Frame`]); they never look at the payload kind themselves. Every rule that
//! depends on it lives here: which frame type a socket takes (the other one is answered with
//! `UNSUPPORTED_FRAME`), how a produce frame decodes, how results, consumed records and
//! batches of them encode, and how a commit decodes.
//!
//! - `Json`: JSON text frames both ways ([`crate::produce`], [`crate::consume`]).
//! - `Avro`: one binary Avro wrapper record per frame ([`crate::avro`]).
//!
//! Error frames are JSON text on every socket: a client tells them apart by the frame type.
//! A further payload kind is one more variant here, not a branch in every loop.

use crate::avro;
use crate::consume::{parse_commit, render_error, KafkaRecordView, MessageId, RecordEncoder};
use crate::error::{ErrorCode, FrameError};
use crate::format::FormatType;
use crate::params::SocketPayload;
use crate::produce::{render_answer, render_answers, Answer, ProduceFrame, RecordDecoder};

/// The key and value types of a socket (`keyType`, `valType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTypes {
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
}

/// How one socket's frames are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCodec {
    /// `socketPayload=json`: JSON text frames.
    Json(RecordTypes),
    /// `socketPayload=avro`: binary `AvroProducerRecord` / `AvroProducerResult` frames on the
    /// produce socket, `AvroConsumerRecord` / `AvroCommit` frames on the consume socket.
    Avro(RecordTypes),
}

/// A data frame as read from the socket.
#[derive(Debug, Clone, Copy)]
pub enum FrameRef<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A data frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

impl Frame {
    /// Bytes of the frame's payload.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::Binary(Vec::new())
    }
}

impl SocketCodec {
    /// The codec of a socket opened with these parameters.
    pub fn new(payload: SocketPayload, key_type: Option<FormatType>, val_type: FormatType) -> SocketCodec {
        let types = RecordTypes { key_type, val_type };
        match payload {
            SocketPayload::Json => SocketCodec::Json(types),
            SocketPayload::Avro => SocketCodec::Avro(types),
        }
    }

    /// The socket's key and value types.
    pub fn types(&self) -> RecordTypes {
        match self {
            SocketCodec::Json(t) | SocketCodec::Avro(t) => *t,
        }
    }

    /// The socket's `keyType`.
    pub fn key_type(&self) -> Option<FormatType> {
        self.types().key_type
    }

    /// The socket's `valType`.
    pub fn val_type(&self) -> FormatType {
        self.types().val_type
    }

    /// Decodes a frame of the produce socket, with its length in bytes (what it holds in
    /// flight: 0 for a frame refused by its type). A frame over `max_bytes` is answered with
    /// `FRAME_TOO_LARGE`; an empty or blank text frame is ignored (`None`), as the reference
    /// does.
    pub fn decode_produce(&self, frame: FrameRef<'_>, max_bytes: usize) -> Option<(ProduceFrame, usize)> {
        let types = self.types();
        let (decoded, len) = match (self, frame) {
            (SocketCodec::Json(_), FrameRef::Text(text)) => {
                if text.len() > max_bytes {
                    (Err(FrameError::too_large(text.len(), max_bytes)), text.len())
                } else if text.trim().is_empty() {
                    return None;
                } else {
                    let decoder = RecordDecoder { key_type: types.key_type, val_type: types.val_type };
                    (Ok(decoder.parse_frame(text)), text.len())
                }
            }
            (SocketCodec::Avro(_), FrameRef::Binary(bytes)) => {
                if bytes.len() > max_bytes {
                    (Err(FrameError::too_large(bytes.len(), max_bytes)), bytes.len())
                } else {
                    let record = avro::decode_producer_record(bytes, types.key_type, types.val_type);
                    (Ok(ProduceFrame::Single(record)), bytes.len())
                }
            }
            (SocketCodec::Json(_), FrameRef::Binary(_)) => (
                Err(FrameError::new(
                    ErrorCode::UnsupportedFrame,
                    "binary frames are not accepted on a socket with socketPayload=json; send JSON text frames",
                )),
                0,
            ),
            (SocketCodec::Avro(_), FrameRef::Text(_)) => (
                Err(FrameError::new(
                    ErrorCode::UnsupportedFrame,
                    "text frames are not accepted on a socket with socketPayload=avro; send binary AvroProducerRecord frames",
                )),
                0,
            ),
        };
        Some((decoded.unwrap_or_else(|e| ProduceFrame::Single(Err(e))), len))
    }

    /// The answer to a single-record frame: an `AvroProducerResult` on an avro socket, else
    /// (and for every error) a JSON text frame.
    pub fn encode_answer(&self, answer: &Answer<'_>) -> Frame {
        match (self, answer) {
            (SocketCodec::Avro(_), Answer::Ok(r)) => Frame::Binary(avro::encode_producer_result(
                r.topic,
                r.partition,
                r.offset,
                r.timestamp,
                r.client_message_id,
            )),
            _ => Frame::Text(render_answer(answer)),
        }
    }

    /// The answer to an array frame: one JSON array of results and errors (only a JSON
    /// socket takes array frames; an avro frame is one record).
    pub fn encode_answers(&self, answers: &[Answer<'_>]) -> Frame {
        Frame::Text(render_answers(answers))
    }

    /// Encodes a consumed record as one frame (or an element of a batch, see
    /// [`Self::encode_batch`]), or says why its bytes do not decode as the socket's types.
    pub fn encode_record(&self, record: &KafkaRecordView<'_>) -> Result<Frame, FrameError> {
        match self {
            SocketCodec::Json(t) => {
                RecordEncoder { key_type: t.key_type, val_type: t.val_type }.render(record).map(Frame::Text)
            }
            SocketCodec::Avro(t) => avro::encode_consumer_record(record, t.key_type, t.val_type).map(Frame::Binary),
        }
    }

    /// The error frame that takes a consumed record's place (or answers a commit, without a
    /// record): JSON text on every socket.
    pub fn encode_error(&self, e: &FrameError, record: Option<&KafkaRecordView<'_>>) -> Frame {
        Frame::Text(render_error(e, record))
    }

    /// Joins the frames of [`Self::encode_record`] and [`Self::encode_error`] into the frames
    /// of a `batchSize` socket, in order. JSON: one array frame of records and errors. Avro:
    /// one Avro array of the records, then the error frames (JSON text) one by one; a batch
    /// that holds only errors is one JSON array frame, as on a JSON socket.
    pub fn encode_batch(&self, frames: Vec<Frame>) -> Vec<Frame> {
        if frames.is_empty() {
            return Vec::new();
        }
        let avro_records = matches!(self, SocketCodec::Avro(_)) && frames.iter().any(|f| matches!(f, Frame::Binary(_)));
        if avro_records {
            let mut records = Vec::with_capacity(frames.len());
            let mut errors = Vec::new();
            for frame in frames {
                match frame {
                    Frame::Binary(b) => records.push(b),
                    text @ Frame::Text(_) => errors.push(text),
                }
            }
            let mut out = Vec::with_capacity(errors.len() + 1);
            out.push(Frame::Binary(avro::encode_consumer_batch(&records)));
            out.extend(errors);
            return out;
        }
        let mut text = String::with_capacity(frames.iter().map(|f| f.len() + 1).sum::<usize>() + 2);
        text.push('[');
        for (n, frame) in frames.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            if let Frame::Text(t) = frame {
                text.push_str(t);
            }
        }
        text.push(']');
        vec![Frame::Text(text)]
    }

    /// Decodes a commit frame of an `autoCommit=false` consume socket into the id it names.
    pub fn decode_commit(&self, frame: FrameRef<'_>) -> Result<MessageId, FrameError> {
        match (self, frame) {
            (SocketCodec::Json(_), FrameRef::Text(text)) => parse_commit(text),
            (SocketCodec::Avro(_), FrameRef::Binary(bytes)) => avro::decode_commit(bytes),
            (SocketCodec::Json(_), FrameRef::Binary(_)) => Err(FrameError::new(
                ErrorCode::UnsupportedFrame,
                "commits are JSON text frames: {\"wsProxyMessageId\": \"<id>\"}",
            )),
            (SocketCodec::Avro(_), FrameRef::Text(_)) => Err(FrameError::new(
                ErrorCode::UnsupportedFrame,
                "commits on a socket with socketPayload=avro are binary AvroCommit frames",
            )),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
