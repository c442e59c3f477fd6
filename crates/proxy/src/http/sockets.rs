//! The two WebSocket endpoints: validate, check the topic, prepare Kafka, then upgrade and
//! hand the socket to its pipeline loop.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use futures::{Sink, Stream};
use wsproxy_protocol::params::{self, ProducerRules, Query, TopicSelection};

use wsproxy_protocol::{FormatType, SocketCodec};

use crate::auth::kafka_credentials;
use crate::auth::oidc::{self, Authenticated};
use crate::auth::outcome::Revoked;
use crate::http::admission::{Refused, Slot};
use crate::http::error::ApiError;
use crate::http::{AppState, Peer};
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::oauth::BearerToken;
use crate::kafka::{ProbeError, ProducerHandle};
use crate::pipeline::close::{self, StopReason};
use crate::pipeline::{echo, produce};
use crate::schema_registry::SchemaRegistry;
use crate::sessions::{Instance, JoinError, Kind, Refusal, SessionGuard};
use crate::telemetry::metrics::{self, SocketIdentity};

pub(crate) mod consume;
mod fanout;

/// `GET /socket/in`.
pub async fn produce(
    State(state): State<AppState>,
    ConnectInfo(Peer(remote)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    auth: Option<Extension<Authenticated>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let p = producer_params(&state, query.as_deref())?;
    let ws = ws.map_err(|_| ApiError::NotAnUpgrade)?;
    let auth = auth.map(|Extension(a)| a);
    let open = open_producer(&state, remote, p, &headers, auth.as_ref()).await?;
    let (stop, token) = (state.shutdown.child_token(), state.sockets.token());
    let watch = revalidation(&state, auth);
    Ok(configure(ws, &state).on_upgrade(move |socket: WebSocket| async move {
        let OpenProducer { kafka, settings, session, slot } = open;
        let watcher = watch.map(|w| tokio::spawn(w(stop.clone(), settings.stop_reason.clone())));
        produce::run(Watched { socket, session, slot: Some(slot) }, kafka, settings, stop).await;
        watcher.inspect(tokio::task::JoinHandle::abort);
        drop(token);
    }))
}

/// The produce parameters of `/socket/in` (and `POST /http/in`), with the reference's texts.
pub(super) fn producer_params(state: &AppState, query: Option<&str>) -> Result<params::ProducerParams, ApiError> {
    let pairs = query_pairs(query)?;
    let rules = ProducerRules {
        sessions_enabled: state.config.producer.sessions_enabled,
        exactly_once_enabled: state.config.producer.exactly_once_enabled,
    };
    params::producer_params(&Query::new(&pairs), rules).map_err(|e| ApiError::BadRequest(e.0))
}

/// A producer that passed every check, ready for [`produce::run`].
pub(super) struct OpenProducer {
    pub(super) kafka: ProducerHandle,
    pub(super) settings: produce::ProduceSettings,
    /// Held while the records are in flight: the producer's place in its session, if any.
    pub(super) session: Option<SessionGuard>,
    /// Held while the records are in flight: the connection slot.
    pub(super) slot: Slot,
}

/// Every check a produce socket passes before it opens (origin, admission, credentials, the
/// topic, the session, Kafka's verdict on the credentials), then its producer and settings.
pub(super) async fn open_producer(
    state: &AppState,
    remote: std::net::SocketAddr,
    p: params::ProducerParams,
    headers: &HeaderMap,
    auth: Option<&Authenticated>,
) -> Result<OpenProducer, ApiError> {
    check_origin(state, headers)?;
    let slot = admit(state, remote)?;
    let creds = socket_credentials(state, headers, auth)?;
    ensure_topic(state, &p.topic).await?;
    let session = if state.config.producer.sessions_enabled {
        // A transactional client is one writer: a second socket would fence the first.
        let limit = if p.transactional { 1 } else { state.limits.producer_max_connections(&p.client_id) };
        let instance = Instance::producer(&p.client_id, p.instance_id.as_deref(), &state.config.server.server_id);
        Some(join(state, Kind::Producer, &p.client_id, instance, limit).await?)
    } else {
        None
    };
    if let Some(c) = &creds {
        // Credentials Kafka just refused: 401 without another Kafka client.
        state.kafka.refused_recently(c).map_err(probe_error)?;
    }
    let producer = if p.transactional {
        // Stable per client: the next socket of this client (on any node) fences this one and
        // aborts whatever transaction it left open.
        let id = format!("{}-{}", p.client_id, p.instance_id.as_deref().unwrap_or_default());
        state.kafka.transactional_producer(creds.as_ref(), &id).await.map_err(|e| {
            // Kafka refused the socket's own credentials: 401, as for other produce sockets.
            if let Some(refused) = creds.as_ref().and_then(|c| state.kafka.refused_recently(c).err()) {
                return probe_error(refused);
            }
            tracing::warn!(error = %e, transactional_id = %id, "could not initialise a transactional producer");
            ApiError::KafkaUnavailable(format!(
                "The transactional producer {id} could not be initialised in Kafka; the socket was not opened."
            ))
        })?
    } else {
        state.kafka.producer(creds.as_ref()).await.map_err(|e| {
            tracing::warn!(error = %e, "could not create a producer");
            ApiError::Internal(format!(
                "An unexpected error occurred when trying to establish the WebSocket producer {} in session {}.",
                p.client_id, p.client_id
            ))
        })?
    };
    if let Some(c) = &creds {
        state.kafka.probe(&producer, c, &p.topic).await.map_err(probe_error)?;
    }

    let cfg = &state.config;
    let settings = produce::ProduceSettings {
        topic: p.topic.clone(),
        codec: SocketCodec::new(p.socket_payload, p.key_type, p.val_type),
        registry: registry_for(state, p.key_type, p.val_type),
        max_in_flight_records: cfg.producer.max_in_flight_records,
        max_in_flight_bytes: cfg.producer.max_in_flight_bytes,
        max_frame_bytes: cfg.socket.max_frame_bytes,
        keep_alive: cfg.socket.keep_alive,
        idle_timeout: cfg.socket.idle_timeout,
        identity: SocketIdentity { client_id: p.client_id.clone(), group: None, remote },
        transactional: p.transactional,
        limits: state.limits.clone(),
        stop_reason: StopReason::default(),
    };
    Ok(OpenProducer { kafka: producer, settings, session, slot })
}

/// `GET /socket/out`.
pub async fn consume(
    State(state): State<AppState>,
    ConnectInfo(Peer(remote)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    auth: Option<Extension<Authenticated>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    if let Some(p) = params::fanout::fan_out_params(&Query::new(&pairs)).map_err(|e| ApiError::BadRequest(e.0))? {
        let ws = ws.map_err(|_| ApiError::NotAnUpgrade);
        return fanout::open(state, remote, headers, auth.map(|Extension(a)| a), ws, p).await;
    }
    let p = params::consumer_params(&Query::new(&pairs)).map_err(|e| ApiError::BadRequest(e.0))?;
    // Before anything is taken (a resume token among them).
    let ws = ws.map_err(|_| ApiError::NotAnUpgrade)?;
    let auth = auth.map(|Extension(a)| a);
    let ready = std::future::ready(());
    let open = consume::open_consumer(&state, remote, &p, &headers, auth.as_ref(), "WebSocket consumer", ready).await?;
    let token = state.sockets.token();
    let watch = revalidation(&state, auth);
    Ok(configure(ws, &state).on_upgrade(move |socket: WebSocket| async move {
        consume::serve(socket, open, watch).await;
        drop(token);
    }))
}

/// Takes the socket's place in its session (shared by all nodes), or says why not.
pub(super) async fn join(
    state: &AppState,
    kind: Kind,
    session_id: &str,
    instance: Instance,
    limit: u32,
) -> Result<SessionGuard, ApiError> {
    state.sessions.join(kind, session_id, instance, limit).await.map_err(|e| match e {
        JoinError::Refused(Refusal::Full { session_id, limit }) => {
            metrics::connection_refused("session_limit");
            ApiError::BadRequest(format!(
                "The max number of WebSockets for session {session_id} has been reached. Limit is {limit}"
            ))
        }
        JoinError::Refused(Refusal::Duplicate(Instance::ConsumerInstance { id, .. })) => {
            metrics::connection_refused("session_duplicate");
            ApiError::BadRequest(format!(
                "WebSocket for consumer {} in session {} not established because a consumer with the same ID is already registered.",
                id.client_id, id.group_id
            ))
        }
        JoinError::Refused(Refusal::Duplicate(Instance::ProducerInstance { id, .. })) => {
            metrics::connection_refused("session_duplicate");
            ApiError::BadRequest(format!(
                "WebSocket for producer {} with instanceId {} not established because a producer with the same ID is already registered.",
                id.producer_id,
                id.instance_id.as_deref().unwrap_or("")
            ))
        }
        JoinError::Refused(Refusal::OtherKind { session_id, existing }) => {
            metrics::connection_refused("session_id_in_use");
            let (this, other) = match existing {
                Kind::Consumer => ("producer clientId", "consumer groupId"),
                Kind::Producer => ("consumer groupId", "producer clientId"),
            };
            ApiError::BadRequest(format!(
                "The {this} {session_id} is already in use as a {other}; sessions of both share one namespace, so choose another id."
            ))
        }
        JoinError::Unavailable(reason) => {
            tracing::warn!(session = session_id, %reason, "session state unavailable");
            ApiError::KafkaUnavailable(
                "The session state in Kafka could not be updated; the socket was not opened. Try again.".to_owned(),
            )
        }
    })
}

/// The socket's Kafka credentials: from the token's claims when `WSPROXY_JWT_KAFKA_*_KEY` are
/// set (falling back to `X-Kafka-Auth` unless `WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY`; a token
/// with neither is refused with 401), else from `X-Kafka-Auth`.
pub(super) fn socket_credentials(
    state: &AppState,
    headers: &HeaderMap,
    auth: Option<&Authenticated>,
) -> Result<Option<KafkaCredentials>, ApiError> {
    let from_header = || kafka_credentials::from_headers(headers).map_err(ApiError::BadRequest);
    if let Some(provider) = state.oidc.as_ref().filter(|o| o.config().kafka_oauthbearer) {
        return bearer_credentials(state, provider, auth).map(Some);
    }
    let Some(provider) = state.oidc.as_ref().filter(|o| o.config().kafka_claims.is_some()) else {
        return from_header();
    };
    if let Some(creds) = auth.and_then(|a| a.kafka.clone()) {
        return Ok(Some(creds));
    }
    if !provider.config().kafka_token_auth_only {
        if let Some(creds) = from_header()? {
            return Ok(Some(creds));
        }
    }
    metrics::auth_failure("bearer_without_kafka_credentials");
    Err(ApiError::Unauthorized(provider.invalid()))
}

/// `WSPROXY_JWT_KAFKA_OAUTHBEARER`: the socket authenticates to Kafka with the bearer token it
/// connected with, as the token's subject (a token without `sub` is refused with 401).
fn bearer_credentials(
    state: &AppState,
    provider: &oidc::Oidc,
    auth: Option<&Authenticated>,
) -> Result<KafkaCredentials, ApiError> {
    let Some((auth, subject)) = auth.and_then(|a| Some((a, a.subject.as_deref().filter(|s| !s.is_empty())?))) else {
        metrics::auth_failure("bearer_without_subject");
        return Err(ApiError::Unauthorized(provider.invalid()));
    };
    let expires_ms = auth.expires.map_or(i64::MAX, |e| (e as i64).saturating_mul(1000));
    let token = BearerToken { token: auth.token.0.clone(), principal: subject.to_owned(), expires_ms };
    Ok(state.kafka.bearer_credentials(subject, token))
}

pub(super) type Watch =
    Box<dyn FnOnce(tokio_util::sync::CancellationToken, StopReason) -> futures::future::BoxFuture<'static, ()> + Send>;

/// The revalidation of a token-authenticated socket, started once the socket is upgraded: a
/// token that no longer holds stops the socket with [`revoked_close`]'s frame.
pub(super) fn revalidation(state: &AppState, auth: Option<Authenticated>) -> Option<Watch> {
    let (provider, auth) = (state.oidc.clone()?, auth?);
    Some(Box::new(move |stop, reason| {
        Box::pin(async move {
            if let Some(revoked) = oidc::watch(provider, auth, stop.clone()).await {
                reason.set(revoked_close(&revoked));
                stop.cancel();
            }
        })
    }))
}

/// The close frame of a socket whose token no longer holds: 1008 (policy) when the token is
/// expired or invalid, 1011 when the provider stayed unreachable.
fn revoked_close(revoked: &Revoked) -> axum::extract::ws::CloseFrame {
    match revoked {
        Revoked::Expired { .. } | Revoked::Invalid(_) => close::policy_violation(&revoked.to_string()),
        Revoked::ProviderDown => close::provider_unavailable(),
    }
}

/// The schema registry, for sockets whose key or value type is `avro`.
pub(super) fn registry_for(
    state: &AppState,
    key: Option<FormatType>,
    value: FormatType,
) -> Option<Arc<SchemaRegistry>> {
    (key == Some(FormatType::Avro) || value == FormatType::Avro).then(|| state.registry.clone()).flatten()
}

/// `GET /socket/echo`, routed only with `WSPROXY_ECHO_ENABLED`: the real sockets' checks
/// (authentication runs as middleware), limits and codec settings, without Kafka.
pub async fn echo(
    State(state): State<AppState>,
    ConnectInfo(Peer(remote)): ConnectInfo<Peer>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| ApiError::NotAnUpgrade)?;
    check_origin(&state, &headers)?;
    let slot = admit(&state, remote)?;
    let s = &state.config.socket;
    let settings = echo::EchoSettings {
        max_frame_bytes: s.max_frame_bytes,
        keep_alive: s.keep_alive,
        idle_timeout: s.idle_timeout,
    };
    let (shutdown, token) = (state.shutdown.clone(), state.sockets.token());
    Ok(configure(ws, &state).on_upgrade(move |socket: WebSocket| async move {
        echo::run(socket, settings, shutdown).await;
        drop((slot, token));
    }))
}

/// Takes a connection slot or answers 503 with which limit was reached (or that the node is
/// still loading its dynamic configs: a socket opened then would miss its client's limits).
pub(super) fn admit(state: &AppState, remote: std::net::SocketAddr) -> Result<Slot, ApiError> {
    if !state.started.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::KafkaUnavailable(
            "The proxy is still loading its state from Kafka; try again in a moment.".to_owned(),
        ));
    }
    state.admission.admit(remote.ip()).map_err(|refused| {
        metrics::connection_refused(match refused {
            Refused::Total(_) => "node_limit",
            Refused::PerIp(..) => "per_ip_limit",
        });
        ApiError::Overloaded(match refused {
            Refused::Total(n) => format!("The proxy has reached its limit of {n} open sockets. Try again later."),
            Refused::PerIp(ip, n) => format!("The limit of {n} open sockets from {ip} has been reached."),
        })
    })
}

