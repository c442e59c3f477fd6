//! Wiring and lifecycle: the only place that builds the concrete Kafka clients and the router.
//!
//! Start: check Kafka is reachable (with retries), mark ready, bind, serve.
//! Stop (SIGTERM/SIGINT): stop accepting, tell sockets to close (1001 after they answered
//! what is in flight), wait for them up to the grace period, flush the producer, exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::basic::BasicAuth;
use crate::auth::oidc::Oidc;
use crate::config::Config;
use crate::http::{router, server, tls, AppState};
use crate::kafka::config_log::ConfigLog;
use crate::kafka::state_log::StateLogSettings;
use crate::kafka::Kafka;
use crate::limits::ClientLimits;
use crate::schema_registry::{register_wrapper_schemas, SchemaRegistry};
use crate::sessions::{node_group, SessionSettings, Sessions};
use crate::telemetry::metrics;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the Kafka clients: {0}")]
    Kafka(#[from] crate::kafka::ClientError),
    #[error("Kafka at {bootstrap} is not reachable after {attempts} attempts: {last}")]
    Unreachable { bootstrap: String, attempts: u32, last: String },
    #[error("Kafka at {bootstrap} refused the proxy's credentials (security.protocol {protocol}, sasl.mechanism {mechanism}); check WSPROXY_KAFKA_SASL_JAAS_CFG (OAUTHBEARER: also WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS)")]
    Credentials { bootstrap: String, protocol: String, mechanism: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Oidc(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the session state topic cannot be used: {0}")]
    Sessions(String),
    #[error("dynamic configs: {0}")]
    DynamicConfigs(String),
    #[error("{0}")]
    OAuthBearer(String),
}

/// A started proxy: its address and a handle to stop it.
pub struct Running {
    /// The plain listener, or the TLS one with `WSPROXY_SSL_ONLY`.
    pub addr: SocketAddr,
    /// The TLS listener, when enabled.
    pub tls_addr: Option<SocketAddr>,
    /// The admin API listener, when enabled.
    pub admin_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Waits until the proxy has stopped.
    pub async fn wait(self) -> Result<(), StartError> {
        self.task.await.expect("the server task never panics")
    }
}

/// Starts the proxy: reaches Kafka, binds the listener and serves in a background task.
pub async fn start(config: Config) -> Result<Running, StartError> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let config = Arc::new(config);
    if config.metrics_enabled {
        metrics::install(config.metrics_max_topic_labels);
        for (store, certs) in config.certificates() {
            metrics::certificate_expiry(store, certs);
        }
    }
    let oidc = match &config.server.openid {
        None => None,
        Some(o) => {
            let provider = Arc::new(Oidc::new(o.clone()).map_err(StartError::Oidc)?);
            provider.start().await;
            Some(provider)
        }
    };
    let shutdown = CancellationToken::new();
    let proxy_token = match &config.kafka.oauthbearer {
        None => None,
        Some(o) => Some(
            crate::kafka::oauth::start_client_credentials(
                o.clone(),
                Duration::from_millis(u64::from(config.kafka.request_timeout_ms)),
                config.kafka.broker_resolution_retries,
                config.kafka.broker_resolution_retry_interval,
                shutdown.clone(),
            )
            .await
            .map_err(StartError::OAuthBearer)?,
        ),
    };
    let kafka = Kafka::with_token(&config, proxy_token)?;
    wait_for_kafka(&kafka, &config).await?;
    let limits = ClientLimits::new(config.limits.clone());
    let config_log = match &config.dynamic_config {
        None => None,
        Some(d) => Some(
            ConfigLog::start(&kafka, d, &config.server.server_id, limits.clone(), shutdown.clone())
                .await
                .map_err(StartError::DynamicConfigs)?,
        ),
    };
    let sessions = open_sessions(&kafka, &config).await?;

    let tls = match &config.server.tls {
        None => None,
        Some(t) => {
            let server = tls::server_config(&t.identity).map_err(StartError::Tls)?;
            let addr = SocketAddr::new(t.bind_interface, t.port);
            let tcp =
                server::bind(addr, config.server.listen_backlog).map_err(|source| StartError::Bind { addr, source })?;
            Some(tls::TlsListener::new(tcp, server).map_err(StartError::Serve)?)
        }
    };
    let tls_addr = tls.as_ref().map(axum::serve::Listener::local_addr).transpose().map_err(StartError::Serve)?;
    let listener = if config.server.tls.as_ref().is_some_and(|t| t.only) {
        None
    } else {
        let addr = SocketAddr::new(config.server.bind_interface, config.server.port);
        Some(server::bind(addr, config.server.listen_backlog).map_err(|source| StartError::Bind { addr, source })?)
    };
    let addr = match &listener {
        Some(l) => l.local_addr().map_err(StartError::Serve)?,
        None => tls_addr.expect("TLS-only has a TLS listener"),
    };
    let admin = match &config.server.admin {
        None => None,
        Some(a) => {
            let addr = SocketAddr::new(a.bind_interface, a.port);
            let tcp =
                server::bind(addr, config.server.listen_backlog).map_err(|source| StartError::Bind { addr, source })?;
            Some(match &config.server.tls {
                None => AdminListener::Plain(tls::PlainListener(tcp)),
                Some(t) => {
                    let server = tls::server_config(&t.identity).map_err(StartError::Tls)?;
                    AdminListener::Tls(tls::TlsListener::new(tcp, server).map_err(StartError::Serve)?)
                }
            })
        }
    };
    let admin_addr = admin.as_ref().map(AdminListener::local_addr).transpose().map_err(StartError::Serve)?;
    let sockets = TaskTracker::new();
    let parking = crate::pipeline::resume::Parking::new(
        config.consumer.resume_window,
        config.consumer.resume_max_parked,
        shutdown.clone(),
        sockets.clone(),
    );
    let handover = start_handover(&kafka, &config, parking.clone(), shutdown.clone(), sockets.clone()).await;
    let state = AppState {
        config: config.clone(),
        kafka: kafka.clone(),
        shutdown: shutdown.clone(),
        sockets: sockets.clone(),
        // Without dynamic configs everything is loaded already; with them, sockets and /ready
        // wait until the topic has been read (below).
        started: Arc::new(AtomicBool::new(config_log.is_none())),
        admission: crate::http::admission::Admission::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
        ),
        sessions: sessions.clone(),
        oidc,
        basic_auth: config.server.basic_auth.as_ref().map(|b| {
            Arc::new(BasicAuth { realm: b.realm.clone(), username: b.username.clone(), password: b.password.clone() })
        }),
        limits,
        config_log: config_log.clone(),
        registry: config.schema_registry.as_ref().map(|r| Arc::new(SchemaRegistry::new(r))),
        fanout: crate::pipeline::fanout::Hubs::new(&config, shutdown.clone()),
        parking: parking.clone(),
        handover,
    };
    if let (Some(registry), Some(cfg)) = (&state.registry, &config.schema_registry) {
        if cfg.auto_register {
            // In the background: a registry that is down must not delay the start.
            let registry = registry.clone();
            tokio::spawn(async move { register_wrapper_schemas(&registry).await });
        }
    }
    sessions.spawn_sweeper(shutdown.clone());
    let app = router(state.clone());
    let admin_app = crate::http::admin::router(state.clone());
    let (started, limits) = (state.started.clone(), state.limits.clone());
    let stop = shutdown.clone();
    let upkeep_stop = shutdown.clone();
    tokio::spawn(async move {
        // Folds histogram samples into buckets so memory stays flat between scrapes.
        let mut every = tokio::time::interval(Duration::from_secs(5));
        while tokio::select! { _ = every.tick() => true, _ = upkeep_stop.cancelled() => false } {
            metrics::upkeep();
        }
    });
    let timeout = config.server.header_read_timeout;
    let task = tokio::spawn(async move {
        let plain =
            listener.map(|l| tokio::spawn(server::serve(tls::PlainListener(l), app.clone(), timeout, stop.clone())));
        let secure = tls.map(|l| tokio::spawn(server::serve(l, app.clone(), timeout, stop.clone())));
        let admin = admin.map(|l| match l {
            AdminListener::Plain(l) => tokio::spawn(server::serve(l, admin_app, timeout, stop.clone())),
            AdminListener::Tls(l) => tokio::spawn(server::serve(l, admin_app, timeout, stop.clone())),
        });
        for handle in [plain, secure, admin].into_iter().flatten() {
            let _ = handle.await;
        }
        drain(&state, &kafka).await;
        Ok(())
    });
    tracing::info!(%addr, tls = ?tls_addr, admin = ?admin_addr, server_id = %config.server.server_id, bootstrap = %config.kafka.bootstrap_hosts, "listening");
    // Ready (`/ready` 200) only once the internal state is loaded.
    if let (Some(log), Some(d)) = (&config_log, &config.dynamic_config) {
        let patience = d.init_timeout * d.init_retries.max(1);
        if let Err(e) = log.wait_loaded(patience).await {
            shutdown.cancel();
            return Err(StartError::DynamicConfigs(e));
        }
        tracing::info!(topic = %d.topic, configs = limits.dynamic_keys().len(), "dynamic configs loaded");
    }
    started.store(true, Ordering::Release);
    Ok(Running { addr, tls_addr, admin_addr, shutdown, task })
}

