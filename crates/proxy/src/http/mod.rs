//! HTTP surface of the main listener: routes, the WebSocket upgrades, and status endpoints.
//!
//! Everything that can be refused is refused before the upgrade, with a JSON body
//! ([`error::ApiError`]); after the upgrade the socket belongs to a [`crate::pipeline`] loop.

pub mod admin;
pub mod admission;
mod bridge;
pub mod console;
mod cors;
pub mod error;
mod post;
mod schemas;
pub mod server;
mod sockets;
mod sse;
pub mod tls;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::basic::{BasicAuth, BasicAuthError};
use crate::auth::oidc::{self, Oidc, OidcError};
use crate::config::Config;
use crate::http::error::{json_response, message_body, ApiError};
use crate::kafka::Kafka;
use crate::telemetry::metrics;

/// The remote address of a connection, on the plain and the TLS listener alike.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub kafka: Kafka,
    /// Cancelled when the server starts shutting down; sockets close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks socket tasks so that shutdown can wait for them to drain.
    pub sockets: TaskTracker,
    /// Set once start-up finished (Kafka reached, internal state loaded).
    pub started: Arc<AtomicBool>,
    /// Basic authentication of clients, when configured.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// OpenID Connect bearer tokens, when configured (never together with Basic).
    pub oidc: Option<Arc<Oidc>>,
    /// Node-wide and per-IP socket limits.
    pub admission: admission::Admission,
    /// Socket limits per consumer group and producer client, shared by all nodes.
    pub sessions: crate::sessions::Sessions,
    /// Client-specific limits, static and dynamic (sessions and produce sockets read them).
    pub limits: crate::limits::ClientLimits,
    /// The dynamic config topic's reader and writer, when dynamic configs are enabled.
    pub config_log: Option<crate::kafka::config_log::ConfigLog>,
    /// Checks `avro` keys and values, when `WSPROXY_SCHEMA_REGISTRY_URL` is set.
    pub registry: Option<Arc<crate::schema_registry::SchemaRegistry>>,
    /// The shared consumers of fan-out sockets (`fanOut=true`).
    pub fanout: crate::pipeline::fanout::Hubs,
    /// The consumers of dropped `resumable=true` sockets, parked for a reconnect.
    pub parking: crate::pipeline::resume::Parking,
    /// Resume on another node (`_wsproxy.resume`); `None` in tests of the HTTP edge.
    pub handover: Option<crate::pipeline::handover::Handover>,
}

/// Builds the main router. Tests call it directly.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new();
    if state.config.server.echo_enabled {
        routes = routes.route("/socket/echo", get(sockets::echo));
    }
    if state.config.server.console_enabled {
        routes = routes.merge(console::routes());
    }
    routes
        .route("/healthcheck", get(healthcheck))
        .route("/ready", get(ready))
        .route("/kafka/cluster/info", get(cluster_info))
        .route("/metrics", get(prometheus))
        .route("/socket/in", get(sockets::produce))
        .route("/socket/out", get(sockets::consume))
        .route("/http/in", post(post::produce).fallback(|| async { ApiError::MethodNotAllowed("POST") }))
        .route("/sse/out", get(sse::consume))
        .merge(schemas::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_auth))
        // Outside authentication: preflights carry no credentials, and refusals need CORS too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Basic authentication or a bearer token on every route, except the probes when
/// `WSPROXY_SECURE_HEALTHCHECK_ENDPOINT=false`. A valid token travels to the socket handlers as
/// an [`oidc::Authenticated`] request extension.
async fn require_auth(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let probe = matches!(req.uri().path(), "/healthcheck" | "/ready");
    if probe && !state.config.server.secure_healthcheck {
        return next.run(req).await;
    }
    // With OIDC the browser cannot send a token when it loads the console's static page; the
    // page sends one (as `access_token`) on the sockets it opens.
    let console_page = req.uri().path() == "/console" || req.uri().path().starts_with("/console/");
    if console_page && state.oidc.is_some() && state.config.server.console_enabled {
        return next.run(req).await;
    }
    if let Some(provider) = &state.oidc {
        let result = match oidc::bearer_token(req.headers(), req.uri().query()) {
            None => Err(OidcError::Missing),
            Some(token) => provider.authenticate(&token).await,
        };
        return match result {
            Ok(auth) => {
                req.extensions_mut().insert(auth);
                next.run(req).await
            }
            Err(e) => {
                metrics::auth_failure(match e {
                    OidcError::Unavailable(_) => "oidc_unavailable",
                    OidcError::Missing => "bearer_missing",
                    OidcError::Invalid(_) | OidcError::Expired => "bearer_invalid",
                });
                ApiError::from(provider.refusal(&e)).into_response()
            }
        };
    }
    let Some(auth) = &state.basic_auth else { return next.run(req).await };
    match auth.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            metrics::auth_failure(match e {
                BasicAuthError::Missing => "basic_missing",
                BasicAuthError::Invalid => "basic_invalid",
            });
            ApiError::Unauthorized(auth.challenge(e)).into_response()
        }
    }
}

/// Counts requests by matched route (never the raw path) and status.
async fn count_requests(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let response = next.run(req).await;
    metrics::http_request(&route, response.status().as_u16());
    response
}

async fn prometheus() -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(),
    )
        .into_response()
}

async fn healthcheck() -> Response {
    json_response(StatusCode::OK, "{ \"response\": \"I'm healthy\" }".to_owned())
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, message_body("The proxy is shutting down."));
    }
    if !state.started.load(Ordering::Acquire) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, message_body("The proxy is starting."));
    }
    match state.kafka.brokers(Duration::from_secs(2)).await {
        Ok(b) if !b.is_empty() => json_response(StatusCode::OK, "{ \"response\": \"ready\" }".to_owned()),
        Ok(_) => json_response(StatusCode::SERVICE_UNAVAILABLE, message_body("Kafka has no brokers available.")),
        // H2: say why, so that the orchestrator and the operator see it.
        Err(_) if state.kafka.credentials_refused_for().is_some() => {
            let since = state.kafka.credentials_refused_for().unwrap_or_default().as_secs();
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                message_body(&format!(
                    "Kafka refuses the proxy's credentials (for {since} s); check WSPROXY_KAFKA_SASL_JAAS_CFG."
                )),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: Kafka is not reachable");
            json_response(StatusCode::SERVICE_UNAVAILABLE, message_body("Kafka is not reachable."))
        }
    }
}

async fn cluster_info(State(state): State<AppState>) -> Result<Response, ApiError> {
    let brokers = state.kafka.brokers(Duration::from_secs(10)).await.map_err(|e| {
        tracing::warn!(error = %e, "cluster info: Kafka is not reachable");
        ApiError::KafkaUnavailable("Kafka is not reachable.".to_owned())
    })?;
    Ok(Json(brokers).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("GET")
}
