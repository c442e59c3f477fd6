//! `GET /sse/out`: the grouped consume socket as Server-Sent Events, for clients behind
//! proxies that block WebSockets (a browser's `EventSource`, `curl -N`).
//!
//! The request takes `/socket/out`'s parameters and passes its checks (origin, admission,
//! credentials, the topic, the session); the records come from the consume socket's own loop
//! ([`consume::run`]) over a [`Bridge`]: what the loop sends becomes events ([`Events`]).
//!
//! - each record is one event: `id:` its `wsProxyMessageId`, `data:` the socket frame's JSON;
//!   an error frame in a record's place is an event too (with the record's id);
//! - the loop's keep-alive ping is a comment line (`: keep-alive`); once the HTTP connection
//!   took it, it counts as the client's pong, so a quiet stream that is read stays open and
//!   one whose client stopped reading ends after the idle timeout, as on a socket;
//! - the stream commits what was written (autoCommit semantics: the loop stores an offset
//!   once its frame is handed to the connection); `autoCommit=false`, `batchSize` and
//!   `socketPayload=avro` are refused (400): SSE cannot send commits, events are one record;
//! - a reconnect with `Last-Event-ID` (an `EventSource` sends it by itself) sends no record
//!   of that id's partition at or before that id's offset again, whatever the group's
//!   committed offset is; when only this client reads the group, the records its previous
//!   stream wrote after the id (committed, but never read) come again ([`rewind`]);
//! - the loop's close becomes a final `event: close` with `{"code", "reason"}`, then the
//!   stream ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::Message;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::Stream;
use wsproxy_protocol::consume::MessageId;
use wsproxy_protocol::params::{self, ConsumerParams, Query, SocketPayload, TopicSelection};

use crate::auth::oidc::Authenticated;
use crate::http::bridge::Bridge;
use crate::http::error::ApiError;
use crate::http::sockets;
use crate::http::sockets::consume::{open_consumer, OpenConsumer};
use crate::http::{AppState, Peer};
use crate::kafka::admin::GroupOffset;
use crate::pipeline::consume;

/// Frames the loop may hand over before the connection took them: with the connection's own
/// buffers, what a stream commits beyond what its client read.
const EVENTS_BUFFERED: usize = 16;

/// `GET /sse/out`.
pub async fn consume(
    State(state): State<AppState>,
    ConnectInfo(Peer(remote)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    auth: Option<Extension<Authenticated>>,
) -> Result<Response, ApiError> {
    let pairs = sockets::query_pairs(query.as_deref())?;
    let p = params::consumer_params(&Query::new(&pairs)).map_err(|e| ApiError::BadRequest(e.0))?;
    refuse_unsupported(&p)?;
    let resume_after = last_event_id(&headers, &p.topics)?;
    let auth = auth.map(|Extension(a)| a);
    let prepare = async {
        if let Some(id) = &resume_after {
            rewind(&state, &p.group_id, &p.client_id, id).await;
        }
    };
    let open = open_consumer(&state, remote, &p, &headers, auth.as_ref(), "event stream consumer", prepare).await?;
    let OpenConsumer { consumer, settings, session, slot, stop, .. } = open;
    let token = state.sockets.token();
    let watch = sockets::revalidation(&state, auth);
    let (pongs, inbound) = mpsc::unbounded();
    let (outbound, frames) = mpsc::channel(EVENTS_BUFFERED);
    let bridge = Bridge::new(inbound, outbound, session, Some(slot));
    tokio::spawn(async move {
        let watcher = watch.map(|w| tokio::spawn(w(stop.clone(), settings.stop_reason.clone())));
        consume::run(bridge, consumer, settings, stop, None).await;
        watcher.inspect(tokio::task::JoinHandle::abort);
        drop(token);
    });
    let events = Events { frames, pongs, resume_after, started: false, done: false };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(events))
        .map_err(|e| ApiError::Internal(format!("The event stream could not be started: {e}")))
}

