//! Client-specific limits: the static ones from the configuration (defaults and per-client
//! lists) and the dynamic ones an operator sets through the admin API, which every node reads
//! from the compacted topic `_wsproxy.dynamic.configs` (see [`crate::kafka::config_log`]).
//!
//! Lookups prefer a dynamic value, then the static client-specific one, then the default (the
//! reference let static entries win at connect time, its defect 10; here one rule holds for
//! connect time and the admin API alike). [`ClientLimits::changes`] ticks whenever a dynamic
//! config is applied, so open sockets can pick up a new rate without a restart.
//!
//! A consumer group's `messages-per-second` and `batch-size` are caps: a socket's own `rate=` /
//! `batchSize=` may ask for less, never more ([`ClientLimits::consumer_pace`]); an open consume
//! socket follows changes through a [`PaceWatch`].
//!
//! The records are the reference's: keys `consumer-<groupId>` / `producer-<producerId>`, values
//! the HOCON rendering of the limit object (`max-connections=1,messages-per-second=10,
//! producer-id=x`) or JSON; both are read, HOCON is written.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The reference's name of the synthetic entry that holds the defaults in admin listings.
pub const DEFAULT_ID: &str = "__DEFAULT__";

/// Limits of one consumer group. Fields are in alphabetical order: that is the order of the
/// reference's JSON rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConsumerLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_second: Option<u32>,
}

/// Limits of one producer (`clientId` of a produce socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProducerLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_second: Option<u32>,
    pub producer_id: String,
}

/// One dynamic config record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynamicConfig {
    Consumer(ConsumerLimit),
    Producer(ProducerLimit),
}

impl DynamicConfig {
    /// The record key: `consumer-<groupId>` or `producer-<producerId>`.
    pub fn key(&self) -> String {
        match self {
            DynamicConfig::Consumer(c) => consumer_key(&c.group_id),
            DynamicConfig::Producer(p) => producer_key(&p.producer_id),
        }
    }

    /// The record value, rendered the way the reference writes it (HOCON, keys sorted,
    /// strings unquoted where HOCON allows).
    pub fn to_hocon(&self) -> String {
        let value = match self {
            DynamicConfig::Consumer(c) => serde_json::to_value(c),
            DynamicConfig::Producer(p) => serde_json::to_value(p),
        }
        .expect("limits always serialise");
        let serde_json::Value::Object(map) = value else { unreachable!("limits are objects") };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        keys.iter()
            .map(|k| {
                let v = match &map[*k] {
                    serde_json::Value::String(s) => hocon_string(s),
                    other => other.to_string(),
                };
                format!("{}={v}", hocon_string(k))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads a record: the key says the kind, the value is HOCON or JSON.
    pub fn from_record(key: &str, value: &str) -> Result<DynamicConfig, String> {
        let object = parse_flat_object(value)?;
        if key.starts_with("consumer-") {
            serde_json::from_value(object).map(DynamicConfig::Consumer).map_err(|e| e.to_string())
        } else if key.starts_with("producer-") {
            serde_json::from_value(object).map(DynamicConfig::Producer).map_err(|e| e.to_string())
        } else {
            Err(format!("'{key}' is neither consumer-<groupId> nor producer-<producerId>"))
        }
    }
}

pub fn consumer_key(group_id: &str) -> String {
    format!("consumer-{group_id}")
}

pub fn producer_key(producer_id: &str) -> String {
    format!("producer-{producer_id}")
}

/// A HOCON string: unquoted when Typesafe Config would leave it so, else JSON-quoted.
fn hocon_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| !(c.is_ascii_digit() || c == '-'))
        && !["include", "true", "false", "null"].iter().any(|w| s.starts_with(w))
        && s.chars().all(|c| c.is_alphanumeric() || c == '-');
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("strings always serialise")
    }
}

