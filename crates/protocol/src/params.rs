//! Query parameters of the two sockets, validated in the reference's declaration order with
//! its exact 400 texts (reference section 2.2 and 2.3). The first failing parameter wins.

use crate::format::FormatType;

pub mod fanout;

/// The largest `batchSize` (records per consumer frame).
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// A parameter problem; its `Display` is the text of the 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// What the client sends and receives on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPayload {
    Json,
    Avro,
}

/// Where a consumer without a committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail when the group has no committed offset.
    None,
}

impl OffsetReset {
    pub fn as_kafka(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
            OffsetReset::None => "error",
        }
    }
}

/// `isolation.level` of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    pub fn as_kafka(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// Server settings that change which producer parameters are required.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProducerRules {
    pub sessions_enabled: bool,
    pub exactly_once_enabled: bool,
}

/// Validated `/socket/in` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerParams {
    pub client_id: String,
    pub instance_id: Option<String>,
    pub topic: String,
    pub socket_payload: SocketPayload,
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
    pub transactional: bool,
}

/// What a consume socket reads: `topic=a` or `topic=a,b,c`, or `topicPattern=<regex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSelection {
    /// These topics, in the order given, without repeats; each must exist before the upgrade.
    Listed(Vec<String>),
    /// Every topic whose name matches, now or created later (librdkafka's `^` subscription):
    /// the regular expression as given, starting with `^` (added when the client left it
    /// out), so that it matches names from their start. Internal topics never match.
    Pattern(String),
}

impl TopicSelection {
    /// Whether the socket reads `topic` (for a pattern: whether its name matches, internal
    /// topics excepted).
    pub fn reads(&self, topic: &str) -> bool {
        self.reader()(topic)
    }

    /// [`reads`](Self::reads) for many names: the pattern is compiled once.
    pub fn reader(&self) -> impl Fn(&str) -> bool + '_ {
        let pattern = match self {
            TopicSelection::Pattern(p) => regex_lite::Regex::new(p).ok(),
            TopicSelection::Listed(_) => None,
        };
        move |topic| match self {
            TopicSelection::Listed(topics) => topics.iter().any(|t| t == topic),
            TopicSelection::Pattern(_) => {
                !is_internal_topic(topic) && pattern.as_ref().is_some_and(|r| r.is_match(topic))
            }
        }
    }
}

/// Kafka's own topics (`__consumer_offsets`, `__transaction_state`, ...) and the proxy's
/// (`_wsproxy.*`): a `topicPattern` never reads them.
pub fn is_internal_topic(topic: &str) -> bool {
    topic.starts_with("__") || topic.starts_with("_wsproxy.")
}

/// Validated `/socket/out` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerParams {
    pub client_id: String,
    pub group_id: String,
    /// The `topic` parameter as given (`a` or `a,b,c`), or the `topicPattern`: how logs and
    /// metrics name what the socket reads.
    pub topic: String,
    /// The topics the socket reads.
    pub topics: TopicSelection,
    pub socket_payload: SocketPayload,
    pub key_type: Option<FormatType>,
    pub val_type: FormatType,
    pub offset_reset: OffsetReset,
    /// Start at the first record at or after this time (ms) when the group has no offset.
    pub from_timestamp: Option<i64>,
    pub isolation: Isolation,
    /// At most this many records per second; `None` or 0 is unlimited.
    pub rate: Option<u32>,
    /// Up to this many records per frame; `None` or 0 is one record per frame.
    pub batch_size: Option<u32>,
    pub auto_commit: bool,
    /// `pull=true`: no record until the client grants credit with `{"request":N}`.
    pub pull: bool,
    /// `resumable=true` (or a `resumeToken`): a socket that drops without a close handshake
    /// leaves its consumer parked for a reconnect with the token of its first frame.
    pub resumable: bool,
    /// `resumeToken`: re-attach to the consumer a dropped resumable socket left parked.
    pub resume_token: Option<String>,
}

