//! `POST /http/in` and `GET /sse/out` before Kafka: what is refused without the broker (a
//! body that is not records, the frame size limit) and the 503 when Kafka cannot be reached.

use axum::body::Body;
use axum::http::Method;

use super::*;

fn post(uri: &str, body: &str) -> Request<Body> {
    request(Method::POST, uri).header("content-type", "application/json").body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn post_refuses_what_is_not_records_before_asking_kafka() {
    let edge = Edge::new(&[("WSPROXY_WS_MAX_FRAME_SIZE", "64")]);
    let uri = "/http/in?clientId=c&topic=t";
    let not_json = edge.main(post(uri, "{\"value\"")).await;
    assert_eq!(not_json.status, 400, "{not_json:?}");
    assert!(not_json.body.contains("The body is not JSON"), "{not_json:?}");
    edge.main(post(uri, "true")).await.is(
        400,
        JSON,
        &message("The body is neither a record (a JSON object) nor an array of records."),
    );
    let big = format!("{{\"value\":{{\"value\":\"{}\"}}}}", "x".repeat(100));
    // Streamed (no Content-Length): read up to the limit, then refused.
    edge.main(post(uri, &big)).await.is(
        413,
        JSON,
        &message("the body has more than 64 bytes; the limit is 64 (WSPROXY_WS_MAX_FRAME_SIZE)"),
    );
    // Declared: refused before reading.
    let declared =
        request(Method::POST, uri).header("content-length", big.len()).body(Body::from(big.clone())).unwrap();
    edge.main(declared).await.is(
        413,
        JSON,
        &message(&format!("the frame has {} bytes; the limit is 64 (WSPROXY_WS_MAX_FRAME_SIZE)", big.len())),
    );
    edge.main(post("/http/in?topic=t", "{}")).await.is(400, JSON, &message("Request param 'clientId' is missing."));
    edge.main(post("/http/in?clientId=c&topic=t&socketPayload=avro", "{}")).await.is(
        400,
        JSON,
        &message("POST /http/in takes JSON records; socketPayload=avro is for binary WebSocket frames."),
    );
}

/// Nothing listens where the proxy's Kafka clients point: the topic cannot be checked.
#[tokio::test]
async fn post_answers_503_when_kafka_cannot_be_reached() {
    let edge = Edge::new(&[]);
    let answer = edge.main(post("/http/in?clientId=c&topic=t", "{\"value\":{\"value\":\"v\"}}")).await;
    answer.is(503, JSON, &message("Kafka is not reachable; the topic could not be checked."));
}
