//! The admin API's answers that need no Kafka: JSON writes only, bodies that are not a limit of
//! the route's kind (bad JSON, unknown fields, the other kind, an empty id), routes that need
//! dynamic configs while they are off, the static limits, and Basic authentication with
//! allowed users. Reference section 3: "empty" answers are an empty `application/json` body.

use axum::body::Body;
use axum::http::Method;

use super::*;

const INVALID_CONSUMER: &str = "{\n  \"message\" : \"Invalid JSON for consumer config.\"\n}";
const INVALID_PRODUCER: &str = "{\n  \"message\" : \"Invalid JSON for producer config.\"\n}";

/// A JSON write to the admin API.
fn write(method: Method, uri: &str, body: &str) -> Request<Body> {
    request(method, uri).header("content-type", "application/json").body(Body::from(body.to_owned())).unwrap()
}

fn admin_edge(extra: &[(&'static str, &'static str)]) -> Edge {
    let mut vars = vec![("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"), ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1")];
    vars.extend_from_slice(extra);
    Edge::new(&vars)
}

#[tokio::test]
async fn writes_must_say_application_json() {
    let edge = admin_edge(&[]);
    let text = message("Admin writes need the header 'Content-Type: application/json'.");
    let body = r#"{"group-id":"g","max-connections":1}"#;
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        for (method, uri) in
            [(Method::POST, "/admin/client/config/consumer"), (Method::PUT, "/admin/client/config/consumer/g")]
        {
            let mut req = request(method, uri);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            edge.admin(req.body(Body::from(body)).unwrap()).await.is(415, JSON, &text);
        }
    }
    // With parameters, and in any case, it is JSON: the body is judged next (dynamic configs are off).
    let req = request(Method::POST, "/admin/client/config/consumer")
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(Body::from(body))
        .unwrap();
    edge.admin(req).await.is(405, JSON, "");
}

#[tokio::test]
async fn bodies_that_are_not_a_limit_of_the_routes_kind_get_400_before_anything_else() {
    let edge = admin_edge(&[]);
    let not_consumer = [
        "",
        "{",
        "[]",
        "null",
        r#"{"group-id":"g","max-conections":2}"#,
        r#"{"group-id":"g","max-connections":"two"}"#,
        r#"{"group-id":"g","max-connections":-1}"#,
        r#"{"group-id":"","max-connections":1}"#,
        r#"{"max-connections":1}"#,
        r#"{"producer-id":"p","max-connections":1}"#,
    ];
    for body in not_consumer {
        for (method, uri) in
            [(Method::POST, "/admin/client/config/consumer"), (Method::PUT, "/admin/client/config/consumer/g")]
        {
            edge.admin(write(method, uri, body)).await.is(400, JSON, INVALID_CONSUMER);
        }
    }
    let not_producer = [
        "{",
        r#"{"producer-id":"p","messages-per-second":1,"batch-size":5}"#,
        r#"{"group-id":"g","max-connections":1}"#,
        r#"{"producer-id":""}"#,
    ];
    for body in not_producer {
        for (method, uri) in
            [(Method::POST, "/admin/client/config/producer"), (Method::PUT, "/admin/client/config/producer/p")]
        {
            edge.admin(write(method, uri, body)).await.is(400, JSON, INVALID_PRODUCER);
        }
    }
    // The path the reference's docs print: its id must be the body's.
    let answer = edge.admin(write(Method::POST, "/admin/client/config/consumer/other", r#"{"group-id":"g"}"#)).await;
    answer.is(400, JSON, &message("The id in the path (other) differs from the one in the body (g)."));
}

#[tokio::test]
async fn dynamic_config_routes_answer_405_while_dynamic_configs_are_off() {
    let edge = admin_edge(&[]);
    let consumer = r#"{"group-id":"g","max-connections":1}"#;
    let producer = r#"{"producer-id":"p","messages-per-second":5}"#;
    edge.admin(write(Method::POST, "/admin/client/config/consumer", consumer)).await.is(405, JSON, "");
    edge.admin(write(Method::POST, "/admin/client/config/consumer/g", consumer)).await.is(405, JSON, "");
    edge.admin(write(Method::PUT, "/admin/client/config/consumer/x", consumer)).await.is(405, JSON, "");
    edge.admin(write(Method::POST, "/admin/client/config/producer", producer)).await.is(405, JSON, "");
    edge.admin(write(Method::PUT, "/admin/client/config/producer/p", producer)).await.is(405, JSON, "");
    for uri in ["/admin/client/config", "/admin/client/config/consumer/g", "/admin/client/config/producer/p"] {
        edge.admin(request(Method::DELETE, uri).body(Body::empty()).unwrap()).await.is(405, JSON, "");
    }
}

#[tokio::test]
async fn routes_and_methods_that_do_not_exist() {
    let edge = admin_edge(&[]);
    let not_found = message("This is not the resource you are looking for.");
    for uri in ["/admin", "/admin/nope", "/admin/client/configs", "/healthcheck", "/socket/in?clientId=c&topic=t"] {
        edge.admin(get(uri)).await.is(404, JSON, &not_found);
    }
    // The collection of one kind takes only POST; the whole collection no POST.
    let post_only = [("allow", "POST"), JSON[0]];
    edge.admin(get("/admin/client/config/consumer")).await.is(405, &post_only, "");
    let delete = request(Method::DELETE, "/admin/client/config/producer").body(Body::empty()).unwrap();
    edge.admin(delete).await.is(405, &post_only, "");
    let get_delete = [("allow", "GET,HEAD,DELETE"), JSON[0]];
    edge.admin(write(Method::POST, "/admin/client/config", "{}")).await.is(405, &get_delete, "");
    let get_only = [("allow", "GET,HEAD"), JSON[0]];
    edge.admin(write(Method::POST, "/admin/consumer-group/g/describe", "{}")).await.is(405, &get_only, "");
}

#[tokio::test]
async fn static_limits_are_served_with_the_defaults_first() {
    let edge = admin_edge(&[
        (
            "WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS",
            r#"[{"group-id":"dummy","messages-per-second":10,"max-connections":2}]"#,
        ),
        ("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", r#"[{"producer-id":"limit-test-producer-1","max-connections":1}]"#),
        ("WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS", "3"),
    ]);
    let all = concat!(
        r#"{"consumers":{"static":[{"batch-size":0,"group-id":"__DEFAULT__","max-connections":0,"messages-per-second":0},"#,
        r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}],"dynamic":[]},"#,
        r#""producers":{"static":[{"max-connections":3,"messages-per-second":0,"producer-id":"__DEFAULT__"},"#,
        r#"{"max-connections":1,"producer-id":"limit-test-producer-1"}],"dynamic":[]}}"#
    );
    edge.admin(get("/admin/client/config")).await.is(200, JSON, all);
    let dummy = r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}"#;
    edge.admin(get("/admin/client/config/consumer/dummy")).await.is(200, JSON, dummy);
    let producer = r#"{"max-connections":1,"producer-id":"limit-test-producer-1"}"#;
    edge.admin(get("/admin/client/config/producer/limit-test-producer-1")).await.is(200, JSON, producer);
    edge.admin(get("/admin/client/config/consumer/limit-test-producer-1")).await.is(404, JSON, "");
    edge.admin(get("/admin/client/config/producer/no/such/producer")).await.is(404, JSON, "");
}