/// Query parameters as sent; the first occurrence of a name wins.
pub struct Query<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Query<'a> {
    pub fn new(pairs: &'a [(String, String)]) -> Self {
        Query { pairs }
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&'a str, ParamError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ParamError(format!("Request param '{name}' is missing."))),
        }
    }

    fn optional(&self, name: &str) -> Option<&'a str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn format(&self, name: &str) -> Result<Option<FormatType>, ParamError> {
        self.optional(name)
            .map(|v| v.parse().map_err(|e: crate::format::UnknownFormat| ParamError(e.to_string())))
            .transpose()
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ParamError> {
        let Some(v) = self.optional(name) else {
            return Ok(default);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(ParamError(format!("'{v}' is not a valid Boolean value"))),
        }
    }

    fn non_negative(&self, name: &str) -> Result<Option<u32>, ParamError> {
        let Some(v) = self.optional(name) else {
            return Ok(None);
        };
        let n: i32 = v.parse().map_err(|_| ParamError(format!("'{v}' is not a valid 32-bit signed integer value")))?;
        u32::try_from(n)
            .map(Some)
            .map_err(|_| ParamError(format!("Request param '{name}' must not be negative, got {n}.")))
    }

    fn payload(&self) -> Result<SocketPayload, ParamError> {
        match self.optional("socketPayload").map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => Ok(SocketPayload::Json),
            Some("avro") => Ok(SocketPayload::Avro),
            Some(_) => Err(ParamError(format!(
                "'{}' is not a valid socket payload",
                self.get("socketPayload").unwrap_or_default()
            ))),
        }
    }
}

/// Validates `/socket/in` parameters (reference 2.2, steps 1 to 5).
pub fn producer_params(q: &Query<'_>, rules: ProducerRules) -> Result<ProducerParams, ParamError> {
    let client_id = q.required("clientId")?.to_owned();
    let instance_id = q.optional("instanceId").map(str::to_owned);
    let topic = q.required("topic")?.to_owned();
    let socket_payload = q.payload()?;
    let key_type = q.format("keyType")?;
    let val_type = q.format("valType")?.unwrap_or(FormatType::String);
    let transactional = q.boolean("transactional", false)?;

    if transactional && !(rules.sessions_enabled && rules.exactly_once_enabled) {
        return Err(ParamError(
            "Unable to provide transactional producer. Server is not configured to allow producer transactions."
                .to_owned(),
        ));
    }
    if transactional && instance_id.is_none() {
        return Err(ParamError("Request param 'instanceId' is required when using transactional.".to_owned()));
    }
    if rules.sessions_enabled && !rules.exactly_once_enabled && !transactional && instance_id.is_none() {
        return Err(ParamError(
            "Request param 'instanceId' is required when producer sessions are enabled on the proxy server.".to_owned(),
        ));
    }
    Ok(ProducerParams { client_id, instance_id, topic, socket_payload, key_type, val_type, transactional })
}

