//! The admin API (reference section 3) on its own listener: cluster info, client limits
//! (static and dynamic) and consumer groups. Same authentication as the main listener; with
//! `WSPROXY_ADMIN_ALLOWED_USERS` only the principals it names get past it (others: 403).
//!
//! Statuses and bodies are the reference's: "empty" answers have an empty body labelled
//! `application/json`, Kafka documents are pretty-printed like circe's `spaces2`, limit
//! documents are compact JSON. Paths are the real ones plus the ones the reference's docs
//! print (`POST .../consumer/<groupId>`, `DELETE .../offsets`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::oidc::Authenticated;
use crate::http::error::{json_response, message_body, ApiError};
use crate::http::AppState;
use crate::kafka::admin::{GroupError, GroupOffset};
use crate::kafka::config_log::LogError;
use crate::limits::{ClientLimits, ConsumerLimit, DynamicConfig, ProducerLimit};
use crate::telemetry::metrics;

/// Builds the admin router. The listener in [`crate::app`] serves it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/kafka/info", get(kafka_info))
        .route("/admin/client/config", get(all_configs).delete(delete_all_configs))
        .route("/admin/client/config/consumer", post(post_config::<ConsumerLimit>))
        .route(
            "/admin/client/config/consumer/{*id}",
            get(get_config::<ConsumerLimit>)
                .put(put_config::<ConsumerLimit>)
                .delete(delete_config::<ConsumerLimit>)
                .post(post_config_at::<ConsumerLimit>),
        )
        .route("/admin/client/config/producer", post(post_config::<ProducerLimit>))
        .route(
            "/admin/client/config/producer/{*id}",
            get(get_config::<ProducerLimit>)
                .put(put_config::<ProducerLimit>)
                .delete(delete_config::<ProducerLimit>)
                .post(post_config_at::<ProducerLimit>),
        )
        .route("/admin/consumer-group/all", get(list_groups))
        .route("/admin/consumer-group/{group}/describe", get(describe_group))
        .route("/admin/consumer-group/{group}/offsets", get(group_offsets).delete(delete_all_offsets))
        .route("/admin/consumer-group/{group}/offsets/alter", put(alter_offsets))
        .route("/admin/consumer-group/{group}/offsets/alter/{topic}", put(alter_offsets_of))
        .route("/admin/consumer-group/{group}/offsets/delete/{topic}", delete(delete_offsets))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { empty(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(axum::middleware::from_fn(require_json_writes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_admin))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::require_auth))
        .layer(axum::middleware::from_fn(super::count_requests))
        .with_state(state)
}

/// Runs after authentication: with `WSPROXY_ADMIN_ALLOWED_USERS` set, only the Basic user or a
/// token whose `sub` or `preferred_username` it names may call the admin API; anyone else
/// authenticated gets 403. Empty allows any authenticated client (the reference's behaviour).
async fn require_admin(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let allowed = state.config.server.admin.as_ref().map_or(&[][..], |a| &a.allowed_users[..]);
    if allowed.is_empty() {
        return next.run(req).await;
    }
    let token = req.extensions().get::<Authenticated>();
    let principals: Vec<&str> = match (token, &state.basic_auth) {
        (Some(token), _) => token.subject.iter().chain(&token.username).map(String::as_str).collect(),
        (None, Some(basic)) => vec![basic.username.0.as_str()],
        (None, None) => Vec::new(),
    };
    if principals.iter().any(|p| allowed.iter().any(|a| a == p)) {
        return next.run(req).await;
    }
    metrics::auth_failure("admin_not_allowed");
    // The Basic user name is a secret of the configuration: only a token's subject is logged.
    let subject = token.and_then(|t| t.subject.as_deref()).unwrap_or("-");
    tracing::warn!(subject = ?subject, path = req.uri().path(), "admin API call refused: the caller is not in WSPROXY_ADMIN_ALLOWED_USERS");
    ApiError::Forbidden("The authenticated user is not allowed to use the admin API.".to_owned()).into_response()
}

/// L5: writes (`POST`, `PUT`) must say `Content-Type: application/json`. A web page can send
/// a cross-site `text/plain` POST without a CORS preflight, and a browser adds its cached Basic
/// credentials; `application/json` needs a preflight, which this API never grants.
async fn require_json_writes(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let write = matches!(*req.method(), axum::http::Method::POST | axum::http::Method::PUT);
    let json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if write && !json {
        tracing::warn!(method = %req.method(), "admin write refused: its Content-Type is not application/json");
        return json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message_body("Admin writes need the header 'Content-Type: application/json'."),
        );
    }
    next.run(req).await
}

/// A status with an empty `application/json` body, as the reference answers.
fn empty(status: StatusCode) -> Response {
    json_response(status, String::new())
}

