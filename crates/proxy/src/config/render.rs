//! What the proxy prints about its settings: `--print-config` (the effective values, secrets
//! masked) and `--help-env` (the README's table), both generated from [`ENV_VARS`].

use std::collections::HashMap;

use super::env_vars::*;
use super::registry::redact_userinfo;
use super::Overrides;

/// The effective settings as TOML, secrets shown as `***`, each with its variable's name.
pub fn render_effective(vars: &HashMap<String, String>, o: &Overrides) -> String {
    let mut out = String::from("# Effective configuration (file < environment < flags); secrets masked.\n");
    for v in ENV_VARS {
        let overridden = match *v {
            WSPROXY_KAFKA_BOOTSTRAP_HOSTS => o.bootstrap_hosts.clone(),
            WSPROXY_PORT => o.port.map(|p| p.to_string()),
            WSPROXY_BIND_INTERFACE => o.bind_interface.map(|i| i.to_string()),
            WSPROXY_SERVER_ID => o.server_id.clone(),
            _ => None,
        };
        let value = overridden.or_else(|| vars.get(v.name).cloned()).unwrap_or_else(|| v.default.to_owned());
        let shown = if v.secret && !value.is_empty() {
            "***".to_owned()
        } else if *v == WSPROXY_SCHEMA_REGISTRY_URL {
            value.split(',').map(redact_userinfo).collect::<Vec<_>>().join(",")
        } else {
            value
        };
        out.push_str(&format!("{} = {}  # {}\n", quote(v.key), quote(&shown), v.name));
    }
    out
}

/// A TOML basic string (JSON's escaping is valid TOML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

/// The configuration table of the README, generated from [`ENV_VARS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | TOML key (`--config`) | default | meaning |\n|---|---|---|---|\n");
    for v in ENV_VARS {
        let default = if v.default.is_empty() { "-".to_owned() } else { format!("`{}`", v.default) };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {}{} |\n",
            v.name,
            v.key,
            default,
            v.help,
            if v.secret { " (secret)" } else { "" }
        ));
    }
    out
}
