//! Prometheus metrics. Every metric is declared here, behind one function or handle, so that
//! names and labels stay consistent with `deploy/grafana/dashboard.json` (a test checks that
//! every metric the dashboard queries exists).
//!
//! Hot paths hold pre-registered handles ([`SocketMetrics`]) so that counting a record is an
//! atomic add, not a label lookup.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Topics beyond the cap share this label value.
pub const OTHER_TOPIC: &str = "_other";

struct Registry {
    handle: PrometheusHandle,
    max_topics: usize,
    topics: Mutex<HashSet<String>>,
    ack_latency: Histogram,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Installs the recorder once per process; later calls keep the first installation.
pub fn install(max_topic_labels: usize) {
    REGISTRY.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("wsproxy_produce_ack_seconds".to_owned()),
                &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0],
            )
            .expect("bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        gauge!("wsproxy_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        for dir in [Direction::In, Direction::Out] {
            gauge!("wsproxy_sockets_open", "direction" => dir.label()).set(0.0);
            counter!("wsproxy_sockets_opened_total", "direction" => dir.label()).absolute(0);
        }
        gauge!("wsproxy_session_leftover_slots").set(0.0);
        gauge!("wsproxy_server_id_clash").set(0.0);
        counter!("wsproxy_session_leftover_slots_freed_total").absolute(0);
        gauge!("wsproxy_kafka_producer_queue_messages").set(0.0);
        gauge!("wsproxy_kafka_credentials_refused", "credentials" => "proxy").set(0.0);
        gauge!("wsproxy_kafka_producer_queue_bytes").set(0.0);
        gauge!("wsproxy_fanout_sockets").set(0.0);
        gauge!("wsproxy_fanout_shared_consumers").set(0.0);
        counter!("wsproxy_fanout_records_delivered_total").absolute(0);
        counter!("wsproxy_fanout_gaps_total").absolute(0);
        counter!("wsproxy_fanout_lag_closes_total").absolute(0);
        Registry {
            handle,
            max_topics: max_topic_labels,
            topics: Mutex::new(HashSet::new()),
            ack_latency: histogram!("wsproxy_produce_ack_seconds"),
        }
    });
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    REGISTRY.get().map(|r| r.handle.render()).unwrap_or_default()
}

/// Drains histogram samples into their buckets; call every few seconds so that memory stays
/// bounded even when nobody scrapes.
pub fn upkeep() {
    if let Some(r) = REGISTRY.get() {
        r.handle.run_upkeep();
    }
}

/// Which way records flow on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `/socket/in`: client to Kafka.
    In,
    /// `/socket/out`: Kafka to client.
    Out,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The label for a topic: itself while under the cap, else [`OTHER_TOPIC`].
fn topic_label(topic: &str) -> String {
    let Some(r) = REGISTRY.get() else { return topic.to_owned() };
    let mut topics = r.topics.lock().expect("topic label set is never poisoned");
    if topics.contains(topic) {
        return topic.to_owned();
    }
    if topics.len() < r.max_topics {
        topics.insert(topic.to_owned());
        return topic.to_owned();
    }
    OTHER_TOPIC.to_owned()
}

/// Who is on the other end of a socket, for its open and close log lines.
#[derive(Debug, Clone)]
pub struct SocketIdentity {
    pub client_id: String,
    /// The consumer group (consume sockets).
    pub group: Option<String>,
    pub remote: std::net::SocketAddr,
}

/// Pre-registered handles of one socket; dropping it counts the socket as closed and writes
/// its close line (client, topic, remote address, duration, records, close code).
pub struct SocketMetrics {
    direction: Direction,
    identity: SocketIdentity,
    opened: std::time::Instant,
    records_moved: u64,
    errors_sent: u64,
    topic: String,
    records: Counter,
    bytes: Counter,
    lag: Gauge,
    reported_lag: i64,
    close_code: u16,
}