fn compact<T: Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, serde_json::to_string(value).expect("admin documents serialise"))
}

fn pretty<T: Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, spaces2(value))
}

/// circe's `spaces2`: two-space indent and `"key" : value`.
pub fn spaces2<T: Serialize>(value: &T) -> String {
    use serde_json::ser::{Formatter, PrettyFormatter};
    use std::io::{self, Write};
    struct Spaces2(PrettyFormatter<'static>);
    impl Formatter for Spaces2 {
        fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_array(w)
        }
        fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array(w)
        }
        fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
            self.0.begin_array_value(w, first)
        }
        fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_array_value(w)
        }
        fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.begin_object(w)
        }
        fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object(w)
        }
        fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
            self.0.begin_object_key(w, first)
        }
        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b" : ")
        }
        fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.end_object_value(w)
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaces2(PrettyFormatter::with_indent(b"  ")));
    value.serialize(&mut ser).expect("admin documents serialise");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn kafka_down(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "admin API: Kafka request failed");
    ApiError::KafkaUnavailable("Kafka is not reachable.".to_owned())
}

async fn kafka_info(State(state): State<AppState>) -> Result<Response, ApiError> {
    let brokers = state.kafka.brokers(std::time::Duration::from_secs(10)).await.map_err(kafka_down)?;
    Ok(pretty(&brokers))
}

/// A client limit kind, so that one set of handlers serves consumers and producers.
trait Limit: Serialize + DeserializeOwned + Clone + Send + 'static {
    const INVALID: &'static str;
    fn id(&self) -> &str;
    fn into_dynamic(self) -> DynamicConfig;
    fn lookup(limits: &ClientLimits, id: &str) -> Option<Self>;
    fn dynamic(limits: &ClientLimits, id: &str) -> Option<Self>;
    fn key(id: &str) -> String;
}

impl Limit for ConsumerLimit {
    const INVALID: &'static str = "Invalid JSON for consumer config.";
    fn id(&self) -> &str {
        &self.group_id
    }
    fn into_dynamic(self) -> DynamicConfig {
        DynamicConfig::Consumer(self)
    }
    fn lookup(limits: &ClientLimits, id: &str) -> Option<Self> {
        limits.consumer(id)
    }
    fn dynamic(limits: &ClientLimits, id: &str) -> Option<Self> {
        limits.dynamic_consumer(id)
    }
    fn key(id: &str) -> String {
        crate::limits::consumer_key(id)
    }
}

impl Limit for ProducerLimit {
    const INVALID: &'static str = "Invalid JSON for producer config.";
    fn id(&self) -> &str {
        &self.producer_id
    }
    fn into_dynamic(self) -> DynamicConfig {
        DynamicConfig::Producer(self)
    }
    fn lookup(limits: &ClientLimits, id: &str) -> Option<Self> {
        limits.producer(id)
    }
    fn dynamic(limits: &ClientLimits, id: &str) -> Option<Self> {
        limits.dynamic_producer(id)
    }
    fn key(id: &str) -> String {
        crate::limits::producer_key(id)
    }
}

/// The body as a limit of kind `T`, or `None` (answered by [`invalid`]).
fn decode<T: Limit>(body: &[u8]) -> Option<T> {
    serde_json::from_slice::<T>(body).ok().filter(|limit| !limit.id().is_empty())
}

fn invalid<T: Limit>() -> Response {
    json_response(StatusCode::BAD_REQUEST, message_body(T::INVALID))
}

fn written(r: Result<(), LogError>) -> Response {
    match r {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, message_body(&e.to_string())),
    }
}

#[derive(Serialize)]
struct Lists<T> {
    #[serde(rename = "static")]
    statics: Vec<T>,
    dynamic: Vec<T>,
}

#[derive(Serialize)]
struct AllConfigs {
    consumers: Lists<ConsumerLimit>,
    producers: Lists<ProducerLimit>,
}

async fn all_configs(State(state): State<AppState>) -> Response {
    let s = state.limits.statics();
    let (consumers, producers) = state.limits.dynamic_configs();
    compact(&AllConfigs {
        consumers: Lists {
            statics: std::iter::once(s.consumer_default()).chain(s.consumers.iter().cloned()).collect(),
            dynamic: consumers,
        },
        producers: Lists {
            statics: std::iter::once(s.producer_default()).chain(s.producers.iter().cloned()).collect(),
            dynamic: producers,
        },
    })
}

async fn delete_all_configs(State(state): State<AppState>) -> Response {
    match &state.config_log {
        None => empty(StatusCode::METHOD_NOT_ALLOWED),
        Some(log) => written(log.remove_all().await),
    }
}