/// Cross-site WebSocket hijacking guard: with `WSPROXY_ALLOWED_ORIGINS` set, a browser's
/// `Origin` must match one entry exactly. Clients without an `Origin` (not browsers) pass.
/// A request with two `Origin` headers is refused (400) whatever the list: judging it by one
/// of them would let the other pass unchecked (RFC 6454 7.3: at most one).
pub(super) fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let allowed = &state.config.server.allowed_origins;
    let mut origins = headers.get_all(axum::http::header::ORIGIN).iter();
    let Some(origin) = origins.next() else { return Ok(()) };
    if origins.next().is_some() {
        metrics::auth_failure("origin_repeated");
        return Err(ApiError::BadRequest("A request may carry at most one Origin header.".to_owned()));
    }
    if allowed.is_empty() {
        return Ok(());
    }
    let origin = origin.to_str().unwrap_or_default();
    if allowed.iter().any(|a| a == origin) || crate::http::console::is_own_origin(&state.config, headers, origin) {
        Ok(())
    } else {
        metrics::auth_failure("origin_not_allowed");
        Err(ApiError::Forbidden(format!("Origin '{origin}' is not allowed to open sockets on this proxy.")))
    }
}

pub(super) fn probe_error(e: ProbeError) -> ApiError {
    match e {
        ProbeError::Unauthenticated(m) => {
            metrics::auth_failure("kafka_credentials_refused");
            ApiError::KafkaUnauthenticated(m)
        }
        ProbeError::Forbidden(m) => {
            metrics::auth_failure("kafka_topic_forbidden");
            ApiError::KafkaForbidden(m)
        }
        ProbeError::Unavailable(m) => {
            tracing::warn!(reason = %m, "Kafka did not answer the credential probe");
            ApiError::KafkaUnavailable("Kafka is not reachable with the socket's credentials.".to_owned())
        }
    }
}

