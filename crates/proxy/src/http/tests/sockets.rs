//! The main listener before the upgrade: its plain routes, the socket parameters with the
//! reference's texts, the upgrade check, Origin refusals, admission limits and malformed
//! `X-Kafka-Auth`, in the order the handlers check them.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::Method;

use super::*;

#[tokio::test]
async fn healthcheck_answers_the_reference_body_and_head_an_empty_one() {
    let edge = Edge::new(&[]);
    edge.main(get("/healthcheck")).await.is(200, JSON, "{ \"response\": \"I'm healthy\" }");
    let head = edge.main(request(Method::HEAD, "/healthcheck").body(Body::empty()).unwrap()).await;
    // No body, and the length of the one a GET gets.
    let json = vec![("content-type".to_owned(), "application/json".to_owned())];
    assert_eq!((head.status.as_u16(), head.headers(), head.body.as_str()), (200, json, ""));
    assert_eq!(head.headers["content-length"], "29");
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405_in_the_reference_json() {
    let edge = Edge::new(&[]);
    let not_found = message("This is not the resource you are looking for.");
    for path in ["/nope", "/socket", "/socket/in/", "/healthcheck/x", "/socket/echo"] {
        edge.main(get(path)).await.is(404, JSON, &not_found);
    }
    let not_allowed = message("HTTP method not allowed, supported methods: GET");
    for (method, path) in [(Method::POST, "/healthcheck"), (Method::PUT, "/socket/in"), (Method::DELETE, "/socket/out")]
    {
        let allow = [("allow", "GET,HEAD"), JSON[0]];
        edge.main(request(method, path).body(Body::empty()).unwrap()).await.is(405, &allow, &not_allowed);
    }
}

#[tokio::test]
async fn ready_says_why_it_is_not_while_starting_and_shutting_down() {
    let edge = Edge::new(&[]);
    edge.state.started.store(false, Ordering::Release);
    edge.main(get("/ready")).await.is(503, JSON, &message("The proxy is starting."));
    edge.state.shutdown.cancel();
    edge.main(get("/ready")).await.is(503, JSON, &message("The proxy is shutting down."));
}

/// Reference 2.2: the first failing parameter wins, with the reference's text (ours where the
/// reference has no such parameter); checked before anything else, upgrade or not.
#[tokio::test]
async fn produce_parameters_are_refused_with_the_reference_texts() {
    let plain = Edge::new(&[]);
    let cases = [
        ("", "Request param 'clientId' is missing."),
        ("topic=t", "Request param 'clientId' is missing."),
        ("clientId=c", "Request param 'topic' is missing."),
        ("socketPayload=x&valType=y", "Request param 'clientId' is missing."),
        ("clientId=c&topic=t&socketPayload=protobuf", "'protobuf' is not a valid socket payload"),
        ("clientId=c&topic=t&valType=foo", "'foo' is not a valid format type"),
        ("clientId=c&topic=t&keyType=a&valType=b", "'a' is not a valid format type"),
        ("clientId=c&topic=t&keyType=protobuf", "'protobuf' is not a valid format type"),
        ("clientId=c&topic=t&transactional=x", "'x' is not a valid Boolean value"),
        (
            "clientId=c&topic=t&transactional=true",
            "Unable to provide transactional producer. Server is not configured to allow producer transactions.",
        ),
    ];
    for (query, text) in cases {
        let uri = format!("/socket/in?{query}");
        plain.main(get(&uri)).await.is(400, JSON, &message(text));
        plain.main(upgrade_get(&uri)).await.is(400, JSON, &message(text));
    }
    let sessions = Edge::new(&[("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true")]);
    sessions.main(upgrade_get("/socket/in?clientId=c&topic=t")).await.is(
        400,
        JSON,
        &message("Request param 'instanceId' is required when producer sessions are enabled on the proxy server."),
    );
    sessions.main(upgrade_get("/socket/in?clientId=c&topic=t&transactional=true")).await.is(
        400,
        JSON,
        &message("Unable to provide transactional producer. Server is not configured to allow producer transactions."),
    );
    let exactly_once =
        Edge::new(&[("WSPROXY_PRODUCER_SESSIONS_ENABLED", "true"), ("WSPROXY_PRODUCER_EXACTLY_ONCE_ENABLED", "true")]);
    exactly_once.main(upgrade_get("/socket/in?clientId=c&topic=t&transactional=yes")).await.is(
        400,
        JSON,
        &message("Request param 'instanceId' is required when using transactional."),
    );
}

#[tokio::test]
async fn consume_parameters_are_refused_with_the_reference_texts() {
    let edge = Edge::new(&[]);
    let cases = [
        ("topic=t", "Request param 'clientId' is missing.".to_owned()),
        ("clientId=c", "Request param 'topic' is missing.".to_owned()),
        ("clientId=c&topic=t&valType=avro2", "'avro2' is not a valid format type".to_owned()),
        ("clientId=c&topic=t&offsetResetStrategy=x", "x is not a valid offset reset strategy".to_owned()),
        (
            "clientId=c&topic=t&isolationLevel=uncommitted",
            "Read isolation 'uncommitted' is not a valid value. Please use one of 'read_committed' or 'read_uncommitted'."
                .to_owned(),
        ),
        ("clientId=c&topic=t&rate=abc", "'abc' is not a valid 32-bit signed integer value".to_owned()),
        ("clientId=c&topic=t&batchSize=2147483648", "'2147483648' is not a valid 32-bit signed integer value".to_owned()),
        ("clientId=c&topic=t&batchSize=-1", "Request param 'batchSize' must not be negative, got -1.".to_owned()),
        ("clientId=c&topic=t&batchSize=10001", "Request param 'batchSize' must be at most 10000, got 10001.".to_owned()),
        ("clientId=c&topic=t&autoCommit=maybe", "'maybe' is not a valid Boolean value".to_owned()),
    ];
    for (query, text) in cases {
        edge.main(upgrade_get(&format!("/socket/out?{query}"))).await.is(400, JSON, &message(&text));
    }
}

#[tokio::test]
async fn valid_parameters_without_an_upgrade_get_400_expected_websocket_upgrade() {
    let edge = Edge::new(&[("WSPROXY_ECHO_ENABLED", "true")]);
    let text = message("Expected WebSocket Upgrade request");
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t", "/socket/echo"] {
        edge.main(get(path)).await.is(400, JSON, &text);
    }
}

