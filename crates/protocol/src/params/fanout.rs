//! Parameters of a fan-out socket (`/socket/out?…&fanOut=true`, issue 18): a live view of a
//! topic shared with every other fan-out socket of the node, without a consumer group.
//!
//! What needs a group is refused with a 400 naming the parameter (`groupId`,
//! `offsetResetStrategy`, `offset`, `fromTimestamp`, `resumable`, `resumeToken`: history,
//! commits and parked sessions need a grouped
//! socket); `autoCommit` is ignored (there is nothing to commit). `onLag` says what happens to a
//! socket that falls too far behind the live end: `close` (1013, the default) or `skip` (a gap
//! frame, then on from the live end).

use super::{Isolation, ParamError, Query, SocketPayload, MAX_BATCH_SIZE};
use crate::format::FormatType;

/// What a fan-out socket that fell too far behind gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLag {
    /// Closed with 1013 and a reason saying how far behind it was.
    Close,
    /// A gap frame per partition it missed, then the records from the live end on.
    Skip,
}

/// Validated parameters of a fan-out socket.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOutParams {
    pub client_id: String,
    pub topic: String,
    pub socket_payload: SocketPayload,
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
    pub isolation: Isolation,
    /// At most this many records per second; `None` or 0 is unlimited.
    pub rate: Option<u32>,
    /// Up to this many records per frame; `None` or 0 is one record per frame.
    pub batch_size: Option<u32>,
    pub on_lag: OnLag,
}

/// Parameters a fan-out socket refuses, in the order they are checked.
const GROUP_ONLY: [&str; 6] = ["groupId", "offsetResetStrategy", "offset", "fromTimestamp", "resumable", "resumeToken"];

/// `Ok(None)` unless the query asks for `fanOut=true`; then its validated parameters, or the
/// first problem (in declaration order, as for grouped sockets).
pub fn fan_out_params(q: &Query<'_>) -> Result<Option<FanOutParams>, ParamError> {
    if !q.boolean("fanOut", false)? {
        return Ok(None);
    }
    let client_id = q.required("clientId")?.to_owned();
    let topic = q.required("topic")?.to_owned();
    if topic.contains(',') || q.optional("topicPattern").is_some() {
        return Err(ParamError(
            "A fan-out socket (fanOut=true) reads one topic; several topics or a topicPattern need a socket without fanOut."
                .to_owned(),
        ));
    }
    if let Some(name) = GROUP_ONLY.iter().find(|n| q.optional(n).is_some()) {
        return Err(ParamError(format!(
            "Request param '{name}' is not supported with fanOut=true: a fan-out socket starts at the live end and has no consumer group. Use a socket without fanOut for history and commits."
        )));
    }
    let socket_payload = q.payload()?;
    let key_type = q.format("keyType")?;
    let val_type = q.format("valType")?.unwrap_or(FormatType::String);
    let isolation = match q.optional("isolationLevel").map(str::to_ascii_lowercase).as_deref() {
        None | Some("read_uncommitted") => Isolation::ReadUncommitted,
        Some("read_committed") => Isolation::ReadCommitted,
        Some(_) => {
            return Err(ParamError(format!(
                "Read isolation '{}' is not a valid value. Please use one of 'read_committed' or 'read_uncommitted'.",
                q.get("isolationLevel").unwrap_or_default()
            )))
        }
    };
    let rate = q.non_negative("rate")?;
    let batch_size = q.non_negative("batchSize")?;
    if let Some(b) = batch_size.filter(|b| *b > MAX_BATCH_SIZE) {
        return Err(ParamError(format!("Request param 'batchSize' must be at most {MAX_BATCH_SIZE}, got {b}.")));
    }
    let on_lag = match q.optional("onLag").map(str::to_ascii_lowercase).as_deref() {
        None | Some("close") => OnLag::Close,
        Some("skip") => OnLag::Skip,
        Some(_) => {
            return Err(ParamError(format!(
                "'{}' is not a valid onLag. Please use one of 'close' or 'skip'.",
                q.get("onLag").unwrap_or_default()
            )))
        }
    };
    Ok(Some(FanOutParams { client_id, topic, socket_payload, key_type, val_type, isolation, rate, batch_size, on_lag }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fan(s: &str) -> Result<Option<FanOutParams>, String> {
        let pairs: Vec<(String, String)> = s
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        fan_out_params(&Query::new(&pairs)).map_err(|e| e.0)
    }

    #[test]
    fn only_fan_out_true_is_a_fan_out_socket() {
        assert_eq!(fan("clientId=c&topic=t"), Ok(None));
        assert_eq!(fan("clientId=c&topic=t&fanOut=false"), Ok(None));
        assert_eq!(fan("clientId=c&topic=t&fanOut=maybe").unwrap_err(), "'maybe' is not a valid Boolean value");
        let p = fan("clientId=c&topic=t&fanOut=true").unwrap().unwrap();
        assert_eq!((p.client_id.as_str(), p.topic.as_str()), ("c", "t"));
        assert_eq!((p.socket_payload, p.key_type, p.val_type), (SocketPayload::Json, None, FormatType::String));
        assert_eq!(
            (p.rate, p.batch_size, p.on_lag, p.isolation),
            (None, None, OnLag::Close, Isolation::ReadUncommitted)
        );
    }

    #[test]
    fn what_needs_a_group_is_refused_naming_the_parameter() {
        for name in GROUP_ONLY {
            let e = fan(&format!("clientId=c&topic=t&fanOut=true&{name}=x")).unwrap_err();
            assert!(e.starts_with(&format!("Request param '{name}' is not supported with fanOut=true")), "{e}");
        }
        // autoCommit means nothing without a group: ignored, even when not a Boolean.
        assert!(fan("clientId=c&topic=t&fanOut=true&autoCommit=false").unwrap().is_some());
        assert!(fan("clientId=c&topic=a,b&fanOut=true").unwrap_err().contains("reads one topic"));
        assert!(fan("clientId=c&topic=a&topicPattern=x&fanOut=true").unwrap_err().contains("reads one topic"));
        // Required parameters come first.
        assert_eq!(fan("topic=t&fanOut=true&groupId=g").unwrap_err(), "Request param 'clientId' is missing.");
    }

    #[test]
    fn the_other_parameters_as_for_grouped_sockets() {
        let p = fan("clientId=c&topic=t&fanOut=true&keyType=string&valType=json&socketPayload=avro&rate=5&batchSize=10&onLag=SKIP&isolationLevel=read_committed")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.key_type, p.val_type, p.socket_payload),
            (Some(FormatType::String), FormatType::Json, SocketPayload::Avro)
        );
        assert_eq!(
            (p.rate, p.batch_size, p.on_lag, p.isolation),
            (Some(5), Some(10), OnLag::Skip, Isolation::ReadCommitted)
        );
        assert_eq!(
            fan("clientId=c&topic=t&fanOut=true&onLag=drop").unwrap_err(),
            "'drop' is not a valid onLag. Please use one of 'close' or 'skip'."
        );
        assert!(fan("clientId=c&topic=t&fanOut=true&batchSize=10001").is_err());
        assert!(fan("clientId=c&topic=t&fanOut=true&valType=nope").is_err());
    }
}