/// The largest frame a socket can send (beyond a full write buffer); consume sockets answer
/// a record that renders larger with `RECORD_TOO_LARGE`.
pub(super) fn max_sent_frame_bytes(s: &crate::config::SocketConfig) -> usize {
    s.hard_max_frame_bytes.max(16 * 1024 * 1024)
}

/// Applies the configured WebSocket limits (tungstenite's defaults are unbounded).
fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let s = &state.config.socket;
    ws.read_buffer_size(s.read_buffer_bytes)
        .write_buffer_size(s.write_buffer_bytes)
        .max_write_buffer_size(s.write_buffer_bytes + max_sent_frame_bytes(s))
        .max_message_size(s.hard_max_frame_bytes)
        .max_frame_size(s.hard_max_frame_bytes)
}

pub(super) fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be parsed: {e}")))
}

/// The partitions a consume socket reads, over all its topics: each listed topic must exist
/// (the first missing one is named, in the reference's words); a pattern counts the topics it
/// matches now, and at least one (it may match none yet).
pub(super) async fn partitions_read(state: &AppState, topics: &TopicSelection) -> Result<u32, ApiError> {
    match topics {
        TopicSelection::Listed(topics) => {
            let mut partitions = 0;
            for topic in topics {
                partitions += ensure_topic(state, topic).await?;
            }
            Ok(u32::try_from(partitions).unwrap_or(u32::MAX))
        }
        TopicSelection::Pattern(_) => {
            let all = state.kafka.topics().await.map_err(|e| {
                tracing::warn!(error = %e, "topic listing failed");
                ApiError::KafkaUnavailable("Kafka is not reachable; the topics could not be listed.".to_owned())
            })?;
            let internal = [Some(&state.config.sessions.topic), state.config.dynamic_config.as_ref().map(|d| &d.topic)];
            let reads = topics.reader();
            let matching: usize =
                all.iter().filter(|(t, _)| reads(t) && !internal.contains(&Some(t))).map(|(_, n)| n).sum();
            Ok(u32::try_from(matching.max(1)).unwrap_or(u32::MAX))
        }
    }
}