/// What a stream cannot do, refused before anything is opened.
fn refuse_unsupported(p: &ConsumerParams) -> Result<(), ApiError> {
    let why = if p.socket_payload == SocketPayload::Avro {
        "socketPayload=avro sends binary frames; an event stream carries JSON"
    } else if p.batch_size.unwrap_or(0) > 0 {
        "batchSize is not supported on an event stream: each record is one event"
    } else if p.pull {
        "pull=true is not supported on an event stream: it cannot send {\"request\":N}"
    } else if p.resumable {
        "resumable=true is not supported on an event stream: a reconnect resumes with Last-Event-ID"
    } else if !p.auto_commit {
        "autoCommit=false is not supported on an event stream: it cannot send commits; it commits what was written"
    } else {
        return Ok(());
    };
    Err(ApiError::BadRequest(format!("{why}.")))
}

/// The `Last-Event-ID` of a reconnect, when it names a record of one of this stream's topics
/// (an id of another topic is ignored; one that is no record id is refused).
fn last_event_id(headers: &HeaderMap, topics: &TopicSelection) -> Result<Option<MessageId>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let id = MessageId::parse(text).filter(|id| (0..i64::MAX).contains(&id.offset)).ok_or_else(|| {
        ApiError::BadRequest(format!("Last-Event-ID '{text}' is not a record id (topic-partition-offset-timestamp)."))
    })?;
    Ok(Some(id).filter(|id| topics.reads(&id.topic)))
}

/// How long a reconnect waits for its previous stream to leave the group before rewinding.
const REWIND_WAIT: Duration = Duration::from_secs(10);

/// A reconnect with `Last-Event-ID` to a group only this client reads: the records its
/// previous stream wrote after that id but the client never read were committed (autoCommit
/// semantics); the partition's committed offset goes back to right after the id, so they
/// come again and nothing is lost. The previous stream may still be leaving the group (its
/// consumer closes after its connection): that is waited for, up to [`REWIND_WAIT`]. When
/// other clients read the group, or Kafka refuses, nothing is rewound: the stream then only
/// skips what the id covers.
async fn rewind(state: &AppState, group: &str, client_id: &str, id: &MessageId) {
    let deadline = tokio::time::Instant::now() + REWIND_WAIT;
    loop {
        match state.kafka.describe_group(group).await {
            Ok(g) if g.members.is_empty() && !g.is_active() => break,
            Ok(g) if g.members.iter().all(|m| m == client_id) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(group, error = %e, "an event stream's group could not be described; not rewound");
                return;
            }
        }
    }
    let Ok(committed) = state.kafka.group_offsets(group).await else { return };
    let at = committed.iter().find(|o| o.topic == id.topic && o.partition == id.partition).map(|o| o.offset);
    let Some(at) = at.filter(|at| *at > id.offset + 1) else { return };
    let back = GroupOffset { topic: id.topic.clone(), partition: id.partition, offset: id.offset + 1, metadata: None };
    match state.kafka.alter_group_offsets(group, vec![back]).await {
        Ok(_) => tracing::info!(
            group,
            partition = id.partition,
            from = at,
            to = id.offset + 1,
            "event stream resumed after its Last-Event-ID: records written but not read come again"
        ),
        Err(e) => {
            tracing::warn!(group, error = %e, "an event stream's group could not be rewound to its Last-Event-ID")
        }
    }
}

/// The response body: the loop's frames as events.
struct Events {
    frames: mpsc::Receiver<Message>,
    /// The loop's inbound side: a keep-alive the connection took is the client's pong.
    pongs: mpsc::UnboundedSender<Message>,
    resume_after: Option<MessageId>,
    started: bool,
    done: bool,
}

impl Stream for Events {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.started {
            // The headers and a first comment go out at once: the client knows it is connected.
            self.started = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(b": connected\n\n"))));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let Some(msg) = ready!(Pin::new(&mut self.frames).poll_next(cx)) else { return Poll::Ready(None) };
            match msg {
                Message::Text(frame) => {
                    if let Some(event) = event(frame.as_str(), self.resume_after.as_ref()) {
                        return Poll::Ready(Some(Ok(event)));
                    }
                }
                Message::Ping(_) => {
                    // Gone only when the loop is: then nothing needs the pong.
                    let _ = self.pongs.unbounded_send(Message::Pong(Bytes::new()));
                    return Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))));
                }
                Message::Close(frame) => {
                    self.done = true;
                    let (code, reason) = frame.map_or((1000, String::new()), |f| (f.code, f.reason.to_string()));
                    let data = serde_json::json!({"code": code, "reason": reason});
                    return Poll::Ready(Some(Ok(Bytes::from(format!("event: close\ndata: {data}\n\n")))));
                }
                Message::Binary(_) | Message::Pong(_) => {}
            }
        }
    }
}

