//! Avro helpers of the end-to-end tests: the independent codec (`tests/support/avro_tool.py`,
//! fastavro), the independent registry client (`tests/support/registry_client.py`), and binary
//! WebSocket frames.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{bootstrap, http, project_root, unique, Proxy, Ws};

fn python() -> PathBuf {
    std::env::var("WSPROXY_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| project_root().join(".venv/bin/python"))
}

/// Runs a Python support script with one input per line; returns its output lines.
pub fn run_tool(script: &str, args: &[&str], inputs: &[String]) -> Vec<String> {
    run_tool_with(script, args, inputs, &[])
}

/// [`run_tool`] with extra environment (e.g. another `SCHEMA_REGISTRY_URL`).
pub fn run_tool_with(script: &str, args: &[&str], inputs: &[String], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(python());
    cmd.arg(project_root().join("tests/support").join(script))
        .args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("python");
    let input: String = inputs.iter().map(|l| format!("{l}\n")).collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// The schema registry of `scripts/registry` (Apicurio's Confluent-compatible API);
/// `SCHEMA_REGISTRY_URL` to use another.
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v6".to_owned())
}

/// Port and path of an `http://127.0.0.1:<port>[/path]` URL.
pub fn port_and_path(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').map_or((rest, String::new()), |(a, p)| (a, format!("/{p}")));
    (authority.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port"), path.trim_end_matches('/').to_owned())
}

/// `GET <registry>/subjects`: the registered subjects. Panics with a clear message when the
/// registry does not answer.
pub async fn registry_subjects(url: &str, auth: Option<&str>) -> Vec<String> {
    let (port, path) = port_and_path(url);
    let header = auth.map(|a| format!("Basic {}", B64.encode(a)));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
    match http(port, "GET", &format!("{path}/subjects"), &headers).await {
        Ok((200, _, body)) => serde_json::from_str(&body).unwrap(),
        other => panic!("no schema registry answers at {url} ({other:?}): start it with scripts/registry start"),
    }
}

/// Panics with a clear message when the registry of `scripts/registry` does not answer.
pub async fn require_registry() {
    registry_subjects(&registry_url(), None).await;
}

/// Runs `avro_tool.py CMD SCHEMA` with one input per line; returns one output line each.
pub fn avro_tool(cmd: &str, schema: &Path, inputs: &[String]) -> Vec<String> {
    run_tool("avro_tool.py", &[cmd, schema.to_str().unwrap()], inputs)
}

/// fastavro's encoding of `datum` (see avro_tool.py for the union notation).
pub fn encode(schema: &Path, datum: Value) -> Vec<u8> {
    hex_decode(&avro_tool("encode", schema, &[datum.to_string()])[0])
}

/// fastavro's decoding of `bytes`; asserts it used every byte.
pub fn decode(schema: &Path, bytes: &[u8]) -> Value {
    decode_all(schema, &[bytes.to_vec()]).remove(0)
}

pub fn decode_all(schema: &Path, frames: &[Vec<u8>]) -> Vec<Value> {
    let lines: Vec<String> = frames.iter().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()).collect();
    avro_tool("decode", schema, &lines)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["trailing_bytes"], 0, "the frame holds exactly one datum");
            v["datum"].clone()
        })
        .collect()
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Fetches a schema from the proxy and stores it for fastavro.
pub async fn served_schema(proxy: &Proxy, path: &str) -> PathBuf {
    let (status, headers, body) = http(proxy.port, "GET", path, &[]).await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"), "{headers:?}");
    let file = std::env::temp_dir().join(format!("{}.avsc", unique("schema")));
    std::fs::write(&file, body).unwrap();
    file
}

/// The next data frame (pings skipped): `Ok(binary)` or `Err(text)`.
pub async fn next_frame(ws: &mut Ws) -> Result<Vec<u8>, Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("no frame within 30 s") {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Text(t))) => return Err(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a data frame, got {other:?}"),
        }
    }
}

pub async fn binary(ws: &mut Ws) -> Vec<u8> {
    next_frame(ws).await.unwrap_or_else(|e| panic!("expected a binary frame, got the text frame {e}"))
}

pub async fn error_text(ws: &mut Ws) -> Value {
    match next_frame(ws).await {
        Err(e) => e,
        Ok(b) => panic!("expected an error text frame, got {} binary bytes", b.len()),
    }
}

pub async fn send_binary(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.expect("send");
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
