//! The client of a Confluent-compatible schema registry (`WSPROXY_SCHEMA_REGISTRY_URL`), used
//! to check keys and values of `keyType=avro` / `valType=avro` sockets.
//!
//! Such bytes are in Confluent's wire format (magic byte 0, a 4-byte schema id, the Avro
//! datum): the proxy looks the id up (`GET /schemas/ids/{id}`), keeps the parsed schema in a
//! bounded cache, and checks that the datum decodes with it. It never rewrites the bytes, so
//! any Confluent deserializer reads what the proxy wrote. Every request has a deadline, and
//! for a second after the registry could not be reached lookups fail at once instead of
//! piling up behind it; schemas already cached keep working while it is down.
//!
//! "Could not ask" ([`CheckError::Unavailable`]) is never "bad bytes" ([`CheckError::Invalid`]):
//! consume sockets wait for the registry rather than skip a record. When the registry stops
//! answering, and when it answers again, one warning is logged and
//! `wsproxy_schema_registry_reachable` follows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use axum::http::{header, HeaderValue, Method, Request};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use wsproxy_protocol::avro;

use crate::config::SchemaRegistryConfig;
use crate::telemetry::metrics;

/// How long lookups fail fast after the registry could not be reached.
const DOWN_WINDOW: Duration = Duration::from_secs(1);

/// The largest registry answer read (a schema document).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a registry request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("the schema registry does not know schema id {0}")]
    UnknownSchema(u32),
    #[error("the schema registry is not reachable: {0}")]
    Unreachable(String),
    #[error("the schema registry answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("schema id {id} from the schema registry is not a usable Avro schema: {reason}")]
    BadSchema { id: u32, reason: String },
}

/// Why a key or value failed the check.
#[derive(Debug, Clone)]
pub enum CheckError {
    /// The bytes are wrong: not framed, unknown schema id, or not matching the schema.
    Invalid(String),
    /// The registry could not answer; the bytes may be fine.
    Unavailable(String),
}

/// Parsed schemas by id, at most `max` of them (the oldest goes first).
struct SchemaCache {
    max: usize,
    map: HashMap<u32, Arc<Schema>>,
    order: VecDeque<u32>,
}

impl SchemaCache {
    fn get(&self, id: u32) -> Option<Arc<Schema>> {
        self.map.get(&id).cloned()
    }

    fn insert(&mut self, id: u32, schema: Arc<Schema>) {
        if self.max == 0 || self.map.insert(id, schema).is_some() {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// A schema registry client shared by every socket of the node.
pub struct SchemaRegistry {
    /// Base URLs, tried in order while they cannot be reached.
    urls: Vec<String>,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    cache: Mutex<SchemaCache>,
    down_until: Mutex<Option<Instant>>,
    /// Since when the registry has not answered (`None` while it answers).
    down_since: Mutex<Option<Instant>>,
}

impl SchemaRegistry {
    pub fn new(cfg: &SchemaRegistryConfig) -> SchemaRegistry {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeout));
        connector.set_nodelay(true);
        let authorization = cfg.user_info.as_ref().map(|u| {
            let mut v = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(u.0.as_bytes())))
                .expect("base64 is a valid header value");
            v.set_sensitive(true);
            v
        });
        metrics::schema_registry_reachable(true);
        SchemaRegistry {
            urls: cfg.urls.clone(),
            authorization,
            timeout: cfg.timeout,
            client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4).build(connector),
            cache: Mutex::new(SchemaCache { max: cfg.cache_size, map: HashMap::new(), order: VecDeque::new() }),
            down_until: Mutex::new(None),
            down_since: Mutex::new(None),
        }
    }

    /// Notes whether the registry answered (a status below 500) and reports the changes.
    fn observe(&self, answered: Result<u16, &str>) {
        let reachable = matches!(answered, Ok(status) if status < 500);
        let mut down_since = self.down_since.lock().expect("lock");
        match (reachable, *down_since) {
            (false, None) => {
                *down_since = Some(Instant::now());
                let why = match answered {
                    Ok(status) => format!("it answered HTTP {status}"),
                    Err(e) => e.to_owned(),
                };
                tracing::warn!(
                    error = %why,
                    "the schema registry cannot be asked: avro consume sockets wait for it, avro produce records get SCHEMA_REGISTRY_UNAVAILABLE"
                );
                metrics::schema_registry_reachable(false);
            }
            (true, Some(since)) => {
                *down_since = None;
                tracing::warn!(
                    down_ms = since.elapsed().as_millis() as u64,
                    "the schema registry answers again: avro consume sockets resume"
                );
                metrics::schema_registry_reachable(true);
            }
            _ => {}
        }
    }

    /// Checks that `bytes` are Confluent-framed Avro of a schema the registry knows, and
    /// returns the schema id.
    pub async fn check(&self, bytes: &[u8]) -> Result<u32, CheckError> {
        let (id, datum) = avro::confluent_frame(bytes).map_err(CheckError::Invalid)?;
        let schema = self.schema(id).await.map_err(|e| match e {
            RegistryError::UnknownSchema(_) | RegistryError::BadSchema { .. } => CheckError::Invalid(e.to_string()),
            other => CheckError::Unavailable(other.to_string()),
        })?;
        avro::decode_datum(&schema, datum).map_err(|e| {
            if let Some(limit) = e.limit() {
                crate::telemetry::metrics::avro_datum_refused(limit, id);
            }
            CheckError::Invalid(format!("the Avro data does not match schema id {id}: {e}"))
        })?;
        Ok(id)
    }

    /// The schema with this id, from the cache or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.cache.lock().expect("cache lock").get(id) {
            return Ok(s);
        }
        let (status, body) = self.request(Method::GET, &format!("/schemas/ids/{id}"), None).await?;
        match status {
            200 => {}
            // Only the registry's own "not found" (a JSON body with an `error_code`, as
            // Confluent's and Apicurio's send) means the id is unknown: a 404 page of a gateway
            // in front of a registry that is down is "could not ask", never a bad record.
            404 if is_registry_error(&body) => return Err(RegistryError::UnknownSchema(id)),
            _ => return Err(refused(status, &body)),
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            schema: String,
            schema_type: Option<String>,
        }
        // A 200 that is not the registry's JSON (a gateway's page) is "could not ask" too.
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| refused(status, &body))?;
        if let Some(t) = answer.schema_type.filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
            return Err(RegistryError::BadSchema { id, reason: format!("it is a {t} schema") });
        }
        let schema =
            Arc::new(avro::parse_schema(&answer.schema).map_err(|reason| RegistryError::BadSchema { id, reason })?);
        self.cache.lock().expect("cache lock").insert(id, schema.clone());
        Ok(schema)
    }

    /// Registers `schema` under `subject` and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let (status, answer) = self.request(Method::POST, &format!("/subjects/{subject}/versions"), Some(body)).await?;
        if status != 200 {
            return Err(refused(status, &answer));
        }
        serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| refused(status, &answer))
    }

    /// One request, to the first URL that can be reached, within the timeout.
    async fn request(&self, method: Method, path: &str, body: Option<String>) -> Result<(u16, Bytes), RegistryError> {
        if let Some(until) = *self.down_until.lock().expect("lock") {
            if Instant::now() < until {
                return Err(RegistryError::Unreachable(
                    "it could not be reached less than a second ago; retrying shortly".to_owned(),
                ));
            }
        }
        let mut last = String::new();
        for base in &self.urls {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(format!("{base}{path}"))
                .header(header::ACCEPT, "application/vnd.schemaregistry.v1+json, application/json")
                .header(header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json");
            if let Some(a) = &self.authorization {
                req = req.header(header::AUTHORIZATION, a.clone());
            }
            let req = match req.body(Full::new(Bytes::from(body.clone().unwrap_or_default()))) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            let call = async {
                let resp = self.client.request(req).await.map_err(|e| format!("{base}: {e}"))?;
                let status = resp.status().as_u16();
                let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| format!("{base}: reading the answer: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, body))
            };
            match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(answer)) => {
                    *self.down_until.lock().expect("lock") = None;
                    self.observe(Ok(answer.0));
                    return Ok(answer);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("{base}: no answer within {:?}", self.timeout),
            }
        }
        *self.down_until.lock().expect("lock") = Some(Instant::now() + DOWN_WINDOW);
        self.observe(Err(&last));
        Err(RegistryError::Unreachable(last))
    }
}

