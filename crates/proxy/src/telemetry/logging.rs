//! Logging set-up: `RUST_LOG` wins; otherwise the seed's `WS_PROXY_APP_LOG_LEVEL` and
//! `WS_PROXY_KAFKA_CLIENTS_LOG_LEVEL`; `WS_PROXY_USE_JSON_LOG_FORMAT=true` writes JSON lines.

use std::collections::HashMap;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, before anything logs.
pub fn init_logging(vars: &HashMap<String, String>) {
    let filter = match vars.get("RUST_LOG") {
        Some(f) if !f.is_empty() => EnvFilter::new(f),
        _ => {
            let app = level(vars, "WS_PROXY_APP_LOG_LEVEL", "info");
            let kafka = level(vars, "WS_PROXY_KAFKA_CLIENTS_LOG_LEVEL", "warn");
            let root = level(vars, "WS_PROXY_ROOT_LOG_LEVEL", "warn");
            EnvFilter::new(format!("{root},kafka_websocket_proxy={app},rdkafka={kafka},librdkafka={kafka}"))
        }
    };
    let json = vars.get("WS_PROXY_USE_JSON_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let ansi = !vars.get("WSPROXY_LOG_ANSI_OFF").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.with_ansi(ansi).try_init() };
}

fn level(vars: &HashMap<String, String>, name: &str, default: &str) -> String {
    let v = vars.get(name).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    match v.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" | "off" => v,
        "warning" => "warn".to_owned(),
        _ => default.to_owned(),
    }
}