/// Parses one flat object in JSON, or in the HOCON forms the reference writes:
/// `a=1,b="x"`, with or without braces, `=` or `:`, commas or newlines between entries.
/// Nested values are not part of the format and are refused.
pub fn parse_flat_object(text: &str) -> Result<serde_json::Value, String> {
    let text = text.trim();
    if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(text) {
        return Ok(v);
    }
    let body = match (text.strip_prefix('{'), text.ends_with('}')) {
        (Some(inner), true) => &inner[..inner.len() - 1],
        _ => text,
    };
    let mut map = serde_json::Map::new();
    for entry in split_entries(body)? {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (k, v) = split_key_value(entry).ok_or_else(|| format!("'{entry}' is not key=value"))?;
        let key = scalar(k.trim())?;
        let serde_json::Value::String(key) = key else { return Err(format!("'{k}' is not a key")) };
        map.insert(key, scalar(v.trim())?);
    }
    Ok(serde_json::Value::Object(map))
}

/// Splits at commas and newlines outside quoted strings.
fn split_entries(body: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' | '\n' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            '{' | '[' if !quoted => return Err("nested values are not part of a client limit".to_owned()),
            _ => {}
        }
    }
    if quoted {
        return Err("a quoted string is not closed".to_owned());
    }
    out.push(&body[start..]);
    Ok(out)
}

fn split_key_value(entry: &str) -> Option<(&str, &str)> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in entry.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '=' | ':' if !quoted => return Some((&entry[..i], &entry[i + 1..])),
            _ => {}
        }
    }
    None
}

/// A quoted string (JSON escapes), a number, a boolean, null, or an unquoted string.
fn scalar(token: &str) -> Result<serde_json::Value, String> {
    if token.starts_with('"') {
        return serde_json::from_str::<String>(token).map(serde_json::Value::String).map_err(|e| e.to_string());
    }
    if token.is_empty() {
        return Err("a value is missing".to_owned());
    }
    if let Ok(n) = token.parse::<i64>() {
        return Ok(n.into());
    }
    Ok(match token {
        "true" => true.into(),
        "false" => false.into(),
        "null" => serde_json::Value::Null,
        other => other.into(),
    })
}

/// The static part: defaults and the client-specific lists, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticLimits {
    pub consumer_default_messages_per_second: u32,
    pub consumer_default_max_connections: u32,
    pub consumer_default_batch_size: u32,
    pub producer_default_messages_per_second: u32,
    pub producer_default_max_connections: u32,
    pub consumers: Vec<ConsumerLimit>,
    pub producers: Vec<ProducerLimit>,
}

impl StaticLimits {
    /// The synthetic `__DEFAULT__` consumer entry of admin listings (every field present).
    pub fn consumer_default(&self) -> ConsumerLimit {
        ConsumerLimit {
            batch_size: Some(self.consumer_default_batch_size),
            group_id: DEFAULT_ID.to_owned(),
            max_connections: Some(self.consumer_default_max_connections),
            messages_per_second: Some(self.consumer_default_messages_per_second),
        }
    }

    /// The synthetic `__DEFAULT__` producer entry of admin listings.
    pub fn producer_default(&self) -> ProducerLimit {
        ProducerLimit {
            max_connections: Some(self.producer_default_max_connections),
            messages_per_second: Some(self.producer_default_messages_per_second),
            producer_id: DEFAULT_ID.to_owned(),
        }
    }
}

/// Dynamic configs as read from the topic, by record key.
#[derive(Debug, Default)]
struct Dynamic {
    consumers: BTreeMap<String, ConsumerLimit>,
    producers: BTreeMap<String, ProducerLimit>,
}

/// Static and dynamic client limits of this node; cheap to clone.
#[derive(Clone)]
pub struct ClientLimits {
    inner: Arc<Inner>,
}

struct Inner {
    statics: StaticLimits,
    dynamic: RwLock<Dynamic>,
    changes: watch::Sender<u64>,
}

