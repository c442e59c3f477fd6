//! The opening of a grouped consume socket, shared by `/socket/out` and `/sse/out`
//! ([`open_consumer`]): origin, admission, credentials, the topics, the session slot, the
//! consumer (with its error mapping) and its [`ConsumeSettings`].
//!
//! A `resumable=true` socket gets a `resumeToken`; a reconnect that brings one
//! (`resumeToken=...`) takes the consumer its dropped socket left parked instead of joining
//! the session and making a consumer ([`crate::pipeline::resume`]): a token that names no
//! parked session of this client is a 400.

use std::future::Future;

use axum::extract::ws::WebSocket;
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;
use wsproxy_protocol::params::ConsumerParams;
use wsproxy_protocol::SocketCodec;

use super::{
    admit, check_origin, join, max_sent_frame_bytes, partitions_read, probe_error, registry_for, socket_credentials,
    Watched,
};
use crate::auth::oidc::Authenticated;
use crate::http::admission::Slot;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::kafka::credentials::KafkaCredentials;
use crate::kafka::{ConsumerError, SocketConsumer};
use crate::pipeline::close::StopReason;
use crate::pipeline::consume::{self, ConsumeSettings};
use crate::pipeline::resume::{Binding, Resume};
use crate::sessions::{Instance, Kind, SessionGuard};
use crate::telemetry::metrics::SocketIdentity;

/// A consumer that passed every check, ready for [`consume::run`].
pub(crate) struct OpenConsumer {
    pub(crate) consumer: SocketConsumer,
    pub(crate) settings: ConsumeSettings,
    /// The socket's place in its session (`None` when [`resume`](Self::resume) holds it).
    pub(crate) session: Option<SessionGuard>,
    pub(crate) slot: Slot,
    /// A resumable socket's token and binding (and its session slot).
    pub(crate) resume: Option<Resume>,
    /// The socket's stop (server shutdown, a revoked token, a reconnect that takes it over).
    pub(crate) stop: CancellationToken,
}

/// Every check a grouped consume socket (or event stream, `what` says which in error texts)
/// passes before it opens, then its consumer and settings. `prepare` runs once the session
/// slot is held and before the consumer is made (an event stream's rewind).
pub(crate) async fn open_consumer(
    state: &AppState,
    remote: std::net::SocketAddr,
    p: &ConsumerParams,
    headers: &HeaderMap,
    auth: Option<&Authenticated>,
    what: &str,
    prepare: impl Future<Output = ()>,
) -> Result<OpenConsumer, ApiError> {
    check_origin(state, headers)?;
    let slot = admit(state, remote)?;
    let creds = socket_credentials(state, headers, auth)?;
    let settings = consume_settings(state, p, remote);
    let binding = p.resumable.then(|| binding(state, p, auth, creds.clone()));
    let stop = state.shutdown.child_token();
    if let (Some(token), Some(binding)) = (&p.resume_token, &binding) {
        let parking = &state.parking;
        let parked = parking.take(token, binding).await.map_err(|r| ApiError::BadRequest(r.text(parking.window())))?;
        let resume = parking.open(binding.clone(), parked.session, Some(token.clone()), stop.clone());
        let consumer = parked.consumer;
        return Ok(OpenConsumer { consumer, settings, session: None, slot, resume: Some(resume), stop });
    }
    let partitions = partitions_read(state, &p.topics).await?;
    // At most one socket per partition (of all its topics): more would sit idle in the group.
    let limit = match state.limits.consumer_max_connections(&p.group_id) {
        0 => partitions,
        configured => configured.min(partitions),
    };
    let instance = Instance::consumer(&p.group_id, &p.client_id, &state.config.server.server_id);
    let session = join(state, Kind::Consumer, &p.group_id, instance, limit).await?;
    prepare.await;
    let consumer = state.kafka.consumer(p, creds.as_ref()).await.map_err(|e| match e {
        ConsumerError::Refused(refused) => probe_error(refused),
        ConsumerError::Kafka(e) => {
            tracing::warn!(error = %e, group = ?p.group_id, "could not create a consumer for the {what}");
            ApiError::Internal(format!(
                "An unexpected error occurred when trying to establish the {what} {} in session {}.",
                p.client_id, p.group_id
            ))
        }
    })?;
    let (session, resume) = match binding {
        Some(binding) => (None, Some(state.parking.open(binding, Some(session), None, stop.clone()))),
        None => (Some(session), None),
    };
    Ok(OpenConsumer { consumer, settings, session, slot, resume, stop })
}

/// Who may resume a session: the client's identity (the Basic user, the bearer token's
/// subject, or anonymous), its ids, what it reads, its commit mode and Kafka credentials.
fn binding(
    state: &AppState,
    p: &ConsumerParams,
    auth: Option<&Authenticated>,
    kafka: Option<KafkaCredentials>,
) -> Binding {
    let principal = match (auth, &state.basic_auth) {
        (Some(a), _) => format!("sub:{}", a.subject.as_deref().unwrap_or_default()),
        (None, Some(_)) => "basic".to_owned(),
        (None, None) => "anonymous".to_owned(),
    };
    Binding {
        principal,
        client_id: p.client_id.clone(),
        group_id: p.group_id.clone(),
        topic: p.topic.clone(),
        auto_commit: p.auto_commit,
        kafka,
    }
}

/// The settings of a grouped consume socket (an event stream refuses what it cannot do before).
fn consume_settings(state: &AppState, p: &ConsumerParams, remote: std::net::SocketAddr) -> ConsumeSettings {
    let cfg = &state.config;
    let batch = p.batch_size.unwrap_or(0) as usize;
    ConsumeSettings {
        topic: p.topic.clone(),
        topics: p.topics.clone(),
        codec: SocketCodec::new(p.socket_payload, p.key_type, p.val_type),
        registry: registry_for(state, p.key_type, p.val_type),
        pace: state.limits.consumer_pace_watch(&p.group_id, p.rate, batch.max(1)),
        batched: batch > 0,
        auto_commit: p.auto_commit,
        pull_max_credit: p.pull.then_some(cfg.consumer.max_credit),
        commit_stack_max_size: cfg.consumer.commit_stack_max_size,
        commit_max_age: cfg
            .consumer
            .commit_auto_enabled
            .then_some((cfg.consumer.commit_auto_interval, cfg.consumer.commit_auto_max_age)),
        keep_alive: cfg.socket.keep_alive,
        idle_timeout: cfg.socket.idle_timeout,
        max_frame_bytes: max_sent_frame_bytes(&cfg.socket),
        identity: SocketIdentity { client_id: p.client_id.clone(), group: Some(p.group_id.clone()), remote },
        stop_reason: StopReason::default(),
    }
}

/// Hands an upgraded `/socket/out` socket to its loop.
pub(super) async fn serve(socket: WebSocket, open: OpenConsumer, watch: Option<super::Watch>) {
    let OpenConsumer { consumer, settings, session, slot, resume, stop } = open;
    let watcher = watch.map(|w| tokio::spawn(w(stop.clone(), settings.stop_reason.clone())));
    let socket = Watched { socket, session, slot: Some(slot) };
    consume::run(socket, consumer, settings, stop, resume).await;
    watcher.inspect(tokio::task::JoinHandle::abort);
}