/// The admin listener: HTTPS when the main listener has TLS.
enum AdminListener {
    Plain(tls::PlainListener),
    Tls(tls::TlsListener),
}

impl AdminListener {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            AdminListener::Plain(l) => axum::serve::Listener::local_addr(l),
            AdminListener::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }
}

/// Waits for open sockets to close (they answer in-flight records first), then flushes.
async fn drain(state: &AppState, kafka: &Kafka) {
    let grace = state.config.server.shutdown_grace;
    state.sockets.close();
    if tokio::time::timeout(grace, state.sockets.wait()).await.is_err() {
        tracing::warn!(open = state.sockets.len(), "sockets still open after the grace period; closing anyway");
    }
    state.sessions.close(Duration::from_secs(5)).await;
    if let Some(h) = &state.handover {
        h.close().await;
    }
    kafka.flush(Duration::from_secs(5)).await;
    tracing::info!("stopped");
}

/// Creates the resume topic (as the session state topic is created) and starts tailing it.
/// A node that cannot (Kafka ACLs that cover the session state topic only, say) runs without
/// cross-node resume: sessions resume on the node that holds them, and an unknown token is
/// refused at once.
async fn start_handover(
    kafka: &Kafka,
    config: &Config,
    parking: crate::pipeline::resume::Parking,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Option<crate::pipeline::handover::Handover> {
    let s = &config.sessions;
    let topic = crate::config::InternalTopicConfig {
        topic: config.consumer.resume_topic.clone(),
        replication_factor: s.replication_factor,
        // The requester tombstones its keys; what a failed or lost tombstone leaves (every
        // key is unique) is deleted after this (`compact,delete`): a request lives seconds.
        retention: Duration::from_secs(3600),
        init_timeout: s.init_timeout,
        // Kafka is reachable (the session state was loaded): a failure here is the topic's,
        // and retrying would only delay the start of a node that can run without it.
        init_retries: 1,
        retry_interval: s.init_retry_interval,
    };
    let server_id = &config.server.server_id;
    match crate::kafka::resume_log::ResumeLog::open(kafka, &topic, server_id, tracker.clone(), shutdown.clone()).await {
        Ok((log, requests)) => {
            let waits = (config.consumer.resume_handover_timeout, config.socket.idle_timeout);
            Some(crate::pipeline::handover::Handover::start(log, requests, parking, waits, shutdown, tracker))
        }
        Err(e) => {
            tracing::warn!(
                topic = %topic.topic,
                error = %e,
                "the resume topic cannot be used: running without cross-node resume (resumable sessions resume on the node that holds them only)"
            );
            None
        }
    }
}

/// Loads the shared session state (and frees this node's leftovers) before serving.
async fn open_sessions(kafka: &Kafka, config: &Config) -> Result<Sessions, StartError> {
    let s = &config.sessions;
    let settings = SessionSettings {
        server_id: config.server.server_id.clone(),
        node_timeout: s.node_timeout,
        log: StateLogSettings {
            topic: s.topic.clone(),
            replication_factor: s.replication_factor,
            retention_ms: s.retention.as_millis().try_into().unwrap_or(i64::MAX),
            group_id: node_group(&config.server.server_id),
            group_instance_id: config.server.server_id.clone(),
            session_timeout_ms: s.node_timeout.as_millis().try_into().unwrap_or(u32::MAX),
            load_timeout: s.init_timeout,
            init_retries: s.init_retries,
            init_retry_interval: s.init_retry_interval,
        },
    };
    Sessions::open(kafka, settings).await.map_err(|e| StartError::Sessions(e.to_string()))
}

async fn wait_for_kafka(kafka: &Kafka, config: &Config) -> Result<(), StartError> {
    let attempts = config.kafka.broker_resolution_retries.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match kafka.brokers(Duration::from_secs(5)).await {
            Ok(b) if !b.is_empty() => {
                tracing::info!(brokers = b.len(), "Kafka is reachable");
                return Ok(());
            }
            Ok(_) => last = "no brokers in the metadata".to_owned(),
            Err(e) if e.is_authentication() || kafka.credentials_refused_for().is_some() => {
                return Err(StartError::Credentials {
                    bootstrap: config.kafka.bootstrap_hosts.clone(),
                    protocol: config.kafka.security_protocol.clone(),
                    mechanism: config.kafka.sasl_mechanism.clone().unwrap_or_else(|| "none".to_owned()),
                });
            }
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, attempts, error = %last, "Kafka is not reachable yet");
        if attempt < attempts {
            tokio::time::sleep(config.kafka.broker_resolution_retry_interval).await;
        }
    }
    Err(StartError::Unreachable { bootstrap: config.kafka.bootstrap_hosts.clone(), attempts, last })
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler never fails");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
