//! `POST /http/in`: the produce socket for clients that cannot open a WebSocket.
//!
//! The request takes `/socket/in`'s parameters and passes its checks (origin, admission,
//! credentials, the topic, the session, Kafka's verdict on the credentials:
//! [`sockets::open_producer`]). Its body is one produce frame: one record object or an array of
//! them, in the socket's JSON. The body goes through the produce socket's own loop
//! ([`produce::run`], over a [`Bridge`]) as one frame, so it is decoded by the same codec,
//! limited, counted and answered exactly like a frame on the socket; the response is that
//! frame's answer, sent once Kafka acknowledged (or refused) every record: one JSON object for
//! one record, an array in input order for an array. Bad records get their error entry in
//! place (200); a body that is not JSON or not records is 400, one beyond
//! `WSPROXY_WS_MAX_FRAME_SIZE` 413.

use axum::body::Body;
use axum::extract::ws::Message;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::channel::mpsc;
use futures::StreamExt;
use http_body_util::BodyExt;
use wsproxy_protocol::error::FrameError;
use wsproxy_protocol::params::SocketPayload;

use crate::auth::oidc::Authenticated;
use crate::http::bridge::Bridge;
use crate::http::error::{json_response, ApiError};
use crate::http::sockets::{self, OpenProducer};
use crate::http::{AppState, Peer};
use crate::pipeline::produce;

/// What the body holds at its top level: the answer has the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Many,
}

/// `POST /http/in`.
pub async fn produce(
    State(state): State<AppState>,
    ConnectInfo(Peer(remote)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    auth: Option<Extension<Authenticated>>,
    body: Body,
) -> Result<Response, ApiError> {
    let p = sockets::producer_params(&state, query.as_deref())?;
    if p.socket_payload == SocketPayload::Avro {
        return Err(ApiError::BadRequest(
            "POST /http/in takes JSON records; socketPayload=avro is for binary WebSocket frames.".to_owned(),
        ));
    }
    sockets::check_origin(&state, &headers)?;
    // The body is read holding a connection slot, and within the idle timeout: a client that
    // trickles large bodies over many connections meets the same limits as sockets.
    let reading = sockets::admit(&state, remote)?;
    let idle = state.config.socket.idle_timeout;
    let text =
        tokio::time::timeout(idle, read_body(body, &headers, state.config.socket.max_frame_bytes)).await.map_err(
            |_| ApiError::RequestTimeout(format!("The request body did not arrive within {}s.", idle.as_secs())),
        )??;
    drop(reading);
    let shape = shape_of(&text)?;
    let auth = auth.map(|Extension(a)| a);
    // The body is in: from here the request runs to its end in a task of its own, also when
    // the client hangs up (the server then drops this handler): its records are written
    // (a transaction committed), only the answer is lost.
    let answered = tokio::spawn(async move {
        let open = sockets::open_producer(&state, remote, p, &headers, auth.as_ref()).await?;
        // Counted like a socket: a shutdown waits for the answer.
        let token = state.sockets.token();
        let answer = answer(open, text, state.shutdown.child_token()).await;
        drop(token);
        answer
    });
    let answer = answered.await.map_err(|e| ApiError::Internal(format!("The request failed: {e}")))??;
    match refusal(shape, &answer) {
        Some(e) => Err(e),
        None => Ok(json_response(StatusCode::OK, answer)),
    }
}

/// The body as text, at most `max` bytes (the socket's frame limit): 413 beyond it.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<String, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        return Err(ApiError::PayloadTooLarge(FrameError::too_large(len, max).message));
    }
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body has more than {max} bytes; the limit is {max} (WSPROXY_WS_MAX_FRAME_SIZE)"
            )))
        }
        Err(e) => return Err(ApiError::BadRequest(format!("The request body could not be read: {e}"))),
    };
    String::from_utf8(bytes.into()).map_err(|_| ApiError::BadRequest("The body is not UTF-8 text.".to_owned()))
}

