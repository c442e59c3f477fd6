//! `socketPayload=avro` end to end: the wrapper schemas served by `/schemas/avro/...`, records
//! produced and consumed as Avro binary frames over a real WebSocket, every field encoded and
//! decoded by an independent Avro library (Python fastavro, `tests/support/avro_tool.py`) with
//! the schemas the proxy serves, and what landed in Kafka read by an independent client.

mod common;

use std::time::Duration;

use common::avro::*;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn schema_endpoints_serve_the_seed_wrapper_schemas() {
    let proxy = Proxy::start(&[]).await;
    let union = json!(["bytes", "string", "int", "long", "double", "float"]);
    let key_union = json!(["null", "bytes", "string", "int", "long", "double", "float"]);
    let cases = [
        (
            "/schemas/avro/producer/record",
            "producer_record",
            "AvroProducerRecord",
            vec![("key", key_union.clone()), ("value", union.clone()), ("clientMessageId", json!(["null", "string"]))],
        ),
        (
            "/schemas/avro/producer/result",
            "producer_result",
            "AvroProducerResult",
            vec![
                ("topic", json!("string")),
                ("partition", json!("int")),
                ("offset", json!("long")),
                ("timestamp", json!("long")),
                ("clientMessageId", json!(["null", "string"])),
            ],
        ),
        (
            "/schemas/avro/consumer/record",
            "consumer_record",
            "AvroConsumerRecord",
            vec![
                ("wsProxyMessageId", json!("string")),
                ("topic", json!("string")),
                ("partition", json!("int")),
                ("offset", json!("long")),
                ("timestamp", json!("long")),
                ("key", key_union.clone()),
                ("value", union.clone()),
            ],
        ),
        ("/schemas/avro/consumer/commit", "commit", "AvroCommit", vec![("wsProxyMessageId", json!("string"))]),
        ("/schemas/avro/producer/commit", "commit", "AvroCommit", vec![("wsProxyMessageId", json!("string"))]),
    ];
    for (path, file, name, fields) in cases {
        let schema = served_schema(&proxy, path).await;
        let body = std::fs::read_to_string(&schema).unwrap();
        // Byte for byte the seed README's text (kept in crates/protocol/schemas).
        let seed =
            std::fs::read_to_string(project_root().join(format!("crates/protocol/schemas/{file}.avsc"))).unwrap();
        assert_eq!(body, seed, "{path}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["name"].as_str(), v["namespace"].as_str()),
            (Some(name), Some("net.scalytica.kafka.wsproxy.avro"))
        );
        for (field, ty) in fields {
            let f = v["fields"].as_array().unwrap().iter().find(|f| f["name"] == field).unwrap();
            assert_eq!(f["type"], ty, "{path} {field}");
        }
        // The independent library accepts it.
        let checked: Value = serde_json::from_str(&avro_tool("check", &schema, &[])[0]).unwrap();
        assert_eq!(checked["name"], format!("net.scalytica.kafka.wsproxy.avro.{name}"));
    }
    let headers_type = json!(["null", {"type": "array", "items": {"type": "record", "name": "KafkaMessageHeader",
        "doc": "Schema definition for simple Kafka message headers.",
        "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": "string"}]}}]);
    let body = http(proxy.port, "GET", "/schemas/avro/consumer/record", &[]).await.unwrap().2;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["fields"][7]["type"], headers_type);
    let body = http(proxy.port, "GET", "/schemas/avro/producer/record", &[]).await.unwrap().2;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["fields"][2]["type"], headers_type);
    assert_eq!(v["fields"][2]["default"], Value::Null);
    let (status, _, body) = http(proxy.port, "GET", "/schemas/avro/nope", &[]).await.unwrap();
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn avro_produce_round_trip_checked_with_fastavro_and_kafka() {
    let proxy = Proxy::start(&[]).await;
    let rec_schema = served_schema(&proxy, "/schemas/avro/producer/record").await;
    let res_schema = served_schema(&proxy, "/schemas/avro/producer/result").await;

    // Every field of AvroProducerRecord in and AvroProducerResult out.
    let topic = unique("avro-in");
    create_topic(&topic, 1).await;
    let mut ws = connect(&proxy.url(&format!(
        "/socket/in?clientId={}&topic={topic}&socketPayload=avro&keyType=string&valType=string",
        unique("p")
    )))
    .await;
    let full = json!({"key": {"string": "k1"}, "value": {"string": "v1"},
        "headers": {"array": [{"key": "h1", "value": "x1"}, {"key": "h2", "value": "x2"}]},
        "clientMessageId": {"string": "m1"}});
    let bare =
        json!({"key": null, "value": {"bytes": b64("raw bytes".as_bytes())}, "headers": null, "clientMessageId": null});
    send_binary(&mut ws, encode(&rec_schema, full)).await;
    send_binary(&mut ws, encode(&rec_schema, bare)).await;
    let results = decode_all(&res_schema, &[binary(&mut ws).await, binary(&mut ws).await]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["topic"], json!({"string": topic}));
        assert_eq!(r["partition"], json!({"int": 0}));
        assert_eq!(r["offset"], json!({"int": i}));
        assert!(r["timestamp"]["int"].as_i64().unwrap() > 1_600_000_000_000, "{r}");
    }
    assert_eq!(results[0]["clientMessageId"], json!({"string": "m1"}));
    assert_eq!(results[1]["clientMessageId"], Value::Null);
    let back = read_back(&topic, 2, "string", "string");
    assert_eq!(back[0]["key"], "k1");
    assert_eq!(back[0]["value"], "v1");
    assert_eq!(back[0]["headers"], json!([["h1", "x1"], ["h2", "x2"]]));
    assert_eq!(back[1]["key"], Value::Null);
    assert_eq!(back[1]["value"], "raw bytes");
    assert_eq!(back[1]["headers"], json!([]));

    // Each union branch against the socket type it fills, read back by the independent client.
    let cases = [
        ("int", json!({"int": -7}), json!(-7)),
        ("short", json!({"int": 300}), json!(300)),
        ("long", json!({"long": 1_099_511_627_776i64}), json!(1_099_511_627_776i64)),
        ("double", json!({"double": 1.25}), json!(1.25)),
        ("float", json!({"float": 0.5}), json!(0.5)),
        ("bytearray", json!({"bytes": b64(&[0, 1, 255])}), json!(b64(&[0, 1, 255]))),
        ("json", json!({"string": "{ \"a\" : [1, 2] }"}), json!({"a": [1, 2]})),
        ("int", json!({"bytes": b64(&7i32.to_be_bytes())}), json!(7)),
        ("string", json!({"int": 5}), Value::Null),
    ];
    for (val_type, value, expected) in cases {
        let topic = unique(&format!("avro-{val_type}"));
        create_topic(&topic, 1).await;
        let mut ws = connect(&proxy.url(&format!(
            "/socket/in?clientId={}&topic={topic}&socketPayload=avro&keyType=long&valType={val_type}",
            unique("p")
        )))
        .await;
        let record = json!({"key": {"long": 42}, "value": value, "headers": null, "clientMessageId": {"string": "x"}});
        send_binary(&mut ws, encode(&rec_schema, record)).await;
        match next_frame(&mut ws).await {
            Ok(frame) => {
                assert!(!expected.is_null(), "{val_type}: {value} should have been refused");
                let r = decode(&res_schema, &frame);
                assert_eq!(r["clientMessageId"], json!({"string": "x"}));
                let back = read_back(&topic, 1, "long", val_type);
                assert_eq!((&back[0]["key"], &back[0]["value"]), (&json!(42), &expected), "{val_type}");
            }
            Err(e) => {
                // An int is not a string: refused, with the record's id.
                assert!(expected.is_null(), "{val_type}: {e}");
                assert_eq!(e["error"]["code"], "INVALID_VALUE", "{e}");
                assert_eq!(e["clientMessageId"], "x");
            }
        }
    }
}

