//! The wire contract of the Kafka WebSocket proxy, with no I/O.
//!
//! - [`codec`] — a socket's wire format, chosen once: [`SocketCodec`] (JSON text or Avro binary).
//! - [`avro`] — the Avro socket payload: the wrapper schemas and their binary codecs.
//! - [`format`] — the key/value format types and their Kafka byte layouts.
//! - [`produce`] — produce-socket frames in (records) and out (results).
//! - [`consume`] — consume-socket frames out (records) and in (commits), and message ids.
//! - [`error`] — error frames and their stable codes.
//! - [`params`] — the socket query parameters, validated in the reference's order with its texts.
//!
//! Everything here is plain data and pure functions, so it is tested in milliseconds and shared
//! by the server, the tests and the benchmark.

pub mod avro;
pub mod codec;
pub mod consume;
pub mod error;
pub mod fanout;
pub mod format;
mod json_text;
pub mod params;
pub mod produce;
pub mod pull;

pub use codec::SocketCodec;
pub use error::{ErrorCode, FrameError};
pub use format::FormatType;
