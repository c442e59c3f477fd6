//! `keyType` / `valType=avro` with a schema registry (`WSPROXY_SCHEMA_REGISTRY_URL`): the
//! registry process of `scripts/registry` on 127.0.0.1, Confluent-framed Avro written through
//! the proxy and read by an independent client that uses the registry
//! (`tests/support/registry_client.py`: fastavro + the registry's REST API + confluent-kafka),
//! and the reverse; bad bytes, unknown schema ids, a registry that is down, slow or refuses.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::avro::*;
use common::*;
use serde_json::{json, Value};

const PAYMENT: &str = r#"{"type": "record", "name": "Payment", "namespace": "wsproxy.test",
  "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
             {"name": "tags", "type": {"type": "array", "items": "string"}},
             {"name": "note", "type": ["null", "string"], "default": null}]}"#;

fn payment_schema() -> PathBuf {
    let file = std::env::temp_dir().join(format!("{}.avsc", unique("payment")));
    std::fs::write(&file, PAYMENT).unwrap();
    file
}

fn payment(i: i64) -> Value {
    json!({"id": format!("p-{i}"), "amount": i as f64 + 0.5, "tags": [format!("t{i}"), "x"],
           "note": if i % 2 == 0 { json!({"string": "even"}) } else { Value::Null }})
}

/// What the independent client decodes `payment(i)` to.
fn payment_decoded(i: i64) -> Value {
    json!({"id": {"string": format!("p-{i}")}, "amount": {"double": i as f64 + 0.5},
           "tags": [{"string": format!("t{i}")}, {"string": "x"}],
           "note": if i % 2 == 0 { json!({"string": "even"}) } else { Value::Null }})
}

/// Registers the schema under `subject` and frames each datum: (schema id, bytes).
fn framed(subject: &str, schema: &Path, datums: &[Value]) -> Vec<(u64, Vec<u8>)> {
    let inputs: Vec<String> = datums.iter().map(Value::to_string).collect();
    run_tool("registry_client.py", &["encode", subject, schema.to_str().unwrap()], &inputs)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), hex_decode(v["hex"].as_str().unwrap()))
        })
        .collect()
}

fn unframe(bytes: &[u8]) -> Value {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::from_str(&run_tool("registry_client.py", &["decode"], &[hex])[0]).unwrap()
}

async fn registry_proxy(extra: &[(&str, &str)]) -> Proxy {
    require_registry().await;
    let url = registry_url();
    let mut env = vec![("WSPROXY_SCHEMA_REGISTRY_URL", url.as_str())];
    env.extend_from_slice(extra);
    Proxy::start(&env).await
}

