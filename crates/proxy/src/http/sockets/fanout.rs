//! `GET /socket/out?…&fanOut=true` (issue 18): the checks of a consume socket that make sense
//! without a group (origin, connection limits, credentials, topic), the fan-out cap, then a
//! subscription at the live end of the node's shared consumer, taken before the 101.
//! No session slot: there is no group.

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use wsproxy_protocol::fanout::FanOutParams;
use wsproxy_protocol::params::Isolation;
use wsproxy_protocol::SocketCodec;

use super::{
    admit, check_origin, configure, ensure_topic, probe_error, registry_for, revalidation, socket_credentials, Watched,
};
use crate::auth::oidc::Authenticated;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::kafka::ConsumerError;
use crate::pipeline::close::StopReason;
use crate::pipeline::fanout::{self, FanOutSettings, HubKey};
use crate::telemetry::metrics::{self, SocketIdentity};

/// Opens a fan-out socket with validated parameters.
pub(super) async fn open(
    state: AppState,
    remote: std::net::SocketAddr,
    headers: HeaderMap,
    auth: Option<Authenticated>,
    ws: Result<WebSocketUpgrade, ApiError>,
    p: FanOutParams,
) -> Result<Response, ApiError> {
    let ws = ws?;
    check_origin(&state, &headers)?;
    if registry_for(&state, p.key_type, p.val_type).is_some() {
        // The registry check of grouped sockets holds a record until the registry answers;
        // a shared reader cannot hold every socket for one format.
        return Err(ApiError::BadRequest(
            "keyType=avro and valType=avro are not supported with fanOut=true when a schema registry is configured; use a socket without fanOut."
                .to_owned(),
        ));
    }
    let slot = admit(&state, remote)?;
    let fan_slot = state.fanout.admit().map_err(|cap| {
        metrics::connection_refused("fanout_limit");
        ApiError::Overloaded(format!("The proxy has reached its limit of {cap} fan-out sockets. Try again later."))
    })?;
    let creds = socket_credentials(&state, &headers, auth.as_ref())?;
    ensure_topic(&state, &p.topic).await?;
    let codec = SocketCodec::new(p.socket_payload, p.key_type, p.val_type);
    let key = HubKey { topic: p.topic.clone(), creds, read_committed: p.isolation == Isolation::ReadCommitted };
    let sub = state.fanout.subscribe(&state.kafka, key, codec).await.map_err(|e| match e {
        ConsumerError::Refused(refused) => probe_error(refused),
        ConsumerError::Kafka(e) => {
            tracing::warn!(error = %e, topic = %p.topic, "could not create a shared fan-out consumer");
            ApiError::Internal(format!(
                "An unexpected error occurred when trying to establish the WebSocket fan-out consumer {} on topic {}.",
                p.client_id, p.topic
            ))
        }
    })?;
    let cfg = &state.config;
    let settings = FanOutSettings {
        codec,
        batch_size: p.batch_size.unwrap_or(0) as usize,
        rate: p.rate.filter(|r| *r > 0),
        on_lag: p.on_lag,
        max_lag: (cfg.fanout.max_lag_records, cfg.fanout.max_lag_bytes),
        keep_alive: cfg.socket.keep_alive,
        idle_timeout: cfg.socket.idle_timeout,
        identity: SocketIdentity { client_id: p.client_id.clone(), group: None, remote },
        stop_reason: StopReason::default(),
    };
    let (stop, token) = (state.shutdown.child_token(), state.sockets.token());
    let watch = revalidation(&state, auth);
    Ok(configure(ws, &state).on_upgrade(move |socket: WebSocket| async move {
        let watcher = watch.map(|w| tokio::spawn(w(stop.clone(), settings.stop_reason.clone())));
        let socket = Watched { socket, session: None, slot: Some(slot) };
        fanout::run(socket, sub, settings, stop).await;
        watcher.inspect(tokio::task::JoinHandle::abort);
        drop((fan_slot, token));
    }))
}