impl SocketMetrics {
    /// Counts a socket as open and logs it.
    pub fn open(direction: Direction, topic: &str, identity: SocketIdentity) -> SocketMetrics {
        tracing::info!(
            direction = %direction.label(),
            client_id = ?identity.client_id,
            group = ?identity.group.as_deref().unwrap_or("-"),
            topic,
            remote = %identity.remote,
            "socket opened"
        );
        let full_topic = topic.to_owned();
        let topic = topic_label(topic);
        let dir = direction.label();
        gauge!("wsproxy_sockets_open", "direction" => dir).increment(1.0);
        counter!("wsproxy_sockets_opened_total", "direction" => dir).increment(1);
        SocketMetrics {
            direction,
            records: counter!("wsproxy_records_total", "direction" => dir, "topic" => topic.clone()),
            bytes: counter!("wsproxy_record_bytes_total", "direction" => dir, "topic" => topic.clone()),
            lag: gauge!("wsproxy_consumer_lag_records", "topic" => topic.clone()),
            topic: full_topic,
            identity,
            opened: std::time::Instant::now(),
            records_moved: 0,
            errors_sent: 0,
            reported_lag: 0,
            close_code: 1006,
        }
    }

    /// Records that moved through the socket.
    pub fn records(&mut self, n: u64, bytes: u64) {
        self.records_moved += n;
        self.records.increment(n);
        self.bytes.increment(bytes);
    }

    /// An error frame sent in place of a record.
    pub fn error_frame(&mut self, code: &'static str) {
        self.errors_sent += 1;
        counter!("wsproxy_error_frames_total", "direction" => self.direction.label(), "code" => code).increment(1);
    }

    /// The consumer's lag as librdkafka last reported it (consume sockets).
    pub fn lag(&mut self, lag: i64) {
        let lag = lag.max(0);
        self.lag.increment((lag - self.reported_lag) as f64);
        self.reported_lag = lag;
    }

