//! `[server]`: the main listener, the node's identity, connection limits and what is served.
//! The listener's TLS, client authentication and the admin listener are read by their own
//! sections ([`super::tls`], [`super::auth`], [`super::admin`]) and kept here, beside the
//! listener that uses them.

use std::net::IpAddr;
use std::time::Duration;

use super::admin::{self, AdminConfig};
use super::auth::{self, BasicAuthConfig, OpenIdConfig};
use super::env_vars::*;
use super::reader::Reader;
use super::tls::{self, TlsConfig};
use super::Overrides;

/// The HTTP listener and node identity.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Unique per node (`WSPROXY_SERVER_ID`).
    pub server_id: String,
    pub bind_interface: IpAddr,
    pub port: u16,
    /// How long a SIGTERM waits for sockets to flush before the process exits.
    pub shutdown_grace: Duration,
    /// HTTP Basic authentication of clients, when enabled.
    pub basic_auth: Option<BasicAuthConfig>,
    /// OpenID Connect bearer tokens, when enabled.
    pub openid: Option<OpenIdConfig>,
    /// Whether `/healthcheck` and `/ready` require authentication too.
    pub secure_healthcheck: bool,
    /// The HTTPS/WSS listener, when enabled.
    pub tls: Option<TlsConfig>,
    /// Browser origins allowed to open sockets (exact match); empty allows any.
    pub allowed_origins: Vec<String>,
    /// Open sockets this node accepts in all (0: unlimited).
    pub max_connections: usize,
    /// Open sockets this node accepts from one client IP (0: unlimited).
    pub max_connections_per_ip: usize,
    /// The admin API listener, when enabled.
    pub admin: Option<AdminConfig>,
    /// A client has this long to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Accept queue of each listener (`listen(2)` backlog; the kernel caps it at
    /// `net.core.somaxconn`). The old 128 dropped SYNs when 1,000 clients connected at once.
    pub listen_backlog: u32,
    /// Whether `/socket/echo` is served.
    pub echo_enabled: bool,
    /// Whether the browser console is served at `/console` (its own origin may then open
    /// sockets even when `allowed_origins` does not name it).
    pub console_enabled: bool,
}

/// Reads `WSPROXY_*` of the main listener (flags win), with its TLS, authentication and admin
/// listener.
pub(super) fn read(r: &mut Reader<'_>, o: &Overrides) -> ServerConfig {
    let port = match o.port {
        Some(p) => p,
        None => r.parse(WSPROXY_PORT, "a port number (0 to 65535)"),
    };
    let bind_interface = match o.bind_interface {
        Some(ip) => ip,
        None => r.ip(WSPROXY_BIND_INTERFACE, IpAddr::from([0, 0, 0, 0])),
    };
    let (basic_auth, openid) = auth::read(r);
    let tls = tls::read(r, bind_interface);
    let allowed_origins = r.list(WSPROXY_ALLOWED_ORIGINS);
    if basic_auth.is_some() && allowed_origins.is_empty() {
        // L5: browsers resend cached Basic credentials, so any web page can open sockets.
        r.warn(
            "Basic auth is on and WSPROXY_ALLOWED_ORIGINS is empty: a web page on any site can open sockets \
             with a browser's cached credentials (cross-site WebSocket hijacking); list your origins",
        );
    }
    let authenticated = basic_auth.is_some() || openid.is_some();
    let admin = admin::read(r, bind_interface, authenticated);
    let header_read_timeout = r.duration(WSPROXY_HTTP_HEADER_READ_TIMEOUT);
    r.above_zero(WSPROXY_HTTP_HEADER_READ_TIMEOUT, header_read_timeout.is_zero());
    let listen_backlog = r.parse(WSPROXY_LISTEN_BACKLOG, "a number");
    r.above_zero(WSPROXY_LISTEN_BACKLOG, listen_backlog == 0);
    ServerConfig {
        server_id: o.server_id.clone().unwrap_or_else(|| r.string(WSPROXY_SERVER_ID)),
        bind_interface,
        port,
        shutdown_grace: r.duration(WSPROXY_SHUTDOWN_GRACE_PERIOD),
        basic_auth,
        openid,
        secure_healthcheck: r.boolean(WSPROXY_SECURE_HEALTHCHECK_ENDPOINT),
        tls,
        allowed_origins,
        max_connections: r.parse(WSPROXY_MAX_CONNECTIONS, "a number"),
        max_connections_per_ip: r.parse(WSPROXY_MAX_CONNECTIONS_PER_IP, "a number"),
        admin,
        header_read_timeout,
        listen_backlog,
        echo_enabled: r.boolean(WSPROXY_ECHO_ENABLED),
        console_enabled: r.boolean(WSPROXY_CONSOLE_ENABLED),
    }
}