pub(super) async fn ensure_topic(state: &AppState, topic: &str) -> Result<usize, ApiError> {
    // A topic created a moment ago may not be known to every broker yet (each applies the
    // cluster's metadata on its own): "does not exist" is asked again twice within a second.
    let mut answer = state.kafka.topic_partitions(topic).await;
    for wait in [250, 750] {
        if !matches!(answer, Ok(None)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        answer = state.kafka.topic_partitions(topic).await;
    }
    match answer {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(ApiError::TopicNotFound(topic.to_owned())),
        Err(e) => {
            tracing::warn!(error = %e, topic, "topic lookup failed");
            Err(ApiError::KafkaUnavailable("Kafka is not reachable; the topic could not be checked.".to_owned()))
        }
    }
}

/// A socket that holds its session slot and its connection slot. Once the client closes, the
/// session slot is marked as closing (a reconnect waits for it instead of being refused); both
/// are freed when the socket drops, at the end of its task: a produce socket still draining
/// its in-flight records counts against the connection limits (L2).
struct Watched {
    socket: WebSocket,
    session: Option<SessionGuard>,
    #[expect(dead_code, reason = "held for its Drop: the connection slot is freed when the task ends")]
    slot: Option<Slot>,
}

impl Stream for Watched {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.socket).poll_next(cx);
        if let Poll::Ready(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) = &item {
            if let Some(s) = self.session.as_mut() {
                s.closing();
            }
        }
        item
    }
}

impl Sink<Message> for Watched {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.socket).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_token_closes_with_1008_and_an_unreachable_provider_with_1011() {
        let expired = revoked_close(&Revoked::Expired { at: 1_800_000_000 });
        assert_eq!((expired.code, expired.reason.as_str()), (1008, "Bearer token is no longer valid: token expired"));
        let withdrawn = revoked_close(&Revoked::Invalid("signing key no longer published by the provider".into()));
        assert_eq!(withdrawn.code, 1008);
        assert!(withdrawn.reason.contains("no longer published"), "{}", withdrawn.reason);
        let down = revoked_close(&Revoked::ProviderDown);
        assert_eq!((down.code, down.reason.as_str()), (1011, "OpenID Connect server does not seem to be available."));
    }
}