/// 400 unless the body is JSON holding an object or an array (whose entries the codec judges
/// one by one, as on the socket).
fn shape_of(text: &str) -> Result<Shape, ApiError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::BadRequest(format!("The body is not JSON: {e}")))?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => Ok(Shape::One),
        Some(b'[') => Ok(Shape::Many),
        _ => Err(ApiError::BadRequest(
            "The body is neither a record (a JSON object) nor an array of records.".to_owned(),
        )),
    }
}

/// Runs the body through the produce loop as one frame and returns its answer, once every
/// record is settled. No answer (the node shut down, or Kafka failed for good) is 503.
async fn answer(
    open: OpenProducer,
    text: String,
    stop: tokio_util::sync::CancellationToken,
) -> Result<String, ApiError> {
    let OpenProducer { kafka, settings, session, slot } = open;
    let (frames, inbound) = mpsc::unbounded();
    frames.unbounded_send(Message::Text(text.into())).expect("the receiver is held below");
    // The only frame: the loop answers it, then ends at the end of the frames (not as on a
    // client's close frame, after which nothing is answered).
    drop(frames);
    let (outbound, sent) = mpsc::channel(4);
    let bridge = Bridge::new(inbound, outbound, session, Some(slot));
    let ((), sent) = tokio::join!(produce::run(bridge, kafka, settings, stop), sent.collect::<Vec<Message>>());
    let mut close_reason = None;
    for msg in sent {
        match msg {
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            Message::Close(frame) => close_reason = frame.map(|f| f.reason.to_string()),
            _ => {}
        }
    }
    let why = close_reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "the proxy is shutting down".to_owned());
    Err(ApiError::KafkaUnavailable(format!("The records were not answered: {why}. Nothing was acknowledged.")))
}

/// A body the codec refused as a whole: an array answered with one error (too many records),
/// or a body its parser did not take as JSON. 400 with the codec's text.
fn refusal(shape: Shape, answer: &str) -> Option<ApiError> {
    if !answer.starts_with("{\"error\"") {
        return None;
    }
    let frame: serde_json::Value = serde_json::from_str(answer).ok()?;
    let code = frame["error"]["code"].as_str().unwrap_or_default();
    let message = frame["error"]["message"].as_str().unwrap_or_default();
    (shape == Shape::Many || code == "INVALID_JSON").then(|| ApiError::BadRequest(format!("{code}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_and_arrays_are_records() {
        assert_eq!(shape_of(" {\"value\":{\"value\":\"v\"}}").unwrap(), Shape::One);
        assert_eq!(shape_of("\n[1, {}]").unwrap(), Shape::Many);
        for (body, why) in [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("value=1", "not JSON"),
            ("42", "neither a record"),
            ("\"text\"", "neither a record"),
            ("null", "neither a record"),
        ] {
            let e = shape_of(body).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().contains(why), "{body}: {e}");
        }
    }

    #[test]
    fn an_array_answered_with_one_error_is_refused_an_error_entry_is_not() {
        let whole = r#"{"error":{"code":"INVALID_FRAME","message":"an array frame holds at most 1000 records, this one has 1001"},"clientMessageId":null,"messageId":null}"#;
        let e = refusal(Shape::Many, whole).expect("refused");
        assert_eq!(e.to_string(), "INVALID_FRAME: an array frame holds at most 1000 records, this one has 1001");
        // One bad record is that record's answer.
        let bad = r#"{"error":{"code":"INVALID_VALUE","message":"bad"},"clientMessageId":"m","messageId":"m"}"#;
        assert!(refusal(Shape::One, bad).is_none());
        assert!(refusal(Shape::Many, r#"[{"error":{"code":"INVALID_VALUE","message":"bad"}}]"#).is_none());
        assert!(refusal(Shape::One, r#"{"topic":"t","partition":0,"offset":1}"#).is_none());
    }
}