/// Validates `/socket/out` parameters (reference 2.3, plus `offset` and `fromTimestamp`).
pub fn consumer_params(q: &Query<'_>) -> Result<ConsumerParams, ParamError> {
    let client_id = q.required("clientId")?.to_owned();
    let group_id = q.optional("groupId").map_or_else(|| format!("{client_id}-group"), str::to_owned);
    let (topic, topics) = topic_selection(q)?;
    let socket_payload = q.payload()?;
    let key_type = q.format("keyType")?;
    let val_type = q.format("valType")?.unwrap_or(FormatType::String);
    let mut offset_reset = match q.optional("offsetResetStrategy") {
        None => OffsetReset::Earliest,
        Some(v) => offset_reset(v).ok_or_else(|| ParamError(format!("{v} is not a valid offset reset strategy")))?,
    };
    if let Some(v) = q.optional("offset") {
        offset_reset = match offset_reset_strict(v) {
            Some(o) => o,
            None => {
                return Err(ParamError(format!(
                    "'{v}' is not a valid offset. Please use one of 'earliest' or 'latest'."
                )))
            }
        };
    }
    let from_timestamp = match q.optional("fromTimestamp") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(|| {
            ParamError(format!("'{v}' is not a valid fromTimestamp. Please use milliseconds since the epoch."))
        })?),
    };
    if from_timestamp.is_some() && matches!(topics, TopicSelection::Pattern(_)) {
        return Err(ParamError(
            "Request param 'fromTimestamp' cannot be used with 'topicPattern': the topics a pattern matches are only known once the socket reads them.".to_owned(),
        ));
    }
    let isolation = match q.optional("isolationLevel").map(str::to_ascii_lowercase).as_deref() {
        None | Some("read_uncommitted") => Isolation::ReadUncommitted,
        Some("read_committed") => Isolation::ReadCommitted,
        Some(_) => {
            return Err(ParamError(format!(
                "Read isolation '{}' is not a valid value. Please use one of 'read_committed' or 'read_uncommitted'.",
                q.get("isolationLevel").unwrap_or_default()
            )))
        }
    };
    let rate = q.non_negative("rate")?;
    let batch_size = q.non_negative("batchSize")?;
    if let Some(b) = batch_size.filter(|b| *b > MAX_BATCH_SIZE) {
        return Err(ParamError(format!("Request param 'batchSize' must be at most {MAX_BATCH_SIZE}, got {b}.")));
    }
    let auto_commit = q.boolean("autoCommit", true)?;
    let pull = q.boolean("pull", false)?;
    let resume_token = q.optional("resumeToken").map(str::to_owned);
    let resumable = q.boolean("resumable", false)? || resume_token.is_some();
    Ok(ConsumerParams {
        client_id,
        group_id,
        topic,
        topics,
        socket_payload,
        key_type,
        val_type,
        offset_reset,
        from_timestamp,
        isolation,
        rate,
        batch_size,
        auto_commit,
        pull,
        resumable,
        resume_token,
    })
}

/// `topic` (one topic or a comma list: commas cannot occur in topic names) or `topicPattern`,
/// never both; a missing `topic` keeps the reference's text.
fn topic_selection(q: &Query<'_>) -> Result<(String, TopicSelection), ParamError> {
    let pattern = q.get("topicPattern");
    match (q.optional("topic"), pattern) {
        (Some(_), Some(_)) => Err(ParamError(
            "Request params 'topic' and 'topicPattern' cannot be used together: give a list of topics or one pattern."
                .to_owned(),
        )),
        (None, None) => Err(ParamError("Request param 'topic' is missing.".to_owned())),
        (None, Some("")) => Err(ParamError("Request param 'topicPattern' is empty.".to_owned())),
        (None, Some(p)) => {
            let anchored = if p.starts_with('^') { p.to_owned() } else { format!("^{p}") };
            regex_lite::Regex::new(&anchored).map_err(|e| {
                ParamError(format!("Request param 'topicPattern' is not a valid regular expression: {e}"))
            })?;
            Ok((p.to_owned(), TopicSelection::Pattern(anchored)))
        }
        (Some(list), None) => {
            let mut topics: Vec<String> = Vec::new();
            for name in list.split(',') {
                if name.is_empty() {
                    return Err(ParamError(format!(
                        "Request param 'topic' has an empty topic name in '{list}'; list several topics as topic=a,b,c."
                    )));
                }
                if !topics.iter().any(|t| t == name) {
                    topics.push(name.to_owned());
                }
            }
            Ok((list.to_owned(), TopicSelection::Listed(topics)))
        }
    }
}

fn offset_reset(v: &str) -> Option<OffsetReset> {
    match v.to_ascii_lowercase().as_str() {
        "none" => Some(OffsetReset::None),
        _ => offset_reset_strict(v),
    }
}