/// An error answer of a schema registry itself: `{"error_code": 40403, "message": ...}`.
fn is_registry_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("error_code").is_some_and(|c| c.is_i64()))
}

fn refused(status: u16, body: &[u8]) -> RegistryError {
    let mut text = String::from_utf8_lossy(body).into_owned();
    text.truncate(200);
    RegistryError::Refused { status, body: text }
}

/// Registers the four wrapper schemas under their full names, as the Scala proxy's
/// `WSPROXY_SCHEMA_AUTO_REGISTER` did; failures are logged, never fatal.
pub async fn register_wrapper_schemas(registry: &SchemaRegistry) {
    for (name, text) in [
        ("AvroProducerRecord", avro::AVRO_PRODUCER_RECORD),
        ("AvroProducerResult", avro::AVRO_PRODUCER_RESULT),
        ("AvroConsumerRecord", avro::AVRO_CONSUMER_RECORD),
        ("AvroCommit", avro::AVRO_COMMIT),
    ] {
        let subject = format!("net.scalytica.kafka.wsproxy.avro.{name}");
        // A few attempts: a registry that starts with the proxy, or answers 500 under load.
        for attempt in 1..=5u32 {
            match registry.register(&subject, text).await {
                Ok(id) => {
                    tracing::info!(subject, id, "registered the Avro wrapper schema");
                    break;
                }
                Err(e) if attempt == 5 => {
                    tracing::warn!(subject, error = %e, "could not register the Avro wrapper schema")
                }
                Err(e) => {
                    tracing::debug!(subject, attempt, error = %e, "registering the Avro wrapper schema failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let s = Arc::new(Schema::Null);
        let mut c = SchemaCache { max: 2, map: HashMap::new(), order: VecDeque::new() };
        for id in [1, 2, 2, 3] {
            c.insert(id, s.clone());
        }
        assert!(c.get(1).is_none());
        assert!(c.get(2).is_some() && c.get(3).is_some());
        assert_eq!(c.map.len(), 2);
    }

    /// H1 (found in review): a gateway's 404 page or a 200 that is not the registry's JSON,
    /// while the registry behind it is down, is "could not ask" (the record is held), never
    /// "unknown schema" (the record would be committed as a DECODE_ERROR).
    #[test]
    fn h1_only_the_registrys_own_not_found_means_an_unknown_schema() {
        assert!(is_registry_error(br#"{"message":"No content with id 9","error_code":40403}"#));
        assert!(!is_registry_error(b"<html><body>404 Not Found</body></html>"));
        assert!(!is_registry_error(br#"{"message":"no route"}"#));
        assert!(matches!(refused(200, b"<html>"), RegistryError::Refused { status: 200, .. }));
    }
}
