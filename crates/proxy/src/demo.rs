//! `--demo`: an in-process Kafka (librdkafka's mock cluster) so a newcomer sees the proxy work
//! with no Java and no broker. Not for production: the mock keeps only 5 MiB per partition,
//! has no persistence, and its consumer groups wait 3 s before the first assignment.

use std::net::{IpAddr, SocketAddr};

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

/// The console's address on the main listener (a wildcard bind is shown as 127.0.0.1).
pub fn console_url(addr: SocketAddr, https: bool) -> String {
    let ip = if addr.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    format!("{}://{}/console", if https { "https" } else { "http" }, SocketAddr::new(ip, addr.port()))
}

/// The lines printed once the demo is up: the console's URL and commands that produce and
/// consume a record.
pub fn instructions(addr: SocketAddr, topic: &str, bootstrap: &str, console: Option<&str>) -> String {
    let port = addr.port();
    let console = console.map(|url| format!("\nOpen the console in a browser: {url}\n")).unwrap_or_default();
    let network = if addr.ip().is_loopback() {
        format!("Listening on {addr} only; WSPROXY_BIND_INTERFACE opens it to the network.")
    } else {
        format!("WARNING: listening on {addr}: unless authentication is configured, anyone who reaches it can use it.")
    };
    format!(
        r#"
Kafka WebSocket Proxy demo is running (in-process Kafka at {bootstrap}, topic '{topic}').
{network}
{console}
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