#[tokio::test]
async fn proxy_writes_confluent_avro_that_an_independent_registry_client_reads() {
    let proxy = registry_proxy(&[]).await;
    let schema = payment_schema();
    let topic = unique("sr-in");
    create_topic(&topic, 1).await;
    let subject = format!("{topic}-value");
    let data = framed(&subject, &schema, &[payment(0), payment(1)]);

    // A JSON socket: the framed bytes as base64, checked against the registry, produced as is.
    let mut ws =
        connect(&proxy.url(&format!("/socket/in?clientId={}&topic={topic}&keyType=string&valType=avro", unique("p"))))
            .await;
    let frame = json!({"key": {"value": "k0", "format": "string"}, "value": {"value": b64(&data[0].1), "format": "avro"}, "messageId": "j0"});
    send(&mut ws, frame.to_string()).await;
    let r = recv_json(&mut ws).await;
    assert_eq!((r["offset"].as_i64(), r["clientMessageId"].as_str()), (Some(0), Some("j0")), "{r}");

    // An Avro socket: the framed bytes in the wrapper's `bytes` branch.
    let rec_schema = served_schema(&proxy, "/schemas/avro/producer/record").await;
    let res_schema = served_schema(&proxy, "/schemas/avro/producer/result").await;
    let mut ws = connect(
        &proxy.url(&format!("/socket/in?clientId={}&topic={topic}&socketPayload=avro&valType=avro", unique("p"))),
    )
    .await;
    let wrapper =
        json!({"key": null, "value": {"bytes": b64(&data[1].1)}, "headers": null, "clientMessageId": {"string": "a1"}});
    send_binary(&mut ws, encode(&rec_schema, wrapper)).await;
    let r = decode(&res_schema, &binary(&mut ws).await);
    assert_eq!(r["offset"], json!({"int": 1}));

    // The independent client finds the schema by the id in the bytes and decodes both.
    let got: Vec<Value> = run_tool("registry_client.py", &["consume", &topic, "2"], &[])
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g["id"].as_u64(), Some(data[i].0));
        assert_eq!(g["datum"], payment_decoded(i as i64), "record {i}");
    }

    // WSPROXY_SCHEMA_AUTO_REGISTER (default true) registered the wrapper schemas.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let subjects = registry_subjects(&registry_url(), None).await;
        let want = ["AvroProducerRecord", "AvroProducerResult", "AvroConsumerRecord", "AvroCommit"];
        if want.iter().all(|n| subjects.contains(&format!("net.scalytica.kafka.wsproxy.avro.{n}"))) {
            break;
        }
        assert!(Instant::now() < deadline, "wrapper schemas not registered: {subjects:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_independent_registry_client_writes_confluent_avro_that_the_proxy_delivers() {
    let proxy = registry_proxy(&[]).await;
    let schema = payment_schema();
    let topic = unique("sr-out");
    create_topic(&topic, 1).await;
    let subject = format!("{topic}-value");
    let datums: Vec<String> = (0..3).map(|i| payment(i).to_string()).collect();
    let out = run_tool("registry_client.py", &["produce", &topic, &subject, schema.to_str().unwrap()], &datums);
    let id = serde_json::from_str::<Value>(&out[0]).unwrap()["id"].as_u64().unwrap();

    // JSON socket: base64 of the untouched Confluent bytes.
    let mut ws = connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}&valType=avro", unique("c")))).await;
    for i in 0..3 {
        let r = recv_json(&mut ws).await;
        assert_eq!(r["value"]["format"], "avro", "{r}");
        let bytes = base64_decode(r["value"]["value"].as_str().unwrap());
        let u = unframe(&bytes);
        assert_eq!((u["id"].as_u64(), &u["datum"]), (Some(id), &payment_decoded(i)), "record {i}");
    }
    // Avro socket: the same bytes in the `bytes` branch of AvroConsumerRecord.
    let rec_schema = served_schema(&proxy, "/schemas/avro/consumer/record").await;
    let mut ws = connect(
        &proxy.url(&format!("/socket/out?clientId={}&topic={topic}&socketPayload=avro&valType=avro", unique("c"))),
    )
    .await;
    for i in 0..3 {
        let r = decode(&rec_schema, &binary(&mut ws).await);
        let bytes = base64_decode(r["value"]["bytes"].as_str().unwrap());
        assert_eq!(unframe(&bytes)["datum"], payment_decoded(i), "record {i}");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn avro_value(bytes: &[u8], id: &str) -> String {
    json!({"value": {"value": b64(bytes), "format": "avro"}, "messageId": id}).to_string()
}

#[tokio::test]
async fn bad_avro_values_get_error_frames_and_the_sockets_go_on() {
    let proxy = registry_proxy(&[]).await;
    let schema = payment_schema();
    let topic = unique("sr-bad");
    create_topic(&topic, 1).await;
    let data = framed(&format!("{topic}-value"), &schema, &[payment(4)]);
    let (id, good) = (data[0].0 as u32, data[0].1.clone());
    let mut ws = connect(&proxy.url(&format!("/socket/in?clientId={}&topic={topic}&valType=avro", unique("p")))).await;

    let mut unknown = vec![0, 0x7f, 0xff, 0xff, 0xf0];
    unknown.extend_from_slice(&good[5..]);
    let mut other_schema = vec![0];
    other_schema.extend_from_slice(&id.to_be_bytes());
    other_schema.extend_from_slice(&[0x06, b'a', b'b', b'c']); // a string where the record is
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("plain", b"hello avro".to_vec(), "magic byte"),
        ("short", vec![0, 0, 1], "too short"),
        ("unknown-id", unknown, "does not know schema id 2147483632"),
        ("truncated", good[..good.len() - 3].to_vec(), &format!("does not match schema id {id}")),
        ("wrong-schema", other_schema, &format!("does not match schema id {id}")),
    ]
    .into_iter()
    .map(|(n, b, m)| (n, b, Box::leak(m.to_owned().into_boxed_str()) as &str))
    .collect();
    for (name, bytes, _) in &cases {
        send(&mut ws, avro_value(bytes, name)).await;
    }
    send(&mut ws, avro_value(&good, "good")).await;
    for (name, _, why) in &cases {
        let e = recv_json(&mut ws).await;
        assert_eq!(
            (e["error"]["code"].as_str(), e["clientMessageId"].as_str()),
            (Some("INVALID_VALUE"), Some(*name)),
            "{e}"
        );
        assert!(e["error"]["message"].as_str().unwrap().contains(why), "{name}: {e}");
    }
    let r = recv_json(&mut ws).await;
    assert_eq!((r["offset"].as_i64(), r["clientMessageId"].as_str()), (Some(0), Some("good")), "{r}");
    // A key checked the same way.
    let mut ws =
        connect(&proxy.url(&format!("/socket/in?clientId={}&topic={topic}&keyType=avro&valType=string", unique("p"))))
            .await;
    send(&mut ws, json!({"key": {"value": b64(b"nope"), "format": "avro"}, "value": {"value": "v"}}).to_string()).await;
    assert_eq!(recv_json(&mut ws).await["error"]["code"], "INVALID_KEY");
    // Only the good record reached Kafka.
    let back = kafka_tool(&["consume", &topic, "2", "5", "raw", "raw"], "");
    assert_eq!(back.lines().count(), 1, "{back}");

    // Consuming: records that are not valid registry Avro get DECODE_ERROR frames naming them.
    write_with_tool(
        &topic,
        &[
            json!({"value": {"format": "bytearray", "value": b64(b"not framed")}}),
            json!({"value": {"format": "bytearray", "value": b64(&[0, 0x7f, 0xff, 0xff, 0xf0, 1])}}),
            json!({"value": {"format": "bytearray", "value": b64(&good)}}),
        ],
    );
    let mut ws = connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}&valType=avro", unique("c")))).await;
    let first = recv_json(&mut ws).await;
    assert_eq!(first["offset"], 0, "the good record first: {first}");
    for offset in [1, 2] {
        let e = recv_json(&mut ws).await;
        assert_eq!((e["error"]["code"].as_str(), e["offset"].as_i64()), (Some("DECODE_ERROR"), Some(offset)), "{e}");
    }
    let last = recv_json(&mut ws).await;
    assert_eq!(last["offset"], 3, "consumption goes on: {last}");
}