impl ClientLimits {
    pub fn new(statics: StaticLimits) -> ClientLimits {
        let (changes, _) = watch::channel(0);
        ClientLimits { inner: Arc::new(Inner { statics, dynamic: RwLock::new(Dynamic::default()), changes }) }
    }

    pub fn statics(&self) -> &StaticLimits {
        &self.inner.statics
    }

    fn dynamic(&self) -> std::sync::RwLockReadGuard<'_, Dynamic> {
        self.inner.dynamic.read().expect("the limits lock is never poisoned")
    }

    /// The effective limits of a consumer group: dynamic, else static, else `None`.
    pub fn consumer(&self, group_id: &str) -> Option<ConsumerLimit> {
        self.dynamic_consumer(group_id).or_else(|| self.static_consumer(group_id))
    }

    /// The effective limits of a producer: dynamic, else static, else `None`.
    pub fn producer(&self, producer_id: &str) -> Option<ProducerLimit> {
        self.dynamic_producer(producer_id).or_else(|| self.static_producer(producer_id))
    }

    pub fn dynamic_consumer(&self, group_id: &str) -> Option<ConsumerLimit> {
        self.dynamic().consumers.get(group_id).cloned()
    }

    pub fn dynamic_producer(&self, producer_id: &str) -> Option<ProducerLimit> {
        self.dynamic().producers.get(producer_id).cloned()
    }

    fn static_consumer(&self, group_id: &str) -> Option<ConsumerLimit> {
        self.inner.statics.consumers.iter().find(|c| c.group_id == group_id).cloned()
    }

    fn static_producer(&self, producer_id: &str) -> Option<ProducerLimit> {
        self.inner.statics.producers.iter().find(|p| p.producer_id == producer_id).cloned()
    }

    /// Sockets allowed per consumer group; 0 means "as many as the topic has partitions".
    /// Each field falls back on its own: a dynamic config without `max-connections` leaves the
    /// static one in force.
    pub fn consumer_max_connections(&self, group_id: &str) -> u32 {
        let field = |c: Option<ConsumerLimit>| c.and_then(|c| c.max_connections);
        field(self.dynamic_consumer(group_id))
            .or_else(|| field(self.static_consumer(group_id)))
            .unwrap_or(self.inner.statics.consumer_default_max_connections)
    }

    /// Sockets allowed per producer id; 0 means unlimited.
    pub fn producer_max_connections(&self, producer_id: &str) -> u32 {
        let field = |p: Option<ProducerLimit>| p.and_then(|p| p.max_connections);
        field(self.dynamic_producer(producer_id))
            .or_else(|| field(self.static_producer(producer_id)))
            .unwrap_or(self.inner.statics.producer_default_max_connections)
    }

    /// Records per second one produce socket of this producer may send; `None`: unlimited.
    pub fn producer_messages_per_second(&self, producer_id: &str) -> Option<u32> {
        let field = |p: Option<ProducerLimit>| p.and_then(|p| p.messages_per_second);
        let rate = field(self.dynamic_producer(producer_id))
            .or_else(|| field(self.static_producer(producer_id)))
            .unwrap_or(self.inner.statics.producer_default_messages_per_second);
        (rate > 0).then_some(rate)
    }

    /// Records per second one consume socket of this group may be sent; `None`: unlimited.
    pub fn consumer_messages_per_second(&self, group_id: &str) -> Option<u32> {
        let field = |c: Option<ConsumerLimit>| c.and_then(|c| c.messages_per_second);
        let rate = field(self.dynamic_consumer(group_id))
            .or_else(|| field(self.static_consumer(group_id)))
            .unwrap_or(self.inner.statics.consumer_default_messages_per_second);
        (rate > 0).then_some(rate)
    }

    /// Records per frame a consume socket of this group may ask for; `None`: no cap.
    pub fn consumer_batch_size(&self, group_id: &str) -> Option<u32> {
        let field = |c: Option<ConsumerLimit>| c.and_then(|c| c.batch_size);
        let size = field(self.dynamic_consumer(group_id))
            .or_else(|| field(self.static_consumer(group_id)))
            .unwrap_or(self.inner.statics.consumer_default_batch_size);
        (size > 0).then_some(size)
    }

    /// The pace of a consume socket of `group_id` that asked for `rate` (records a second,
    /// `None` or 0: as fast as it reads) and `batch_size` records per frame: the smaller of
    /// what it asked and what the group's limits allow.
    pub fn consumer_pace(&self, group_id: &str, rate: Option<u32>, batch_size: usize) -> ConsumerPace {
        let asked = rate.filter(|r| *r > 0);
        let rate = match (asked, self.consumer_messages_per_second(group_id)) {
            (Some(a), Some(cap)) => Some(a.min(cap)),
            (a, cap) => a.or(cap),
        };
        let cap = self.consumer_batch_size(group_id).map_or(usize::MAX, |c| c as usize);
        ConsumerPace { rate, batch_size: batch_size.min(cap).max(1) }
    }

    /// [`Self::consumer_pace`], followed as dynamic configs change (for an open socket).
    pub fn consumer_pace_watch(&self, group_id: &str, rate: Option<u32>, batch_size: usize) -> PaceWatch {
        PaceWatch {
            limits: self.clone(),
            group_id: group_id.to_owned(),
            asked: (rate, batch_size),
            changes: self.changes(),
            current: self.consumer_pace(group_id, rate, batch_size),
        }
    }

    /// Ticks whenever a dynamic config is applied (added, replaced or removed).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Every dynamic consumer and producer config, sorted by id.
    pub fn dynamic_configs(&self) -> (Vec<ConsumerLimit>, Vec<ProducerLimit>) {
        let d = self.dynamic();
        (d.consumers.values().cloned().collect(), d.producers.values().cloned().collect())
    }

    /// Every dynamic config's record key.
    pub fn dynamic_keys(&self) -> Vec<String> {
        let d = self.dynamic();
        d.consumers.keys().map(|k| consumer_key(k)).chain(d.producers.keys().map(|k| producer_key(k))).collect()
    }

    /// Applies one record of the dynamic config topic (`None`: a tombstone).
    pub fn apply(&self, key: &str, value: Option<DynamicConfig>) {
        {
            let mut d = self.inner.dynamic.write().expect("the limits lock is never poisoned");
            match value {
                Some(DynamicConfig::Consumer(c)) => {
                    d.consumers.insert(c.group_id.clone(), c);
                }
                Some(DynamicConfig::Producer(p)) => {
                    d.producers.insert(p.producer_id.clone(), p);
                }
                None => {
                    if let Some(id) = key.strip_prefix("consumer-") {
                        d.consumers.remove(id);
                    } else if let Some(id) = key.strip_prefix("producer-") {
                        d.producers.remove(id);
                    }
                }
            }
        }
        self.inner.changes.send_modify(|n| *n += 1);
    }
}

