//! Unit tests of the consumer port against librdkafka's mock cluster: the repair of partitions
//! left silent by a failed committed-offset fetch (librdkafka issue 5586).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use wsproxy_protocol::params::{ConsumerParams, Isolation, OffsetReset, SocketPayload, TopicSelection};
use wsproxy_protocol::FormatType;

use super::gave_up_offset_fetch;
use crate::config::{Config, Overrides};
use crate::kafka::testing::MockKafka;
use crate::kafka::Kafka;

/// Both texts librdkafka 2.12 gives when it stops fetching an assignment's committed offsets
/// (`rdkafka_assignment.c`), and texts of other consumer errors that are not it.
#[test]
fn the_given_up_offset_fetch_is_recognised_by_its_text() {
    assert!(gave_up_offset_fetch(
        "Failed to fetch committed offsets for 0 partition(s) in group \"g\": Broker: Not coordinator"
    ));
    assert!(gave_up_offset_fetch("Failed to fetch committed offsets for partitions in group \"g\": Local: Timed out"));
    assert!(!gave_up_offset_fetch("GroupCoordinator: 127.0.0.1:9092: Disconnected (after 1ms in state UP)"));
    assert!(!gave_up_offset_fetch("1/1 brokers are down"));
}

/// What the repair does, on a live eager-group consumer: the partitions are assigned again and
/// delivery resumes at the group's committed offset (records after it come again, none is
/// lost). The failure itself (a request-level NOT_COORDINATOR with no partitions) cannot be
/// made by the mock cluster, which always answers per partition; the broker-pause fault test
/// (tests/faults.rs) meets it on a real broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigning_again_resumes_at_the_committed_offset() {
    let cluster = MockKafka::with_topic("r5586");
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    for i in 0..5 {
        let value = format!("v{i}");
        producer.send(BaseRecord::<(), _>::to("r5586").payload(&value)).expect("enqueued");
    }
    producer.flush(Duration::from_secs(10)).expect("flushed");
    let vars: HashMap<String, String> =
        [("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), cluster.bootstrap_servers())].into_iter().collect();
    let config = Config::load(&vars, &Overrides::default(), true).unwrap();
    let kafka = Kafka::new(&config).unwrap();
    let params = ConsumerParams {
        client_id: "c".to_owned(),
        group_id: "g5586".to_owned(),
        topic: "r5586".to_owned(),
        topics: TopicSelection::Listed(vec!["r5586".to_owned()]),
        socket_payload: SocketPayload::Json,
        key_type: None,
        val_type: FormatType::String,
        offset_reset: OffsetReset::Earliest,
        from_timestamp: None,
        isolation: Isolation::ReadUncommitted,
        rate: None,
        batch_size: None,
        auto_commit: false,
        pull: false,
        resumable: false,
        resume_token: None,
    };
    let consumer = kafka.consumer(&params, None).await.expect("consumer");
    let mut records = consumer.records();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(next_offset(&mut records).await.expect("a record within 20 s"));
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    // The client committed records 0 and 1: the group's next offset is 2.
    consumer.commit(&[(("r5586".into(), 0), 2)]).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.member.context().refetch.notify_one();
    let mut again = Vec::new();
    for _ in 0..3 {
        again.extend(next_offset(&mut records).await);
    }
    assert_eq!(again, [2, 3, 4], "after the repair delivery starts again at the committed offset");
    drop(records);
    consumer.close(HashMap::new()).await;
}

/// The offset of the next record within 20 s, if one comes.
async fn next_offset(records: &mut super::Records<'_>) -> Option<i64> {
    match tokio::time::timeout(Duration::from_secs(20), records.next()).await {
        Ok(Some(Ok(record))) => Some(record.view(&[]).offset),
        _ => None,
    }
}