#[tokio::test]
async fn consumer_group_requests_that_cannot_be_read_get_400_before_kafka_is_asked() {
    let edge = admin_edge(&[]);
    let answer = edge.admin(get("/admin/consumer-group/all?activeOnly=maybe")).await;
    answer.is(
        400,
        JSON,
        &message("Failed to deserialize query string: activeOnly: provided string was not `true` or `false`"),
    );
    let bad = [
        ("[", "EOF while parsing a list at line 1 column 1"),
        (r#"{"topic":"t","partition":0,"offset":1}"#, "invalid type: map, expected a sequence at line 1 column 0"),
        (r#"[{"topic":"t","partition":0}]"#, "missing field `offset` at line 1 column 28"),
    ];
    for (body, text) in bad {
        for uri in ["/admin/consumer-group/g/offsets/alter", "/admin/consumer-group/g/offsets/alter/t"] {
            edge.admin(write(Method::PUT, uri, body)).await.is(400, JSON, &message(text));
        }
    }
}

#[tokio::test]
async fn the_admin_api_takes_the_main_listeners_basic_auth_and_only_allowed_users() {
    let basic = [
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "Admin Realm"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "admin"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "s3cret"),
    ];
    let challenge =
        [("content-type", "application/json"), ("www-authenticate", "Basic realm=\"Admin Realm\",charset=UTF-8")];
    let authorised = |uri: &str, user: &str, pass: &str| {
        let value = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{pass}"))
        );
        request(Method::GET, uri).header("authorization", value).body(Body::empty()).unwrap()
    };
    let edge = admin_edge(&basic);
    let uri = "/admin/client/config/consumer/nobody";
    let missing = message("The resource requires authentication, which was not supplied with the request");
    edge.admin(get(uri)).await.is(401, &challenge, &missing);
    // Authentication comes before routing and before the JSON check.
    edge.admin(get("/admin/nope")).await.is(401, &challenge, &missing);
    let post = request(Method::POST, "/admin/client/config/consumer").body(Body::from("x")).unwrap();
    edge.admin(post).await.is(401, &challenge, &missing);
    let invalid = message("The supplied authentication is invalid");
    edge.admin(authorised(uri, "admin", "wrong")).await.is(401, &challenge, &invalid);
    edge.admin(authorised(uri, "admin", "s3cret")).await.is(404, JSON, "");

    let mut listed = basic.to_vec();
    listed.push(("WSPROXY_ADMIN_ALLOWED_USERS", "ops, admin"));
    admin_edge(&listed).admin(authorised(uri, "admin", "s3cret")).await.is(404, JSON, "");
    let mut unlisted = basic.to_vec();
    unlisted.push(("WSPROXY_ADMIN_ALLOWED_USERS", "ops"));
    let refused = message("The authenticated user is not allowed to use the admin API.");
    admin_edge(&unlisted).admin(authorised(uri, "admin", "s3cret")).await.is(403, JSON, &refused);
}