#[tokio::test]
async fn a_registry_that_is_down_slow_or_refusing_gives_clear_errors_not_a_hang() {
    require_registry().await;
    let schema = payment_schema();
    let topic = unique("sr-down");
    create_topic(&topic, 1).await;
    let good = framed(&format!("{topic}-value"), &schema, &[payment(2)]).remove(0).1;
    write_with_tool(&topic, &[json!({"value": {"format": "bytearray", "value": b64(&good)}})]);

    // Nothing listens: refused at once.
    let closed = format!("http://127.0.0.1:{}", free_port());
    // Accepts connections and never answers: the request deadline ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let cases = [(closed.as_str(), "not reachable"), (silent_url.as_str(), "no answer within 1s")];
    for (url, why) in cases {
        let proxy = Proxy::start(&[
            ("WSPROXY_SCHEMA_REGISTRY_URL", url),
            ("WSPROXY_SCHEMA_REGISTRY_TIMEOUT", "1 second"),
            ("WSPROXY_SCHEMA_AUTO_REGISTER", "false"),
        ])
        .await;
        let mut ws =
            connect(&proxy.url(&format!("/socket/in?clientId={}&topic={topic}&valType=avro", unique("p")))).await;
        for n in 0..2 {
            send(&mut ws, avro_value(&good, &format!("r{n}"))).await;
            let e = recv_json(&mut ws).await;
            assert_eq!(e["error"]["code"], "SCHEMA_REGISTRY_UNAVAILABLE", "{url}: {e}");
            assert_eq!(e["clientMessageId"], format!("r{n}"));
            let msg = e["error"]["message"].as_str().unwrap();
            // A lookup right after a failed one fails fast, saying so; both are clear.
            assert!(msg.contains(why) || msg.contains("less than a second ago"), "{url}: {msg}");
        }
        // The consume side says so, naming the record; it holds the record (uncommitted) until
        // the registry answers (see the H1 test).
        let mut c =
            connect(&proxy.url(&format!("/socket/out?clientId={}&topic={topic}&valType=avro", unique("c")))).await;
        let e = recv_json(&mut c).await;
        assert_eq!(
            (e["error"]["code"].as_str(), e["offset"].as_i64()),
            (Some("SCHEMA_REGISTRY_UNAVAILABLE"), Some(0)),
            "{e}"
        );
        // The proxy itself stays healthy.
        assert_eq!(http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap().0, 200);
    }
    held.abort();
    // Nothing was produced while the registry could not be asked (only the tool's record).
    let back = kafka_tool(&["consume", &topic, "2", "3", "raw", "raw"], "");
    assert_eq!(back.lines().count(), 1, "{back}");
}