/// What a consume socket may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerPace {
    /// Records per second; `None`: unlimited.
    pub rate: Option<u32>,
    /// Records per frame (per wakeup for sockets that send one record per frame).
    pub batch_size: usize,
}

/// The pace of one open consume socket, recomputed when a dynamic config is applied.
#[derive(Clone)]
pub struct PaceWatch {
    limits: ClientLimits,
    group_id: String,
    /// What the socket asked for: `rate=` and `batchSize=`.
    asked: (Option<u32>, usize),
    changes: watch::Receiver<u64>,
    current: ConsumerPace,
}

impl PaceWatch {
    pub fn current(&self) -> ConsumerPace {
        self.current
    }

    /// Resolves with the new pace once a dynamic config changed it (never, if none does).
    /// Cancel-safe: a change seen is applied before the future yields again.
    pub async fn changed(&mut self) -> ConsumerPace {
        loop {
            if self.changes.changed().await.is_err() {
                return std::future::pending().await;
            }
            let now = self.limits.consumer_pace(&self.group_id, self.asked.0, self.asked.1);
            if now != self.current {
                tracing::info!(group = ?self.group_id, from = ?self.current, to = ?now, "consumer pace (messages-per-second, batch-size) changed on an open socket");
                self.current = now;
                return now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn producer(id: &str, mps: Option<u32>, max: Option<u32>) -> ProducerLimit {
        ProducerLimit { producer_id: id.into(), messages_per_second: mps, max_connections: max }
    }

    #[test]
    fn json_matches_the_reference_rendering() {
        let p = producer("limit-test-producer-1", Some(10), Some(1));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"max-connections":1,"messages-per-second":10,"producer-id":"limit-test-producer-1"}"#
        );
        let c = ConsumerLimit {
            group_id: "dummy".into(),
            messages_per_second: Some(10),
            max_connections: Some(2),
            batch_size: None,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"group-id":"dummy","max-connections":2,"messages-per-second":10}"#
        );
    }

