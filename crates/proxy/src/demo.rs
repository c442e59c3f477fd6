//! `--demo`: an in-process Kafka (librdkafka's mock cluster) so a newcomer sees the proxy work
//! with no Java and no broker. Not for production: the mock keeps only 5 MiB per partition,
//! has no persistence, and its consumer groups wait 3 s before the first assignment.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// The running mock cluster; dropping it stops it.
pub struct Demo {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Demo {
    /// Starts a one-broker mock cluster with the given topics (3 partitions each).
    pub fn start(topics: &[String]) -> Result<Demo, String> {
        let cluster = MockCluster::new(1).map_err(|e| format!("cannot start the demo cluster: {e}"))?;
        for t in topics {
            cluster.create_topic(t, 3, 1).map_err(|e| format!("cannot create demo topic {t}: {e}"))?;
        }
        Ok(Demo { cluster })
    }

    /// Creates a one-partition topic for the proxy's own state (the mock cluster does not
    /// answer CreateTopics, so the proxy could not create it itself).
    pub fn create_state_topic(&self, name: &str) -> Result<(), String> {
        self.cluster.create_topic(name, 1, 1).map_err(|e| format!("cannot create demo topic {name}: {e}"))
    }

    /// The bootstrap address of the mock cluster (127.0.0.1, random port).
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// The lines printed once the demo is up: commands that produce and consume a record.
pub fn instructions(port: u16, topic: &str, bootstrap: &str) -> String {
    format!(
        r#"
Kafka WebSocket Proxy demo is running (in-process Kafka at {bootstrap}, topic '{topic}').

Produce a record (needs Python 3; the same works with websocat or wscat):
  python3 -c "import asyncio,websockets as w
async def m():
  async with w.connect('ws://127.0.0.1:{port}/socket/in?clientId=demo&topic={topic}&keyType=string&valType=string') as s:
    await s.send('{{\"key\":{{\"value\":\"k1\",\"format\":\"string\"}},\"value\":{{\"value\":\"hello\",\"format\":\"string\"}},\"messageId\":\"m1\"}}'); print(await s.recv())
asyncio.run(m())"

Consume it:
  python3 -c "import asyncio,websockets as w
async def m():
  async with w.connect('ws://127.0.0.1:{port}/socket/out?clientId=demo-reader&topic={topic}&keyType=string&valType=string') as s: print(await s.recv())
asyncio.run(m())"

  (pip install websockets, or: websocat 'ws://127.0.0.1:{port}/socket/out?clientId=demo-reader&topic={topic}')
Stop with Ctrl-C.
"#
    )
}