async fn get_config<T: Limit>(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match T::lookup(&state.limits, &id) {
        Some(limit) => compact(&limit),
        None => empty(StatusCode::NOT_FOUND),
    }
}

/// `POST .../consumer` (the reference's path): adds or replaces.
async fn post_config<T: Limit>(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(limit) = decode::<T>(&body) else { return invalid::<T>() };
    match &state.config_log {
        None => empty(StatusCode::METHOD_NOT_ALLOWED),
        Some(log) => written(log.put(&limit.into_dynamic()).await),
    }
}

/// `POST .../consumer/<groupId>` (the path the reference's docs print): the id must match.
async fn post_config_at<T: Limit>(state: State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    if let Ok(limit) = serde_json::from_slice::<T>(&body) {
        if limit.id() != id {
            return json_response(
                StatusCode::BAD_REQUEST,
                message_body(&format!("The id in the path ({id}) differs from the one in the body ({}).", limit.id())),
            );
        }
    }
    post_config::<T>(state, body).await
}

/// `PUT .../consumer/<anything>`: replaces an existing dynamic config (the body's id is the key).
async fn put_config<T: Limit>(State(state): State<AppState>, Path(_): Path<String>, body: Bytes) -> Response {
    let Some(limit) = decode::<T>(&body) else { return invalid::<T>() };
    let Some(log) = &state.config_log else { return empty(StatusCode::METHOD_NOT_ALLOWED) };
    if T::dynamic(&state.limits, limit.id()).is_none() {
        return empty(StatusCode::NOT_FOUND);
    }
    written(log.put(&limit.into_dynamic()).await)
}

async fn delete_config<T: Limit>(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(log) = &state.config_log else { return empty(StatusCode::METHOD_NOT_ALLOWED) };
    if T::dynamic(&state.limits, &id).is_none() {
        return empty(StatusCode::NOT_FOUND);
    }
    written(log.remove(&T::key(&id)).await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupListing {
    #[serde(default)]
    active_only: bool,
    #[serde(default)]
    include_internals: bool,
}

async fn list_groups(
    State(state): State<AppState>,
    q: Result<Query<GroupListing>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let groups = state.kafka.list_groups(q.active_only, q.include_internals).await.map_err(kafka_down)?;
    Ok(pretty(&groups))
}

async fn describe_group(State(state): State<AppState>, Path(group): Path<String>) -> Result<Response, ApiError> {
    Ok(pretty(&state.kafka.describe_group(&group).await.map_err(kafka_down)?))
}

async fn group_offsets(State(state): State<AppState>, Path(group): Path<String>) -> Result<Response, ApiError> {
    let offsets = state.kafka.group_offsets(&group).await.map_err(kafka_down)?;
    if offsets.is_empty() {
        return Ok(empty(StatusCode::NOT_FOUND));
    }
    Ok(pretty(&offsets))
}

fn group_error(e: GroupError) -> Response {
    match e {
        GroupError::Active => json_response(StatusCode::PRECONDITION_FAILED, message_body(&e.to_string())),
        GroupError::Invalid(m) => json_response(StatusCode::BAD_REQUEST, message_body(&m)),
        GroupError::Kafka(e) => axum::response::IntoResponse::into_response(kafka_down(e)),
        GroupError::NotRestored { .. } => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, message_body(&e.to_string()))
        }
    }
}

async fn alter_offsets(State(state): State<AppState>, Path(group): Path<String>, body: Bytes) -> Response {
    let offsets: Vec<GroupOffset> = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, message_body(&e.to_string())),
    };
    match state.kafka.alter_group_offsets(&group, offsets).await {
        Ok(all) => pretty(&all),
        Err(e) => group_error(e),
    }
}

/// The reference's path: the topic segment is not used to filter (as in the reference).
async fn alter_offsets_of(
    state: State<AppState>,
    Path((group, _topic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    alter_offsets(state, Path(group), body).await
}

async fn delete_offsets(State(state): State<AppState>, Path((group, topic)): Path<(String, String)>) -> Response {
    match state.kafka.delete_group_offsets(&group, Some(&topic)).await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => group_error(e),
    }
}

/// `DELETE .../offsets` (the reference's docs): every committed offset of the group.
async fn delete_all_offsets(State(state): State<AppState>, Path(group): Path<String>) -> Response {
    match state.kafka.delete_group_offsets(&group, None).await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => group_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces2_matches_circe() {
        let v = serde_json::json!({"id": 0, "rack": null, "list": [1]});
        assert_eq!(spaces2(&v), "{\n  \"id\" : 0,\n  \"list\" : [\n    1\n  ],\n  \"rack\" : null\n}");
    }
}
