//! `POST /http/in` and `GET /sse/out` before Kafka: what is refused without the broker (a
//! body that is not records, the frame size limit) and the 503 when Kafka cannot be reached.

use axum::body::Body;
use axum::http::Method;

use super::*;

/// The headers of every JSON answer of these routes: they vary with the `Origin` (CORS).
const JSON_VARY: &[(&str, &str)] = &[("content-type", "application/json"), ("vary", "Origin")];

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
        JSON_VARY,
        &message("The body is neither a record (a JSON object) nor an array of records."),
    );
    let big = format!("{{\"value\":{{\"value\":\"{}\"}}}}", "x".repeat(100));
    // Streamed (no Content-Length): read up to the limit, then refused.
    edge.main(post(uri, &big)).await.is(
        413,
        JSON_VARY,
        &message("the body has more than 64 bytes; the limit is 64 (WSPROXY_WS_MAX_FRAME_SIZE)"),
    );
    // Declared: refused before reading.
    let declared =
        request(Method::POST, uri).header("content-length", big.len()).body(Body::from(big.clone())).unwrap();
    edge.main(declared).await.is(
        413,
        JSON_VARY,
        &message(&format!("the frame has {} bytes; the limit is 64 (WSPROXY_WS_MAX_FRAME_SIZE)", big.len())),
    );
    edge.main(post("/http/in?topic=t", "{}")).await.is(
        400,
        JSON_VARY,
        &message("Request param 'clientId' is missing."),
    );
    edge.main(post("/http/in?clientId=c&topic=t&socketPayload=avro", "{}")).await.is(
        400,
        JSON_VARY,
        &message("POST /http/in takes JSON records; socketPayload=avro is for binary WebSocket frames."),
    );
}

/// Nothing listens where the proxy's Kafka clients point: the topic cannot be checked.
#[tokio::test]
async fn post_answers_503_when_kafka_cannot_be_reached() {
    let edge = Edge::new(&[]);
    let answer = edge.main(post("/http/in?clientId=c&topic=t", "{\"value\":{\"value\":\"v\"}}")).await;
    answer.is(503, JSON_VARY, &message("Kafka is not reachable; the topic could not be checked."));
}

fn preflight(uri: &str, origin: &str) -> Request<Body> {
    request(Method::OPTIONS, uri)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .body(Body::empty())
        .unwrap()
}

/// A page on a listed origin may call the fallback routes with its credentials: the preflight
/// is answered before authentication, refusals carry CORS headers too.
#[tokio::test]
async fn cors_follows_the_allowed_origins_and_never_pairs_a_wildcard_with_credentials() {
    let listed = Edge::new(&[
        ("WSPROXY_ALLOWED_ORIGINS", "https://app.example"),
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "R"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "p"),
    ]);
    let allowed = [
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-origin", "https://app.example"),
        ("vary", "Origin"),
    ];
    let mut preflight_headers = allowed.to_vec();
    preflight_headers.extend([
        ("access-control-allow-headers", "Authorization, Content-Type, Last-Event-ID, X-Kafka-Auth"),
        ("access-control-allow-methods", "GET, POST"),
        ("access-control-max-age", "600"),
    ]);
    let mut refused_headers = vec![("vary", "Origin")];
    // The router adds which methods the route takes.
    for (uri, methods) in [("/http/in?clientId=c&topic=t", "POST"), ("/sse/out?clientId=c&topic=t", "GET,HEAD")] {
        preflight_headers.push(("allow", methods));
        refused_headers.push(("allow", methods));
        listed.main(preflight(uri, "https://app.example")).await.is(204, &preflight_headers, "");
        listed.main(preflight(uri, "https://evil.example")).await.is(204, &refused_headers, "");
        preflight_headers.pop();
        refused_headers.pop();
    }
    // Without credentials: the 401 is readable by the page.
    let unauthenticated = request(Method::POST, "/http/in?clientId=c&topic=t")
        .header("origin", "https://app.example")
        .body(Body::from("{}"))
        .unwrap();
    let answer = listed.main(unauthenticated).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["access-control-allow-origin"], "https://app.example");
    // Sockets need no CORS.
    let socket = listed.main(preflight("/socket/in?clientId=c&topic=t", "https://app.example")).await;
    assert!(socket.headers.get("access-control-allow-origin").is_none(), "{socket:?}");

    let open = Edge::new(&[]);
    let answer = open.main(preflight("/sse/out?clientId=c&topic=t", "https://any.example")).await;
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    assert!(answer.headers.get("access-control-allow-credentials").is_none());
    let authenticated = Edge::new(&[
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "R"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "p"),
    ]);
    let answer = authenticated.main(preflight("/http/in?clientId=c&topic=t", "https://any.example")).await;
    assert!(answer.headers.get("access-control-allow-origin").is_none(), "{answer:?}");
}

#[tokio::test]
async fn http_in_takes_post_only() {
    let edge = Edge::new(&[]);
    let not_allowed = message("HTTP method not allowed, supported methods: POST");
    let answer = edge.main(get("/http/in?clientId=c&topic=t")).await;
    answer.is(405, &[("allow", "POST"), JSON_VARY[0], JSON_VARY[1]], &not_allowed);
}
