//! `--config FILE`: a TOML file with the Scala proxy's keys, read into the same variables as the
//! environment (which then overrides it).

use std::collections::HashMap;

use super::env_vars::ENV_VARS;

/// A TOML syntax error without the snippet of the offending line the toml crate prints (L8):
/// that line may hold a password (JAAS, keystore, Basic auth). Line and column say where.
fn toml_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().lines().next().unwrap_or("invalid TOML").trim_end_matches('.');
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            format!("--config {}: TOML parse error at line {line}, column {column}: {message}", path.display())
        }
        None => format!("--config {}: TOML parse error: {message}", path.display()),
    }
}

/// Reads a `--config` TOML file into variables keyed by their `WSPROXY_*` names, so that the
/// environment can override it. Keys are the Scala proxy's HOCON paths (an optional
/// `kafka.ws.proxy.` prefix is dropped); unknown keys and non-scalar values are errors, except
/// the arrays of tables of client-specific limits.
pub fn read_toml(path: &std::path::Path) -> Result<HashMap<String, String>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("--config {}: {e}", path.display())])?;
    let table: toml::Table = text.parse().map_err(|e| vec![toml_error(path, &text, &e)])?;
    let mut flat = Vec::new();
    let root = toml::Value::Table(table);
    flatten("", &root, &mut flat);
    let mut vars = HashMap::new();
    let mut errors = Vec::new();
    for (key, value) in flat {
        let key = key.strip_prefix("kafka.ws.proxy.").unwrap_or(&key).to_owned();
        let Some(var) = ENV_VARS.iter().find(|v| v.key == key) else {
            errors.push(format!("--config {}: unknown key '{key}'", path.display()));
            continue;
        };
        match value {
            toml::Value::String(s) => vars.insert(var.name.to_owned(), s.clone()),
            toml::Value::Integer(i) => vars.insert(var.name.to_owned(), i.to_string()),
            toml::Value::Float(f) => vars.insert(var.name.to_owned(), f.to_string()),
            toml::Value::Boolean(b) => vars.insert(var.name.to_owned(), b.to_string()),
            // `[[consumer.limits.client-specific-limits]]`: handed on as the variable's JSON.
            toml::Value::Array(_) if key.ends_with(".client-specific-limits") => {
                vars.insert(var.name.to_owned(), serde_json::to_string(value).expect("TOML values serialise"))
            }
            other => {
                errors.push(format!(
                    "--config {}: '{key}' must be a string, number or boolean, got {}",
                    path.display(),
                    other.type_str()
                ));
                None
            }
        };
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

fn flatten<'a>(prefix: &str, value: &'a toml::Value, out: &mut Vec<(String, &'a toml::Value)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}