/// The echo socket runs the real sockets' checks without Kafka, so it shows a socket that
/// passes them: 101 with the handshake's headers.
#[tokio::test]
async fn an_upgrade_that_passes_every_check_is_switched() {
    let edge = Edge::new(&[("WSPROXY_ECHO_ENABLED", "true")]);
    let switched =
        [("connection", "upgrade"), ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), ("upgrade", "websocket")];
    edge.main(upgrade_get("/socket/echo")).await.is(101, &switched, "");
}

#[tokio::test]
async fn origins_outside_the_allowed_list_are_refused_and_two_origins_always() {
    let edge = Edge::new(&[
        ("WSPROXY_ECHO_ENABLED", "true"),
        ("WSPROXY_ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com"),
    ]);
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t", "/socket/echo"] {
        for evil in ["https://evil.example.net", "https://app.example.com.evil", "null"] {
            let refused = upgrade(path).header("origin", evil).body(Body::empty()).unwrap();
            let text = format!("Origin '{evil}' is not allowed to open sockets on this proxy.");
            edge.main(refused).await.is(403, JSON, &message(&text));
        }
    }
    let allowed = upgrade("/socket/echo").header("origin", "https://admin.example.com").body(Body::empty()).unwrap();
    assert_eq!(edge.main(allowed).await.status, 101);
    // Not a browser: no Origin, no check.
    assert_eq!(edge.main(upgrade_get("/socket/echo")).await.status, 101);

    let twice = message("A request may carry at most one Origin header.");
    for e in [&edge, &Edge::new(&[("WSPROXY_ECHO_ENABLED", "true")])] {
        let req = upgrade("/socket/echo")
            .header("origin", "https://app.example.com")
            .header("origin", "https://evil.example.net")
            .body(Body::empty())
            .unwrap();
        e.main(req).await.is(400, JSON, &twice);
    }
}

#[tokio::test]
async fn sockets_over_the_per_ip_and_node_limits_get_503_saying_which() {
    let edge = Edge::new(&[
        ("WSPROXY_ECHO_ENABLED", "true"),
        ("WSPROXY_MAX_CONNECTIONS", "2"),
        ("WSPROXY_MAX_CONNECTIONS_PER_IP", "1"),
    ]);
    let peer: std::net::SocketAddr = PEER.parse().unwrap();
    let held = edge.state.admission.admit(peer.ip()).unwrap();
    let per_ip = message("The limit of 1 open sockets from 10.1.2.3 has been reached.");
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t", "/socket/echo"] {
        edge.main(upgrade_get(path)).await.is(503, JSON, &per_ip);
    }
    let other = edge.state.admission.admit("10.9.9.9".parse().unwrap()).unwrap();
    let full = message("The proxy has reached its limit of 2 open sockets. Try again later.");
    edge.main(upgrade_get("/socket/echo")).await.is(503, JSON, &full);
    // Slots come back when their sockets end; a refused request took none.
    drop((held, other));
    assert_eq!(edge.main(upgrade_get("/socket/echo")).await.status, 101);
}

#[tokio::test]
async fn sockets_wait_until_the_node_has_loaded_its_state() {
    let edge = Edge::new(&[("WSPROXY_ECHO_ENABLED", "true")]);
    edge.state.started.store(false, Ordering::Release);
    let text = message("The proxy is still loading its state from Kafka; try again in a moment.");
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t", "/socket/echo"] {
        edge.main(upgrade_get(path)).await.is(503, JSON, &text);
    }
}

#[tokio::test]
async fn malformed_kafka_credentials_are_refused_before_kafka_is_asked() {
    let edge = Edge::new(&[]);
    let text = message("The X-Kafka-Auth header must be base64(username:password).");
    // Not base64, no colon, an empty user name.
    for value in ["%%%", "bm8tY29sb24=", "OnBhc3M="] {
        for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t"] {
            let req = upgrade(path).header("x-kafka-auth", value).body(Body::empty()).unwrap();
            edge.main(req).await.is(400, JSON, &text);
        }
    }
}