#[tokio::test]
async fn avro_consume_round_trip_commits_and_batches_checked_with_fastavro() {
    let proxy = Proxy::start(&[]).await;
    let rec_schema = served_schema(&proxy, "/schemas/avro/consumer/record").await;
    let commit_schema = served_schema(&proxy, "/schemas/avro/consumer/commit").await;
    let topic = unique("avro-out");
    create_topic(&topic, 1).await;
    write_with_tool(
        &topic,
        &[
            json!({"key": {"format": "string", "value": "k0"}, "value": {"format": "string", "value": "v0"}, "headers": [["h", "x"], ["g", "y"]]}),
            json!({"key": null, "value": {"format": "string", "value": "v1"}}),
            json!({"key": {"format": "string", "value": "k2"}, "value": {"format": "string", "value": "v2"}}),
            json!({"key": {"format": "string", "value": "k3"}, "value": null}),
        ],
    );
    let group = unique("g");
    let url = proxy.url(&format!(
        "/socket/out?clientId={}&groupId={group}&topic={topic}&socketPayload=avro&keyType=string&valType=string&autoCommit=false",
        unique("c")
    ));
    let mut ws = connect(&url).await;
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.push(binary(&mut ws).await);
    }
    let recs = decode_all(&rec_schema, &frames);
    let kafka = read_back(&topic, 4, "string", "string");
    for (i, r) in recs.iter().enumerate() {
        let ts = kafka[i]["timestamp"].as_i64().unwrap();
        assert_eq!(r["wsProxyMessageId"], json!({"string": format!("{topic}-0-{i}-{ts}")}));
        assert_eq!(r["topic"], json!({"string": topic}));
        assert_eq!(r["partition"], json!({"int": 0}));
        assert_eq!(r["offset"], json!({"int": i}));
        assert_eq!(r["timestamp"], json!({"int": ts}));
    }
    assert_eq!(recs[0]["key"], json!({"string": "k0"}));
    assert_eq!(recs[0]["value"], json!({"string": "v0"}));
    assert_eq!(
        recs[0]["headers"],
        json!([{"key": {"string": "h"}, "value": {"string": "x"}}, {"key": {"string": "g"}, "value": {"string": "y"}}])
    );
    assert_eq!(recs[1]["key"], Value::Null);
    assert_eq!(recs[1]["headers"], Value::Null);
    assert_eq!(recs[2]["key"], json!({"string": "k2"}));
    // A tombstone: the seed's value union has no null, so it comes as empty bytes.
    assert_eq!(recs[3]["value"], json!({"bytes": ""}));

    // Commit the second record with an AvroCommit from fastavro: the group's offset moves to 2.
    let id = recs[1]["wsProxyMessageId"]["string"].as_str().unwrap().to_owned();
    send_binary(&mut ws, encode(&commit_schema, json!({"wsProxyMessageId": id}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed: Value = serde_json::from_str(&kafka_tool(&["committed", &group, &topic], "")).unwrap();
        if committed["0"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "commit did not land: {committed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ws.close(None).await.unwrap();
    // At least once: the next member of the group gets the two uncommitted records again.
    let mut ws = connect(&url).await;
    let again = decode_all(&rec_schema, &[binary(&mut ws).await, binary(&mut ws).await]);
    assert_eq!((again[0]["offset"].clone(), again[1]["offset"].clone()), (json!({"int": 2}), json!({"int": 3})));
    ws.close(None).await.unwrap();

    // batchSize: one binary frame holding an Avro array of AvroConsumerRecord.
    let batch_schema = std::env::temp_dir().join(format!("{}.avsc", unique("batch")));
    std::fs::write(
        &batch_schema,
        format!("{{\"type\":\"array\",\"items\":{}}}", std::fs::read_to_string(&rec_schema).unwrap()),
    )
    .unwrap();
    let mut ws = connect(&proxy.url(&format!(
        "/socket/out?clientId={}&topic={topic}&socketPayload=avro&keyType=string&valType=string&batchSize=10",
        unique("c")
    )))
    .await;
    let mut offsets = Vec::new();
    while offsets.len() < 4 {
        let items = decode(&batch_schema, &binary(&mut ws).await);
        offsets.extend(items.as_array().unwrap().iter().map(|r| r["offset"]["int"].as_i64().unwrap()));
    }
    assert_eq!(offsets, vec![0, 1, 2, 3]);

    // Typed values: long keys and int/double values come in their own union branches.
    let topic = unique("avro-typed");
    create_topic(&topic, 1).await;
    write_with_tool(
        &topic,
        &[json!({"key": {"format": "long", "value": 1i64 << 40}, "value": {"format": "double", "value": 2.5}})],
    );
    let mut ws = connect(&proxy.url(&format!(
        "/socket/out?clientId={}&topic={topic}&socketPayload=avro&keyType=long&valType=double",
        unique("c")
    )))
    .await;
    let r = decode(&rec_schema, &binary(&mut ws).await);
    assert_eq!((r["key"].clone(), r["value"].clone()), (json!({"int": 1i64 << 40}), json!({"double": 2.5})));
}

#[tokio::test]
async fn avro_bad_input_gets_error_frames_and_the_socket_goes_on() {
    let proxy = Proxy::start(&[]).await;
    let rec_schema = served_schema(&proxy, "/schemas/avro/producer/record").await;
    let res_schema = served_schema(&proxy, "/schemas/avro/producer/result").await;
    let commit_schema = served_schema(&proxy, "/schemas/avro/consumer/commit").await;
    let topic = unique("avro-bad");
    create_topic(&topic, 1).await;
    let mut ws = connect(
        &proxy.url(&format!("/socket/in?clientId={}&topic={topic}&socketPayload=avro&valType=int", unique("p"))),
    )
    .await;
    let good = encode(
        &rec_schema,
        json!({"key": null, "value": {"int": 1}, "headers": null, "clientMessageId": {"string": "ok"}}),
    );
    // A text frame on an avro socket.
    send(&mut ws, record(None, "x", Some("t1"))).await;
    let e = error_text(&mut ws).await;
    assert_eq!(e["error"]["code"], "UNSUPPORTED_FRAME", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("socketPayload=avro"), "{e}");
    // Truncated: the last byte (the id's string) cut off.
    send_binary(&mut ws, good[..good.len() - 1].to_vec()).await;
    let e = error_text(&mut ws).await;
    assert_eq!(e["error"]["code"], "INVALID_FRAME", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("AvroProducerRecord"), "{e}");
    // Cut in the middle of the union index list: the id union would otherwise read as null.
    send_binary(&mut ws, good[..2].to_vec()).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "INVALID_FRAME");
    // Another schema's datum (an AvroCommit) and plain garbage.
    send_binary(&mut ws, encode(&commit_schema, json!({"wsProxyMessageId": "t-0-1-2"}))).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "INVALID_FRAME");
    send_binary(&mut ws, vec![0xff; 7]).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "INVALID_FRAME");
    // A huge length prefix must be refused, not allocated.
    send_binary(&mut ws, vec![0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f]).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "INVALID_FRAME");
    // Well-formed, but the value does not fit valType=int; and a key without keyType.
    send_binary(
        &mut ws,
        encode(
            &rec_schema,
            json!({"key": null, "value": {"string": "abc"}, "headers": null, "clientMessageId": {"string": "b1"}}),
        ),
    )
    .await;
    let e = error_text(&mut ws).await;
    assert_eq!(
        (e["error"]["code"].as_str(), e["clientMessageId"].as_str()),
        (Some("INVALID_VALUE"), Some("b1")),
        "{e}"
    );
    send_binary(
        &mut ws,
        encode(
            &rec_schema,
            json!({"key": {"string": "k"}, "value": {"int": 2}, "headers": null, "clientMessageId": {"string": "b2"}}),
        ),
    )
    .await;
    let e = error_text(&mut ws).await;
    assert_eq!((e["error"]["code"].as_str(), e["messageId"].as_str()), (Some("INVALID_KEY"), Some("b2")), "{e}");
    // The socket still works and only the good record reached Kafka.
    send_binary(&mut ws, good.clone()).await;
    let r = decode(&res_schema, &binary(&mut ws).await);
    assert_eq!((r["offset"].clone(), r["clientMessageId"].clone()), (json!({"int": 0}), json!({"string": "ok"})));
    let back = kafka_tool(&["consume", &topic, "2", "5", "raw", "int"], "");
    assert_eq!(back.lines().count(), 1, "{back}");

    // The consume side: bad commit frames get error frames; a good commit still lands.
    let group = unique("g");
    let mut ws = connect(&proxy.url(&format!(
        "/socket/out?clientId={}&groupId={group}&topic={topic}&socketPayload=avro&valType=int&autoCommit=false",
        unique("c")
    )))
    .await;
    let rec_out = served_schema(&proxy, "/schemas/avro/consumer/record").await;
    let r = decode(&rec_out, &binary(&mut ws).await);
    let id = r["wsProxyMessageId"]["string"].as_str().unwrap().to_owned();
    send(&mut ws, json!({"wsProxyMessageId": id}).to_string()).await;
    let e = error_text(&mut ws).await;
    assert_eq!(e["error"]["code"], "UNSUPPORTED_FRAME", "{e}");
    send_binary(&mut ws, vec![0x40, 0x41]).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "INVALID_FRAME");
    send_binary(&mut ws, encode(&commit_schema, json!({"wsProxyMessageId": format!("{topic}-0-99-1")}))).await;
    assert_eq!(error_text(&mut ws).await["error"]["code"], "UNKNOWN_MESSAGE_ID");
    send_binary(&mut ws, encode(&commit_schema, json!({"wsProxyMessageId": id}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while serde_json::from_str::<Value>(&kafka_tool(&["committed", &group, &topic], "")).unwrap()["0"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the commit did not land");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bytes that are not an int: an error text frame naming the record, then consumption goes on.
    write_with_tool(
        &topic,
        &[
            json!({"value": {"format": "bytearray", "value": b64(&[1, 2, 3])}}),
            json!({"value": {"format": "int", "value": 9}}),
        ],
    );
    let e = error_text(&mut ws).await;
    assert_eq!((e["error"]["code"].as_str(), e["offset"].as_i64()), (Some("DECODE_ERROR"), Some(1)), "{e}");
    let r = decode(&rec_out, &binary(&mut ws).await);
    assert_eq!((r["offset"].clone(), r["value"].clone()), (json!({"int": 2}), json!({"int": 9})));
}

/// A linked list whose `next` is null or another node: a recursive schema.
const RECURSIVE: &str = r#"{"type": "record", "name": "Node", "namespace": "wsproxy.test",
  "fields": [{"name": "next", "type": ["null", "Node"]}]}"#;

/// H5: apache-avro decodes by recursion with no depth limit, so a recursive schema in the
/// registry and 200 KB of nesting overflowed the stack and aborted the proxy. Now a datum
/// nested beyond the limit gets an error frame, produced through an avro socket and consumed
/// from a record written by an independent client, and the proxy lives on.
#[tokio::test]
async fn h5_deeply_nested_avro_of_a_recursive_schema_gets_an_error_frame_and_the_proxy_lives() {
    require_registry().await;
    let url = registry_url();
    let proxy = Proxy::start(&[("WSPROXY_SCHEMA_REGISTRY_URL", url.as_str())]).await;
    let topic = unique("avro-deep");
    create_topic(&topic, 1).await;
    let schema = std::env::temp_dir().join(format!("{}.avsc", unique("node")));
    std::fs::write(&schema, RECURSIVE).unwrap();
    // The independent client registers the schema under its own subject and frames a shallow list.
    let out = run_tool(
        "registry_client.py",
        &["encode", &format!("{topic}-value"), schema.to_str().unwrap()],
        &[json!({"next": null}).to_string()],
    );
    let framed: Value = serde_json::from_str(&out[0]).unwrap();
    let shallow = hex_decode(framed["hex"].as_str().unwrap());
    // The same schema id, 200,000 nodes deep: union branch 1 for each `next`, null at the end.
    let mut deep = shallow[..5].to_vec();
    deep.extend(std::iter::repeat_n(0x02, 200_000));
    deep.push(0x00);

    let rec_schema = served_schema(&proxy, "/schemas/avro/producer/record").await;
    let res_schema = served_schema(&proxy, "/schemas/avro/producer/result").await;
    let mut ws = connect(
        &proxy.url(&format!("/socket/in?clientId={}&topic={topic}&socketPayload=avro&valType=avro", unique("p"))),
    )
    .await;
    let wrapper = |bytes: &[u8], id: &str| json!({"key": null, "value": {"bytes": b64(bytes)}, "headers": null, "clientMessageId": {"string": id}});
    send_binary(&mut ws, encode(&rec_schema, wrapper(&deep, "deep"))).await;
    let e = error_text(&mut ws).await;
    assert_eq!(
        (e["error"]["code"].as_str(), e["clientMessageId"].as_str()),
        (Some("INVALID_VALUE"), Some("deep")),
        "{e}"
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("nests deeper"), "{e}");
    send_binary(&mut ws, encode(&rec_schema, wrapper(&shallow, "shallow"))).await;
    assert_eq!(decode(&res_schema, &binary(&mut ws).await)["offset"], json!({"int": 0}));
    // Only the shallow record reached Kafka.
    let back = kafka_tool(&["consume", &topic, "2", "5", "raw", "raw"], "");
    assert_eq!(back.lines().count(), 1, "{back}");

    // The deep record written by the independent client, then a shallow one.
    write_with_tool(
        &topic,
        &[
            json!({"value": {"format": "bytearray", "value": b64(&deep)}}),
            json!({"value": {"format": "bytearray", "value": b64(&shallow)}}),
        ],
    );
    let mut ws = connect(
        &proxy.url(&format!("/socket/out?clientId={}&topic={topic}&socketPayload=avro&valType=avro", unique("c"))),
    )
    .await;
    let rec_out = served_schema(&proxy, "/schemas/avro/consumer/record").await;
    assert_eq!(decode(&rec_out, &binary(&mut ws).await)["offset"], json!({"int": 0}));
    let e = error_text(&mut ws).await;
    assert_eq!((e["error"]["code"].as_str(), e["offset"].as_i64()), (Some("DECODE_ERROR"), Some(1)), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("nests deeper"), "{e}");
    assert_eq!(decode(&rec_out, &binary(&mut ws).await)["offset"], json!({"int": 2}), "consumption goes on");
    assert_eq!(http(proxy.port, "GET", "/healthcheck", &[]).await.unwrap().0, 200);
    let metrics = http(proxy.port, "GET", "/metrics", &[]).await.unwrap().2;
    assert!(metrics.contains("wsproxy_avro_datums_refused_total{limit=\"depth\"} 2"), "{metrics}");
}