/// The Python registry of `tests/support/schema_registry.py` with Basic auth, on a free port,
/// for this test only: Apicurio Registry 2.1 (`scripts/registry`) authenticates with OpenID
/// Connect, not Basic auth. Killed when dropped.
struct AuthRegistry {
    child: std::process::Child,
    url: String,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const USER_INFO: &str = "wsproxy:registry-secret";

async fn auth_registry() -> AuthRegistry {
    let port = free_port();
    let python = std::env::var("WSPROXY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| project_root().join(".venv/bin/python"));
    let child = std::process::Command::new(python)
        .arg(project_root().join("tests/support/schema_registry.py"))
        .args(["--port", &port.to_string(), "--user-info", USER_INFO])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python");
    let registry = AuthRegistry { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    let auth = format!("Basic {}", b64(USER_INFO.as_bytes()));
    while !matches!(http(port, "GET", "/subjects", &[("Authorization", &auth)]).await, Ok((200, _, _))) {
        assert!(Instant::now() < deadline, "the test registry did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    registry
}

#[tokio::test]
async fn registry_basic_auth_from_user_info_or_the_url_and_a_refusal() {
    let registry = auth_registry().await;
    let schema = payment_schema();
    let topic = unique("sr-auth");
    create_topic(&topic, 1).await;
    let env = [("SCHEMA_REGISTRY_URL", registry.url.as_str()), ("SCHEMA_REGISTRY_USER_INFO", USER_INFO)];
    let out = run_tool_with(
        "registry_client.py",
        &["encode", &format!("{topic}-value"), schema.to_str().unwrap()],
        &[payment(3).to_string()],
        &env,
    );
    let good = hex_decode(serde_json::from_str::<Value>(&out[0]).unwrap()["hex"].as_str().unwrap());
    let in_url = registry.url.replace("http://", &format!("http://{USER_INFO}@"));
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Env, Option<&str>); 3] = [
        (&[("WSPROXY_SCHEMA_REGISTRY_URL", &registry.url), ("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO", USER_INFO)], None),
        (&[("WSPROXY_SCHEMA_REGISTRY_URL", &in_url), ("WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC", "URL")], None),
        (
            &[("WSPROXY_SCHEMA_REGISTRY_URL", &registry.url), ("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO", "wsproxy:wrong")],
            Some("answered HTTP 401"),
        ),
    ];
    let mut produced = 0;
    for (env, refusal) in cases {
        let proxy = Proxy::start(env).await;
        let mut ws =
            connect(&proxy.url(&format!("/socket/in?clientId={}&topic={topic}&valType=avro", unique("p")))).await;
        send(&mut ws, avro_value(&good, "a")).await;
        let r = recv_json(&mut ws).await;
        match refusal {
            None => {
                assert_eq!(r["offset"], produced, "{env:?}: {r}");
                produced += 1;
            }
            Some(why) => {
                assert_eq!(r["error"]["code"], "SCHEMA_REGISTRY_UNAVAILABLE", "{r}");
                let msg = r["error"]["message"].as_str().unwrap();
                assert!(msg.contains(why), "{msg}");
                assert!(!msg.contains("registry-secret") && !msg.contains("wrong"), "no credentials in errors: {msg}");
                assert!(!proxy.log_text().contains("registry-secret"), "no credentials in the log");
            }
        }
    }
}

/// A TCP forwarder to the registry of `scripts/registry` that a test can cut, to make a
/// registry outage without stopping the shared registry: while down it drops the
/// connections it forwards, and closes each new one at once, like a registry restarting, or
/// (`silent`) holds it open without an answer, like a registry that hangs.
struct RegistrySwitch {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl RegistrySwitch {
    async fn start(silent: bool) -> RegistrySwitch {
        let (target, path) = port_and_path(&registry_url());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let (up, watch) = tokio::sync::watch::channel(true);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    if silent {
                        tokio::spawn(async move {
                            let _held = client;
                            let _ = watch.wait_for(|up| *up).await;
                        });
                    }
                    continue; // else dropped: closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut registry) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut registry) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        RegistrySwitch { url, up, accept }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for RegistrySwitch {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One consume socket's view in the H1 test: offsets delivered as records (with how often),
/// error frames by code, and (manual commits) the ids to commit.
#[derive(Default)]
struct Delivered {
    records: std::collections::BTreeMap<(i64, i64), u32>,
    errors: Vec<Value>,
}

impl Delivered {
    async fn take(&mut self, ws: &mut Ws, wait: Duration, commit: bool) {
        let Some(frame) = maybe_json(ws, wait).await else { return };
        let at = (frame["partition"].as_i64().unwrap_or(-1), frame["offset"].as_i64().unwrap_or(-1));
        if frame.get("error").is_some() {
            self.errors.push(frame.clone());
        } else {
            *self.records.entry(at).or_default() += 1;
        }
        // Manual commits: the client commits every record it got (and every DECODE_ERROR).
        if let (true, Some(id)) = (commit, frame["wsProxyMessageId"].as_str()) {
            if frame["error"]["code"] != "SCHEMA_REGISTRY_UNAVAILABLE" {
                send(ws, json!({"wsProxyMessageId": id}).to_string()).await;
            }
        }
    }

    fn codes(&self) -> Vec<String> {
        self.errors.iter().map(|e| e["error"]["code"].as_str().unwrap_or("?").to_owned()).collect()
    }
}

fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

/// H1 (code review): while the schema registry could not be reached, every avro record whose
/// schema was not cached became a `SCHEMA_REGISTRY_UNAVAILABLE` error frame, and its offset
/// was stored (autoCommit) or stashed (manual) and committed: the records were lost to the
/// group. "Could not check" is not "bad record": the socket now holds the record and retries
/// until the registry answers. A 20 s outage in the middle of an avro consume, with autoCommit
/// true and false: every record is delivered after it returns, 0 lost, and only a record that
/// really is bad (an unknown schema id) becomes a committed `DECODE_ERROR`.
#[tokio::test]
async fn h1_a_registry_outage_never_commits_unchecked_records() {
    registry_outage(false).await;
}

/// H1 with a registry that accepts connections and never answers: each lookup ends at the
/// request deadline, and the records wait just the same.
#[tokio::test]
async fn h1_a_silent_registry_never_commits_unchecked_records() {
    registry_outage(true).await;
}

async fn registry_outage(silent: bool) {
    require_registry().await;
    let switch = RegistrySwitch::start(silent).await;
    let proxy = Proxy::start(&[
        ("WSPROXY_SCHEMA_REGISTRY_URL", switch.url.as_str()),
        ("WSPROXY_SCHEMA_REGISTRY_TIMEOUT", "2 seconds"),
        ("WSPROXY_SCHEMA_AUTO_REGISTER", "false"),
    ])
    .await;
    let topic = unique("h1-outage");
    create_topic(&topic, 2).await;
    // Two schemas: the proxy caches the first before the outage, and meets the second in it.
    let refund = std::env::temp_dir().join(format!("{}.avsc", unique("refund")));
    std::fs::write(&refund, PAYMENT.replace("\"Payment\"", "\"Refund\"")).unwrap();
    let first = framed(&format!("{topic}-value"), &payment_schema(), &(0..20).map(payment).collect::<Vec<_>>());
    let second = framed(&format!("{topic}-refund"), &refund, &(20..40).map(payment).collect::<Vec<_>>());
    assert_ne!(first[0].0, second[0].0, "two schema ids");
    let write = |data: &[Vec<u8>]| {
        let records: Vec<Value> = data
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"partition": i % 2, "value": {"format": "bytearray", "value": b64(b)}}))
            .collect();
        write_with_tool(&topic, &records);
    };
    write(&first.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>());

    let (auto_group, manual_group) = (unique("g-auto"), unique("g-manual"));
    let url = |group: &str, extra: &str| {
        proxy.url(&format!("/socket/out?clientId={}&groupId={group}&topic={topic}&valType=avro{extra}", unique("c")))
    };
    let mut sockets = [
        (connect(&url(&auto_group, "")).await, false),
        (connect(&url(&manual_group, "&autoCommit=false")).await, true),
    ];
    let mut seen = [Delivered::default(), Delivered::default()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.iter().any(|s| s.records.len() < 20) {
        assert!(Instant::now() < deadline, "the records before the outage did not arrive");
        for ((ws, manual), s) in sockets.iter_mut().zip(&mut seen) {
            s.take(ws, Duration::from_millis(100), *manual).await;
        }
    }

    // The outage: the registry is gone for 20 s while records of the second schema arrive,
    // and one record that is bad (a schema id the registry does not know) after them.
    switch.set(false);
    let outage = Instant::now();
    let mut during: Vec<Vec<u8>> = second.iter().map(|(_, b)| b.clone()).collect();
    during.push(vec![0, 0x7f, 0xff, 0xff, 0xf0, 2]);
    write(&during);
    let mut down_metric = None;
    while outage.elapsed() < Duration::from_secs(20) {
        for ((ws, manual), s) in sockets.iter_mut().zip(&mut seen) {
            s.take(ws, Duration::from_millis(100), *manual).await;
        }
        if down_metric.is_none() && outage.elapsed() > Duration::from_secs(5) {
            let (_, _, body) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
            down_metric = Some(metric_value(&body, "wsproxy_schema_registry_reachable"));
        }
    }
    for s in &seen {
        assert_eq!(s.records.len(), 20, "no record of the second schema during the outage");
        assert!(s.codes().iter().all(|c| c == "SCHEMA_REGISTRY_UNAVAILABLE"), "during the outage: {:?}", s.errors);
    }

    // The registry is back: everything comes, the bad record as the one DECODE_ERROR.
    switch.set(true);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(60);
    while seen.iter().any(|s| s.records.len() < 40 || !s.codes().contains(&"DECODE_ERROR".to_owned())) {
        if Instant::now() > deadline {
            let missing: Vec<_> = seen.iter().map(|s| 40 - s.records.len()).collect();
            panic!(
                "records lost: {missing:?} (autoCommit true, false) of 20 never delivered after the registry returned"
            );
        }
        for ((ws, manual), s) in sockets.iter_mut().zip(&mut seen) {
            s.take(ws, Duration::from_millis(100), *manual).await;
        }
    }
    println!("after the registry returned, every record came within {:?}", back.elapsed());
    for (s, name) in seen.iter().zip(["autoCommit=true", "autoCommit=false"]) {
        let bad: Vec<_> = s.errors.iter().filter(|e| e["error"]["code"] == "DECODE_ERROR").collect();
        assert_eq!(bad.len(), 1, "{name}: {:?}", s.errors);
        assert_eq!((bad[0]["partition"].as_i64(), bad[0]["offset"].as_i64()), (Some(0), Some(20)), "{name}");
        println!("{name}: {} records, error frames {:?}", s.records.len(), s.codes());
    }
    // What the groups committed, seen by the independent client: everything (20 + 20 + 1).
    let [(auto, _), (manual, _)] = sockets;
    hang_up(auto).await;
    hang_up(manual).await;
    for group in [&auto_group, &manual_group] {
        let committed: Value = serde_json::from_str(&kafka_tool(&["committed", group, &topic], "")).unwrap();
        assert_eq!((committed["0"].as_i64(), committed["1"].as_i64()), (Some(21), Some(20)), "{group}: {committed}");
    }
    // Visible to an operator: the gauge went to 0 and back, and one warning each way.
    assert_eq!(down_metric, Some(Some(0.0)), "wsproxy_schema_registry_reachable during the outage");
    let (_, _, body) = http(proxy.port, "GET", "/metrics", &[]).await.unwrap();
    assert_eq!(metric_value(&body, "wsproxy_schema_registry_reachable"), Some(1.0));
    assert!(metric_value(&body, "wsproxy_schema_registry_outages_total").is_some_and(|n| n >= 1.0));
    let log = proxy.log_text();
    assert!(log.contains("the schema registry cannot be asked") && log.contains("the schema registry answers again"));
}