/// One frame as an event, or `None` for a record at or before `resume_after` in its partition.
fn event(frame: &str, resume_after: Option<&MessageId>) -> Option<Bytes> {
    let id = message_id(frame);
    if let (Some(after), Some(id)) = (resume_after, id.as_deref().and_then(MessageId::parse)) {
        if id.topic == after.topic && id.partition == after.partition && id.offset <= after.offset {
            return None;
        }
    }
    let mut out = String::with_capacity(frame.len() + 96);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id);
        out.push('\n');
    }
    // JSON frames are one line; a line break would end the field, so each line is one.
    for line in frame.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Some(Bytes::from(out))
}

/// The frame's `wsProxyMessageId`: first in a record frame (read without parsing the record),
/// anywhere in an error frame.
fn message_id(frame: &str) -> Option<String> {
    const FIRST: &str = "{\"wsProxyMessageId\":\"";
    if let Some(rest) = frame.strip_prefix(FIRST) {
        // Ids are a topic name and numbers: no quotes or escapes.
        return rest.split_once('"').map(|(id, _)| id.to_owned());
    }
    #[derive(serde::Deserialize)]
    struct Ids {
        #[serde(rename = "wsProxyMessageId")]
        id: Option<String>,
    }
    serde_json::from_str::<Ids>(frame).ok()?.id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Option<Bytes>) -> String {
        String::from_utf8(b.expect("an event").to_vec()).unwrap()
    }

    #[test]
    fn a_record_is_one_event_with_its_id_and_its_frame_as_data() {
        let frame =
            r#"{"wsProxyMessageId":"t-a-1-42-1700","topic":"t-a","partition":1,"offset":42,"value":{"value":"v"}}"#;
        assert_eq!(text(event(frame, None)), format!("id: t-a-1-42-1700\ndata: {frame}\n\n"));
        let error = r#"{"error":{"code":"DECODE_ERROR","message":"x"},"wsProxyMessageId":"t-0-3-9","topic":"t"}"#;
        assert_eq!(text(event(error, None)), format!("id: t-0-3-9\ndata: {error}\n\n"));
        assert_eq!(text(event("{\"error\":{}}\n", None)), "data: {\"error\":{}}\ndata: \n\n");
    }

    #[test]
    fn a_resumed_stream_skips_its_partition_up_to_the_last_event_id() {
        let after = MessageId::parse("t-1-42-1700").unwrap();
        let frame = |p: i32, o: i64| format!(r#"{{"wsProxyMessageId":"t-{p}-{o}-1700","offset":{o}}}"#);
        assert!(event(&frame(1, 41), Some(&after)).is_none());
        assert!(event(&frame(1, 42), Some(&after)).is_none());
        assert!(event(&frame(1, 43), Some(&after)).is_some());
        // Other partitions are not the id's business.
        assert!(event(&frame(0, 10), Some(&after)).is_some());
    }

    #[test]
    fn last_event_id_names_a_record_of_the_topic() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", v.parse().unwrap());
            h
        };
        let t = TopicSelection::Listed(vec!["t".to_owned()]);
        assert_eq!(last_event_id(&HeaderMap::new(), &t).unwrap(), None);
        assert_eq!(last_event_id(&headers("t-2-7-100"), &t).unwrap(), MessageId::parse("t-2-7-100"));
        assert_eq!(last_event_id(&headers("other-2-7-100"), &t).unwrap(), None);
        assert_eq!(last_event_id(&headers("nonsense"), &t).unwrap_err().status(), StatusCode::BAD_REQUEST);
        // An offset the next one of which would overflow, or a negative one, names no record.
        for bad in ["t-2-9223372036854775807-100", "t-2--5-100"] {
            assert_eq!(last_event_id(&headers(bad), &t).map_err(|e| e.status()), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
        // A stream over several topics resumes on any of them.
        let several = TopicSelection::Listed(vec!["t".to_owned(), "other".to_owned()]);
        assert_eq!(last_event_id(&headers("other-2-7-100"), &several).unwrap(), MessageId::parse("other-2-7-100"));
    }
}
