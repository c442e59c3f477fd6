//! The opening of a grouped consume socket, shared by `/socket/out` and `/sse/out`
//! ([`open_consumer`]): origin, admission, credentials, the topics, the session slot, the
//! consumer (with its error mapping) and its [`ConsumeSettings`].
//!
//! A `resumable=true` socket gets a `resumeToken`; a reconnect that brings one
//! (`resumeToken=...`) takes the consumer its dropped socket left parked instead of joining
//! the session and making a consumer ([`crate::pipeline::resume`]): a token that names no
//! parked session of this client is a 400. A token this node does not hold may be another
//! node's: that node is asked to hand the session over ([`crate::pipeline::handover`]), and
//! the socket then opens a fresh consumer in the group, which starts from its committed offsets.

use std::future::Future;
use std::time::Duration;

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
use crate::pipeline::handover::{AskError, Handover};
use crate::pipeline::resume::{Binding, Refusal, Resume};
use crate::sessions::{Instance, JoinError, Kind, Refusal as SessionRefusal, SessionGuard};
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
    // Whether another node handed this client's session over (its slot is being freed).
    let mut handed_over = false;
    if let (Some(token), Some(binding)) = (&p.resume_token, &binding) {
        let parking = &state.parking;
        let refused = |r: Refusal| ApiError::BadRequest(r.text(parking.window()));
        match (parking.take(token, binding).await, &state.handover) {
            (Ok(parked), _) => {
                let resume = parking.open(binding.clone(), parked.session, Some(token.clone()), stop.clone());
                let consumer = parked.consumer;
                return Ok(OpenConsumer { consumer, settings, session: None, slot, resume: Some(resume), stop });
            }
            (Err(Refusal::Unknown), Some(handover)) => handover.ask(token, binding).await.map_err(|e| match e {
                AskError::Refused(r) => refused(r),
                AskError::Unavailable => ApiError::KafkaUnavailable(
                    "Kafka is not reachable: the other nodes could not be asked for the session of 'resumeToken'. Try again, or open the socket without resumeToken.".to_owned(),
                ),
            })?,
            (Err(r), _) => return Err(refused(r)),
        }
        handed_over = true;
    }
    let partitions = partitions_read(state, &p.topics).await?;
    // At most one socket per partition (of all its topics): more would sit idle in the group.
    let limit = match state.limits.consumer_max_connections(&p.group_id) {
        0 => partitions,
        configured => configured.min(partitions),
    };
    let instance = Instance::consumer(&p.group_id, &p.client_id, &state.config.server.server_id);
    let session = match handed_over {
        true => join_handed_over(state, &p.group_id, instance, limit).await?,
        false => join(state, Kind::Consumer, &p.group_id, instance, limit).await?,
    };
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
        Some(binding) => {
            // Handed over: the token it came with names the new session until the client is
            // heard from (as on one node); the fresh consumer starts from the committed offsets.
            let predecessor = p.resume_token.clone().filter(|_| handed_over);
            let mut resume = state.parking.open(binding, Some(session), predecessor, stop.clone());
            resume.resumed = false;
            (None, Some(resume))
        }
        None => (Some(session), None),
    };
    Ok(OpenConsumer { consumer, settings, session, slot, resume, stop })
}

/// Joins the session of a consumer another node just handed over: that node freed its slot,
/// but the removal may not be in the session state yet, so a duplicate is tried again (within
/// the handover timeout) before it is refused.
async fn join_handed_over(
    state: &AppState,
    group: &str,
    instance: Instance,
    limit: u32,
) -> Result<SessionGuard, ApiError> {
    let wait = state.handover.as_ref().map_or(Duration::ZERO, Handover::wait);
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        match state.sessions.join(Kind::Consumer, group, instance.clone(), limit).await {
            Ok(session) => return Ok(session),
            Err(JoinError::Refused(SessionRefusal::Duplicate(_))) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => break,
        }
    }
    join(state, Kind::Consumer, group, instance, limit).await
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
