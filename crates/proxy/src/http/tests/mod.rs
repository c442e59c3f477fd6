//! In-process tests of the HTTP edge: requests go through the real routers with
//! `tower::ServiceExt::oneshot`, with no listener and no broker. They pin down what a client
//! sees before the upgrade (status, headers, body, byte for byte): parameter checks and the
//! reference's texts, authentication challenges, Origin refusals, admission limits, the admin
//! routes' validation. The Kafka clients point at an address where nothing listens and no test
//! here gets as far as asking Kafka; what needs the broker (a missing topic, a full session,
//! Kafka's own refusals) is in the integration tests (`crates/proxy/tests/`).
//!
//! `sockets.rs`: the main listener's routes and socket checks; `auth.rs`: Basic and OpenID
//! Connect (a provider served in-process); `admin.rs`: the admin API's validation.

mod admin;
mod auth;
mod fallback;
mod sockets;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::basic::BasicAuth;
use crate::auth::oidc::Oidc;
use crate::config::{Config, Overrides};
use crate::http::admission::Admission;
use crate::http::{AppState, Peer};
use crate::kafka::Kafka;
use crate::limits::ClientLimits;
use crate::sessions::Sessions;

/// Where the Kafka clients point: nothing listens there, and nothing is sent before a socket
/// asks for its topic, which no test here reaches.
const NO_KAFKA: &str = "127.0.0.1:1";

/// The client's address, as the listener would attach it.
const PEER: &str = "10.1.2.3:50000";

/// The proxy's state and routers, built as `crate::app::start` builds them, without Kafka.
struct Edge {
    state: AppState,
}

impl Edge {
    /// A proxy configured by `vars` (over the defaults), started (its state is loaded).
    fn new(vars: &[(&str, &str)]) -> Edge {
        let mut all: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        all.entry("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned()).or_insert_with(|| NO_KAFKA.to_owned());
        let config = Config::load(&all, &Overrides::default(), true).expect("a valid test configuration");
        let kafka = Kafka::new(&config).expect("Kafka clients are built without reaching Kafka");
        let sessions = Sessions::unopened(&kafka, &config.server.server_id);
        let oidc = config.server.openid.clone().map(|o| Arc::new(Oidc::new(o).expect("an OpenID Connect client")));
        let basic_auth = config.server.basic_auth.as_ref().map(|b| {
            Arc::new(BasicAuth { realm: b.realm.clone(), username: b.username.clone(), password: b.password.clone() })
        });
        let state = AppState {
            admission: Admission::new(config.server.max_connections, config.server.max_connections_per_ip),
            limits: ClientLimits::new(config.limits.clone()),
            fanout: crate::pipeline::fanout::Hubs::new(&config, CancellationToken::new()),
            parking: crate::pipeline::resume::Parking::new(
                config.consumer.resume_window,
                config.consumer.resume_max_parked,
                CancellationToken::new(),
                TaskTracker::new(),
            ),
            handover: None,
            config: Arc::new(config),
            kafka,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            started: Arc::new(AtomicBool::new(true)),
            basic_auth,
            oidc,
            sessions,
            config_log: None,
            registry: None,
        };
        Edge { state }
    }

    /// Sends `req` to the main listener's router.
    async fn main(&self, req: Request<Body>) -> Answer {
        send(crate::http::router(self.state.clone()), req).await
    }

    /// Sends `req` to the admin listener's router.
    async fn admin(&self, req: Request<Body>) -> Answer {
        send(crate::http::admin::router(self.state.clone()), req).await
    }
}

/// What the client sees: status, the headers the proxy sets, body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// Every header but `content-length` as `(name, value)`, sorted (on the wire hyper adds
    /// `date`, and `content-length` where the router did not set it).
    fn headers(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(k, _)| *k != axum::http::header::CONTENT_LENGTH)
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ASCII header values").to_owned()))
            .collect();
        all.sort();
        all
    }

    /// Asserts status, headers and body at once, so that a failure shows all three.
    #[track_caller]
    fn is(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let mut want: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        want.sort();
        assert_eq!((self.status.as_u16(), self.headers(), self.body.as_str()), (status, want, body), "{self:?}");
        if let Some(length) = self.headers.get(axum::http::header::CONTENT_LENGTH) {
            assert_eq!(length.to_str().unwrap(), self.body.len().to_string(), "{self:?}");
        }
    }
}

/// The reference's JSON error: `{"message": text}` with a two-space indent and ` : `.
fn message(text: &str) -> String {
    format!("{{\n  \"message\" : {}\n}}", serde_json::to_string(text).unwrap())
}

/// The headers of every JSON answer.
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// A plain request (no upgrade) from [`PEER`].
fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri).extension(ConnectInfo(Peer(PEER.parse::<SocketAddr>().unwrap())))
}

fn get(uri: &str) -> Request<Body> {
    request(Method::GET, uri).body(Body::empty()).unwrap()
}

/// A WebSocket upgrade request from [`PEER`], with what hyper attaches to one on a real
/// connection (an upgrade handle; here one that never completes, so no socket task runs).
fn upgrade(uri: &str) -> axum::http::request::Builder {
    request(Method::GET, uri)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .extension(hyper::upgrade::on(Request::new(())))
}

fn upgrade_get(uri: &str) -> Request<Body> {
    upgrade(uri).body(Body::empty()).unwrap()
}

/// One request through `router`, as the listener would pass it.
async fn send(router: Router, req: Request<Body>) -> Answer {
    let response = router.oneshot(req).await.unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("a body under 1 MiB");
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8(bytes.to_vec()).expect("UTF-8") }
}