    #[test]
    fn decoding_is_strict() {
        assert!(serde_json::from_str::<ConsumerLimit>(r#"{"grop-id":"g"}"#).is_err());
        assert!(serde_json::from_str::<ConsumerLimit>(r#"{"group-id":"g","max-connections":-1}"#).is_err());
        assert!(serde_json::from_str::<ConsumerLimit>(r#"{"producer-id":"p"}"#).is_err());
        assert!(serde_json::from_str::<ProducerLimit>(r#"{"prod-id":"p"}"#).is_err());
        let c: ConsumerLimit = serde_json::from_str(r#"{"group-id":"g"}"#).unwrap();
        assert_eq!(c.batch_size, None);
    }

    #[test]
    fn hocon_round_trips_and_reads_the_reference_forms() {
        let p = DynamicConfig::Producer(producer("limit-test-producer-1", Some(10), Some(1)));
        let hocon = p.to_hocon();
        assert_eq!(hocon, "max-connections=1,messages-per-second=10,producer-id=limit-test-producer-1");
        assert_eq!(DynamicConfig::from_record(&p.key(), &hocon).unwrap(), p);
        for text in [
            "producer-id=x, messages-per-second=10, max-connections=1",
            "{\"producer-id\":\"x\",\"messages-per-second\":10,\"max-connections\":1}",
            "{ producer-id = \"x\"\n messages-per-second : 10\n max-connections=1 }",
        ] {
            assert_eq!(
                DynamicConfig::from_record("producer-x", text).unwrap(),
                DynamicConfig::Producer(producer("x", Some(10), Some(1))),
                "{text}"
            );
        }
        let odd = DynamicConfig::Consumer(ConsumerLimit {
            group_id: "1 odd, \"group\"".into(),
            messages_per_second: None,
            max_connections: Some(3),
            batch_size: Some(5),
        });
        assert_eq!(DynamicConfig::from_record(&odd.key(), &odd.to_hocon()).unwrap(), odd);
        assert!(DynamicConfig::from_record("consumer-g", "grop-id=g").is_err());
        assert!(DynamicConfig::from_record("consumer-g", "group-id={a=1}").is_err());
        assert!(DynamicConfig::from_record("other-g", "group-id=g").is_err());
    }

    fn consumer(id: &str, mps: Option<u32>, batch: Option<u32>) -> ConsumerLimit {
        ConsumerLimit { group_id: id.into(), messages_per_second: mps, batch_size: batch, max_connections: None }
    }

    /// M8: a configured consumer rate and batch size cap what a socket asks for.
    #[test]
    fn m8_consumer_limits_cap_what_the_socket_asks_for() {
        let limits = ClientLimits::new(StaticLimits {
            consumer_default_messages_per_second: 10,
            consumer_default_batch_size: 5,
            consumers: vec![consumer("free", Some(0), Some(0)), consumer("slow", Some(2), None)],
            ..StaticLimits::default()
        });
        let pace = |g: &str, rate: Option<u32>, batch: usize| {
            let p = limits.consumer_pace(g, rate, batch);
            (p.rate, p.batch_size)
        };
        // The defaults cap; asking for less is granted; asking for nothing gets the cap.
        assert_eq!(pace("g", None, 1), (Some(10), 1));
        assert_eq!(pace("g", Some(100), 50), (Some(10), 5));
        assert_eq!(pace("g", Some(3), 2), (Some(3), 2));
        assert_eq!(pace("g", Some(0), 5), (Some(10), 5));
        // 0 in a client-specific entry: no cap; a missing field falls back to the default.
        assert_eq!(pace("free", Some(100), 50), (Some(100), 50));
        assert_eq!(pace("free", None, 50), (None, 50));
        assert_eq!(pace("slow", Some(100), 50), (Some(2), 5));
        // A dynamic config wins, for each field.
        let mut watch = limits.consumer_pace_watch("slow", Some(100), 50);
        limits.apply("consumer-slow", Some(DynamicConfig::Consumer(consumer("slow", None, Some(3)))));
        let changed = watch.changed().now_or_never().expect("a change is seen at once");
        assert_eq!(changed, ConsumerPace { rate: Some(2), batch_size: 3 });
        limits.apply("consumer-slow", Some(DynamicConfig::Consumer(consumer("slow", Some(1), Some(3)))));
        assert_eq!(watch.changed().now_or_never(), Some(ConsumerPace { rate: Some(1), batch_size: 3 }));
        // A change that leaves the pace as it was does not wake the socket.
        limits.apply("consumer-other", Some(DynamicConfig::Consumer(consumer("other", Some(1), None))));
        assert_eq!(watch.changed().now_or_never(), None);
        assert_eq!(watch.current(), ConsumerPace { rate: Some(1), batch_size: 3 });
    }

    #[test]
    fn dynamic_wins_over_static_which_wins_over_the_default() {
        let limits = ClientLimits::new(StaticLimits {
            producer_default_max_connections: 7,
            producer_default_messages_per_second: 0,
            consumer_default_max_connections: 0,
            producers: vec![producer("p", Some(10), Some(2))],
            consumers: vec![ConsumerLimit {
                group_id: "g".into(),
                max_connections: Some(2),
                messages_per_second: None,
                batch_size: None,
            }],
            ..StaticLimits::default()
        });
        let mut changes = limits.changes();
        assert_eq!(limits.producer_max_connections("p"), 2);
        assert_eq!(limits.producer_max_connections("other"), 7);
        assert_eq!(limits.producer_messages_per_second("p"), Some(10));
        assert_eq!(limits.producer_messages_per_second("other"), None);
        assert_eq!(limits.consumer_max_connections("g"), 2);
        assert_eq!(limits.consumer_max_connections("h"), 0);
        limits.apply("producer-p", Some(DynamicConfig::Producer(producer("p", Some(3), None))));
        limits.apply(
            "consumer-g",
            Some(DynamicConfig::Consumer(ConsumerLimit {
                group_id: "g".into(),
                max_connections: Some(5),
                messages_per_second: None,
                batch_size: None,
            })),
        );
        assert!(changes.has_changed().unwrap());
        assert_eq!(limits.producer_messages_per_second("p"), Some(3));
        assert_eq!(limits.producer_max_connections("p"), 2, "unset dynamic fields fall back to static");
        assert_eq!(limits.consumer_max_connections("g"), 5);
        assert_eq!(limits.producer("p").unwrap().messages_per_second, Some(3));
        limits.apply("producer-p", None);
        assert_eq!(limits.producer_messages_per_second("p"), Some(10));
        assert_eq!(limits.dynamic_keys(), vec!["consumer-g".to_owned()]);
        assert_eq!(*changes.borrow_and_update(), 3);
    }
}
