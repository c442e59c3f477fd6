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
        // The consume side says so in the record's place, and goes on.
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