fn offset_reset_strict(v: &str) -> Option<OffsetReset> {
    match v.to_ascii_lowercase().as_str() {
        "earliest" => Some(OffsetReset::Earliest),
        "latest" => Some(OffsetReset::Latest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn prod(s: &str, rules: ProducerRules) -> Result<ProducerParams, String> {
        producer_params(&Query::new(&q(s)), rules).map_err(|e| e.0)
    }

    fn cons(s: &str) -> Result<ConsumerParams, String> {
        consumer_params(&Query::new(&q(s))).map_err(|e| e.0)
    }

    const NONE: ProducerRules = ProducerRules { sessions_enabled: false, exactly_once_enabled: false };
    const SESSIONS: ProducerRules = ProducerRules { sessions_enabled: true, exactly_once_enabled: false };
    const EOS: ProducerRules = ProducerRules { sessions_enabled: true, exactly_once_enabled: true };

    #[test]
    fn producer_texts_match_the_reference() {
        assert_eq!(prod("topic=t", NONE).unwrap_err(), "Request param 'clientId' is missing.");
        assert_eq!(prod("clientId=c", NONE).unwrap_err(), "Request param 'topic' is missing.");
        assert_eq!(
            prod("clientId=c&topic=t&socketPayload=protobuf", NONE).unwrap_err(),
            "'protobuf' is not a valid socket payload"
        );
        assert_eq!(prod("clientId=c&topic=t&valType=foo", NONE).unwrap_err(), "'foo' is not a valid format type");
        assert_eq!(prod("clientId=c&topic=t&transactional=x", NONE).unwrap_err(), "'x' is not a valid Boolean value");
        assert_eq!(
            prod("clientId=c&topic=t&transactional=true", NONE).unwrap_err(),
            "Unable to provide transactional producer. Server is not configured to allow producer transactions."
        );
        assert_eq!(
            prod("clientId=c&topic=t&transactional=true", EOS).unwrap_err(),
            "Request param 'instanceId' is required when using transactional."
        );
        assert_eq!(
            prod("clientId=c&topic=t", SESSIONS).unwrap_err(),
            "Request param 'instanceId' is required when producer sessions are enabled on the proxy server."
        );
        assert!(prod("clientId=c&topic=t&transactional=true&instanceId=i", EOS).unwrap().transactional);
    }

    #[test]
    fn producer_defaults() {
        let p = prod("clientId=c&topic=t", NONE).unwrap();
        assert_eq!(p.val_type, FormatType::String);
        assert_eq!(p.key_type, None);
        assert_eq!(p.socket_payload, SocketPayload::Json);
        assert!(!p.transactional);
    }

    #[test]
    fn first_failing_parameter_in_declaration_order_wins() {
        assert_eq!(prod("socketPayload=x&valType=y", NONE).unwrap_err(), "Request param 'clientId' is missing.");
        assert_eq!(prod("clientId=c&topic=t&keyType=a&valType=b", NONE).unwrap_err(), "'a' is not a valid format type");
    }

    #[test]
    fn consumer_texts_and_defaults() {
        assert_eq!(cons("topic=t").unwrap_err(), "Request param 'clientId' is missing.");
        assert_eq!(
            cons("clientId=c&topic=t&isolationLevel=uncommitted").unwrap_err(),
            "Read isolation 'uncommitted' is not a valid value. Please use one of 'read_committed' or 'read_uncommitted'."
        );
        assert_eq!(
            cons("clientId=c&topic=t&offsetResetStrategy=x").unwrap_err(),
            "x is not a valid offset reset strategy"
        );
        assert_eq!(
            cons("clientId=c&topic=t&rate=abc").unwrap_err(),
            "'abc' is not a valid 32-bit signed integer value"
        );
        let c = cons("clientId=c&topic=t").unwrap();
        assert_eq!(c.group_id, "c-group");
        assert!(c.auto_commit);
        assert_eq!(c.offset_reset, OffsetReset::Earliest);
        assert_eq!(c.isolation, Isolation::ReadUncommitted);
        let c = cons("clientId=c&topic=t&offsetResetStrategy=LATEST&isolationLevel=read_committed&rate=100&batchSize=100&autoCommit=false").unwrap();
        assert_eq!(
            (c.offset_reset, c.isolation, c.rate, c.batch_size, c.auto_commit),
            (OffsetReset::Latest, Isolation::ReadCommitted, Some(100), Some(100), false)
        );
        assert_eq!(cons("clientId=c&topic=t&offset=latest").unwrap().offset_reset, OffsetReset::Latest);
        assert!(cons("clientId=c&topic=t&fromTimestamp=yesterday").is_err());
        assert!(cons("clientId=c&topic=t&batchSize=-1").is_err());
        assert_eq!(
            cons("clientId=c&topic=t&batchSize=2147483647").unwrap_err(),
            "Request param 'batchSize' must be at most 10000, got 2147483647."
        );
        assert_eq!(c.topics, TopicSelection::Listed(vec!["t".to_owned()]));
        assert!(!c.pull);
        assert!(cons("clientId=c&topic=t&pull=true").unwrap().pull);
        assert!(!c.resumable && c.resume_token.is_none());
        assert!(cons("clientId=c&topic=t&resumable=true").unwrap().resumable);
        let resumed = cons("clientId=c&topic=t&resumeToken=abc").unwrap();
        assert!(resumed.resumable, "a resume token implies resumable");
        assert_eq!(resumed.resume_token.as_deref(), Some("abc"));
        assert_eq!(cons("clientId=c&topic=t&pull=maybe").unwrap_err(), "'maybe' is not a valid Boolean value");
    }

    #[test]
    fn several_topics_are_a_comma_list_without_empty_names() {
        let c = cons("clientId=c&topic=a,b,a,c").unwrap();
        assert_eq!(c.topic, "a,b,a,c");
        assert_eq!(c.topics, TopicSelection::Listed(vec!["a".into(), "b".into(), "c".into()]));
        assert!(c.topics.reads("b") && !c.topics.reads("d"));
        for bad in ["topic=,", "topic=a,,b", "topic=a,", "topic=,a"] {
            let e = cons(&format!("clientId=c&{bad}")).unwrap_err();
            assert!(e.starts_with("Request param 'topic' has an empty topic name in '"), "{bad}: {e}");
        }
        assert_eq!(cons("clientId=c&topic=").unwrap_err(), "Request param 'topic' is missing.");
    }

    #[test]
    fn a_topic_pattern_is_anchored_validated_and_never_reads_internal_topics() {
        let c = cons("clientId=c&topicPattern=orders\\..*").unwrap();
        assert_eq!(c.topics, TopicSelection::Pattern("^orders\\..*".into()));
        assert_eq!(c.topic, "orders\\..*");
        assert!(c.topics.reads("orders.eu") && !c.topics.reads("my-orders.eu") && !c.topics.reads("orders-eu"));
        let all = cons("clientId=c&topicPattern=^.*").unwrap().topics;
        assert!(all.reads("x"));
        for internal in ["__consumer_offsets", "__transaction_state", "_wsproxy.session.state", "_wsproxy.resume"] {
            assert!(!all.reads(internal), "{internal}");
        }
        let e = cons("clientId=c&topicPattern=^(orders").unwrap_err();
        assert!(e.starts_with("Request param 'topicPattern' is not a valid regular expression"), "{e}");
        assert_eq!(cons("clientId=c&topicPattern=").unwrap_err(), "Request param 'topicPattern' is empty.");
        assert_eq!(
            cons("clientId=c&topic=a&topicPattern=^a").unwrap_err(),
            "Request params 'topic' and 'topicPattern' cannot be used together: give a list of topics or one pattern."
        );
        assert_eq!(
            cons("clientId=c&topicPattern=^a&fromTimestamp=0").unwrap_err(),
            "Request param 'fromTimestamp' cannot be used with 'topicPattern': the topics a pattern matches are only known once the socket reads them."
        );
    }
}
