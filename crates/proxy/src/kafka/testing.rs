//! Unit-test support for modules outside `kafka/`, which never name rdkafka: an in-process
//! Kafka (librdkafka's mock cluster) and an independent `read_committed` reader.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::Message as _;

/// A one-broker in-process cluster; it stops when dropped.
pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl MockKafka {
    /// A cluster with one topic of one partition.
    pub fn with_topic(topic: &str) -> MockKafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(topic, 1, 1).expect("mock topic");
        MockKafka { cluster }
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Makes every round trip to the broker take `rtt`.
    pub fn round_trip_time(&self, rtt: Duration) {
        self.cluster.broker_round_trip_time(1, rtt).expect("round trip time");
    }

    /// Up to `n` values of `topic` partition 0 as a `read_committed` consumer sees them (20 s).
    pub fn read_committed(&self, topic: &str, n: usize) -> Vec<String> {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("group.id", "read-committed-reader")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("reader");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).expect("partition");
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut values = Vec::new();
        while values.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
        }
        values
    }
}