    /// The close code the socket ends with (1006 if it ends without one).
    pub fn closing(&mut self, code: u16) {
        self.close_code = code;
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Drop for SocketMetrics {
    fn drop(&mut self) {
        let dir = self.direction.label();
        tracing::info!(
            direction = %dir,
            client_id = ?self.identity.client_id,
            group = ?self.identity.group.as_deref().unwrap_or("-"),
            topic = %self.topic,
            remote = %self.identity.remote,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            records = self.records_moved,
            error_frames = self.errors_sent,
            close_code = self.close_code,
            "socket closed"
        );
        gauge!("wsproxy_sockets_open", "direction" => dir).decrement(1.0);
        counter!("wsproxy_socket_closes_total", "direction" => dir, "code" => self.close_code.to_string()).increment(1);
        self.lag.decrement(self.reported_lag as f64);
    }
}

/// Time from handing a record to the producer to Kafka's acknowledgement.
pub fn produce_ack(latency: Duration) {
    if let Some(r) = REGISTRY.get() {
        r.ack_latency.record(latency.as_secs_f64());
    }
}

/// A request refused for its credentials; `reason` is a fixed word, never the credential.
pub fn auth_failure(reason: &'static str) {
    counter!("wsproxy_auth_failures_total", "reason" => reason).increment(1);
}

/// How a closing socket's input ended (`client_close`, `eof`, `timed_out`). A timeout means
/// the client did not answer the close frame within 5 s while still sending: the proxy
/// closed with input unread, so the client may have lost the last answers (an RST).
pub fn close_drained(outcome: crate::pipeline::close::Drained) {
    use crate::pipeline::close::Drained;
    let label = match outcome {
        Drained::ClientClose => "client_close",
        Drained::Eof => "eof",
        Drained::TimedOut => "timed_out",
    };
    if outcome == Drained::TimedOut {
        tracing::warn!(
            "a closing socket's client did not answer the close frame within 5 s; closing with input unread"
        );
    }
    counter!("wsproxy_socket_close_drains_total", "outcome" => label).increment(1);
}

/// A socket refused by a connection limit (`node_limit` or `per_ip_limit`).
pub fn connection_refused(limit: &'static str) {
    counter!("wsproxy_connections_refused_total", "limit" => limit).increment(1);
}

/// One HTTP request on the main listener (route is the matched path, never the raw URL).
pub fn http_request(route: &str, status: u16) {
    counter!("wsproxy_http_requests_total", "route" => route.to_owned(), "status" => status.to_string()).increment(1);
}

/// librdkafka statistics of the shared producer.
pub fn producer_stats(queue_messages: u64, queue_bytes: u64, broker_rtts: &[(String, Duration)]) {
    gauge!("wsproxy_kafka_producer_queue_messages").set(queue_messages as f64);
    gauge!("wsproxy_kafka_producer_queue_bytes").set(queue_bytes as f64);
    for (broker, rtt) in broker_rtts {
        gauge!("wsproxy_kafka_broker_rtt_seconds", "broker" => broker.clone()).set(rtt.as_secs_f64());
    }
}

/// An Avro key or value refused before decoding because it is beyond the decoder's bounds
/// (`limit`: `depth` of nesting or claimed `items`), from a client or from a Kafka record.
pub fn avro_datum_refused(limit: &'static str, schema_id: u32) {
    counter!("wsproxy_avro_datums_refused_total", "limit" => limit).increment(1);
    tracing::warn!(limit, schema_id, "refused an Avro datum beyond the decoding bounds");
}

/// Deleting one topic's offsets deleted the group and could not commit its other topics'
/// offsets again (the caller got them back to restore).
pub fn admin_offsets_not_restored() {
    counter!("wsproxy_admin_offsets_not_restored_total").increment(1);
}

/// State of a transactional or idempotent producer (`Init`, `Ready`, `InTransaction`, ...).
pub fn producer_txn_state(idempotence: &str, transaction: &str) {
    gauge!("wsproxy_kafka_producer_idempotence_ready").set(if idempotence == "Assigned" { 1.0 } else { 0.0 });
    gauge!("wsproxy_kafka_producer_transaction_ready").set(if matches!(transaction, "Ready" | "InTransaction") {
        1.0
    } else {
        0.0
    });
}

/// The schema registry could not be asked (`reachable = false`: it counts an outage) or
/// answers again. Avro consume sockets wait for it meanwhile (nothing is skipped).
pub fn schema_registry_reachable(reachable: bool) {
    gauge!("wsproxy_schema_registry_reachable").set(if reachable { 1.0 } else { 0.0 });
    if !reachable {
        counter!("wsproxy_schema_registry_outages_total").increment(1);
    }
}

/// A consumed record rendered to a frame larger than a socket can send: answered with a
/// `RECORD_TOO_LARGE` error frame in its place.
pub fn consumed_record_too_large() {
    counter!("wsproxy_consumed_records_too_large_total").increment(1);
}

/// Fan-out sockets open (`delta` 1 or -1).
pub fn fanout_sockets(delta: f64) {
    gauge!("wsproxy_fanout_sockets").increment(delta);
}

/// Shared fan-out consumers alive (`delta` 1 or -1).
pub fn fanout_shared_consumers(delta: f64) {
    gauge!("wsproxy_fanout_shared_consumers").increment(delta);
}

/// The counter of records written to fan-out sockets (a handle for the socket's hot path).
pub fn fanout_records_delivered() -> Counter {
    counter!("wsproxy_fanout_records_delivered_total")
}

/// Gap frames sent to `onLag=skip` fan-out sockets that fell behind.
pub fn fanout_gaps(n: u64) {
    counter!("wsproxy_fanout_gaps_total").increment(n);
}

/// A fan-out socket closed with 1013 for falling behind.
pub fn fanout_lag_close() {
    counter!("wsproxy_fanout_lag_closes_total").increment(1);
}

/// A consumed record whose header keys are not UTF-8 (rendered lossily).
pub fn consumed_header_not_utf8() {
    counter!("wsproxy_consumed_headers_not_utf8_total").increment(1);
}

/// Kafka refused an (asynchronous) consumer offset commit; its records come again.
pub fn consumer_commit_failed() {
    counter!("wsproxy_consumer_commit_failures_total").increment(1);
}

/// A consumer's partitions were assigned again because librdkafka gave up fetching their
/// committed offsets (librdkafka issue 5586).
pub fn consumer_offsets_fetched_again() {
    counter!("wsproxy_consumer_offset_fetch_repairs_total").increment(1);
}

/// A resumable consume socket's consumer parked (`delta` 1) or no longer parked (`delta` -1).
pub fn consumer_sessions_parked(delta: f64) {
    gauge!("wsproxy_consumer_sessions_parked").increment(delta);
}

/// A parked consumer re-attached to a reconnecting socket (`resumeToken`).
pub fn consumer_session_resumed() {
    counter!("wsproxy_consumer_sessions_resumed_total").increment(1);
}

/// A consumer session this node held (parked or open) handed over to another node, which
/// a reconnect with its `resumeToken` reached (`_wsproxy.resume`).
pub fn consumer_session_handed_over() {
    counter!("wsproxy_consumer_sessions_handed_over_total").increment(1);
}

/// A parked consumer closed without a resume: `window` (not resumed in time), `cap`
/// (`WSPROXY_CONSUMER_RESUME_MAX_PARKED` reached: the oldest goes), `shutdown` or `kafka`.
pub fn consumer_session_expired(reason: &'static str) {
    counter!("wsproxy_consumer_sessions_expired_total", "reason" => reason).increment(1);
}

/// A Kafka client handed to the closer thread (`delta` 1) or destroyed (`delta` -1).
pub fn kafka_client_closing(kind: &'static str, delta: f64) {
    gauge!("wsproxy_kafka_clients_closing", "kind" => kind).increment(delta);
}

/// A Kafka client destroyed by the closer thread.
pub fn kafka_client_closed(kind: &'static str) {
    counter!("wsproxy_kafka_clients_closed_total", "kind" => kind).increment(1);
}

/// A Kafka client destroyed on a tokio thread (a bug: it can stall sockets).
pub fn kafka_client_dropped_on_runtime(kind: &'static str) {
    counter!("wsproxy_kafka_clients_dropped_on_runtime_total", "kind" => kind).increment(1);
}

/// Kafka started (`delta` 1) or stopped (-1) refusing a client's credentials; `whose` is
/// `proxy` (the proxy's own), `proxy_transactional` or `user` (`X-Kafka-Auth`, token claims).
pub fn kafka_auth_failing(whose: &'static str, delta: f64) {
    gauge!("wsproxy_kafka_credentials_refused", "credentials" => whose).increment(delta);
    if delta > 0.0 {
        counter!("wsproxy_kafka_credentials_refusals_total", "credentials" => whose).increment(1);
    }
}

/// The end of one transactional frame's commit: `committed`, `aborted`, `failed` (fatal),
/// `unknown` (still committing when the proxy gave up), or one `commit_retried`.
pub fn transaction_outcome(outcome: &'static str) {
    counter!("wsproxy_transactions_total", "outcome" => outcome).increment(1);
}

/// A write to the session state failed (`change`: `join` or `leave`); a failed leave is
/// retried by the node's sweep, a failed join answered 503.
pub fn session_state_write_failed(change: &'static str) {
    counter!("wsproxy_session_state_write_failures_total", "change" => change).increment(1);
}

/// 1 while a node that is not this proxy (a Scala node) reads the session state under this
/// node's server id: the two share one liveness group and fight over the state partition.
pub fn server_id_clash(clash: bool) {
    gauge!("wsproxy_server_id_clash").set(if clash { 1.0 } else { 0.0 });
}

/// Slots of this node in the session state that no socket holds and that could not be freed
/// yet (left by failed writes; retried every sweep).
pub fn session_leftover_slots(n: usize) {
    gauge!("wsproxy_session_leftover_slots").set(n as f64);
}

/// Leftover slots of this node that its sweep freed.
pub fn session_leftover_slots_freed(n: usize) {
    counter!("wsproxy_session_leftover_slots_freed_total").increment(n as u64);
}

/// A session-state record header that could not be read (a key that is not UTF-8); skipped.
pub fn session_state_unreadable_header() {
    counter!("wsproxy_session_state_unreadable_headers_total").increment(1);
}

/// `wsproxy_tls_certificate_expiry_timestamp_seconds{store, subject}`: when each certificate of
/// a configured keystore or truststore stops being valid (`notAfter`, Unix seconds). Alert on
/// `wsproxy_tls_certificate_expiry_timestamp_seconds - time() < 30 * 86400`.
pub fn certificate_expiry(store: &'static str, certs: &[rustls_pki_types::CertificateDer<'static>]) {
    for (subject, end) in certs.iter().filter_map(crate::keystore::not_after) {
        gauge!("wsproxy_tls_certificate_expiry_timestamp_seconds", "store" => store, "subject" => subject)
            .set(end as f64);
    }
}
