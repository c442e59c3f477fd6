//! `[server.admin]`: the admin API's own listener and who may use it.

use std::net::IpAddr;

use super::env_vars::*;
use super::reader::Reader;

/// `WSPROXY_ADMIN_*`: the admin API's own listener (HTTPS when the main one has TLS).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind_interface: IpAddr,
    pub port: u16,
    /// Principals allowed to use the admin API (the Basic user, or a token's `sub` or
    /// `preferred_username`); empty allows any authenticated client.
    pub allowed_users: Vec<String>,
}

/// `WSPROXY_ADMIN_*`, when the admin API is enabled. It binds like the main listener unless
/// told otherwise; `authenticated` says whether callers have a name to check.
pub(super) fn read(r: &mut Reader<'_>, main_bind: IpAddr, authenticated: bool) -> Option<AdminConfig> {
    if !r.boolean(WSPROXY_ADMIN_ENDPOINT_ENABLED) {
        return None;
    }
    let admin = AdminConfig {
        bind_interface: r.ip(WSPROXY_ADMIN_BIND_INTERFACE, main_bind),
        port: r.parse(WSPROXY_ADMIN_PORT, "a port number (0 to 65535)"),
        allowed_users: r.list(WSPROXY_ADMIN_ALLOWED_USERS),
    };
    // M9: allowed users need an authentication that names callers.
    if !admin.allowed_users.is_empty() && !authenticated {
        r.fail(
            WSPROXY_ADMIN_ALLOWED_USERS,
            "set, but neither WSPROXY_BASIC_AUTH_ENABLED nor WSPROXY_OPENID_ENABLED is, so no caller has a name to check",
        );
    }
    if !authenticated && !admin.bind_interface.is_loopback() {
        r.warn(format!(
            "WSPROXY_ADMIN_ENDPOINT_ENABLED: the admin API listens on {} without authentication: anyone who reaches port {} can change client limits and consumer group offsets; bind it to 127.0.0.1 (WSPROXY_ADMIN_BIND_INTERFACE) or enable authentication",
            admin.bind_interface, admin.port
        ));
    }
    Some(admin)
}
