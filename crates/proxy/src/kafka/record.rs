//! A consumed [`Record`] as the socket's frames show it, and the triage of a consumer's
//! errors ([`ConsumeError`]): split from `consumer.rs`, which owns the types.

use std::borrow::Cow;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message as _;
use wsproxy_protocol::consume::KafkaRecordView;

use crate::kafka::consumer::{ConsumeError, Record};
use crate::kafka::headers::record_headers;
use crate::telemetry::metrics;

impl Record<'_> {
    /// Where the record is and its key and value, without its headers.
    pub fn view<'m>(&'m self, headers: &'m [(&'m str, Option<&'m [u8]>)]) -> KafkaRecordView<'m> {
        let m = &self.0;
        KafkaRecordView {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            key: m.key(),
            value: m.payload(),
            headers,
        }
    }

    /// Calls `f` with the whole record as its frames show it, `headers` included. A header key
    /// that is not UTF-8 is decoded lossily, counted and logged (never rdkafka's
    /// `Headers::iter`: it panics on such a key, M3).
    pub fn with_view<R>(&self, f: impl FnOnce(&KafkaRecordView<'_>) -> R) -> R {
        let m = &self.0;
        let owned = record_headers(m);
        if owned.iter().any(|(k, _)| matches!(k, Cow::Owned(_))) {
            metrics::consumed_header_not_utf8();
            tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "a consumed record has a header key that is not UTF-8; it is delivered with the key decoded lossily"
            );
        }
        let headers: Vec<(&str, Option<&[u8]>)> = owned.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        f(&self.view(&headers))
    }
}

impl ConsumeError {
    /// Authorization failures and a deleted topic end the socket (`Err`, with why); anything
    /// else is transient (librdkafka retries) and only logged.
    pub fn triage(self) -> Result<(), String> {
        let e = self.0;
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic,
            ) => Err(e.to_string()),
            _ => {
                tracing::warn!(error = %e, "consumer error (retrying)");
                Ok(())
            }
        }
    }
}
